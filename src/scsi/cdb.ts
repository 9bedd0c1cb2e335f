/**
 * CDB field decoding shared by the block commands, and helpers over Data-Out slice lists.
 *
 * LBAs are plain numbers: a 64-bit LBA at or above 2^53 cannot be exact as a double, but every such value
 * is far beyond any capacity this target serves, so range checks stay correct without BigInt.
 */
import { lbaOutOfRange } from './sense';

/** CDB length implied by the operation code's group; 0 for variable / vendor groups. */
export function cdbLengthOf(opcode: number): number {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 0;
  }
}

/** 64-bit big-endian unsigned at `off` as a number (exact below 2^53). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * 0x1_0000_0000 + buf.readUInt32BE(off + 4);
}

export function writeU64(buf: Buffer, value: number, off: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), off);
  buf.writeUInt32BE(value % 0x1_0000_0000, off + 4);
}

/** LBA, block count and where the count sits, for the READ/WRITE/VERIFY/PRE-FETCH/SYNC families. */
export interface BlockRange {
  lba: number;
  blocks: number;
  /** Byte offset of the transfer/verification length field (for field pointers). */
  lengthByte: number;
}

/**
 * Decode LBA and length from a 6/10/12/16-byte block command laid out the standard way:
 * 6: LBA bytes 1-3 (21 bits), length byte 4; 10: LBA 2-5, length 7-8; 12: LBA 2-5, length 6-9;
 * 16: LBA 2-9, length 10-13.
 */
export function decodeBlockRange(cdb: Buffer): BlockRange {
  switch (cdbLengthOf(cdb[0])) {
    case 6:
      // READ(6)/WRITE(6): a TRANSFER LENGTH of 0 means 256 blocks.
      return { lba: ((cdb[1] & 0x1f) << 16) | (cdb[2] << 8) | cdb[3], blocks: cdb[4] || 256, lengthByte: 4 };
    case 10:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt16BE(7), lengthByte: 7 };
    case 12:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt32BE(6), lengthByte: 6 };
    default:
      return { lba: readU64(cdb, 2), blocks: cdb.readUInt32BE(10), lengthByte: 10 };
  }
}

/**
 * SBC range rule: the first LBA must exist and the range must end within the medium. A zero-length range
 * still needs a valid starting LBA.
 */
export function checkRange(numBlocks: number, lba: number, blocks: number): void {
  if (lba >= numBlocks || lba + blocks > numBlocks) throw lbaOutOfRange();
}

export function totalLength(slices: readonly Buffer[]): number {
  let n = 0;
  for (const s of slices) n += s.length;
  return n;
}

/** The first `n` bytes of a slice list as views of the same memory (never copies). */
export function takeBytes(slices: readonly Buffer[], n: number): readonly Buffer[] {
  if (slices.length === 1 && slices[0].length === n) return slices;
  const out: Buffer[] = [];
  let rem = n;
  for (const s of slices) {
    if (rem <= 0) break;
    if (s.length <= rem) {
      if (s.length > 0) out.push(s);
      rem -= s.length;
    } else {
      out.push(s.subarray(0, rem));
      rem = 0;
    }
  }
  return out;
}

/** Copy the first `n` bytes of a slice list into one buffer (small parameter lists only). */
export function gatherBytes(slices: readonly Buffer[], n: number): Buffer {
  if (slices.length === 1) return slices[0].subarray(0, n);
  return Buffer.concat(takeBytes(slices, n) as Buffer[]);
}

/** Sequential reader over a slice list, handing out views. */
export class SliceCursor {
  private idx = 0;
  private off = 0;

  constructor(private readonly slices: readonly Buffer[]) {}

  /** Next `n` bytes (fewer at the end) as a list of views. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0 && this.idx < this.slices.length) {
      const s = this.slices[this.idx];
      const avail = s.length - this.off;
      const k = Math.min(avail, n);
      if (k > 0) out.push(s.subarray(this.off, this.off + k));
      n -= k;
      this.off += k;
      if (this.off >= s.length) {
        this.idx++;
        this.off = 0;
      }
    }
    return out;
  }
}

/** Index of the first differing byte of two equal-length buffers, or -1 when they are equal. */
export function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}
