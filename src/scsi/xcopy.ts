/**
 * Third-party copy within one target (SPC-4): EXTENDED COPY (LID1), RECEIVE COPY RESULTS (COPY STATUS,
 * OPERATING PARAMETERS, FAILED SEGMENT DETAILS) and the Third-party Copy VPD page (8Fh). This is what
 * VMware's clone offload (VAAI XCOPY) and libiscsi use: identification descriptor CSCDs (E4h) naming LUs of
 * this target by the NAA designator of VPD 83h, and block -> block segment descriptors (02h).
 *
 * The data moves through the backstores' copyFrom (copy_file_range between file LUs), in pieces, each under
 * the destination LU's range guard like any plain write; nothing here touches descriptors.
 */
import { copyThroughMemory, copyPieces } from '../backstore/copy';
import { AscQ, SenseKey, Status, type Asc } from './constants';
import type { HeldCopy } from './copy-results';
import type { LogicalUnit } from './lu';
import { GOOD, ioError, requireWritable } from './sbc';
import { ScsiError, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError } from './sense';
import type { CommandContext, ScsiResult } from './types';

// ---- what the copy manager offers (OPERATING PARAMETERS, VPD 8Fh) -----------------------------------

export const MAX_CSCD_DESCRIPTORS = 8;
export const MAX_SEGMENT_DESCRIPTORS = 8;
export const HEADER_LENGTH = 16;
const CSCD_LENGTH = 32;
const B2B_LENGTH = 28;
/** Room for every descriptor we accept at once. */
export const MAX_DESCRIPTOR_LIST_LENGTH =
  MAX_CSCD_DESCRIPTORS * CSCD_LENGTH + MAX_SEGMENT_DESCRIPTORS * B2B_LENGTH;
/** No segment descriptor we implement uses inline data. */
export const MAX_INLINE_DATA_LENGTH = 0;
const CSCD_IDENTIFICATION = 0xe4;
const SEGMENT_BLOCK_TO_BLOCK = 0x02;
const SUPPORTED_DESCRIPTORS = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
/** Copies in flight at once per copy manager that we claim to track (per I_T nexus list identifiers). */
const MAX_CONCURRENT_COPIES = 16;
/** Bytes moved per step under the destination's range guard: bounds how long an atomic command waits. */
const PIECE_BYTES = 8 * 1024 * 1024;

const DESIGNATOR_NAA = 0x3;
const ASSOC_LU = 0;
const DEVICE_TYPE_BLOCK = 0x00;

/** MAXIMUM SEGMENT LENGTH: a block -> block descriptor's NUMBER OF BLOCKS field is 16 bits. */
function maxSegmentBytes(lu: LogicalUnit): number {
  return 0xffff * lu.blockSize;
}

// ---- parsing ----------------------------------------------------------------------------------------

export interface Segment {
  /** Indexes into the CSCD list. */
  src: number;
  dst: number;
  srcLba: number;
  dstLba: number;
  /** Bytes to copy (NUMBER OF BLOCKS in the block size DC names). */
  bytes: number;
  /** Offset of the descriptor in the parameter list (for field pointers). */
  at: number;
}

export interface CopyPlan {
  listId: number;
  /** LIST ID USAGE: 00b hold results, 10b do not hold, 11b no list identifier. */
  usage: number;
  targets: LogicalUnit[];
  segments: Segment[];
}

/** The copy manager's refusals of a segment: COPY ABORTED with the segment number and a pointer into the list. */
function copyAborted(asc: Asc, segment: number, byte: number): ScsiError {
  return new ScsiError(SenseKey.COPY_ABORTED, asc, { commandSpecific: segment, field: { cdb: false, byte } });
}

function illegal(asc: Asc, byte: number): ScsiError {
  return new ScsiError(SenseKey.ILLEGAL_REQUEST, asc, { field: { cdb: false, byte } });
}

