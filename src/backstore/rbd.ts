/**
 * A LUN stored in a Ceph RBD image, through librbd (src/native/rbd.ts): what tgt's rbd backing store and
 * SPDK's RBD bdev do, so that several gateway nodes can serve one image.
 *
 * - write(fua) is an aio write followed by an aio flush; flush() is rbd_aio_flush. librbd's cache is off unless
 *   `cache` is set, so a completed write is on the OSDs already and writeCacheEnabled reports the cache.
 * - unmap() is rbd_aio_discard, with rbd_skip_partial_discard off (set on the cluster handle) so that a range
 *   that covers only part of an object reads back as zeros too (LBPRZ).
 * - writeSame() is rbd_aio_writesame, or rbd_aio_write_zeroes for a block of zeros.
 * - compareAndWrite() is rbd_aio_compare_and_write: the compare and the write are one RADOS operation on the
 *   OSD, so it is atomic against every gateway, not only this process. librbd 16 takes one 512-byte sector at
 *   most (EINVAL for more, found by trying: 1024 bytes at a 4 KiB-aligned offset fail): compareAndWriteMax,
 *   which the LU reports as MAXIMUM COMPARE AND WRITE LENGTH (1 block of 512; none with 4096-byte blocks).
 * - mapping() (GET LBA STATUS) is rbd_diff_iterate2: an object that was never written, or was discarded whole,
 *   is deallocated; one that exists counts as mapped over the extents librbd reports (librbd 16 without
 *   fast-diff reports an object's whole written size). At most MAPPING_OBJECTS objects per call: librbd asks the
 *   OSD about each, so a 1 TiB image would take minutes; the initiator asks again from where the answer ends.
 * - WRITE ATOMIC(16): a write that stays inside one RADOS object is one OSD operation, applied whole or not at
 *   all, against every gateway and across a crash of this one (appliesWhole). One that crosses an object boundary
 *   goes through the redo journal in the cluster (redoJournal, src/backstore/rbd-atomic.ts), offered only while
 *   this gateway is the target's sole writer (LogicalUnit.clusterJournal); otherwise the LU offers atomicWriteMax,
 *   4 KiB aligned to itself, which never crosses an object.
 * - Errors keep librbd's errno (ESHUTDOWN for a blocklisted client, ETIMEDOUT for an OSD or mon that does not
 *   answer within opTimeout, ENOSPC/EDQUOT for a full pool): src/scsi/sbc.ts maps them to sense data.
 * - A full pool (quota reached, or an OSD past its full ratio) refuses a write that needs space at once, with
 *   EDQUOT or ENOSPC (DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT), instead of librados holding it until
 *   opTimeout: the image is opened with librados' full-try flag (native/rbd.cc). What takes no new space still
 *   works on a full pool, as on a thin-provisioned LU out of space: reads, overwrites of written blocks, UNMAP
 *   (which gives space back). Once the pool is no longer flagged full, writes succeed again.
 */
import { RbdImage, rbdAvailable, type RbdOpenOptions } from '../native/rbd';
import { atomicObjectName, RBD_JOURNAL_LANES, RbdAtomicJournal } from './rbd-atomic';
import { appendExtent, type Backstore, type MappingExtent, type RedoJournal } from './types';

export interface RbdBackstoreOptions {
  pool: string;
  image: string;
  namespace?: string;
  /** ceph.conf path (default: librados' search, /etc/ceph/ceph.conf). */
  cephConf?: string;
  /** cephx client id (default admin). */
  clientId?: string;
  /** Bytes: create the image of this size when it does not exist. */
  createSize?: number;
  /** Bytes served (default: the image's size); the image must be at least this big. */
  size?: number;
  readOnly?: boolean;
  blockSize?: 512 | 4096;
  /** librbd write-back cache (rbd_cache). */
  cache?: boolean;
  /** Seconds before a cluster operation fails (default 30). */
  opTimeout?: number;
  /** Watch the reservation object (src/scsi/pr-store-rbd.ts) and hear its notifies. */
  onPrNotify?: (id: bigint, err: number) => void;
}

/** Objects of the image one mapping() call looks at, at most. */
const MAPPING_OBJECTS = 64;
/**
 * WRITE ATOMIC(16)'s limit, alignment and granularity without the journal: 4 KiB, the physical block. Aligned to
 * itself, it never crosses an object boundary (objects are 4 KiB multiples, 4 MiB by default): librbd sends one op.
 */
