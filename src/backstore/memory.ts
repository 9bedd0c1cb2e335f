/**
 * An in-memory Backstore for tests: sparse (only written chunks take memory, so a 2 TiB LU is fine),
 * with call recording and error injection so the SCSI layer's behaviour can be checked byte for byte.
 */
import type { Backstore } from './types';

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

type Op = 'read' | 'write' | 'flush' | 'unmap';

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

  async close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
  }

  /** Bytes of memory holding data (for sparse-ness checks). */
  get allocatedBytes(): number {
    return this.chunks.size * this.chunkSize;
  }
}