function readU64(b: Buffer, at: number): number {
  const v = b.readBigUInt64BE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

/**
 * Parse and check an EXTENDED COPY (LID1) parameter list. `lookup` finds an LU of this target by its NAA
 * designator. Throws the ScsiError the command ends with (after lu.badRequest for a malformed request).
 */
export function parseCopyParameters(
  list: Buffer,
  lu: LogicalUnit,
  lookup: (naa: Buffer) => LogicalUnit | undefined,
): CopyPlan {
  const bad = (what: string, err: ScsiError, detail: Record<string, unknown> = {}): ScsiError => {
    lu.badRequest(`EXTENDED COPY: ${what}`, detail);
    return err;
  };
  if (list.length < HEADER_LENGTH)
    throw bad('parameter list shorter than its header', parameterListLengthError());
  const listId = list[0];
  const usage = (list[1] >> 3) & 3;
  if ((list[1] & 0xc0) !== 0) throw bad('reserved header bits', invalidFieldInParameterList(1, 7));
  if (usage === 1) throw bad('LIST ID USAGE 01b', invalidFieldInParameterList(1, 4));
  if (usage === 3 && listId !== 0)
    throw bad('list identifier with LIST ID USAGE 11b', invalidFieldInParameterList(0));
  const cscdLength = list.readUInt16BE(2);
  const segLength = list.readUInt32BE(8);
  const inlineLength = list.readUInt32BE(12);
  if (cscdLength + segLength > MAX_DESCRIPTOR_LIST_LENGTH)
    throw bad('descriptor lists longer than the maximum', parameterListLengthError(), {
      cscdLength,
      segLength,
    });
  if (inlineLength > MAX_INLINE_DATA_LENGTH)
    throw bad('inline data', illegal(AscQ.INLINE_DATA_LENGTH_EXCEEDED, 12), { inlineLength });
  const end = HEADER_LENGTH + cscdLength + segLength;
  if (end > list.length)
    throw bad('descriptor lists past the end of the parameter list', parameterListLengthError(), {
      needed: end,
      got: list.length,
    });

  const targets: LogicalUnit[] = [];
  const cscdEnd = HEADER_LENGTH + cscdLength;
  for (let at = HEADER_LENGTH; at < cscdEnd; at += CSCD_LENGTH) {
    if (targets.length === MAX_CSCD_DESCRIPTORS)
      throw bad('too many CSCD descriptors', illegal(AscQ.TOO_MANY_TARGET_DESCRIPTORS, at));
    const type = list[at];
    if (type !== CSCD_IDENTIFICATION)
      throw bad('unsupported CSCD descriptor', illegal(AscQ.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, at), {
        type,
      });
    if (at + CSCD_LENGTH > cscdEnd) throw bad('truncated CSCD descriptor', invalidFieldInParameterList(2));
    targets.push(identificationTarget(list, at, lookup, bad));
  }

  const segments: Segment[] = [];
  for (let at = cscdEnd; at < end;) {
    if (segments.length === MAX_SEGMENT_DESCRIPTORS)
      throw bad('too many segment descriptors', illegal(AscQ.TOO_MANY_SEGMENT_DESCRIPTORS, at));
    const type = list[at];
    if (type !== SEGMENT_BLOCK_TO_BLOCK)
      throw bad(
        'unsupported segment descriptor',
        illegal(AscQ.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, at),
        {
          type,
        },
      );
    if (at + 4 > end || list.readUInt16BE(at + 2) !== B2B_LENGTH - 4)
      throw bad('block -> block descriptor length', invalidFieldInParameterList(at + 2));
    if (at + B2B_LENGTH > end) throw parameterListLengthError();
    segments.push(blockToBlock(list, at, segments.length, targets, bad));
    at += B2B_LENGTH;
  }
  return { listId, usage, targets, segments };
}

function identificationTarget(
  list: Buffer,
  at: number,
  lookup: (naa: Buffer) => LogicalUnit | undefined,
  bad: (what: string, err: ScsiError, detail?: Record<string, unknown>) => ScsiError,
): LogicalUnit {
  // Byte 1: LU ID TYPE (ignored by SPC-4), NUL (obsolete: a null device is not offered), device type.
  if ((list[at + 1] & 0x20) !== 0) throw bad('NUL bit', invalidFieldInParameterList(at + 1, 5));
  const deviceType = list[at + 1] & 0x1f;
  const assoc = (list[at + 5] >> 4) & 3;
  const designatorType = list[at + 5] & 0x0f;
  const len = list[at + 7];
  if (len > 20) throw bad('designator longer than the descriptor', invalidFieldInParameterList(at + 7));
  const value = list.subarray(at + 8, at + 8 + len);
  const target = designatorType === DESIGNATOR_NAA && assoc === ASSOC_LU ? lookup(value) : undefined;
  if (target === undefined)
    throw bad(
      'CSCD names no LU of this target',
      copyAborted(AscQ.COPY_TARGET_DEVICE_NOT_REACHABLE, 0, at + 4),
      {
        designatorType,
        designator: value.toString('hex'),
      },
    );
  if (deviceType !== DEVICE_TYPE_BLOCK)
    throw bad('CSCD device type', copyAborted(AscQ.INCORRECT_COPY_TARGET_DEVICE_TYPE, 0, at + 1), {
      deviceType,
    });
  const blockLength = list.readUIntBE(at + 29, 3);
  if (blockLength !== target.blockSize)
    throw bad('CSCD DISK BLOCK LENGTH', invalidFieldInParameterList(at + 29), {
      blockLength,
      blockSize: target.blockSize,
    });
  return target;
}

function blockToBlock(
  list: Buffer,
  at: number,
  number: number,
  targets: readonly LogicalUnit[],
  bad: (what: string, err: ScsiError, detail?: Record<string, unknown>) => ScsiError,
): Segment {
  const src = list.readUInt16BE(at + 4);
  const dst = list.readUInt16BE(at + 6);
  if (src >= targets.length)
    throw bad('source CSCD index', copyAborted(AscQ.COPY_TARGET_DEVICE_NOT_REACHABLE, number, at + 4), {
      src,
    });
  if (dst >= targets.length)
    throw bad('destination CSCD index', copyAborted(AscQ.COPY_TARGET_DEVICE_NOT_REACHABLE, number, at + 6), {
      dst,
    });
  const dc = (list[at + 1] & 0x02) !== 0;
  const blocks = list.readUInt16BE(at + 10);
  const srcBs = targets[src].blockSize;
  const dstBs = targets[dst].blockSize;
  const bytes = blocks * (dc ? dstBs : srcBs);
  if (bytes % srcBs !== 0 || bytes % dstBs !== 0)
    throw bad(
      'segment not a whole number of blocks of both LUs',
      illegal(AscQ.UNEXPECTED_INEXACT_SEGMENT, at + 10),
    );
  return { src, dst, srcLba: readU64(list, at + 12), dstLba: readU64(list, at + 20), bytes, at };
}

/**
 * Range and write-protect checks of every segment before any data moves. A range past either LU's end is a
 * COPY ABORTED naming the segment and pointing at its LBA field (the copy target would have answered LBA OUT
 * OF RANGE; libiscsi and SPC expect the copy manager to report it as an aborted copy).
 */
export function checkSegments(plan: CopyPlan, ctx: Pick<CommandContext, 'nexusReadOnly'>): void {
  plan.segments.forEach((s, i) => {
    const src = plan.targets[s.src];
    const dst = plan.targets[s.dst];
    if (s.srcLba + s.bytes / src.blockSize > src.numBlocks)
      throw copyAborted(AscQ.NO_ADDITIONAL_SENSE, i, s.at + 12);
    if (s.dstLba + s.bytes / dst.blockSize > dst.numBlocks)
      throw copyAborted(AscQ.NO_ADDITIONAL_SENSE, i, s.at + 20);
  });
  for (const s of plan.segments) if (s.bytes > 0) requireWritable(ctx, plan.targets[s.dst]);
}

// ---- EXTENDED COPY -------------------------------------------------------------------------------------

export function extendedCopyDataOutLength(cdb: Buffer): number {
  return cdb.readUInt32BE(10);
}

/** On arrival: a parameter list longer than anything we accept is refused before its data is solicited. */
export function extendedCopyPrecheck(cdb: Buffer): void {
  if (extendedCopyDataOutLength(cdb) > HEADER_LENGTH + MAX_DESCRIPTOR_LIST_LENGTH + MAX_INLINE_DATA_LENGTH)
    throw parameterListLengthError();
}

export async function extendedCopy(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const length = extendedCopyDataOutLength(cdb);
  if (length === 0) return GOOD;
  try {
    extendedCopyPrecheck(cdb);
  } catch (e) {
    lu.badRequest('EXTENDED COPY: parameter list too long', { length });
    throw e;
  }
  const got = task.dataOut.reduce((n, b) => n + b.length, 0);
  if (got < length) throw parameterListLengthError();
  const list = Buffer.concat(task.dataOut as Buffer[], length);
  const plan = parseCopyParameters(list, lu, (naa) => ctx.luByNaa(naa));
  const held = lu.copyResults;
  const epoch = task.epoch ?? lu.shared.resetEpoch;
  if (plan.usage !== 3) {
    const prior = held.get(task.nexus, plan.listId, epoch);
    if (prior?.running) throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.OPERATION_IN_PROGRESS);
  }
  const entry = held.start(task.nexus, plan.usage === 3 ? -1 : plan.listId, epoch, plan.usage === 0);
  try {
    checkSegments(plan, ctx);
    for (const s of plan.segments) {
      if (lu.shared.resetEpoch !== epoch) break; // the dispatcher answers TASK ABORTED
      await copySegment(plan.targets[s.src], s.srcLba, plan.targets[s.dst], s.dstLba, s.bytes, entry);
      entry.segmentsProcessed++;
    }
  } catch (e) {
    entry.failed = true;
    if (e instanceof ScsiError) entry.failure = e.sense();
    throw e;
  } finally {
    held.finish(task.nexus, plan.usage === 3 ? -1 : plan.listId, entry);
  }
  return GOOD;
}

