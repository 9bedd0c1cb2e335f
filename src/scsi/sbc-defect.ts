/**
 * READ DEFECT DATA(10) (37h) and (12) (B7h), SBC-3: the medium is a file or a device that remaps its own
 * defects, so both the primary (PLIST) and the grown (GLIST) defect lists are empty. The answer is the header
 * alone, in the format asked for, with PLISTV / GLISTV set for the lists requested (they are valid, and
 * empty).
 */
import { Status } from './constants';
import { invalidFieldInCdb } from './sense';
import type { CommandContext, ScsiResult } from './types';

const REQ_PLIST = 0x10;
const REQ_GLIST = 0x08;
const FORMAT = 0x07;
/** 110b is vendor specific (nothing of ours), 111b reserved; 000b-101b are the standard address formats. */
const LAST_STANDARD_FORMAT = 0x05;

function header(flags: number, lengthBytes: 2 | 4, alloc: number): ScsiResult {
  const data = Buffer.alloc(lengthBytes === 2 ? 4 : 8);
  data[1] = flags & (REQ_PLIST | REQ_GLIST | FORMAT); // PLISTV, GLISTV, DEFECT LIST FORMAT
  // DEFECT LIST LENGTH (bytes 2-3 for (10), 4-7 for (12)) is 0; the (12) GENERATION CODE 0: not tracked.
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}

function checkFormat(flags: number, byte: number): void {
  if ((flags & FORMAT) > LAST_STANDARD_FORMAT) throw invalidFieldInCdb(byte, 2);
}

/** Byte 2: REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT; bytes 7-8 ALLOCATION LENGTH. */
export function readDefectData10(ctx: CommandContext): ScsiResult {
  const { cdb } = ctx;
  checkFormat(cdb[2], 2);
  return header(cdb[2], 2, cdb.readUInt16BE(7));
}

/**
 * Byte 1: REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT; bytes 2-5 ADDRESS DESCRIPTOR INDEX (SBC-4; with empty
 * lists every index is past the end, which is not an error: the list returned is empty); 6-9 ALLOCATION
 * LENGTH.
 */
export function readDefectData12(ctx: CommandContext): ScsiResult {
  const { cdb } = ctx;
  checkFormat(cdb[1], 1);
  return header(cdb[1], 4, cdb.readUInt32BE(6));
}
