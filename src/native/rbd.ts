/**
 * Ceph RBD images through the addon's librbd binding (native/rbd.cc), present only when the addon was built
 * with librbd-dev and librados-dev installed (rbdAvailable()).
 *
 * Like the io_uring ring: each thread has one hub of tags; an op's callback is found by its tag when its
 * completion arrives in a batch (one JS call per batch of completions, through the image's eventfd). Buffers
 * are held until their completion. Opening, closing and the reservation-object operations run on the libuv
 * thread pool (they wait for the cluster).
 */
import { addonExports, errnoError } from './index';

export interface RbdOpenOptions {
  /** ceph.conf path; empty: librados' default search. */
  conf?: string;
  /** The cephx client id (client.<id>); default admin. */
  client?: string;
  pool: string;
  namespace?: string;
  image: string;
  /** Bytes: create the image (layering only) when it does not exist. */
  createSize?: number;
  /** librbd's write-back cache (rbd_cache); off by default. */
  cache?: boolean;
  /** Seconds before a mon or OSD operation fails with ETIMEDOUT (client_mount_timeout, rados_osd_op_timeout). */
  opTimeout?: number;
  /** The RADOS object, beside the image, that holds the reservation state; watched when set. */
  prObject?: string;
}

export interface RbdStat {
  size: number;
  objectSize: number;
  features: number;
}

type JobCb<T> = (rc: number, value: T, why: string) => void;

interface RbdBinding {
  rbdInit(tags: Int32Array, results: Float64Array, onBatch: (count: number) => void): void;
  rbdOpen(
    opts: Record<string, unknown>,
    onNotify: ((id: bigint, err: number) => void) | undefined,
    cb: JobCb<number>,
  ): void;
  rbdClose(h: number, cb: JobCb<undefined>): void;
  rbdStat(h: number): RbdStat;
  rbdRead(h: number, tag: number, buf: ArrayBufferView, offset: number): number;
  rbdWritev(h: number, tag: number, bufs: readonly ArrayBufferView[], offset: number): number;
  rbdFlush(h: number, tag: number): number;
  rbdDiscard(h: number, tag: number, offset: number, length: number, zeroes: boolean): number;
  rbdWriteSame(h: number, tag: number, offset: number, length: number, pattern: ArrayBufferView): number;
  rbdCompareAndWrite(
    h: number,
    tag: number,
    offset: number,
    cmp: ArrayBufferView,
    data: ArrayBufferView,
  ): number;
  rbdMapping(h: number, offset: number, length: number, cb: JobCb<Float64Array>): void;
  rbdPrRead(h: number, cb: JobCb<{ gen: string; doc: string } | undefined>): void;
  rbdPrWrite(h: number, expectedGen: string, newGen: string, doc: string, cb: JobCb<undefined>): void;
  rbdPrNotify(h: number, timeoutMs: number, cb: JobCb<undefined>): void;
  rbdPrAck(h: number, notifyId: bigint, cb: JobCb<undefined>): void;
  rbdPrRewatch(h: number, cb: JobCb<undefined>): void;
  rbdObjWrite(
    h: number,
    obj: string,
    offset: number,
    bufs: readonly ArrayBufferView[],
    cb: JobCb<undefined>,
  ): void;
  rbdObjRead(h: number, obj: string, offset: number, length: number, cb: JobCb<Buffer | undefined>): void;
  rbdObjStat(h: number, obj: string, cb: JobCb<number>): void;
}

/** True when the addon was built with librbd. */
export function rbdAvailable(): boolean {
  return addonExports().rbdAvailable === true;
}

function binding(): RbdBinding {
  if (!rbdAvailable())
    throw new Error(
      'this build of nodetgt has no RBD support: install librbd-dev and librados-dev ' +
        "(apt-get install librbd-dev librados-dev), then rebuild the addon ('npx node-gyp rebuild')",
    );
  return addonExports() as unknown as RbdBinding;
}

const EDQUOT = -122;

/** An Error for a negative librbd/librados result, named after the call, with the errno code. */
export function rbdError(res: number, what: string): NodeJS.ErrnoException {
  const e = errnoError(res, what);
  // Node's error map has no name for EDQUOT, which a Ceph pool past its quota returns: give it one (the logs,
  // src/scsi/sbc.ts and the LU's no-space counter read the code).
  if (res === EDQUOT) {
    e.code = 'EDQUOT';
    e.message = `${what}: EDQUOT (disk quota exceeded)`;
  }
  return e;
}

const MAX_BATCH = 1024;

type Done = (res: number, mismatch: number) => void;

/** This thread's completion hub: tags to callbacks, buffers held until completion. */
class Hub {
  private static current: Hub | undefined;
  static get(): Hub {
    if (Hub.current === undefined) Hub.current = new Hub();
    return Hub.current;
  }

  private readonly tags = new Int32Array(MAX_BATCH);
  private readonly results = new Float64Array(2 * MAX_BATCH);
  private readonly callbacks: (Done | undefined)[] = [];
  private readonly held: unknown[] = [];
  private readonly free: number[] = [];