const ATOMIC_WRITE_BYTES = 4096;

const EROFS = -30;
const EINVAL = -22;

function errno(res: number, what: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(what);
  e.errno = res;
  e.code = res === EROFS ? 'EROFS' : 'EINVAL';
  return e;
}

/** The RADOS object beside an image that holds its reservation state. */
export function prObjectName(image: string): string {
  return `nodetgt.pr.${image}`;
}

/** Where an RBD LU lives, for messages: pool[/namespace]/image. */
export function rbdSpec(o: Pick<RbdBackstoreOptions, 'pool' | 'namespace' | 'image'>): string {
  return `${o.pool}/${o.namespace ? `${o.namespace}/` : ''}${o.image}`;
}

export async function openRbdBackstore(opts: RbdBackstoreOptions): Promise<RbdBackstore> {
  const spec = rbdSpec(opts);
  if (!rbdAvailable())
    throw new Error(
      `backstore rbd:${spec}: this nodetgt was built without librbd; install librbd-dev and librados-dev ` +
        "(apt-get install librbd-dev librados-dev) and rebuild the addon ('npx node-gyp rebuild')",
    );
  const blockSize = opts.blockSize ?? 512;
  const o: RbdOpenOptions = {
    conf: opts.cephConf,
    client: opts.clientId,
    pool: opts.pool,
    namespace: opts.namespace,
    image: opts.image,
    createSize: opts.readOnly ? undefined : opts.createSize,
    cache: opts.cache,
    opTimeout: opts.opTimeout,
    prObject: opts.onPrNotify ? prObjectName(opts.image) : undefined,
  };
  let img: RbdImage;
  try {
    img = await RbdImage.open(o, opts.onPrNotify);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const hint =
      err.code === 'ENOENT' && opts.createSize === undefined && err.message.startsWith('opening image')
        ? " (set 'create' and a size to create it)"
        : '';
    const out: NodeJS.ErrnoException = new Error(`backstore rbd:${spec}: ${err.message}${hint}`);
    out.code = err.code;
    throw out;
  }
  try {
    const st = img.stat();
    if (opts.size !== undefined && st.size < opts.size)
      throw new Error(
        `backstore rbd:${spec}: image is ${st.size} bytes, smaller than the configured ${opts.size}`,
      );
    const bytes = opts.size ?? st.size;
    const sizeBytes = bytes - (bytes % blockSize);
    if (sizeBytes === 0) throw new Error(`backstore rbd:${spec}: smaller than one ${blockSize}-byte block`);
    return new RbdBackstore(img, spec, blockSize, sizeBytes, st.objectSize, opts);
  } catch (e) {
    await img.close().catch(() => undefined);
    throw e;
  }
}

export class RbdBackstore implements Backstore {
  readonly readOnly: boolean;
  readonly writeCacheEnabled: boolean;
  readonly thinProvisioned = true;
  /** Writes aligned to 4 KiB never make librbd read-modify-write a partial sector of an object. */
  readonly physicalBlockSize = 4096;
  readonly compareAndWriteMax = 512;
  readonly atomicWriteMax = ATOMIC_WRITE_BYTES;
  /** The image's name in its pool and namespace (the journal objects are named after it). */
  readonly imageName: string;
  private closing: Promise<void> | null = null;
  onFault?: (e: Error) => void;
  /** This thread's redo journals, by relative target port and lane. */
  private readonly journals = new Map<string, RbdAtomicJournal>();

  constructor(
    readonly image: RbdImage,
    readonly spec: string,
    readonly blockSize: number,
    public sizeBytes: number,
    readonly objectSize: number,
    opts: RbdBackstoreOptions,
  ) {
    this.readOnly = opts.readOnly ?? false;
    this.imageName = opts.image;
    this.writeCacheEnabled = opts.cache ?? false;
  }

  read(offset: number, into: Buffer): Promise<void> {
    const bad = this.check(offset, into.length, false);
    if (bad) return Promise.reject(bad);
    if (into.length === 0) return Promise.resolve();
    return this.image.read(offset, into);
  }

