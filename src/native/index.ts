/**
 * The native addon (build/Release/nodetgt_native.node, or a per-ABI build: addonCandidates): CRC32C, the per-thread io_uring ring, kernel range
 * copies (copy_file_range), fd helpers.
 *
 * Each JS thread loads its own addon instance, so each worker gets its own ring (Ring.forThisThread()).
 * Ops complete through one callback per batch of CQEs; this wrapper maps tags back to per-op callbacks
 * with a reusable slot array, and keeps every buffer referenced until the kernel is done with it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as util from 'node:util';
import { constants } from 'node:os';

export type Crc32cImpl = 'avx512+vpclmulqdq' | 'avx2+vpclmulqdq' | 'sse4.2+pclmul' | 'sse4.2' | 'portable';
/** res >= 0: bytes transferred (or 0); res < 0: -errno. */
export type IoCallback = (res: number) => void;

interface RingStatsRaw {
  inflight: number;
  submitCalls: number;
  batches: number;
  completions: number;
  sqEntries: number;
  cqEntries: number;
  refed: number;
}

interface Binding {
  crc32c(buf: ArrayBufferView, prev?: number): number;
  crc32cPortable(buf: ArrayBufferView, prev?: number): number;
  crc32cVariant(impl: number, buf: ArrayBufferView, prev?: number): number;
  crc32cImpls(): Crc32cImpl[];
  crc32cImpl: Crc32cImpl;
  pduSeal(bhs: Uint8Array, hdr: Uint8Array | null, data: Uint8Array | null, trailer: Uint8Array | null): void;
  pduCheck(buf: Uint8Array, at: number, headerLen: number, dataLen: number, flags: number): number;
  dup(fd: number): number;
  idlePoll(maxMicros: number, counters?: Float64Array, commands?: number, queued?: number): void;
  idlePollStats(): [number, number, number, number, number, number, number];
  peerCredentials(fd: number): [number, number, number];
  tcpInfo(fd: number): TcpInfo;
  /** Absent from an addon built before it existed. */
  socketWrite?(fd: number, buf: Uint8Array): number;
  blockDeviceSize(fd: number): number;
  logicalBlockSize(fd: number): number;
  lseekData(fd: number, offset: number): number;
  lseekHole(fd: number, offset: number): number;
  allocAligned(size: number, alignment: number): ArrayBuffer;
  isAligned(view: ArrayBufferView, alignment: number): boolean;
  copyFileRange(
    fdIn: number,
    offIn: number,
    fdOut: number,
    offOut: number,
    length: number,
    flags: number,
    cb: (res: number, fellBack: boolean) => void,
  ): void;
  ringOpen(entries: number, tags: Int32Array, results: Int32Array, onBatch: (count: number) => void): void;
  ringClose(): void;
  ringRead(tag: number, fd: number, buf: ArrayBufferView, offset: number): void;
  ringWrite(tag: number, fd: number, buf: ArrayBufferView, offset: number, rwFlags: number): void;
  ringReadv(tag: number, fd: number, bufs: readonly ArrayBufferView[], offset: number): void;
  ringWritev(
    tag: number,
    fd: number,
    bufs: readonly ArrayBufferView[],
    offset: number,
    rwFlags: number,
  ): void;
  ringFsync(tag: number, fd: number, datasync: boolean): void;
  ringFallocate(tag: number, fd: number, mode: number, offset: number, length: number): void;
  ringNop(tag: number): void;
  ringSubmit(): number;
  ringStats(): RingStatsRaw;
  preadInline(fd: number, buf: ArrayBufferView, offset: number, rwFlags: number): number;
  pwriteInline(
    fd: number,
    bufs: ArrayBufferView | readonly ArrayBufferView[],
    offset: number,
    rwFlags: number,
  ): number;
  fsMagic(fd: number): number;
  /** Absent from an addon built before it existed. */
  memMap?(fd: number, length: number, writable: boolean): MemMapping | number;
  memUnmap(m: MemMapping): void;
  memRead(m: MemMapping, buf: ArrayBufferView, offset: number): number;
  memWrite(m: MemMapping, bufs: ArrayBufferView | readonly ArrayBufferView[], offset: number): number;
  memPopulate(m: MemMapping, offset: number, length: number): number;
  memResident(m: MemMapping, offset: number, length: number): number;
}

