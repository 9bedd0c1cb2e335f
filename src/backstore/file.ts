/**
 * A LUN stored in a regular file or a block device, read and written through this thread's io_uring ring.
 *
 * - FUA writes use RWF_DSYNC; flush() is fdatasync.
 * - unmap() punches a hole (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). Where the file system or device
 *   cannot, it falls back to FALLOC_FL_ZERO_RANGE, then to writing zeros; thinProvisioned then reads false
 *   (always false for block devices, where a punched range may or may not be deallocated).
 * - direct (O_DIRECT) bypasses the page cache. Offsets and lengths must be multiples of the block size (the
 *   SCSI layer guarantees that) and of the device's logical sector size; buffers should start on a 4096-byte
 *   boundary (allocAligned() in src/native). A misaligned buffer still works, through an aligned bounce
 *   copy, at the cost of that copy. A 512-byte block size over a 4Kn disk is refused with O_DIRECT.
 * - mapping() reads the allocation map with lseek SEEK_DATA / SEEK_HOLE (synchronous calls: metadata only,
 *   see src/native). A block only partly inside a data extent counts as mapped. A block device has no map
 *   we can read: all of it is reported mapped.
 * - copyFrom() another file backstore uses copy_file_range(2) on the libuv thread pool (a reflink where the
 *   file system shares blocks; holes of the source stay holes on a thin LU). With O_DIRECT descriptors the
 *   kernel copies through the page cache where it can and refuses (EINVAL) where alignment forbids, and then
 *   the addon falls back to pread/pwrite with an aligned buffer; either way later reads see the copy (direct
 *   I/O writes back and invalidates cached pages of its range first).
 * - Inline I/O: a read or write of up to INLINE_MAX_BYTES on a file opened without O_DIRECT is first tried
 *   with preadv2/pwritev2 on this thread (native/inline-io.cc). io_uring would send it to an io-wq worker
 *   thread wherever the file system has no non-blocking path (tmpfs: all reads and writes), and even where it
 *   has, the completion costs an eventfd wake-up and another event-loop turn: for a 4 KiB copy from the page
 *   cache, that is most of a QD1 command's time. On tmpfs and ramfs (memory: nothing waits for a device) the
 *   call is plain; elsewhere it carries RWF_NOWAIT, so data not in the page cache comes back EAGAIN and goes
 *   through the ring as before. Where the kernel cannot try without blocking (EOPNOTSUPP: buffered writes on
 *   most file systems) inline writes are switched off for the file. Larger transfers stay on the ring, so
 *   their copies run on io-wq threads beside the event loop rather than in it.
 * - Mapped copies (tmpfs): the file is also mapped shared (native/memmap.cc), and transfers up to
 *   INLINE_MAX_BYTES are a memcpy to or from the mapping, with no system call: the inline preadv2/pwritev2 was
 *   the one call left per 4 KiB command at QD32. A read through a mapping of a hole in a tmpfs file would
 *   allocate the page (read(2) copies zeros without), so reads go through the mapping only in MAP_CHUNK-sized
 *   chunks the file holds whole, as mincore(2) says once per chunk (lseek SEEK_HOLE would walk on to the next
 *   hole: the whole rest of a fully allocated file, at each chunk); a chunk with a hole is asked again
 *   after MAP_RECHECK reads, and UNMAP (a punched hole) or a sparse copy into a chunk makes it ask again. A hole
 *   another thread's descriptor punches (another worker's LU, another process) is not seen: a read there then
 *   allocates the page, as a write would, and returns the same zeros. A copy that meets a page past the end of
 *   the file (it shrank under us) or one tmpfs cannot allocate (full) is cut short by SIGBUS and caught. The
 *   file's size is then checked at once: a command past a new end fails as after the periodic check (ESHRUNK;
 *   a write never extends the file again over a hole, which pwrite would), and anything else goes the inline or
 *   ring way, which answers with the real error (ENOSPC).
 * - writeCacheEnabled is true: with or without O_DIRECT, a completed write may sit in a volatile cache
 *   (page cache, the disk's own cache, unwritten file system metadata) until flush().
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyThroughMemory, overlaps } from './copy';
import { appendExtent, type Backstore, type MappingExtent } from './types';
import { slowWriteDelay } from './slow-write';
import {
  copyFileRange,
  ENXIO,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  Ring,
  allocAligned,
  blockDeviceSize,
  errnoError,
  isAligned,
  logicalBlockSize,
  lseekData,
  lseekHole,
  fsMagic,
  memMap,
  memPopulate,
  memRead,
  memResident,
  memUnmap,
  memWrite,
  type MemMapping,
  INLINE_MAX_BUFFERS,
  preadInline,
  pwriteInline,
  RAMFS_MAGIC,
  RWF_DSYNC,
  RWF_NOWAIT,
  TMPFS_MAGIC,
} from '../native';

export interface FileBackstoreOptions {
  path: string;
  /** Bytes. Creates a sparse file of this size when the path is missing; must match an existing file. */
  size?: number;
  readOnly?: boolean;
  /** O_DIRECT: see the alignment rules above. */
  direct?: boolean;
  /** 2048 is the block of a CD/DVD image (a 'cd' LU). */
  blockSize?: 512 | 2048 | 4096;
}