async function copySegment(
  src: LogicalUnit,
  srcLba: number,
  dst: LogicalUnit,
  dstLba: number,
  bytes: number,
  entry: HeldCopy,
): Promise<void> {
  const from = srcLba * src.blockSize;
  const to = dstLba * dst.blockSize;
  const same = src.backstore === dst.backstore;
  for (const [at, n] of copyPieces(from, to, bytes, PIECE_BYTES, same)) {
    try {
      await dst.shared.guardWrite(to + at, n, () =>
        dst.backstore.copyFrom
          ? dst.backstore.copyFrom(src.backstore, from + at, to + at, n)
          : copyThroughMemory(src.backstore, from + at, dst.backstore, to + at, n),
      );
    } catch (e) {
      throw ioError(dst, 'write', e, dstLba + at / dst.blockSize);
    }
    entry.bytesCopied += n;
  }
}

// ---- RECEIVE COPY RESULTS ------------------------------------------------------------------------------

function clip(data: Buffer, alloc: number): ScsiResult {
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}

export function operatingParameters(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const codes = SUPPORTED_DESCRIPTORS;
  const d = Buffer.alloc(44 + codes.length);
  d.writeUInt32BE(d.length - 4, 0);
  d[4] = 0x01; // SNLID: list identifiers are tracked per I_T nexus
  d.writeUInt16BE(MAX_CSCD_DESCRIPTORS, 8);
  d.writeUInt16BE(MAX_SEGMENT_DESCRIPTORS, 10);
  d.writeUInt32BE(MAX_DESCRIPTOR_LIST_LENGTH, 12);
  d.writeUInt32BE(maxSegmentBytes(lu), 16);
  d.writeUInt32BE(MAX_INLINE_DATA_LENGTH, 20);
  d.writeUInt32BE(0, 24); // HELD DATA LIMIT: no held data (RECEIVE DATA not offered)
  d.writeUInt32BE(0, 28); // MAXIMUM STREAM DEVICE TRANSFER SIZE: no stream devices
  d.writeUInt16BE(MAX_CONCURRENT_COPIES, 34);
  d[36] = MAX_CONCURRENT_COPIES;
  d[37] = Math.log2(lu.blockSize); // DATA SEGMENT GRANULARITY (log2 bytes)
  d[38] = 0;
  d[39] = 0;
  d[43] = codes.length;
  Buffer.from(codes).copy(d, 44);
  return clip(d, cdb.readUInt32BE(10));
}