/**
 * Where an addon may be under one root, best first. scripts/build-native.js builds one per Node ABI in
 * build/abi-<NODE_MODULE_VERSION>/ (so testing on a second Node does not overwrite build/Release).
 * The addon is Node-API, so a build from another Node's headers loads too; the newest build wins,
 * so a build/Release rebuilt after a change to native/ is not shadowed by an older per-ABI one.
 */
export function addonCandidates(root: string, name: string, abi = process.versions.modules): string[] {
  const perAbi = path.join(root, 'build', `abi-${abi}`, 'build', 'Release', name);
  const release = path.join(root, 'build', 'Release', name);
  const mtime = (f: string) => fs.statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? -1;
  const first = mtime(perAbi) > mtime(release) ? [perAbi, release] : [release, perAbi];
  return [...first, path.join(root, 'build', 'Debug', name)];
}

function load(): { binding: Binding; file: string } {
  const name = 'nodetgt_native.node';
  const override = process.env.NODETGT_NATIVE;
  const roots = [path.join(__dirname, '..', '..', '..'), path.join(__dirname, '..', '..')]; // dist/src/native, src/native
  const candidates = override ? [override] : roots.flatMap((r) => addonCandidates(r, name));
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const mod = { exports: {} as Binding };
    process.dlopen(mod, file);
    return { binding: mod.exports, file };
  }
  throw new Error(
    `nodetgt: native addon not built (looked for ${candidates.join(', ')}); run 'npm install' or 'npx node-gyp rebuild'`,
  );
}

const loaded = load();
const binding = loaded.binding;
/** The addon file this thread loaded (which build: the bench report and the tests name it). */
export const addonFile: string = loaded.file;

// ---- CRC32C ----------------------------------------------------------------------------------------

/** CRC32C of `buf`; `prev` (a previous result) continues it: crc32c(b, crc32c(a)) === crc32c(a ++ b). */
export const crc32c: (buf: ArrayBufferView, prev?: number) => number = binding.crc32c;
/** The same through the portable slicing-by-8 code, whatever the CPU. */
export const crc32cPortable: (buf: ArrayBufferView, prev?: number) => number = binding.crc32cPortable;

/**
 * An outgoing PDU's digests in one call (src/pdu/digests.ts has the contract): `hdr` gets bhs and CRC32C(bhs),
 * `trailer` the zero pad and CRC32C(data ++ pad); either may be null.
 */
export const pduSeal: (
  bhs: Uint8Array,
  hdr: Uint8Array | null,
  data: Uint8Array | null,
  trailer: Uint8Array | null,
) => void = binding.pduSeal;
/** An incoming whole PDU's digests checked where it lies: 0 when they match (src/pdu/digests.ts). */
export const pduCheck: (
  buf: Uint8Array,
  at: number,
  headerLen: number,
  dataLen: number,
  flags: number,
) => number = binding.pduCheck;

/** The implementation crc32c() uses on this CPU. */
export function crc32cImpl(): Crc32cImpl {
  return binding.crc32cImpl;
}

/** Every implementation this CPU can run, best first. */
export function crc32cImpls(): Crc32cImpl[] {
  return binding.crc32cImpls();
}

const IMPL_INDEX: Record<Crc32cImpl, number> = {
  portable: 0,
  'sse4.2': 1,
  'sse4.2+pclmul': 2,
  'avx2+vpclmulqdq': 3,
  'avx512+vpclmulqdq': 4,
};

/** CRC32C through a given implementation (tests); throws when the CPU cannot run it. */
export function crc32cWith(impl: Crc32cImpl, buf: ArrayBufferView, prev = 0): number {
  return binding.crc32cVariant(IMPL_INDEX[impl], buf, prev);
}

// ---- fd helpers ------------------------------------------------------------------------------------

/** fcntl(fd, F_DUPFD_CLOEXEC): another descriptor for the same open file. */
export function dup(fd: number): number {
  return binding.dup(fd);
}

