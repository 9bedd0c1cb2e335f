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

/** What the pool knows of one buffer it made: whether it sits in a free list now. */
interface Slot {
  idle: boolean;
}

export class BufferPool {
  private readonly minShift: number;
  private readonly maxShift: number;
  private readonly maxFree: number;
  private readonly free: ArrayBuffer[][] = [];
  /**
   * The buffers this pool made, each with its state in one entry: a READ's release is then one lookup, where
   * separate "owned" and "idle" WeakSets cost a lookup for each and an ephemeron insert per release (about 3% of
   * the worker's CPU per QD1 READ, perf on bench/qd1.ts --kinds null).
   */
  private readonly slots = new WeakMap<ArrayBuffer, Slot>();
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
      this.slots.get(ab)!.idle = false;
      this.stats.reused++;
    } else {
      ab = new ArrayBuffer(2 ** shift);
      this.slots.set(ab, { idle: false });
    }
    return Buffer.from(ab, 0, length);
  }

  /** Give a buffer from acquire() back. Safe to call with any buffer. */
  release(buf: Buffer): void {
    this.releaseIfOwned(buf);
  }

  /**
   * release() that says whether `buf` is this pool's (returned now, or already idle): one lookup for "whose
   * buffer is this?" and the return together.
   */
  releaseIfOwned(buf: Buffer): boolean {
    const ab = buf.buffer;
    const slot = ab instanceof ArrayBuffer ? this.slots.get(ab) : undefined;
    if (slot === undefined) return false;
    if (slot.idle) return true;
    this.stats.released++;
    const list = this.free[Math.log2(ab.byteLength) - this.minShift];
    if (list.length >= this.maxFree) return true;
    slot.idle = true;
    list.push(ab as ArrayBuffer);
    return true;
  }

  /** True when `buf` is a view of a buffer this pool handed out. */
  owns(buf: Buffer): boolean {
    return buf.buffer instanceof ArrayBuffer && this.slots.has(buf.buffer);
  }
}