  private constructor() {
    binding().rbdInit(this.tags, this.results, this.onBatch);
  }

  take(cb: Done, hold: unknown): number {
    const slot = this.free.length > 0 ? this.free.pop()! : this.callbacks.length;
    this.callbacks[slot] = cb;
    this.held[slot] = hold;
    return slot;
  }

  release(tag: number): void {
    this.callbacks[tag] = undefined;
    this.held[tag] = undefined;
    this.free.push(tag);
  }

  private readonly onBatch = (count: number): void => {
    let error: unknown;
    let failed = false;
    for (let i = 0; i < count; i++) {
      const tag = this.tags[i];
      const cb = this.callbacks[tag];
      this.release(tag);
      try {
        cb?.(this.results[2 * i], this.results[2 * i + 1]);
      } catch (e) {
        if (!failed) error = e;
        failed = true;
      }
    }
    if (failed) throw error;
  };
}

function job<T>(start: (cb: JobCb<T>) => void, what: string): Promise<T> {
  return new Promise((resolve, reject) =>
    start((rc, value, why) => {
      if (rc < 0) {
        const e = rbdError(rc, why || what);
        return reject(e);
      }
      resolve(value);
    }),
  );
}

/** One open RBD image on this thread. */
export class RbdImage {
  private inflightOps = 0;
  private idle: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly b: RbdBinding,
    private readonly hub: Hub,
    private readonly h: number,
  ) {}

  /**
   * Connect (sharing this process's cluster handle for the same conf, client and options), open the image,
   * creating it when createSize is given and it is missing. onNotify hears the reservation object's notifies
   * (id) and watch errors (err < 0).
   */
  static async open(o: RbdOpenOptions, onNotify?: (id: bigint, err: number) => void): Promise<RbdImage> {
    const b = binding();
    const hub = Hub.get();
    const h = await job<number>(
      (cb) =>
        b.rbdOpen(
          {
            conf: o.conf ?? '',
            client: o.client ?? 'admin',
            pool: o.pool,
            namespace: o.namespace ?? '',
            image: o.image,
            createSize: o.createSize ?? 0,
            cache: o.cache ? 1 : 0,
            opTimeout: o.opTimeout ?? 30,
            prObject: o.prObject ?? '',
          },
          onNotify,
          cb,
        ),
      'rbd open',
    );
    return new RbdImage(b, hub, h);
  }

  get inflight(): number {
    return this.inflightOps;
  }

  stat(): RbdStat {
    return this.b.rbdStat(this.h);
  }

  read(offset: number, into: Buffer): Promise<void> {
    return this.op('rbd_aio_read', into, (tag) => this.b.rbdRead(this.h, tag, into, offset)).then((res) => {
      if (res !== into.length) throw rbdError(-5, `rbd_aio_read: ${res} of ${into.length} bytes`);
    });
  }

  writev(offset: number, bufs: readonly Buffer[]): Promise<void> {
    return this.op('rbd_aio_writev', bufs, (tag) => this.b.rbdWritev(this.h, tag, bufs, offset)).then(
      () => {},
    );
  }

  flush(): Promise<void> {
    return this.op('rbd_aio_flush', undefined, (tag) => this.b.rbdFlush(this.h, tag)).then(() => {});
  }

  /** zeroes: write_zeroes (reads return zeros afterwards whatever the object size); else discard. */
  discard(offset: number, length: number, zeroes: boolean): Promise<void> {
    const what = zeroes ? 'rbd_aio_write_zeroes' : 'rbd_aio_discard';
    return this.op(what, undefined, (tag) => this.b.rbdDiscard(this.h, tag, offset, length, zeroes)).then(
      () => {},
    );
  }

  writeSame(offset: number, length: number, pattern: Buffer): Promise<void> {
    return this.op('rbd_aio_writesame', pattern, (tag) =>
      this.b.rbdWriteSame(this.h, tag, offset, length, pattern),
    ).then(() => {});
  }

  /** Resolves null when written, or the image offset of the first differing byte (nothing written). */
  compareAndWrite(offset: number, cmp: Buffer, data: Buffer): Promise<number | null> {
    return new Promise((resolve, reject) => {
      this.start(
        'rbd_aio_compare_and_write',
        [cmp, data],
        (tag) => this.b.rbdCompareAndWrite(this.h, tag, offset, cmp, data),
        (res, mismatch) => {
          if (res === -84) return resolve(mismatch); // EILSEQ: miscompare
          if (res < 0) return reject(rbdError(res, 'rbd_aio_compare_and_write'));
          resolve(null);
        },
        reject,
      );
    });
  }

  /**
   * The extents of [offset, offset + length) that hold data, as [offset, length] pairs in ascending order
   * (rbd_diff_iterate2 since the image was created; on the thread pool, counted as an op in flight so that
   * close() waits for it). Without fast-diff librbd asks the OSD about every object of the range: keep it short.
   */
  async dataExtents(offset: number, length: number): Promise<Float64Array> {
    if (this.closed) throw new Error('rbd image is closed');
    this.inflightOps++;
    try {
      return await job<Float64Array>(
        (cb) => this.b.rbdMapping(this.h, offset, length, cb),
        'rbd_diff_iterate2',
      );
    } finally {
      this.finished();
    }
  }

  prRead(): Promise<{ gen: string; doc: string } | null> {
    return new Promise((resolve, reject) =>
      this.b.rbdPrRead(this.h, (rc, v) => {
        if (rc === -2) return resolve(null);
        if (rc < 0) return reject(rbdError(rc, 'reading the reservation object'));
        resolve(v!);
      }),
    );
  }

  /** Compare-and-swap: false when another writer changed the object since expectedGen was read. */
  prWrite(expectedGen: string, newGen: string, doc: string): Promise<boolean> {
    return new Promise((resolve, reject) =>
      this.b.rbdPrWrite(this.h, expectedGen, newGen, doc, (rc) => {
        if (rc === -125 || rc === -17) return resolve(false); // ECANCELED (xattr differs), EEXIST (created)
        if (rc < 0) return reject(rbdError(rc, 'writing the reservation object'));
        resolve(true);
      }),
    );
  }

  prNotify(timeoutMs: number): Promise<void> {
    return job<undefined>((cb) => this.b.rbdPrNotify(this.h, timeoutMs, cb), 'rados_notify2').then(() => {});
  }

  prAck(id: bigint): Promise<void> {
    return job<undefined>((cb) => this.b.rbdPrAck(this.h, id, cb), 'rados_notify_ack').then(() => {});
  }

  prRewatch(): Promise<void> {
    return job<undefined>((cb) => this.b.rbdPrRewatch(this.h, cb), 'rados_watch2').then(() => {});
  }

  /**
   * One write op on a RADOS object beside the image (its pool and namespace): the OSD applies all of the bytes or
   * none. Counted as an op in flight, so that close() waits for it.
   */
  objWrite(obj: string, offset: number, bufs: readonly Buffer[]): Promise<void> {
    return this.objJob((cb) => this.b.rbdObjWrite(this.h, obj, offset, bufs, cb), 'rados_write').then(
      () => {},
    );
  }

  /** Up to `length` bytes of a RADOS object from offset (fewer at its end); null when the object does not exist. */
  objRead(obj: string, offset: number, length: number): Promise<Buffer | null> {
    return this.objJob<Buffer | undefined>(
      (cb) => this.b.rbdObjRead(this.h, obj, offset, length, cb),
      'rados_read',
    ).then((b) => b ?? null);
  }

  /** A RADOS object's size in bytes; null when it does not exist. */
  objSize(obj: string): Promise<number | null> {
    return this.objJob<number>((cb) => this.b.rbdObjStat(this.h, obj, cb), 'rados_stat').then((n) => n);
  }

  /** A thread-pool job on an object (ENOENT resolves undefined), counted in flight. */
  private async objJob<T>(start: (cb: JobCb<T>) => void, what: string): Promise<T | null> {
    if (this.closed) throw new Error('rbd image is closed');
    this.inflightOps++;
    try {
      return await new Promise<T | null>((resolve, reject) =>
        start((rc, value, why) => {
          if (rc === -2) return resolve(null);
          if (rc < 0) return reject(rbdError(rc, why || what));
          resolve(value);
        }),
      );
    } finally {
      this.finished();
    }
  }

  /** Waits for the ops in flight, then closes the image (before its eventfd) and releases the cluster. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.inflightOps > 0) await new Promise<void>((r) => (this.idle = r));
    await job<undefined>((cb) => this.b.rbdClose(this.h, cb), 'rbd_close');
  }

  private op(what: string, hold: unknown, submit: (tag: number) => number): Promise<number> {
    return new Promise((resolve, reject) =>
      this.start(what, hold, submit, (res) => (res < 0 ? reject(rbdError(res, what)) : resolve(res)), reject),
    );
  }

  private start(
    what: string,
    hold: unknown,
    submit: (tag: number) => number,
    done: Done,
    reject: (e: Error) => void,
  ): void {
    if (this.closed) return reject(new Error('rbd image is closed'));
    const tag = this.hub.take((res, mismatch) => {
      this.finished();
      done(res, mismatch);
    }, hold);
    this.inflightOps++;
    let rc: number;
    try {
      rc = submit(tag);
    } catch (e) {
      this.hub.release(tag);
      this.finished();
      return reject(e as Error);
    }
    if (rc < 0) {
      this.hub.release(tag);
      this.finished();
      reject(rbdError(rc, what));
    }
  }

  private finished(): void {
    if (--this.inflightOps === 0 && this.idle !== null) {
      const wake = this.idle;
      this.idle = null;
      wake();
    }
  }
}