type UnmapMode = 'punch' | 'zero-range' | 'write';
/** How reads and writes are tried on this thread before the ring: see "Inline I/O" above. */
export type InlineMode = 'memory' | 'nowait' | 'off';

const EROFS = -30;
const EIO = -5;
const EFAULT = -14;
const EINVAL = -22;
const EOPNOTSUPP = -95;
const DIRECT_ALIGN = 4096;
const ZERO_CHUNK = 1 << 20;
/** lseek calls between two yields to the event loop while mapping a fragmented file. */
const SEEKS_PER_TURN = 1024;
/** Largest transfer tried inline: bigger copies are better spent on io-wq threads than in the event loop. */
export const INLINE_MAX_BYTES = 128 * 1024;
/** Mapped copies (tmpfs): the unit whose allocation is asked with mincore(2), and its states. */
export const MAP_CHUNK = 2 * 1024 * 1024;
/** Reads of a chunk with a hole that go the system call way before it is asked again. */
export const MAP_RECHECK = 64;
/** A chunk the file holds whole: reads of it go through the mapping. 0: not asked yet. */
const CHUNK_WHOLE = 255;
/** How often a regular file's size is compared with the LU's. */
const SIZE_CHECK_MS = 5000;
/** What read() and write() return when readNow() and writeNow() finished at once. */
const DONE: Promise<void> = Promise.resolve();

function fail(file: string, what: string, cause?: unknown): Error {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  const e: NodeJS.ErrnoException = new Error(`backstore ${file}: ${what}${reason}`);
  if (cause && typeof cause === 'object' && 'code' in cause) e.code = (cause as NodeJS.ErrnoException).code;
  return e;
}

async function statOrNull(file: string): Promise<fs.Stats | null> {
  try {
    return await fs.promises.stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fail(file, 'cannot stat', e);
  }
}

