/**
 * Range copies between backstores (EXTENDED COPY): the order in which a long copy is cut into pieces, and the
 * copy through memory that backstores without a descriptor (memory, null) or pairs the kernel cannot copy
 * between use.
 */
import type { Backstore } from './types';

/** Piece size of a copy through memory: bounds the buffer a copy holds at once. */
const MEMORY_CHUNK = 1024 * 1024;

/**
 * [offset into the range, length] pieces of a copy of `length` bytes, at most `chunk` each, in an order that
 * gives the result of reading everything before writing anything even when source and destination overlap in
 * one store (`sameStore`): back to front when the destination lies after the source, front to back otherwise.
 */
export function copyPieces(
  srcOffset: number,
  dstOffset: number,
  length: number,
  chunk: number,
  sameStore: boolean,
): Array<[number, number]> {
  const pieces: Array<[number, number]> = [];
  for (let at = 0; at < length; at += chunk) pieces.push([at, Math.min(chunk, length - at)]);
  const overlap = sameStore && srcOffset < dstOffset + length && dstOffset < srcOffset + length;
  if (overlap && dstOffset > srcOffset) pieces.reverse();
  return pieces;
}

/** True when the two ranges of one store overlap. */
export function overlaps(srcOffset: number, dstOffset: number, length: number): boolean {
  return srcOffset < dstOffset + length && dstOffset < srcOffset + length;
}

/**
 * Copy by reading into a buffer and writing it out, piece by piece, in the overlap-safe order (each piece is
 * read whole before it is written). Not durable before dst.flush(), like a write without FUA.
 */
export async function copyThroughMemory(
  src: Backstore,
  srcOffset: number,
  dst: Backstore,
  dstOffset: number,
  length: number,
): Promise<void> {
  if (length === 0) return;
  const buf = Buffer.allocUnsafe(Math.min(MEMORY_CHUNK, length));
  for (const [at, n] of copyPieces(srcOffset, dstOffset, length, MEMORY_CHUNK, src === dst)) {
    const view = n === buf.length ? buf : buf.subarray(0, n);
    await src.read(srcOffset + at, view);
    await dst.write(dstOffset + at, [view], false);
  }
}
