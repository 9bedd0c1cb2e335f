/**
 * Pool of Data-In buffers in power-of-two size classes. A READ takes one buffer, the backstore fills it, the
 * iSCSI layer sends it and (optionally) gives it back. Each pooled buffer owns its ArrayBuffer, so a
 * returned view is recognised by its backing store; foreign or twice-returned buffers are ignored.
 */

export interface BufferPoolOptions {
  /** Smallest class (bytes); smaller requests still get a buffer of this class. Default 4 KiB. */
  minSize?: number;
  /** Largest pooled class; larger requests get an unpooled buffer. Default 16 MiB. */
  maxSize?: number;
  /** Free buffers kept per class. Default 32. */
  maxFreePerClass?: number;
}

export class BufferPool {
  private readonly minShift: number;
  private readonly maxShift: number;
  private readonly maxFree: number;
  private readonly free: ArrayBuffer[][] = [];
  private readonly owned = new WeakSet<ArrayBuffer>();
  private readonly idle = new WeakSet<ArrayBuffer>();
  /** Counters for tests and metrics. */
  readonly stats = { acquired: 0, reused: 0, released: 0, unpooled: 0 };

  constructor(opts: BufferPoolOptions = {}) {
    this.minShift = Math.ceil(Math.log2(opts.minSize ?? 4096));
    this.maxShift = Math.ceil(Math.log2(opts.maxSize ?? 16 * 1024 * 1024));
    this.maxFree = opts.maxFreePerClass ?? 32;
    for (let s = this.minShift; s <= this.maxShift; s++) this.free.push([]);
  }

  /** A buffer of exactly `length` bytes (uninitialised contents). */
  acquire(length: number): Buffer {
    this.stats.acquired++;
    const shift = Math.max(this.minShift, Math.ceil(Math.log2(Math.max(1, length))));
    if (shift > this.maxShift) {
      this.stats.unpooled++;
      return Buffer.allocUnsafeSlow(length);
    }
    const list = this.free[shift - this.minShift];
    let ab = list.pop();
    if (ab) {
      this.idle.delete(ab);
      this.stats.reused++;
    } else {
      ab = new ArrayBuffer(2 ** shift);
      this.owned.add(ab);
    }
    return Buffer.from(ab, 0, length);
  }

  /** Give a buffer from acquire() back. Safe to call with any buffer. */
  release(buf: Buffer): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.owned.has(ab) || this.idle.has(ab)) return;
    const list = this.free[Math.log2(ab.byteLength) - this.minShift];
    this.stats.released++;
    if (list.length >= this.maxFree) return;
    this.idle.add(ab);
    list.push(ab);
  }

  /** True when `buf` is a view of a buffer this pool handed out. */
  owns(buf: Buffer): boolean {
    return buf.buffer instanceof ArrayBuffer && this.owned.has(buf.buffer);
  }
}