// mkdir -p without fs.mkdir's { recursive: true }, which on Node 20 never settles under /proc.
export async function makeParents(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      if ((await fs.promises.stat(d)).isDirectory()) break;
      throw Object.assign(new Error(`${d} is not a directory`), { code: 'ENOTDIR' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || path.dirname(d) === d) throw e;
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    await fs.promises.mkdir(d).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

async function create(file: string, size: number, direct: boolean): Promise<fs.promises.FileHandle | null> {
  try {
    await makeParents(path.dirname(file));
  } catch (e) {
    throw fail(file, 'cannot create the parent directory', e);
  }
  const c = fs.constants;
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, c.O_RDWR | c.O_CREAT | c.O_EXCL | (direct ? c.O_DIRECT : 0), 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return null; // created meanwhile (another worker)
    throw fail(file, direct ? 'cannot create (with O_DIRECT)' : 'cannot create', e);
  }
  try {
    await fh.truncate(size); // sparse: no blocks allocated
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw fail(file, `cannot size the new file to ${size} bytes`, e);
  }
  return fh;
}

export async function openFileBackstore(opts: FileBackstoreOptions): Promise<FileBackstore> {
  const file = path.resolve(opts.path);
  const blockSize = opts.blockSize ?? 512;
  const readOnly = opts.readOnly ?? false;
  const direct = opts.direct ?? false;
  if (blockSize !== 512 && blockSize !== 2048 && blockSize !== 4096)
    throw fail(file, `block size ${blockSize} (must be 512, 2048 or 4096)`);
  if (
    opts.size !== undefined &&
    (!Number.isSafeInteger(opts.size) || opts.size <= 0 || opts.size % blockSize !== 0)
  )
    throw fail(file, `size ${opts.size} must be a positive multiple of the block size ${blockSize}`);

  let fh: fs.promises.FileHandle | null = null;
  let created = false;
  const found = await statOrNull(file);
  if (found !== null && !found.isFile() && !found.isBlockDevice())
    throw fail(file, 'not a regular file or block device');
  if (found === null) {
    if (opts.size === undefined) throw fail(file, 'does not exist (give a size to create it)');
    if (readOnly) throw fail(file, 'does not exist, and a read-only backstore does not create it');
    fh = await create(file, opts.size, direct);
    created = fh !== null;
  }
  if (fh === null) {
    const c = fs.constants;
    try {
      fh = await fs.promises.open(file, (readOnly ? c.O_RDONLY : c.O_RDWR) | (direct ? c.O_DIRECT : 0));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (direct && code === 'EINVAL') throw fail(file, 'this file system does not support O_DIRECT', e);
      if (!readOnly && (code === 'EACCES' || code === 'EPERM' || code === 'EROFS'))
        throw fail(file, 'cannot open for writing (use readOnly, or fix permissions)', e);
      throw fail(file, 'cannot open', e);
    }
  }

  try {
    const st = await fh.stat();
    const isDevice = st.isBlockDevice();
    if (!isDevice && !st.isFile()) throw fail(file, 'not a regular file or block device');
    let bytes = isDevice ? blockDeviceSize(fh.fd) : st.size;
    if (opts.size !== undefined && !created) {
      if (!isDevice && bytes !== opts.size)
        throw fail(
          file,
          `existing file is ${bytes} bytes, configured size is ${opts.size} (omit size to use the file as is)`,
        );
      if (isDevice && opts.size > bytes)
        throw fail(file, `device is ${bytes} bytes, smaller than the configured ${opts.size}`);
      bytes = opts.size;
    }
    const sizeBytes = bytes - (bytes % blockSize);
    if (sizeBytes === 0) throw fail(file, `smaller than one ${blockSize}-byte block`);
    let sector = 512;
    if (isDevice) {
      sector = logicalBlockSize(fh.fd);
      if (direct && blockSize < sector)
        throw fail(
          file,
          `block size ${blockSize} is smaller than the device's ${sector}-byte sectors (O_DIRECT)`,
        );
    }
    const magic = direct ? -1 : fsMagic(fh.fd);
    const inline: InlineMode = direct
      ? 'off'
      : magic === TMPFS_MAGIC || magic === RAMFS_MAGIC
        ? 'memory'
        : 'nowait';
    const ring = Ring.forThisThread();
    const store = new FileBackstore(fh, ring, {
      file,
      blockSize,
      sizeBytes,
      readOnly,
      direct,
      isDevice,
      align: Math.max(DIRECT_ALIGN, sector),
      inline,
      mapped: magic === TMPFS_MAGIC,
      // st_blksize: the file system's block for a file (what a hole is punched in), the device's for a device.
      physicalBlockSize: Math.max(blockSize, st.blksize),
    });
    await store.probeUnmap();
    return store;
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

interface Geometry {
  file: string;
  blockSize: number;
  sizeBytes: number;
  readOnly: boolean;
  direct: boolean;
  isDevice: boolean;
  align: number;
  physicalBlockSize: number;
  inline: InlineMode;
  /** Mapped copies (tmpfs only). */
  mapped: boolean;
}

export class FileBackstore implements Backstore {
  readonly path: string;
  readonly blockSize: number;
  /** Changes only by resize(). */
  sizeBytes: number;
  readonly readOnly: boolean;
  readonly direct: boolean;
  readonly isBlockDevice: boolean;
  readonly physicalBlockSize: number;
  readonly writeCacheEnabled = true;
  thinProvisioned = false;
  private unmapMode: UnmapMode = 'punch';
  private readonly fd: number;
  private readonly align: number;
  /** Inline I/O (see above): the mode, and whether reads and writes are still tried that way. */
  readonly inline: InlineMode;
  private inlineReads: boolean;
  private inlineWrites: boolean;
  private readonly inlineFlags: number;
  /** Mapped copies (see above): the mapping of [0, memBytes), and each MAP_CHUNK's state; null when not mapped. */
  private mem: MemMapping | null = null;
  private memBytes = 0;
  private chunks: Uint8Array = new Uint8Array(0);
  /** Reads and writes done as copies through the mapping (tests; the bench's notes). */
  mappedReads = 0;
  mappedWrites = 0;
  private inflight = 0;
  private idle: (() => void) | null = null;
  private closing: Promise<void> | null = null;
  private zeros: Buffer | null = null;
  /** The size the file was found to have shrunk to, under sizeBytes; null while it is whole. */
  private shrunkTo: number | null = null;
  private sizeTimer: NodeJS.Timeout | null = null;
  onFault?: (e: Error) => void;

  constructor(
    private readonly fh: fs.promises.FileHandle,
    private readonly ring: Ring,
    g: Geometry,
  ) {
    this.fd = fh.fd;
    this.path = g.file;
    this.blockSize = g.blockSize;
    this.sizeBytes = g.sizeBytes;
    this.readOnly = g.readOnly;
    this.direct = g.direct;
    this.isBlockDevice = g.isDevice;
    this.physicalBlockSize = g.physicalBlockSize;
    this.align = g.align;
    this.inline = g.inline;
    this.inlineReads = this.inlineWrites = g.inline !== 'off';
    this.inlineFlags = g.inline === 'memory' ? 0 : RWF_NOWAIT;
    if (g.mapped) this.mapFile(g.sizeBytes);
    // A file truncated under the target is noticed within SIZE_CHECK_MS even when nobody reads past its end.
    if (!g.isDevice) {
      this.sizeTimer = setInterval(() => this.checkSize(), SIZE_CHECK_MS);
      this.sizeTimer.unref();
    }
  }

  /** Decide how unmap() works: a hole punched past the end of a file changes nothing but tells. */
  async probeUnmap(): Promise<void> {
    if (this.isBlockDevice) return;
    if (this.readOnly) {
      // No hole can be punched through a read-only descriptor to test; a file that already has holes (fewer
      // blocks allocated than its size) is thin storage whose mapping GET LBA STATUS reports: LBPME = 1, and
      // UNMAP is answered DATA PROTECT like any write. A fully allocated read-only file stays LBPME = 0.
      const st = fs.fstatSync(this.fd);
      this.thinProvisioned = st.blocks * 512 < st.size;
      return;
    }
    const past = Math.ceil(this.sizeBytes / DIRECT_ALIGN) * DIRECT_ALIGN + DIRECT_ALIGN;
    const res = await this.op<number>((cb) =>
      this.ring.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, past, DIRECT_ALIGN, cb),
    );
    this.thinProvisioned = res === 0;
    if (res !== 0) this.unmapMode = 'zero-range';
  }

  read(offset: number, into: Buffer): Promise<void> {
    return this.readNow(offset, into) ?? DONE;
  }

  readNow(offset: number, into: Buffer): Promise<void> | undefined {
    const bad = this.check(offset, into.length, false);
    if (bad) return Promise.reject(bad);
    if (into.length === 0) return undefined;
    if (this.direct && !isAligned(into, this.align)) {
      const bounce = allocAligned(into.length, this.align);
      return this.read(offset, bounce).then(() => void bounce.copy(into));
    }
    if (this.mem !== null && into.length <= INLINE_MAX_BYTES && this.whole(offset, into.length)) {
      const res = memRead(this.mem, into, offset);
      if (res === into.length) {
        this.mappedReads++;
        return undefined;
      }
      if (res === EFAULT && this.shrankUnder(offset + into.length)) return Promise.reject(this.shrunkError());
    }
    let done = 0;
    if (this.inlineReads && into.length <= INLINE_MAX_BYTES) {
      const res = preadInline(this.fd, into, offset, this.inlineFlags);
      if (res === into.length) return undefined;
      if (res > 0) done = res;
      else if (res === EOPNOTSUPP || res === EINVAL) this.inlineReads = false;
      // Anything else (EAGAIN: not cached; 0: past the end; an error) goes to the ring, which reports it.
    }
    return new Promise((resolve, reject) => this.readFrom(offset, into, done, resolve, reject));
  }

  write(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> {
    return this.writeNow(offset, data, fua) ?? DONE;
  }

  writeNow(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> | undefined {
    let length = 0;
    for (let i = 0; i < data.length; i++) length += data[i].length;
    const bad = this.check(offset, length, true);
    if (bad) return Promise.reject(bad);
    if (length === 0) return undefined;
    if (this.direct && !data.every((b) => isAligned(b, this.align))) {
      const bounce = allocAligned(length, this.align);
      let at = 0;
      for (const b of data) at += b.copy(bounce, at);
      data = [bounce];
    }
    const slow = slowWriteDelay(offset);
    // Through the mapping: a page of a hole is allocated by the write, as pwrite would (FUA: tmpfs has no
    // cache to write through). A chunk not asked yet is asked first, so that a whole one is populated.
    if (slow === 0 && this.mem !== null && length <= INLINE_MAX_BYTES && data.length <= INLINE_MAX_BUFFERS) {
      if (this.chunks[Math.floor(offset / MAP_CHUNK)] === 0) this.whole(offset, length);
      const res = memWrite(this.mem, data.length === 1 ? data[0] : data, offset);
      if (res === length) {
        this.mappedWrites++;
        return undefined;
      }
      // Truncated under us: fail now, where pwrite would silently extend the file again over a hole.
      if (res === EFAULT && this.shrankUnder(offset + length)) return Promise.reject(this.shrunkError());
    }
    if (
      slow === 0 &&
      this.inlineWrites &&
      length <= INLINE_MAX_BYTES &&
      data.length <= INLINE_MAX_BUFFERS &&
      (!fua || this.inline === 'memory') // RWF_DSYNC would wait for the device
    ) {
      const flags = this.inlineFlags | (fua ? RWF_DSYNC : 0);
      const res = pwriteInline(this.fd, data.length === 1 ? data[0] : data, offset, flags);
      if (res === length) return undefined;
      if (res > 0) {
        const rest = skip(data, res);
        return new Promise((resolve, reject) =>
          this.writeFrom(offset + res, rest, length - res, fua, resolve, reject),
        );
      }
      if (res === EOPNOTSUPP || res === EINVAL) this.inlineWrites = false;
    }
    if (slow > 0)
      return new Promise((resolve, reject) =>
        setTimeout(() => this.writeFrom(offset, data, length, fua, resolve, reject), slow),
      );
    return new Promise((resolve, reject) => this.writeFrom(offset, data, length, fua, resolve, reject));
  }

  flush(): Promise<void> {
    if (this.closing) return Promise.reject(fail(this.path, 'closed'));
    return this.op<number>((cb) => this.ring.fdatasync(this.fd, cb)).then((res) => {
      if (res < 0) throw errnoError(res, 'fdatasync');
    });
  }

  async copyFrom(src: Backstore, srcOffset: number, offset: number, length: number): Promise<void> {
    const bad = this.check(offset, length, true);
    if (bad) throw bad;
    if (length === 0) return;
    // Overlapping ranges of one file: the kernel refuses them, and memory gives the read-before-write result.
    if (!(src instanceof FileBackstore) || (src === this && overlaps(srcOffset, offset, length)))
      return copyThroughMemory(src, srcOffset, this, offset, length);
    const srcBad = src.check(srcOffset, length, false);
    if (srcBad) throw srcBad;
    this.started();
    src.started();
    try {
      const r = await copyFileRange(src.fd, srcOffset, this.fd, offset, length, {
        sparse: this.thinProvisioned && this.unmapMode === 'punch',
      });
      // A sparse copy leaves holes where the source had them.
      this.holesIn(offset, length);
      if (r.bytes < length) {
        // The source file ended inside the LU: it shrank behind our back (see readFrom).
        src.checkSize();
        throw src.shrunkTo !== null ? src.shrunkError() : errnoError(EIO, 'copy_file_range');
      }
    } finally {
      src.finished();
      this.finished();
    }
  }

  async unmap(offset: number, length: number): Promise<void> {
    const bad = this.check(offset, length, true);
    if (bad) throw bad;
    if (length === 0) return;
    if (this.unmapMode !== 'write') {
      const mode =
        this.unmapMode === 'punch'
          ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
          : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
      const res = await this.op<number>((cb) => this.ring.fallocate(this.fd, mode, offset, length, cb));
      if (res === 0) {
        this.holesIn(offset, length);
        return;
      }
      if (res !== EOPNOTSUPP && res !== EINVAL) throw errnoError(res, 'fallocate');
      // Not supported here: degrade once, for good.
      this.unmapMode = this.unmapMode === 'punch' ? 'zero-range' : 'write';
      this.thinProvisioned = false;
      return this.unmap(offset, length);
    }
    if (this.zeros === null) this.zeros = allocAligned(ZERO_CHUNK, this.align);
    for (let at = 0; at < length; at += ZERO_CHUNK) {
      const n = Math.min(ZERO_CHUNK, length - at);
      await this.write(offset + at, [n === ZERO_CHUNK ? this.zeros : this.zeros.subarray(0, n)], false);
    }
  }

  async mapping(offset: number, length: number, maxExtents = Infinity): Promise<MappingExtent[]> {
    const bad = this.check(offset, length, false);
    if (bad) throw bad;
    const out: MappingExtent[] = [];
    if (length === 0 || maxExtents < 1) return out;
    const end = offset + length;
    if (this.isBlockDevice) {
      out.push({ offset, length, mapped: true });
      return out;
    }
    const bs = this.blockSize;
    // pos stays on a block boundary. A hole counts only for the whole blocks inside it; the blocks at the
    // edges of a data extent are mapped even when the extent starts or ends inside them.
    let pos = offset;
    let seeks = 0;
    this.started();
    try {
      while (pos < end) {
        if (seeks >= SEEKS_PER_TURN) {
          seeks = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
          if (this.closing) throw fail(this.path, 'closed');
        }
        seeks += 2;
        // ENXIO: no data from pos to the end of the file.
        let data = lseekData(this.fd, pos);
        if (data === ENXIO) data = end;
        else if (data < 0) throw errnoError(data, 'lseek(SEEK_DATA)');
        data = Math.min(data, end);
        const holeEnd = data - (data % bs);
        if (holeEnd > pos) {
          if (!appendExtent(out, maxExtents, pos, holeEnd - pos, false)) break;
          pos = holeEnd;
        }
        if (pos >= end) break;
        // ENXIO here: the file shrank behind our back; count the rest as mapped.
        let hole = lseekHole(this.fd, data);
        if (hole === ENXIO) hole = end;
        else if (hole < 0) throw errnoError(hole, 'lseek(SEEK_HOLE)');
        hole = Math.min(hole, end);
        // At least one block, should a concurrent punch leave nothing at `data` by now: never loop in place.
        const dataEnd = Math.min(end, Math.max(pos + bs, Math.ceil(hole / bs) * bs));
        if (!appendExtent(out, maxExtents, pos, dataEnd - pos, true)) break;
        pos = dataEnd;
      }
    } finally {
      this.finished();
    }
    return out;
  }

  /**
   * A live resize: the file (or device) must already hold `sizeBytes`. A file that had been found shrunk is
   * measured again, so a resize to what it holds now ends that fault.
   */
  resize(sizeBytes: number): void {
    if (this.closing) throw fail(this.path, 'closed');
    const bytes = this.isBlockDevice ? blockDeviceSize(this.fd) : fs.fstatSync(this.fd).size;
    if (bytes < sizeBytes) throw fail(this.path, `holds ${bytes} bytes, less than the new size ${sizeBytes}`);
    this.sizeBytes = sizeBytes;
    this.shrunkTo = null;
    if (this.mem !== null && sizeBytes !== this.memBytes) {
      const old = this.chunks;
      memUnmap(this.mem);
      this.mapFile(sizeBytes);
      this.chunks.set(old.subarray(0, Math.min(old.length, this.chunks.length)));
    }
  }

  /** After a mapped copy met SIGBUS (-EFAULT): whether the file now ends before `end` (checkSize() records it). */
  private shrankUnder(end: number): boolean {
    const to = this.checkSize();
    return to !== null && end > to;
  }

  /** Whether small transfers are memcpys to and from a mapping of the file (tmpfs). */
  get mapped(): boolean {
    return this.mem !== null;
  }

  /** Map the file for mapped copies; if it can't be (address space), the LU simply goes without. */
  private mapFile(bytes: number): void {
    const m = memMap(this.fd, bytes, !this.readOnly);
    this.mem = typeof m === 'number' ? null : m;
    this.memBytes = this.mem === null ? 0 : bytes;
    this.chunks = new Uint8Array(Math.ceil(this.memBytes / MAP_CHUNK));
  }

  /** Whether the file holds [offset, offset+length) whole, so that a read through the mapping allocates nothing. */
  private whole(offset: number, length: number): boolean {
    const last = Math.floor((offset + length - 1) / MAP_CHUNK);
    for (let c = Math.floor(offset / MAP_CHUNK); c <= last; c++) {
      const state = this.chunks[c];
      if (state === CHUNK_WHOLE) continue;
      if (state > 1) {
        this.chunks[c] = state - 1;
        return false;
      }
      // Not asked yet, or due to be asked again. An error (the file shrank) counts as a hole.
      const start = c * MAP_CHUNK;
      const size = Math.min(MAP_CHUNK, this.memBytes - start);
      if (memResident(this.mem!, start, size) !== 1) {
        this.chunks[c] = MAP_RECHECK;
        return false;
      }
      this.chunks[c] = CHUNK_WHOLE;
      // Its pages mapped in one call, not a page fault each at its first copy (dear on a virtual machine).
      memPopulate(this.mem!, start, size);
    }
    return true;
  }

  /** [offset, offset+length) may hold holes now: its chunks are asked again before a mapped read. */
  private holesIn(offset: number, length: number): void {
    if (this.mem === null || length === 0) return;
    const last = Math.min(Math.floor((offset + length - 1) / MAP_CHUNK), this.chunks.length - 1);
    for (let c = Math.floor(offset / MAP_CHUNK); c <= last; c++) this.chunks[c] = 0;
  }

  /** Waits for operations in flight, then closes the descriptor. */
  close(): Promise<void> {
    if (this.closing === null) {
      if (this.sizeTimer !== null) clearInterval(this.sizeTimer);
      this.closing = (async () => {
        while (this.inflight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
        if (this.mem !== null) memUnmap(this.mem);
        this.mem = null;
        await this.fh.close();
      })();
    }
    return this.closing;
  }

  private check(offset: number, length: number, write: boolean): Error | undefined {
    if (this.closing) return fail(this.path, 'closed');
    if (write && this.readOnly) return errnoError(EROFS, 'write');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      return new RangeError(`backstore ${this.path}: bad range ${offset}+${length}`);
    if (offset + length > this.sizeBytes)
      return new RangeError(
        `backstore ${this.path}: range ${offset}+${length} beyond ${this.sizeBytes} bytes`,
      );
    if (this.shrunkTo !== null && offset + length > this.shrunkTo) return this.shrunkError();
    return undefined;
  }

  private started(): void {
    this.inflight++;
  }

  private finished(): void {
    if (--this.inflight === 0 && this.idle !== null) {
      const wake = this.idle;
      this.idle = null;
      wake();
    }
  }

  private op<T extends number>(start: (cb: (res: number) => void) => void): Promise<T> {
    this.started();
    return new Promise<T>((resolve, reject) => {
      try {
        start((res) => {
          this.finished();
          resolve(res as T);
        });
      } catch (e) {
        this.finished();
        reject(e);
      }
    });
  }

  /**
   * Compare the file's size with the LU's (regular files only). Once it is found smaller, the fault sticks until
   * the LU is reopened: reads and writes past the new end fail (a write there would silently re-extend the file
   * over a hole of zeros where data was), and onFault hears of it once.
   */
  checkSize(): number | null {
    if (this.isBlockDevice || this.closing) return this.shrunkTo;
    let size: number;
    try {
      size = fs.fstatSync(this.fd).size;
    } catch {
      return this.shrunkTo;
    }
    if (size < this.sizeBytes && (this.shrunkTo === null || size < this.shrunkTo)) {
      const first = this.shrunkTo === null;
      this.shrunkTo = size;
      if (first) this.onFault?.(this.shrunkError());
    }
    return this.shrunkTo;
  }

  private shrunkError(): Error {
    const e: NodeJS.ErrnoException = new Error(
      `backstore ${this.path}: the backing file shrank to ${this.shrunkTo} bytes under the LU's ${this.sizeBytes}`,
    );
    e.code = 'ESHRUNK';
    return e;
  }

  // A short read happens only past the end of the file, which is within the LU only when the file shrank behind
  // our back: that is an error (MEDIUM ERROR above), never zeros.
  private readFrom(
    offset: number,
    into: Buffer,
    done: number,
    resolve: () => void,
    reject: (e: Error) => void,
  ): void {
    const view = done === 0 ? into : into.subarray(done);
    this.started();
    try {
      this.ring.read(this.fd, view, offset + done, (res) => {
        this.finished();
        if (res < 0) return reject(errnoError(res, 'read'));
        if (res === 0) {
          this.checkSize();
          return reject(this.shrunkTo !== null ? this.shrunkError() : errnoError(EIO, 'read'));
        }
        if (done + res < into.length) return this.readFrom(offset, into, done + res, resolve, reject);
        resolve();
      });
    } catch (e) {
      this.finished();
      reject(e as Error);
    }
  }

  private writeFrom(
    offset: number,
    data: readonly Buffer[],
    length: number,
    fua: boolean,
    resolve: () => void,
    reject: (e: Error) => void,
  ): void {
    this.started();
    const cb = (res: number): void => {
      this.finished();
      if (res < 0) return reject(errnoError(res, 'write'));
      if (res === 0) return reject(errnoError(EIO, 'write'));
      if (res < length)
        return this.writeFrom(offset + res, skip(data, res), length - res, fua, resolve, reject);
      resolve();
    };
    try {
      if (data.length === 1) this.ring.write(this.fd, data[0], offset, fua, cb);
      else this.ring.writev(this.fd, data, offset, fua, cb);
    } catch (e) {
      this.finished();
      reject(e as Error);
    }
  }
}

/** The buffers after the first n bytes (the rare short-write path, so allocating is fine). */
function skip(data: readonly Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of data) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}