  async write(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> {
    let length = 0;
    for (const b of data) length += b.length;
    const bad = this.check(offset, length, true);
    if (bad) throw bad;
    if (length === 0) return;
    await this.image.writev(offset, data as Buffer[]);
    if (fua) await this.image.flush();
  }

  flush(): Promise<void> {
    if (this.closing) return Promise.reject(new Error(`backstore rbd:${this.spec}: closed`));
    return this.image.flush();
  }

  async unmap(offset: number, length: number): Promise<void> {
    const bad = this.check(offset, length, true);
    if (bad) throw bad;
    if (length === 0) return;
    await this.image.discard(offset, length, false);
  }

  /** Every block of the range becomes `block` (one logical block). */
  async writeSame(offset: number, length: number, block: Buffer, fua: boolean): Promise<void> {
    const bad = this.check(offset, length, true);
    if (bad) throw bad;
    if (length === 0) return;
    if (block.every((b) => b === 0)) await this.image.discard(offset, length, true);
    else await this.image.writeSame(offset, length, block);
    if (fua) await this.image.flush();
  }

  /**
   * Atomic on the OSD: null when `verify` matched and `data` was written, or the offset (from `offset`) of the
   * first byte that differs (nothing written).
   */
  async compareAndWrite(offset: number, verify: Buffer, data: Buffer, fua: boolean): Promise<number | null> {
    const bad = this.check(offset, verify.length, true);
    if (bad) throw bad;
    if (verify.length > this.compareAndWriteMax)
      throw errno(
        EINVAL,
        `backstore rbd:${this.spec}: compare-and-write of more than ${this.compareAndWriteMax} bytes`,
      );
    const mismatch = await this.image.compareAndWrite(offset, verify, data);
    if (mismatch === null && fua) await this.image.flush();
    return mismatch;
  }

  /** A write inside one RADOS object is one OSD op: applied whole or not at all, for every gateway. */
  appliesWhole(offset: number, length: number): boolean {
    return (
      length > 0 &&
      Math.floor(offset / this.objectSize) === Math.floor((offset + length - 1) / this.objectSize)
    );
  }

  /** The lane's slot in the gateway's journal object beside the image (src/backstore/rbd-atomic.ts). */
  redoJournal(port: number, lane: number): RedoJournal | undefined {
    if (this.readOnly || lane < 1 || lane > RBD_JOURNAL_LANES) return undefined;
    const key = `${port}/${lane}`;
    let j = this.journals.get(key);
    if (!j)
      this.journals.set(
        key,
        (j = new RbdAtomicJournal(this.image, atomicObjectName(this.imageName, port), lane)),
      );
    return j;
  }

  async mapping(offset: number, length: number, maxExtents = Infinity): Promise<MappingExtent[]> {
    const bad = this.check(offset, length, false);
    if (bad) throw bad;
    const out: MappingExtent[] = [];
    if (length === 0 || maxExtents < 1) return out;
    // Up to the end of the MAPPING_OBJECTS-th object from offset: the answer is then a prefix of the range.
    const os = this.objectSize;
    const end = Math.min(offset + length, (Math.floor(offset / os) + MAPPING_OBJECTS) * os);
    const data = await this.image.dataExtents(offset, end - offset);
    const bs = this.blockSize;
    let pos = offset;
    for (let i = 0; i < data.length; i += 2) {
      // A block only partly holding data counts as mapped: round the data extent out to blocks.
      const start = Math.max(pos, Math.floor(data[i] / bs) * bs);
      const stop = Math.min(end, Math.ceil((data[i] + data[i + 1]) / bs) * bs);
      if (stop <= pos) continue;
      if (!appendExtent(out, maxExtents, pos, start - pos, false)) return out;
      if (!appendExtent(out, maxExtents, start, stop - start, true)) return out;
      pos = stop;
    }
    appendExtent(out, maxExtents, pos, end - pos, false);
    return out;
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.image.close();
    return this.closing;
  }

  private check(offset: number, length: number, write: boolean): Error | undefined {
    if (this.closing) return new Error(`backstore rbd:${this.spec}: closed`);
    if (write && this.readOnly) return errno(EROFS, 'write: read-only');
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      return new RangeError(`backstore rbd:${this.spec}: bad range ${offset}+${length}`);
    if (offset + length > this.sizeBytes)
      return new RangeError(
        `backstore rbd:${this.spec}: range ${offset}+${length} beyond ${this.sizeBytes} bytes`,
      );
    return undefined;
  }
}