export function copyStatus(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  const listId = cdb[2];
  const held = lu.copyResults;
  const e = held.get(task.nexus, listId, lu.shared.resetEpoch);
  if (e === undefined || e.statusTaken) throw invalidFieldInCdb(2);
  const d = Buffer.alloc(12);
  d.writeUInt32BE(8, 0);
  d[4] = e.running ? 0x00 : e.failed ? 0x02 : 0x01;
  d.writeUInt16BE(Math.min(0xffff, e.segmentsProcessed), 5);
  let units = 0;
  let count = e.bytesCopied;
  while (count > 0xffffffff) {
    count = Math.ceil(count / 1024);
    units++;
  }
  d[7] = units; // TRANSFER COUNT UNITS: 00h bytes, 01h KiB, 02h MiB, ...
  d.writeUInt32BE(count, 8);
  if (!e.running) {
    // Reported once: then discarded, except failure details not yet fetched.
    e.statusTaken = true;
    if (e.failure === null) held.discard(task.nexus, listId, e);
  }
  return clip(d, cdb.readUInt32BE(10));
}

export function failedSegmentDetails(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  const listId = cdb[2];
  const alloc = cdb.readUInt32BE(10);
  const held = lu.copyResults;
  const e = held.get(task.nexus, listId, lu.shared.resetEpoch);
  if (e === undefined || e.running || e.failure === null) return clip(Buffer.alloc(4), alloc);
  const sense = e.failure;
  const d = Buffer.alloc(60 + sense.length);
  d.writeUInt32BE(d.length - 4, 0);
  d[56] = Status.CHECK_CONDITION;
  d.writeUInt16BE(sense.length, 58);
  sense.copy(d, 60);
  // Discarded once all of it went out, or when asked with ALLOCATION LENGTH 0.
  if (alloc === 0 || alloc >= d.length) {
    e.failure = null;
    if (e.statusTaken) held.discard(task.nexus, listId, e);
  }
  return clip(d, alloc);
}