/**
 * Look for ready descriptors for up to `maxMicros` (adapted to the gaps seen) before this thread's event loop
 * sleeps, when the last wake-up brought at most one command and none waits on a backstore (the counter row's
 * slots `commands` and `queued`); 0 stops it (native/idlepoll.cc).
 */
export function idlePoll(
  maxMicros: number,
  counters?: { array: Float64Array; commands: number; queued: number },
): void {
  if (counters) binding.idlePoll(maxMicros, counters.array, counters.commands, counters.queued);
  else binding.idlePoll(maxMicros);
}

/** This thread's idle polling so far. */
export interface IdlePollStats {
  /** Looks that found a descriptor ready (the loop did not sleep). */
  caught: number;
  /** Looks that did not (the loop slept after looking). */
  missed: number;
  /** Times the loop was about to sleep. */
  idle: number;
  /** Milliseconds spent looking. */
  lookMs: number;
  /** The window now, and its maximum, in microseconds. */
  windowUs: number;
  maxUs: number;
  /** Looks cut short because another task ran on this CPU meanwhile (looking then pauses for 200 ms). */
  shared: number;
}

export function idlePollStats(): IdlePollStats {
  const [caught, missed, idle, lookMs, windowUs, maxUs, shared] = binding.idlePollStats();
  return { caught, missed, idle, lookMs, windowUs, maxUs, shared };
}

/** Who is at the other end of a connected Unix socket (SO_PEERCRED): its pid, uid and gid at connect(). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  const [pid, uid, gid] = binding.peerCredentials(fd);
  return { pid, uid, gid };
}

/** Fields of TCP_INFO (getsockopt(fd, IPPROTO_TCP, TCP_INFO)), named after struct tcp_info's tcpi_*. */
export interface TcpInfo {
  /** TCP state (1 = ESTABLISHED). */
  state: number;
  /** TCPI_OPT_* bits the connection negotiated (TCP_OPT_TIMESTAMPS: 12 bytes of every segment). */
  options: number;
  /** Path MTU the kernel uses for the connection. */
  pmtu: number;
  /** Largest segment this end sends (the peer's advertised MSS, the path MTU and options applied). */
  sndMss: number;
  /** The kernel's estimate of the largest segment the peer sends. */
  rcvMss: number;
  /** The MSS this end advertised. */
  advMss: number;
  /** Smoothed round-trip time and its variation, microseconds. */
  rttUs: number;
  rttVarUs: number;
  /** Segments retransmitted over the connection's life. */
  totalRetrans: number;
  sndCwnd: number;
}

/** TCPI_OPT_TIMESTAMPS in TcpInfo.options. */
export const TCPI_OPT_TIMESTAMPS = 1;

/** TCP_INFO of a connected TCP socket; throws (ENOTSOCK, EBADF, EOPNOTSUPP) for anything else. */
export function tcpInfo(fd: number): TcpInfo {
  return binding.tcpInfo(fd);
}

/**
 * One write(2) of `buf` on a (non-blocking) socket: the bytes the kernel took, or -errno (-EAGAIN when its buffer
 * is full, -EPIPE, ...). Never throws for a failed write; throws TypeError for bad arguments.
 */
export const socketWrite: (fd: number, buf: Uint8Array) => number =
  // An addon built before socketWrite existed (a stale per-ABI build): every write is "would block", so the
  // caller hands it to the socket's stream as it did before.
  binding.socketWrite ?? (() => -constants.errno.EAGAIN);

/** Size in bytes of a block device (ioctl BLKGETSIZE64). */
export function blockDeviceSize(fd: number): number {
  return binding.blockDeviceSize(fd);
}

/** Logical sector size of a block device (ioctl BLKSSZGET). */
export function logicalBlockSize(fd: number): number {
  return binding.logicalBlockSize(fd);
}

export const ENXIO = -6;

/**
 * lseek(fd, offset, SEEK_DATA): the first offset at or after `offset` that holds data, or -errno.
 * -ENXIO (ENXIO above) means there is no data at or after `offset` (or `offset` is at or past the end).
 *
 * Synchronous: it reads only extent metadata (normally in memory for a file being served), never file data,
 * and costs microseconds, less than a trip through the thread pool. Callers bound the number of calls.
 */
