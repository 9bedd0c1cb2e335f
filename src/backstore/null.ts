/**
 * A backstore that stores nothing: reads return zeros, writes are discarded, flush and unmap do nothing.
 * For benchmarks of everything above the storage (network, PDU handling, SCSI).
 *
 * Its allocation map says every block is deallocated. With LBPRZ = 1 (READ CAPACITY(16), VPD B2h) that is
 * the exact truth as an initiator can observe it: a deallocated block reads as zeros, every block here reads
 * as zeros, and no written data is ever kept. Reporting blocks as mapped would claim stored data that is not
 * there (and make copy tools read a LUN that is all zeros). A thin LU with every block deallocated is valid.
 */
import { copyThroughMemory } from './copy';
import type { Backstore, MappingExtent } from './types';
import { parseSize } from '../util/size';

export interface NullBackstoreOptions {
  /** Capacity: bytes, or a size string such as '1T'. */
  size: number | string;
  blockSize?: 512 | 4096;
  readOnly?: boolean;
}

const done = Promise.resolve();

export class NullBackstore implements Backstore {
  readonly blockSize: number;
  sizeBytes: number;
  readonly readOnly: boolean;
  readonly writeCacheEnabled = false;
  /**
   * Not advertised as thin (LBPME=0), like tgt's null backstore: with LBPME=1 and everything deallocated an
   * initiator such as QEMU skips reads entirely and a benchmark measures nothing. mapping() still answers.
   */
  readonly thinProvisioned = false;

  constructor(opts: NullBackstoreOptions) {
    const blockSize = opts.blockSize ?? 512;
    if (blockSize !== 512 && blockSize !== 4096)
      throw new RangeError(`null backstore: block size ${blockSize} (512 or 4096)`);
    const size = typeof opts.size === 'string' ? parseSize(opts.size) : opts.size;
    if (!Number.isSafeInteger(size) || size < blockSize || size % blockSize !== 0)
      throw new RangeError(
        `null backstore: size ${size} must be a positive multiple of the block size ${blockSize}`,
      );
    this.blockSize = blockSize;
    this.sizeBytes = size;
    this.readOnly = opts.readOnly ?? false;
  }

  read(offset: number, into: Buffer): Promise<void> {
    return this.readNow(offset, into) ?? done;
  }

  readNow(offset: number, into: Buffer): Promise<void> | undefined {
    const bad = this.check(offset, into.length, false);
    if (bad) return Promise.reject(bad);
    into.fill(0);
    return undefined;
  }

  write(offset: number, data: readonly Buffer[], fua: boolean): Promise<void> {
    return this.writeNow(offset, data, fua) ?? done;
  }

  writeNow(offset: number, data: readonly Buffer[], _fua: boolean): Promise<void> | undefined {
    let length = 0;
    for (const b of data) length += b.length;
    const bad = this.check(offset, length, true);
    return bad ? Promise.reject(bad) : undefined;
  }

  flush(): Promise<void> {
    return done;
  }

  /** Nothing to move: the destination keeps nothing and the source reads as zeros either way. */
  copyFrom(src: Backstore, srcOffset: number, offset: number, length: number): Promise<void> {
    const bad = this.check(offset, length, true);
    if (bad) return Promise.reject(bad);
    if (src === this) return done;
    return copyThroughMemory(src, srcOffset, this, offset, length);
  }

  unmap(offset: number, length: number): Promise<void> {
    const bad = this.check(offset, length, true);
    return bad ? Promise.reject(bad) : done;
  }

  mapping(offset: number, length: number, maxExtents = Infinity): Promise<MappingExtent[]> {
    const bad = this.check(offset, length, false);
    if (bad) return Promise.reject(bad);
    return Promise.resolve(length > 0 && maxExtents >= 1 ? [{ offset, length, mapped: false }] : []);
  }

  /** Nothing is stored: any capacity will do. */
  resize(sizeBytes: number): void {
    this.sizeBytes = sizeBytes;
  }

  close(): Promise<void> {
    return done;
  }

  private check(offset: number, length: number, write: boolean): Error | undefined {
    if (write && this.readOnly)
      return Object.assign(new Error('null backstore is read-only'), { code: 'EROFS' });
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.sizeBytes)
      return new RangeError(`null backstore: range ${offset}+${length} outside 0..${this.sizeBytes}`);
    return undefined;
  }
}

export function createNullBackstore(opts: NullBackstoreOptions): NullBackstore {
  return new NullBackstore(opts);
}

/** Same signature shape as openFileBackstore, for the LUN opener. */
export async function openNullBackstore(opts: NullBackstoreOptions): Promise<NullBackstore> {
  return new NullBackstore(opts);
}