// ---- Third-party Copy VPD page (8Fh) --------------------------------------------------------------------

function tpcDescriptor(type: number, body: Buffer): Buffer {
  const padded = Buffer.alloc(4 + Math.ceil(body.length / 4) * 4);
  padded.writeUInt16BE(type, 0);
  padded.writeUInt16BE(padded.length - 4, 2);
  body.copy(padded, 4);
  return padded;
}

/** Third-party copy descriptors of VPD 8Fh: Supported Commands, Parameter Data, Supported Descriptors, General. */
export function thirdPartyCopyDescriptors(lu: LogicalUnit): Buffer {
  const commands = Buffer.from([
    0x83,
    1,
    0x00, // EXTENDED COPY (LID1)
    0x84,
    3,
    0x00,
    0x03,
    0x04, // RECEIVE COPY RESULTS: COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT DETAILS
  ]);
  const supportedCommands = Buffer.concat([Buffer.from([commands.length]), commands]);
  const params = Buffer.alloc(28);
  params.writeUInt16BE(MAX_CSCD_DESCRIPTORS, 4);
  params.writeUInt16BE(MAX_SEGMENT_DESCRIPTORS, 6);
  params.writeUInt32BE(MAX_DESCRIPTOR_LIST_LENGTH, 8);
  params.writeUInt32BE(MAX_INLINE_DATA_LENGTH, 12);
  const descriptors = Buffer.from([SUPPORTED_DESCRIPTORS.length, ...SUPPORTED_DESCRIPTORS]);
  const general = Buffer.alloc(32);
  general.writeUInt32BE(MAX_CONCURRENT_COPIES, 0); // TOTAL CONCURRENT COPIES
  general.writeUInt32BE(MAX_CONCURRENT_COPIES, 4); // MAXIMUM IDENTIFIED CONCURRENT COPIES
  general.writeUInt32BE(maxSegmentBytes(lu), 8);
  general[12] = Math.log2(lu.blockSize); // DATA SEGMENT GRANULARITY
  general[13] = 0; // INLINE DATA GRANULARITY
  return Buffer.concat([
    tpcDescriptor(0x0001, supportedCommands),
    tpcDescriptor(0x0008, params),
    tpcDescriptor(0x0004, descriptors),
    tpcDescriptor(0x8001, general),
  ]);
}