export function lseekData(fd: number, offset: number): number {
  checkOffset(offset);
  return binding.lseekData(fd, offset);
}

/**
 * lseek(fd, offset, SEEK_HOLE): the first offset at or after `offset` inside a hole, or -errno. The end of
 * the file counts as a hole, so for an offset below the file size the result is at most the size.
 * -ENXIO: `offset` is at or past the end. Synchronous, like lseekData().
 */
export function lseekHole(fd: number, offset: number): number {
  checkOffset(offset);
  return binding.lseekHole(fd, offset);
}

/** A zero-filled Buffer whose memory starts on `alignment` bytes (for O_DIRECT). */
export function allocAligned(size: number, alignment = 4096): Buffer {
  const buf = Buffer.from(binding.allocAligned(size, alignment));
  buf.fill(0);
  return buf;
}

/** True when the view's address and length are both multiples of `alignment`. */
export function isAligned(view: ArrayBufferView, alignment: number): boolean {
  return binding.isAligned(view, alignment);
}

// ---- inline file I/O ------------------------------------------------------------------------------

/** RWF_NOWAIT: fail with EAGAIN rather than wait for the device or a lock (data not in the page cache). */
export const RWF_NOWAIT = 0x8;
/** Most buffers pwriteInline() takes at once; more go through the ring. */
export const INLINE_MAX_BUFFERS = 64;
/** statfs f_type of memory file systems, whose reads and writes never wait for a device. */
export const TMPFS_MAGIC = 0x01021994;
export const RAMFS_MAGIC = 0x858458f6;

/**
 * preadv2(fd, [buf], offset, rwFlags) on this thread: bytes read or -errno. For page-cache data, where it costs
 * less than the trip through io_uring (see native/inline-io.cc); with RWF_NOWAIT it never blocks on the device.
 */
export function preadInline(fd: number, buf: ArrayBufferView, offset: number, rwFlags: number): number {
  checkOffset(offset);
  return binding.preadInline(fd, buf, offset, rwFlags);
}

/** pwritev2 on this thread (at most INLINE_MAX_BUFFERS buffers): bytes written or -errno. */
export function pwriteInline(
  fd: number,
  bufs: ArrayBufferView | readonly ArrayBufferView[],
  offset: number,
  rwFlags: number,
): number {
  checkOffset(offset);
  return binding.pwriteInline(fd, bufs, offset, rwFlags);
}

/** The file system type (statfs f_type, e.g. TMPFS_MAGIC) of an open file, or -errno. */
export function fsMagic(fd: number): number {
  return binding.fsMagic(fd);
}

// ---- memory-mapped copies (tmpfs) -------------------------------------------------------------------

/** A shared mapping of a backing file (native/memmap.cc); owned by the thread that made it. */
export interface MemMapping {
  readonly __memMapping: unique symbol;
}

/**
 * Map [0, length) of `fd` shared (MAP_NORESERVE), for memRead/memWrite: the mapping, or -errno (also -ENOSYS
 * from an addon built before these existed). A read through it of a hole in a tmpfs file allocates the page:
 * see native/memmap.cc for what the caller must check.
 */
export function memMap(fd: number, length: number, writable: boolean): MemMapping | number {
  if (binding.memMap === undefined) return -constants.errno.ENOSYS;
  return binding.memMap(fd, length, writable);
}

/** Unmap at once (later copies answer -EBADF); a mapping dropped without this is unmapped when collected. */
export function memUnmap(m: MemMapping): void {
  binding.memUnmap(m);
}

/**
 * Copy buf.length bytes at `offset` of the mapping into buf: bytes, or -errno (-EFAULT: SIGBUS, the page is past
 * the end of the file or cannot be had; -ERANGE: outside the mapping; -EBADF: unmapped).
 */
export function memRead(m: MemMapping, buf: ArrayBufferView, offset: number): number {
  checkOffset(offset);
  return binding.memRead(m, buf, offset);
}

