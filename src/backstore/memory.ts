/**
 * An in-memory Backstore for tests: sparse (only written chunks take memory, so a 2 TiB LU is fine),
 * with call recording and error injection so the SCSI layer's behaviour can be checked byte for byte.
 *
 * The allocation map (mapping()) is the set of chunks: a chunk is mapped once written and deallocated only
 * when an unmap covers all of it; an unmap of part of a chunk zeroes that part, which stays mapped (as a
 * file system does with a hole punched inside one of its blocks). A small chunkSize (down to the block size)
 * gives a block-exact map for tests.
 */
import { copyThroughMemory } from './copy';
import { appendExtent, type Backstore, type MappingExtent } from './types';

export interface MemoryBackstoreOptions {
  sizeBytes: number;
  blockSize?: number;
  readOnly?: boolean;
  writeCacheEnabled?: boolean;
  thinProvisioned?: boolean;
  /** Allocation granule in bytes (power of two, >= blockSize). Default 64 KiB. */
  chunkSize?: number;
}

export interface WriteRecord {
  offset: number;
  length: number;
  fua: boolean;
  /** The very Buffer objects passed in (to check that nothing was concatenated or copied). */
  buffers: readonly Buffer[];
}

type Op = 'read' | 'write' | 'flush' | 'unmap' | 'mapping';

export class MemoryBackstore implements Backstore {
  readonly blockSize: number;
  readonly sizeBytes: number;
  readOnly: boolean;
  writeCacheEnabled: boolean;
  thinProvisioned: boolean;
  private readonly chunkSize: number;
  private readonly chunks = new Map<number, Buffer>();
  private readonly failures = new Map<Op, Error>();
  readonly writes: WriteRecord[] = [];
  readonly stats = { reads: 0, writes: 0, flushes: 0, unmaps: 0, bytesRead: 0, bytesWritten: 0 };
  closed = false;

  constructor(opts: MemoryBackstoreOptions) {
    this.blockSize = opts.blockSize ?? 512;
    this.sizeBytes = opts.sizeBytes;
    this.readOnly = opts.readOnly ?? false;
    this.writeCacheEnabled = opts.writeCacheEnabled ?? true;
    this.thinProvisioned = opts.thinProvisioned ?? true;
    this.chunkSize = opts.chunkSize ?? 64 * 1024;
    if (this.sizeBytes % this.blockSize !== 0) throw new Error('size must be a multiple of the block size');
  }

  /** Make the next call of `op` fail with `err` (once). */
  failNext(op: Op, err: Error): void {
    this.failures.set(op, err);
  }

  private maybeFail(op: Op): void {
    const err = this.failures.get(op);
    if (err) {
      this.failures.delete(op);
      throw err;
    }
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new RangeError(`access [${offset}, +${length}) outside ${this.sizeBytes} bytes`);
    }
    if (offset % this.blockSize !== 0 || length % this.blockSize !== 0) {
      throw new RangeError(`unaligned access [${offset}, +${length})`);
    }
  }

  async read(offset: number, into: Buffer): Promise<void> {
    this.maybeFail('read');
    this.check(offset, into.length);
    this.stats.reads++;
    this.stats.bytesRead += into.length;
    let done = 0;
    while (done < into.length) {
      const pos = offset + done;
      const idx = Math.floor(pos / this.chunkSize);
      const within = pos % this.chunkSize;
      const n = Math.min(this.chunkSize - within, into.length - done);
      const chunk = this.chunks.get(idx);
      if (chunk) chunk.copy(into, done, within, within + n);
      else into.fill(0, done, done + n);
      done += n;
    }
  }

  async write(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> {
    this.maybeFail('write');
    let length = 0;
    for (const d of data) length += d.length;
    this.check(offset, length);
    this.stats.writes++;
    this.stats.bytesWritten += length;
    this.writes.push({ offset, length, fua, buffers: data });
    if (this.writes.length > 1000) this.writes.shift();
    let pos = offset;
    for (const d of data) {
      let done = 0;
      while (done < d.length) {
        const idx = Math.floor(pos / this.chunkSize);
        const within = pos % this.chunkSize;
        const n = Math.min(this.chunkSize - within, d.length - done);
        let chunk = this.chunks.get(idx);
        if (!chunk) this.chunks.set(idx, (chunk = Buffer.alloc(this.chunkSize)));
        d.copy(chunk, within, done, done + n);
        done += n;
        pos += n;
      }
    }
  }

  copyFrom(src: Backstore, srcOffset: number, offset: number, length: number): Promise<void> {
    return copyThroughMemory(src, srcOffset, this, offset, length);
  }

  async flush(): Promise<void> {
    this.maybeFail('flush');
    this.stats.flushes++;
  }

  async unmap(offset: number, length: number): Promise<void> {
    this.maybeFail('unmap');
    this.check(offset, length);
    this.stats.unmaps++;
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const idx = Math.floor(pos / this.chunkSize);
      const within = pos % this.chunkSize;
      const n = Math.min(this.chunkSize - within, end - pos);
      const chunk = this.chunks.get(idx);
      if (chunk) {
        if (n === this.chunkSize) this.chunks.delete(idx);
        else chunk.fill(0, within, within + n);
      }
      pos += n;
    }
  }

  async mapping(offset: number, length: number, maxExtents = Infinity): Promise<MappingExtent[]> {
    this.maybeFail('mapping');
    this.check(offset, length);
    const out: MappingExtent[] = [];
    const end = offset + length;
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    const last = Math.ceil(end / cs); // exclusive
    // Only the chunks that exist, in order: a 2 TiB LU has millions of chunk slots and few chunks.
    const present = [...this.chunks.keys()].filter((i) => i >= first && i < last).sort((a, b) => a - b);
    let pos = offset;
    for (const idx of present) {
      const from = Math.max(offset, idx * cs);
      const to = Math.min(end, (idx + 1) * cs);
      if (!appendExtent(out, maxExtents, pos, from - pos, false)) return out;
      if (!appendExtent(out, maxExtents, from, to - from, true)) return out;
      pos = to;
    }
    appendExtent(out, maxExtents, pos, end - pos, false);
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
  }

  /** Bytes of memory holding data (for sparse-ness checks). */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunkSize;
  }
}
