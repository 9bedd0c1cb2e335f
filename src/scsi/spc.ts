/**
 * SPC-4 primary commands other than INQUIRY and MODE: TEST UNIT READY, REQUEST SENSE, REPORT LUNS,
 * REPORT SUPPORTED OPERATION CODES. START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL are in medium.ts.
 */
import { AscQ, SenseKey, Status } from './constants';
import type { LogicalUnit } from './lu';
import { encodeLun } from './lun';
import { sanitizeSense } from './sanitize';
import { descriptorSense, fixedSense, invalidFieldInCdb } from './sense';
import type { CommandContext, CommandSpec, ScsiResult } from './types';

const GOOD: ScsiResult = Object.freeze({ status: Status.GOOD });

/** GOOD with the data cut to the allocation length. */
export function clip(data: Buffer, alloc: number): ScsiResult {
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}

export function testUnitReady(): ScsiResult {
  return GOOD;
}

/**
 * Sense is always delivered with the status (autosense), so REQUEST SENSE reports a pending unit attention
 * (consuming it), else the NOT READY condition of a removable LU without its medium, else NO SENSE.
 */
export function requestSense(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  const desc = (cdb[1] & 0x01) !== 0;
  const ua = lu.takeUnitAttention(task.nexus);
  if (!ua) {
    // A sanitize running (with its progress) or failed is what the device server has to report.
    const s = sanitizeSense(lu);
    if (s) return clip(desc ? descriptorSense(s.key, s.asc) : s.sense(), cdb[4]);
  }
  const absent = !ua && !lu.mediumPresent;
  const key = ua ? SenseKey.UNIT_ATTENTION : absent ? SenseKey.NOT_READY : SenseKey.NO_SENSE;
  const asc = ua ?? (absent ? AscQ.MEDIUM_NOT_PRESENT : AscQ.NO_ADDITIONAL_SENSE);
  return clip(desc ? descriptorSense(key, asc) : fixedSense(key, asc), cdb[4]);
}

/** REQUEST SENSE addressed to a LUN without a logical unit (answered with LOGICAL UNIT NOT SUPPORTED as sense data). */
export function requestSenseAbsentLun(cdb: Buffer): ScsiResult {
  const desc = (cdb[1] & 0x01) !== 0;
  const key = SenseKey.ILLEGAL_REQUEST;
  const asc = AscQ.LOGICAL_UNIT_NOT_SUPPORTED;
  return clip(desc ? descriptorSense(key, asc) : fixedSense(key, asc), cdb[4]);
}

/** REPORT LUNS; works on any LUN, present or not. */
export function reportLuns(cdb: Buffer, luns: readonly number[]): ScsiResult {
  const select = cdb[2];
  const alloc = cdb.readUInt32BE(6);
  if (alloc < 16) throw invalidFieldInCdb(6, 7);
  let list: number[];
  if (select === 0x00 || select === 0x02) list = [...luns].sort((a, b) => a - b);
  else if (select === 0x01)
    list = []; // no well-known logical units
  else throw invalidFieldInCdb(2, 7);
  const data = Buffer.alloc(8 + 8 * list.length);
  data.writeUInt32BE(8 * list.length, 0);
  list.forEach((n, i) => encodeLun(n).copy(data, 8 + 8 * i));
  return clip(data, alloc);
}

// ---- REPORT SUPPORTED OPERATION CODES -------------------------------------------------------

const NOMINAL_TIMEOUT = 0; // not specified
const DEFAULT_TIMEOUT = 30;

function timeoutsDescriptor(spec: CommandSpec): Buffer {
  const d = Buffer.alloc(12);
  d.writeUInt16BE(0x0a, 0);
  d.writeUInt32BE(NOMINAL_TIMEOUT, 4);
  d.writeUInt32BE(spec.timeoutSeconds ?? DEFAULT_TIMEOUT, 8);
  return d;
}

/** Commands this logical unit offers, in opcode / service action order. */
export function offeredCommands(commands: readonly CommandSpec[], lu: LogicalUnit): CommandSpec[] {
  return commands
    .filter((c) => c.available?.(lu) ?? true)
    .sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
}

function hasServiceActions(commands: readonly CommandSpec[], opcode: number): boolean {
  return commands.some((c) => c.opcode === opcode && c.serviceAction !== undefined);
}

export function reportSupportedOperationCodes(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const rctd = (cdb[2] & 0x80) !== 0;
  const options = cdb[2] & 0x07;
  const opcode = cdb[3];
  const sa = cdb.readUInt16BE(4);
  const alloc = cdb.readUInt32BE(6);
  const offered = offeredCommands(ctx.commands, lu);

  if (options === 0) {
    const parts: Buffer[] = [Buffer.alloc(4)];
    for (const c of offered) {
      const d = Buffer.alloc(8);
      d[0] = c.opcode;
      d.writeUInt16BE(c.serviceAction ?? 0, 2);
      d[5] = (rctd ? 0x02 : 0) | (c.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
      d.writeUInt16BE(c.cdbLength, 6);
      parts.push(d);
      if (rctd) parts.push(timeoutsDescriptor(c));
    }
    const data = Buffer.concat(parts);
    data.writeUInt32BE(data.length - 4, 0);
    return clip(data, alloc);
  }

  // One command. 001b: by opcode, which must not have service actions; 010b: by opcode and service action,
  // which must have them; 011b: either (SPC-4 r37).
  const withSa = hasServiceActions(ctx.commands, opcode);
  let spec: CommandSpec | undefined;
  if (options === 1) {
    if (withSa) throw invalidFieldInCdb(2, 2);
    spec = offered.find((c) => c.opcode === opcode);
  } else if (options === 2) {
    if (!withSa) throw invalidFieldInCdb(2, 2);
    spec = offered.find((c) => c.opcode === opcode && c.serviceAction === sa);
  } else if (options === 3) {
    spec = offered.find((c) => c.opcode === opcode && (withSa ? c.serviceAction === sa : true));
  } else {
    throw invalidFieldInCdb(2, 2);
  }
  if (!spec) {
    const data = Buffer.alloc(4);
    data[1] = 0x01; // SUPPORT 001b: not supported
    return clip(data, alloc);
  }
  const usage = spec.usage(lu);
  const head = Buffer.alloc(4);
  head[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT 011b: supported as the standard says
  head.writeUInt16BE(usage.length, 2);
  const parts: Buffer[] = [head, Buffer.from(usage)];
  if (rctd) parts.push(timeoutsDescriptor(spec));
  return clip(Buffer.concat(parts), alloc);
}