/** Copy the buffers (at most INLINE_MAX_BUFFERS) to `offset` of the mapping: bytes, or -errno as memRead (-EROFS). */
export function memWrite(
  m: MemMapping,
  bufs: ArrayBufferView | readonly ArrayBufferView[],
  offset: number,
): number {
  checkOffset(offset);
  return binding.memWrite(m, bufs, offset);
}

/**
 * Map the pages of [offset, offset+length) now (MADV_POPULATE_READ) rather than by a page fault at each first
 * copy: 0 or -errno. Only for a range the file holds whole (a fault on a tmpfs hole allocates a page).
 */
export function memPopulate(m: MemMapping, offset: number, length: number): number {
  checkOffset(offset);
  return binding.memPopulate(m, offset, length);
}

/**
 * 1 when the file holds every page of [offset, offset+length) in memory (mincore: on tmpfs, no hole in it), else
 * 0, or -errno. Its cost is bounded by the range (lseek SEEK_HOLE walks on to the next hole).
 */
export function memResident(m: MemMapping, offset: number, length: number): number {
  checkOffset(offset);
  return binding.memResident(m, offset, length);
}

// ---- copy_file_range -------------------------------------------------------------------------------

export interface CopyResult {
  /** Bytes copied: the whole length, or less only where the source file ends first. */
  bytes: number;
  /** True when the kernel could not copy (EXDEV, EINVAL, EOPNOTSUPP, ENOSYS) and pread/pwrite did the rest. */
  fellBack: boolean;
}

/**
 * Copy `length` bytes from fdIn at offIn to fdOut at offOut with copy_file_range(2) (a reflink where the file
 * system shares blocks, an in-kernel copy otherwise), on the libuv thread pool. Where the kernel refuses the
 * pair of descriptors it falls back to pread/pwrite through an aligned buffer, unless `noFallback` (tests).
 * With `sparse`, holes of the source (SEEK_HOLE) are punched in the destination instead of copied as zeros.
 * Rejects with an Error carrying code/errno/syscall like Node's own. Overlapping ranges of one file are
 * refused by the kernel (EINVAL): callers copy those through memory.
 */
export function copyFileRange(
  fdIn: number,
  offIn: number,
  fdOut: number,
  offOut: number,
  length: number,
  opts: { noFallback?: boolean; sparse?: boolean } = {},
): Promise<CopyResult> {
  checkOffset(offIn);
  checkOffset(offOut);
  checkOffset(length);
  return new Promise((resolve, reject) =>
    binding.copyFileRange(
      fdIn,
      offIn,
      fdOut,
      offOut,
      length,
      (opts.noFallback ? 1 : 0) | (opts.sparse ? 2 : 0),
      (res, fellBack) =>
        res < 0 ? reject(errnoError(res, 'copy_file_range')) : resolve({ bytes: res, fellBack }),
    ),
  );
}

// ---- io_uring ---------------------------------------------------------------------------------------

export const IOV_MAX = 1024;
export const RWF_DSYNC = 0x2;
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
const MAX_BATCH = 1024;

const errorMap = util.getSystemErrorMap();

