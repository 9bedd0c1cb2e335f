/**
 * The receive slabs of one worker thread, and the reader that hands a socket's reads the tail of one.
 *
 * Sockets read into slabs back to back, and the PDU parser hands out views of them (zero copy): a WRITE's data
 * goes to io_uring from the slab it arrived in. A slab therefore comes back to the pool only when nothing can
 * still read it: its reader has moved on to another slab, and every view that was retained (by a command that
 * holds its CDB or data) has been released. Commands release when they are done, which for a write means after
 * its io_uring completion (an aborted command stays until its I/O settles), so a slab is never handed to
 * another socket while the kernel may still read it.
 *
 * Two sizes: a connection doing small I/O (QD1 4 KiB) reads into small slabs, so that a thousand idle or
 * lightly used connections cost little; one that moves bulk data (a read filled all it was offered, or brought
 * more than a small slab takes) gets large slabs, so that data segments seldom straddle two slabs (a
 * straddling segment is copied).
 * Free slabs are kept up to a cap in bytes; past it, released slabs are left to the garbage collector.
 */

export const SMALL_SLAB = 64 * 1024;
/** A small slab is left once fewer bytes than this remain (a 4 KiB WRITE PDU fits several times). */
const SMALL_MIN_READ = 16 * 1024;
export const LARGE_SLAB = 4 * 1024 * 1024;
/** A large slab is left once fewer bytes than this remain (two 256 KiB data segments with their headers). */
export const LARGE_MIN_READ = 512 * 1024 + 4096;

/** What a closed reader hands out (nothing is read into it). */
const CLOSED = Buffer.alloc(64);

export class Slab {
  /** The reader's own hold while it reads into the slab, plus one per retained view. */
  refs = 1;
  constructor(readonly buf: Buffer) {}
}

export interface SlabPoolStats {
  /** Bytes of every slab this pool made that is not yet given up to the GC (in use + free). */
  allocatedBytes: number;
  /** Bytes of free slabs kept for reuse. */
  pooledBytes: number;
  /** Slabs made so far (a steady state reuses: this stops growing). */
  allocations: number;
  /** Slabs taken from the free list. */
  reuses: number;
}

export class SlabPool implements SlabPoolStats {
  allocatedBytes = 0;
  pooledBytes = 0;
  allocations = 0;
  reuses = 0;
  private readonly freeSmall: Slab[] = [];
  private readonly freeLarge: Slab[] = [];
  /** Slab by its memory, to find the slab of a view (a few dozen entries: a lookup per command, no allocation). */
  private readonly owner = new Map<ArrayBufferLike, Slab>();

  /**
   * @param capBytes  free slab bytes kept for reuse, at most
   * @param onChange  told the change of allocatedBytes and pooledBytes (for gauges)
   */
  constructor(
    readonly capBytes: number,
    private readonly onChange: (allocated: number, pooled: number) => void = () => undefined,
  ) {}

  /** A slab of `size` (SMALL_SLAB or LARGE_SLAB) with one reference, the caller's. */
  take(size: number): Slab {
    const free = size === SMALL_SLAB ? this.freeSmall : this.freeLarge;
    const s = free.pop();
    if (s !== undefined) {
      this.reuses++;
      this.pooledBytes -= size;
      this.onChange(0, -size);
      s.refs = 1;
      return s;
    }
    const slab = new Slab(Buffer.allocUnsafeSlow(size));
    this.owner.set(slab.buf.buffer, slab);
    this.allocations++;
    this.allocatedBytes += size;
    this.onChange(size, 0);
    return slab;
  }

  /** Keep the slab `view` lies in from reuse until release(view). A view of other memory is ignored. */
  retain(view: Uint8Array): void {
    const s = this.owner.get(view.buffer);
    if (s !== undefined) s.refs++;
  }

  /** Undo one retain(view). */
  release(view: Uint8Array): void {
    const s = this.owner.get(view.buffer);
    if (s !== undefined) this.unref(s);
  }

  /** Drop one reference; the last one puts the slab back (or lets it go past the cap). */
  unref(s: Slab): void {
    if (--s.refs > 0) return;
    if (s.refs < 0) throw new Error('slab released more often than retained');
    const size = s.buf.length;
    if (this.pooledBytes + size <= this.capBytes) {
      (size === SMALL_SLAB ? this.freeSmall : this.freeLarge).push(s);
      this.pooledBytes += size;
      this.onChange(0, size);
      return;
    }
    this.owner.delete(s.buf.buffer);
    this.allocatedBytes -= size;
    this.onChange(-size, 0);
  }

  /** References held on the slab `view` lies in (0 for memory the pool does not own, or a free slab). */
  refsOf(view: Uint8Array): number {
    return this.owner.get(view.buffer)?.refs ?? 0;
  }
}

/**
 * One socket's reads: each gets the unused tail of the current slab; a new slab starts when the tail is short.
 * The slab left behind stays referenced while the parser may still hold a piece of a PDU in it (`partial`),
 * so a data segment that straddles two slabs is copied out of intact memory.
 */
export class SlabReader {
  private cur: Slab | null = null;
  private used = 0;
  /**
   * A read in this slab filled everything it was offered (more was waiting), or brought more than a small slab
   * takes: the connection moves bulk data, the next slab is a large one. The second keeps a stream on large
   * slabs from one to the next (a read seldom fills the rest of a 4 MiB slab), so that it does not drop to a
   * small slab, where every 256 KiB segment would straddle and be copied.
   */
  private filled = false;
  /** Slabs read before `cur`, held until the parser is between PDUs (one, unless a segment spans several). */
  private readonly retired: Slab[] = [];
  closed = false;

  constructor(
    private readonly pool: SlabPool,
    /** True while the parser holds a partial PDU (views of the slab just left may be in it). */
    private readonly partial: () => boolean,
  ) {}

  /** The buffer for the next read. */
  next(): Buffer {
    // Node asks once more after the read whose handling closed the socket: no read can land, take no slab.
    if (this.closed) return CLOSED;
    let s = this.cur;
    if (
      s === null ||
      s.buf.length - this.used < (s.buf.length === SMALL_SLAB ? SMALL_MIN_READ : LARGE_MIN_READ)
    ) {
      if (s !== null) {
        this.retired.push(s);
        this.parsed();
      }
      s = this.cur = this.pool.take(this.filled ? LARGE_SLAB : SMALL_SLAB);
      this.used = 0;
      this.filled = false;
    }
    return s.buf.subarray(this.used);
  }

  /** `n` bytes were read into `buf` (the last buffer next() gave): the chunk to parse. */
  chunk(n: number, buf: Uint8Array): Buffer {
    if (n === buf.length || n > SMALL_SLAB - SMALL_MIN_READ) this.filled = true;
    this.used += n;
    return Buffer.from(buf.buffer, buf.byteOffset, n);
  }

  /** After the chunk was parsed: the slab left behind goes once no partial PDU can point into it. */
  parsed(): void {
    if (this.retired.length > 0 && !this.partial()) this.drop();
  }

  /** The socket is closed (no read can land any more): give up the slabs. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.drop();
    if (this.cur !== null) this.pool.unref(this.cur);
    this.cur = null;
  }

  private drop(): void {
    for (const s of this.retired) this.pool.unref(s);
    this.retired.length = 0;
  }
}