/** An Error for a negative io_uring result, shaped like Node's own (code 'EIO', errno -5, syscall). */
export function errnoError(res: number, syscall: string): NodeJS.ErrnoException {
  const [code, message] = errorMap.get(res) ?? [`E${-res}`, 'unknown error'];
  const e: NodeJS.ErrnoException = new Error(`${syscall}: ${code} (${message})`);
  e.code = code;
  e.errno = res;
  e.syscall = syscall;
  return e;
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid file offset ${offset}`);
}

export interface RingStats {
  /** Ops submitted or waiting for submission, not yet completed. */
  inflight: number;
  /** io_uring_submit calls so far (one per loop turn with work, plus SQ-full flushes). */
  submitCalls: number;
  /** Completion batches delivered to JS. */
  batches: number;
  completions: number;
  sqEntries: number;
  cqEntries: number;
  /** Whether the ring currently keeps the event loop alive. */
  refed: boolean;
}

let threadRing: Ring | undefined;

export class Ring {
  /** The ring of the calling thread (main or worker), opened on first use. */
  static forThisThread(): Ring {
    if (threadRing === undefined) threadRing = new Ring(256);
    return threadRing;
  }

  private readonly tags = new Int32Array(MAX_BATCH);
  private readonly results = new Int32Array(MAX_BATCH);
  private readonly callbacks: (IoCallback | undefined)[] = [];
  private readonly held: unknown[] = [];
  private readonly freeSlots: number[] = [];
  private pending = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  private constructor(entries: number) {
    try {
      binding.ringOpen(entries, this.tags, this.results, this.onBatch);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      err.message = `cannot create an io_uring ring (${err.message}); io_uring may be disabled (kernel.io_uring_disabled, seccomp)`;
      throw err;
    }
  }

  /** Ops started and not yet completed. */
  get inflight(): number {
    return this.pending;
  }

  stats(): RingStats {
    const s = binding.ringStats();
    return { ...s, refed: s.refed !== 0 };
  }

  /** Submit prepared ops now instead of at the end of this event-loop turn. */
  submit(): number {
    return binding.ringSubmit();
  }

  /**
   * Read into `bufs` back to back from `offset`. res is the byte count (short at end of file) or -errno.
   * The buffers (and the array) must stay untouched until the callback.
   */
  readv(fd: number, bufs: readonly ArrayBufferView[], offset: number, cb: IoCallback): void {
    checkOffset(offset);
    const n = bufs.length;
    if (n > IOV_MAX) return this.split(false, fd, bufs, offset, 0, cb);
    if (n === 0) return this.nop(() => cb(0));
    const tag = this.take(cb, bufs);
    try {
      if (n === 1) binding.ringRead(tag, fd, bufs[0], offset);
      else binding.ringReadv(tag, fd, bufs, offset);
    } catch (e) {
      this.release(tag);
      throw e;
    }
  }

  /** Write `bufs` back to back at `offset`; dsync: RWF_DSYNC (durable on completion, for FUA). */
  writev(fd: number, bufs: readonly ArrayBufferView[], offset: number, dsync: boolean, cb: IoCallback): void {
    checkOffset(offset);
    const n = bufs.length;
    const flags = dsync ? RWF_DSYNC : 0;
    if (n > IOV_MAX) return this.split(true, fd, bufs, offset, flags, cb);
    if (n === 0) return this.nop(() => cb(0));
    const tag = this.take(cb, bufs);
    try {
      if (n === 1) binding.ringWrite(tag, fd, bufs[0], offset, flags);
      else binding.ringWritev(tag, fd, bufs, offset, flags);
    } catch (e) {
      this.release(tag);
      throw e;
    }
  }

  /** One buffer, no iovec array (the common case on the data path). */
  read(fd: number, buf: ArrayBufferView, offset: number, cb: IoCallback): void {
    checkOffset(offset);
    const tag = this.take(cb, buf);
    try {
      binding.ringRead(tag, fd, buf, offset);
    } catch (e) {
      this.release(tag);
      throw e;
    }
  }

  write(fd: number, buf: ArrayBufferView, offset: number, dsync: boolean, cb: IoCallback): void {
    checkOffset(offset);
    const tag = this.take(cb, buf);
    try {
      binding.ringWrite(tag, fd, buf, offset, dsync ? RWF_DSYNC : 0);
    } catch (e) {
      this.release(tag);
      throw e;
    }
  }

  fdatasync(fd: number, cb: IoCallback): void {
    this.simple(cb, (tag) => binding.ringFsync(tag, fd, true));
  }

  fsync(fd: number, cb: IoCallback): void {
    this.simple(cb, (tag) => binding.ringFsync(tag, fd, false));
  }

  /** fallocate(2); mode e.g. FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE to deallocate. */
  fallocate(fd: number, mode: number, offset: number, length: number, cb: IoCallback): void {
    checkOffset(offset);
    checkOffset(length);
    this.simple(cb, (tag) => binding.ringFallocate(tag, fd, mode, offset, length));
  }

  /** A no-op through the kernel (tests, overhead measurements). */
  nop(cb: IoCallback): void {
    this.simple(cb, (tag) => binding.ringNop(tag));
  }

  readvAsync(fd: number, bufs: readonly ArrayBufferView[], offset: number): Promise<number> {
    return new Promise((resolve, reject) =>
      this.readv(fd, bufs, offset, (res) => (res < 0 ? reject(errnoError(res, 'readv')) : resolve(res))),
    );
  }

  writevAsync(fd: number, bufs: readonly ArrayBufferView[], offset: number, dsync = false): Promise<number> {
    return new Promise((resolve, reject) =>
      this.writev(fd, bufs, offset, dsync, (res) =>
        res < 0 ? reject(errnoError(res, 'writev')) : resolve(res),
      ),
    );
  }

  fdatasyncAsync(fd: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fdatasync(fd, (res) => (res < 0 ? reject(errnoError(res, 'fdatasync')) : resolve())),
    );
  }

  fallocateAsync(fd: number, mode: number, offset: number, length: number): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fallocate(fd, mode, offset, length, (res) =>
        res < 0 ? reject(errnoError(res, 'fallocate')) : resolve(),
      ),
    );
  }

  nopAsync(): Promise<number> {
    return new Promise((resolve) => this.nop(resolve));
  }

  /** Wait for in-flight ops, then close this thread's ring; the next forThisThread() opens a new one. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.pending > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    binding.ringClose();
    if (threadRing === this) threadRing = undefined;
  }

  private take(cb: IoCallback, hold: unknown): number {
    if (this.closed) throw new Error('io_uring ring is closed');
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.callbacks.length;
    this.callbacks[slot] = cb;
    this.held[slot] = hold;
    this.pending++;
    return slot;
  }

  private release(tag: number): void {
    this.callbacks[tag] = undefined;
    this.held[tag] = undefined;
    this.freeSlots.push(tag);
    this.pending--;
  }

  private simple(cb: IoCallback, prep: (tag: number) => void): void {
    const tag = this.take(cb, undefined);
    try {
      prep(tag);
    } catch (e) {
      this.release(tag);
      throw e;
    }
  }

  private readonly onBatch = (count: number): void => {
    let failed = false;
    let error: unknown;
    for (let i = 0; i < count; i++) {
      const tag = this.tags[i];
      const cb = this.callbacks[tag];
      this.release(tag);
      if (cb === undefined) continue;
      try {
        cb(this.results[i]);
      } catch (e) {
        // Deliver the rest of the batch first; the first error then surfaces as an uncaught exception.
        if (!failed) error = e;
        failed = true;
      }
    }
    if (this.pending === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    if (failed) throw error;
  };

  // More than IOV_MAX buffers: one op per IOV_MAX slice, all in flight at once. The result is the sum up to
  // and including the first short slice (what one preadv/pwritev would have reported), or the first error.
  private split(
    write: boolean,
    fd: number,
    bufs: readonly ArrayBufferView[],
    offset: number,
    flags: number,
    cb: IoCallback,
  ): void {
    const parts = Math.ceil(bufs.length / IOV_MAX);
    const results = new Array<number>(parts);
    const expected = new Array<number>(parts);
    let left = parts;
    const done = (): void => {
      let total = 0;
      for (let i = 0; i < parts; i++) {
        if (results[i] < 0) return cb(results[i]);
        total += results[i];
        if (results[i] < expected[i]) break;
      }
      cb(total);
    };
    let at = offset;
    for (let p = 0; p < parts; p++) {
      const slice = bufs.slice(p * IOV_MAX, (p + 1) * IOV_MAX);
      expected[p] = slice.reduce((sum, b) => sum + b.byteLength, 0);
      const at0 = at;
      this.simple(
        (res) => {
          results[p] = res;
          if (--left === 0) done();
        },
        (tag) => {
          this.held[tag] = slice;
          if (write) binding.ringWritev(tag, fd, slice, at0, flags);
          else binding.ringReadv(tag, fd, slice, at0);
        },
      );
      at += expected[p];
    }
  }
}

/** The addon's exports as loaded, for the optional parts typed in their own modules (src/native/rbd.ts). */
export function addonExports(): Readonly<Record<string, unknown>> {
  return binding as unknown as Readonly<Record<string, unknown>>;
}
