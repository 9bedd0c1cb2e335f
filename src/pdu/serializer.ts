// BHS encoders for every opcode (RFC 7143 section 11) and framing into an iovec
// list for socket writev. Encoders return a fresh zeroed 48-byte BHS; frame()
// fills in TotalAHSLength and DataSegmentLength and appends padding and digests
// without copying the data.

import { AhsType, Opcode, RESERVED_TAG } from './opcodes';
import type { PduSealFn } from './digests';
import {
  BHS_LENGTH,
  MAX_AHS_LENGTH,
  MAX_DATA_SEGMENT_LENGTH,
  type AsyncMessage,
  type Crc32cFn,
  type DataIn,
  type DataOut,
  type LoginRequest,
  type LoginResponse,
  type LogoutRequest,
  type LogoutResponse,
  type NopIn,
  type NopOut,
  type R2T,
  type Reject,
  type ScsiCommand,
  type ScsiResponse,
  type SnackRequest,
  type TaskMgmtRequest,
  type TaskMgmtResponse,
  type TextRequest,
  type TextResponse,
} from './pdu';

/** Fields of T, with the keys K optional (they have defaults). */
type WithDefaults<T, K extends keyof T> = Omit<T, K> & Partial<Pick<T, K>>;

export type NopOutFields = WithDefaults<NopOut, 'immediate' | 'lun' | 'ttt'>;
export type ScsiCommandFields = WithDefaults<
  ScsiCommand,
  'immediate' | 'final' | 'read' | 'write' | 'attr' | 'lun' | 'bidiReadLength'
>;
export type TaskMgmtRequestFields = WithDefaults<
  TaskMgmtRequest,
  'immediate' | 'lun' | 'referencedTaskTag' | 'refCmdSN' | 'expDataSN'
>;
export type LoginRequestFields = WithDefaults<LoginRequest, 'versionMax' | 'versionMin' | 'tsih' | 'cid'>;
export type TextRequestFields = WithDefaults<TextRequest, 'immediate' | 'final' | 'continue' | 'lun' | 'ttt'>;
export type DataOutFields = WithDefaults<DataOut, 'final' | 'lun' | 'ttt'>;
export type LogoutRequestFields = WithDefaults<LogoutRequest, 'immediate' | 'cid'>;
export type SnackRequestFields = WithDefaults<SnackRequest, 'lun' | 'ttt' | 'begRun' | 'runLength'>;

export type NopInFields = WithDefaults<NopIn, 'lun' | 'ttt'>;
export type ScsiResponseFields = WithDefaults<
  ScsiResponse,
  | 'bidiReadResidualOverflow'
  | 'bidiReadResidualUnderflow'
  | 'residualOverflow'
  | 'residualUnderflow'
  | 'response'
  | 'snackTag'
  | 'expDataSN'
  | 'bidiReadResidualCount'
  | 'residualCount'
>;
export type TaskMgmtResponseFields = TaskMgmtResponse;
export type LoginResponseFields = WithDefaults<LoginResponse, 'versionMax' | 'versionActive'>;
export type TextResponseFields = WithDefaults<TextResponse, 'final' | 'continue' | 'lun' | 'ttt'>;
export type DataInFields = WithDefaults<
  DataIn,
  | 'final'
  | 'ack'
  | 'residualOverflow'
  | 'residualUnderflow'
  | 'statusPresent'
  | 'status'
  | 'lun'
  | 'ttt'
  | 'statSN'
  | 'residualCount'
>;
export type LogoutResponseFields = WithDefaults<LogoutResponse, 'time2Wait' | 'time2Retain'>;
export type R2TFields = WithDefaults<R2T, 'lun'>;
export type AsyncMessageFields = WithDefaults<
  AsyncMessage,
  'lun' | 'asyncVCode' | 'parameter1' | 'parameter2' | 'parameter3'
>;
export type RejectFields = WithDefaults<Reject, 'dataSN'>;

function newBhs(byte0: number, byte1: number): Buffer {
  // allocUnsafe draws from Node's slab pool; fill(0) keeps reserved fields zero.
  const b = Buffer.allocUnsafe(BHS_LENGTH).fill(0);
  b[0] = byte0;
  b[1] = byte1;
  return b;
}

const imm = (v: boolean | undefined): number => (v === true ? 0x40 : 0);
const bit = (v: boolean | undefined, mask: number): number => (v === true ? mask : 0);

function loginFlags(f: { transit: boolean; continue: boolean; csg: number; nsg: number }): number {
  return bit(f.transit, 0x80) | bit(f.continue, 0x40) | ((f.csg & 3) << 2) | (f.nsg & 3);
}

function writeIsid(b: Buffer, isid: Uint8Array): void {
  if (isid.length !== 6) throw new RangeError(`ISID must be 6 bytes, got ${isid.length}`);
  b.set(isid, 8);
}

// ---------------------------------------------------------------------------
// Target -> initiator

export function encodeNopIn(f: NopInFields): Buffer {
  const b = newBhs(Opcode.NopIn, 0x80);
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  return b;
}

export function encodeScsiResponse(f: ScsiResponseFields): Buffer {
  const flags =
    0x80 |
    bit(f.bidiReadResidualOverflow, 0x10) |
    bit(f.bidiReadResidualUnderflow, 0x08) |
    bit(f.residualOverflow, 0x04) |
    bit(f.residualUnderflow, 0x02);
  const b = newBhs(Opcode.ScsiResponse, flags);
  b[2] = f.response ?? 0;
  b[3] = f.status;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.snackTag ?? 0) >>> 0, 20);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE((f.expDataSN ?? 0) >>> 0, 36);
  b.writeUInt32BE((f.bidiReadResidualCount ?? 0) >>> 0, 40);
  b.writeUInt32BE((f.residualCount ?? 0) >>> 0, 44);
  return b;
}

export function encodeTaskMgmtResponse(f: TaskMgmtResponseFields): Buffer {
  const b = newBhs(Opcode.TaskMgmtResponse, 0x80);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  return b;
}

export function encodeLoginResponse(f: LoginResponseFields): Buffer {
  const b = newBhs(Opcode.LoginResponse, loginFlags(f));
  b[2] = f.versionMax ?? 0;
  b[3] = f.versionActive ?? 0;
  writeIsid(b, f.isid);
  b.writeUInt16BE(f.tsih, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b[36] = f.statusClass;
  b[37] = f.statusDetail;
  return b;
}

export function encodeTextResponse(f: TextResponseFields): Buffer {
  const b = newBhs(Opcode.TextResponse, bit(f.final, 0x80) | bit(f.continue, 0x40));
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  return b;
}

export function encodeDataIn(f: DataInFields): Buffer {
  const flags =
    bit(f.final, 0x80) |
    bit(f.ack, 0x40) |
    bit(f.residualOverflow, 0x04) |
    bit(f.residualUnderflow, 0x02) |
    bit(f.statusPresent, 0x01);
  const b = newBhs(Opcode.DataIn, flags);
  b[3] = f.status ?? 0;
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE((f.statSN ?? 0) >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE((f.residualCount ?? 0) >>> 0, 44);
  return b;
}

export function encodeLogoutResponse(f: LogoutResponseFields): Buffer {
  const b = newBhs(Opcode.LogoutResponse, 0x80);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt16BE(f.time2Wait ?? 0, 40);
  b.writeUInt16BE(f.time2Retain ?? 0, 42);
  return b;
}

export function encodeR2T(f: R2TFields): Buffer {
  const b = newBhs(Opcode.R2T, 0x80);
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE(f.r2tSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.desiredDataTransferLength >>> 0, 44);
  return b;
}

export function encodeAsyncMessage(f: AsyncMessageFields): Buffer {
  const b = newBhs(Opcode.AsyncMessage, 0x80);
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(RESERVED_TAG, 16);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b[36] = f.asyncEvent;
  b[37] = f.asyncVCode ?? 0;
  b.writeUInt16BE(f.parameter1 ?? 0, 38);
  b.writeUInt16BE(f.parameter2 ?? 0, 40);
  b.writeUInt16BE(f.parameter3 ?? 0, 42);
  return b;
}

/**
 * A copy of a target PDU's header for retransmission (RFC 7143 11.16: an exact replica but for ExpCmdSN and
 * MaxCmdSN, which carry the current values); `snackTag` rewrites a SCSI Response's SNACK Tag (R-Data SNACK).
 */
export function replicaBhs(bhs: Buffer, expCmdSN: number, maxCmdSN: number, snackTag?: number): Buffer {
  const b = Buffer.from(bhs);
  b.writeUInt32BE(expCmdSN >>> 0, 28);
  b.writeUInt32BE(maxCmdSN >>> 0, 32);
  if (snackTag !== undefined && (b[0]! & 0x3f) === Opcode.ScsiResponse) b.writeUInt32BE(snackTag >>> 0, 20);
  return b;
}

/** The data segment of a Reject is the offending PDU's BHS: pass it to frame(). */
export function encodeReject(f: RejectFields): Buffer {
  const b = newBhs(Opcode.Reject, 0x80);
  b[2] = f.reason;
  b.writeUInt32BE(RESERVED_TAG, 16);
  b.writeUInt32BE(f.statSN >>> 0, 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, 32);
  b.writeUInt32BE((f.dataSN ?? 0) >>> 0, 36);
  return b;
}

// ---------------------------------------------------------------------------
// Initiator -> target (used by the test initiator)

export function encodeNopOut(f: NopOutFields): Buffer {
  const b = newBhs(Opcode.NopOut | imm(f.immediate), 0x80);
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

/** CDB bytes past the first 16 go in an AHS: see scsiCommandAhs(). */
export function encodeScsiCommand(f: ScsiCommandFields): Buffer {
  const flags = bit(f.final ?? true, 0x80) | bit(f.read, 0x40) | bit(f.write, 0x20) | ((f.attr ?? 1) & 0x07);
  const b = newBhs(Opcode.ScsiCommand | imm(f.immediate), flags);
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.expectedDataTransferLength >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.set(f.cdb.subarray(0, 16), 32);
  return b;
}

/**
 * The AHS a SCSI Command needs: an Extended CDB AHS when the CDB is longer than
 * 16 bytes, a Bidirectional Read Expected Data Transfer Length AHS when
 * bidiReadLength is set. Null when neither applies. Pass the result to frame().
 */
export function scsiCommandAhs(f: { cdb: Uint8Array; bidiReadLength?: number | null }): Buffer | null {
  const ext = f.cdb.length > 16 ? f.cdb.length - 16 : 0;
  const bidi = f.bidiReadLength !== undefined && f.bidiReadLength !== null;
  if (ext === 0 && !bidi) return null;
  const extLen = ext > 0 ? (3 + 1 + ext + 3) & ~3 : 0;
  const out = Buffer.alloc(extLen + (bidi ? 8 : 0));
  if (ext > 0) {
    out.writeUInt16BE(ext + 1, 0);
    out[2] = AhsType.ExtendedCdb;
    out.set(f.cdb.subarray(16), 4);
  }
  if (bidi) {
    out.writeUInt16BE(5, extLen);
    out[extLen + 2] = AhsType.BidiReadLength;
    out.writeUInt32BE(f.bidiReadLength! >>> 0, extLen + 4);
  }
  return out;
}

export function encodeTaskMgmtRequest(f: TaskMgmtRequestFields): Buffer {
  const b = newBhs(Opcode.TaskMgmtRequest | imm(f.immediate), 0x80 | (f.function & 0x7f));
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.referencedTaskTag ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE((f.refCmdSN ?? 0) >>> 0, 32);
  b.writeUInt32BE((f.expDataSN ?? 0) >>> 0, 36);
  return b;
}

/** Login Requests always carry the I bit (RFC 7143 11.12). */
export function encodeLoginRequest(f: LoginRequestFields): Buffer {
  const b = newBhs(Opcode.LoginRequest | 0x40, loginFlags(f));
  b[2] = f.versionMax ?? 0;
  b[3] = f.versionMin ?? 0;
  writeIsid(b, f.isid);
  b.writeUInt16BE(f.tsih ?? 0, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt16BE(f.cid ?? 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function encodeTextRequest(f: TextRequestFields): Buffer {
  const b = newBhs(Opcode.TextRequest | imm(f.immediate), bit(f.final ?? true, 0x80) | bit(f.continue, 0x40));
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function encodeDataOut(f: DataOutFields): Buffer {
  const b = newBhs(Opcode.DataOut, bit(f.final, 0x80));
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE(f.dataSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  return b;
}

export function encodeLogoutRequest(f: LogoutRequestFields): Buffer {
  const b = newBhs(Opcode.LogoutRequest | imm(f.immediate), 0x80 | (f.reasonCode & 0x7f));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt16BE(f.cid ?? 0, 20);
  b.writeUInt32BE(f.cmdSN >>> 0, 24);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  return b;
}

export function encodeSnackRequest(f: SnackRequestFields): Buffer {
  const b = newBhs(Opcode.Snack, 0x80 | (f.type & 0x0f));
  b.writeBigUInt64BE(f.lun ?? 0n, 8);
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE((f.ttt ?? RESERVED_TAG) >>> 0, 20);
  b.writeUInt32BE(f.expStatSN >>> 0, 28);
  b.writeUInt32BE((f.begRun ?? 0) >>> 0, 40);
  b.writeUInt32BE((f.runLength ?? 0) >>> 0, 44);
  return b;
}

// ---------------------------------------------------------------------------
// Sense data

/** The 2-byte SenseLength that precedes sense data in a SCSI Response data segment. */
export function senseLengthPrefix(senseLength: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(senseLength, 0);
  return b;
}

/** SenseLength + sense (+ optional response data) as one buffer; sense data is small. */
export function encodeSenseSegment(sense: Uint8Array, responseData?: Uint8Array): Buffer {
  const rl = responseData?.length ?? 0;
  const b = Buffer.allocUnsafe(2 + sense.length + rl);
  b.writeUInt16BE(sense.length, 0);
  b.set(sense, 2);
  if (responseData !== undefined) b.set(responseData, 2 + sense.length);
  return b;
}

// ---------------------------------------------------------------------------
// Framing

export interface FrameOptions {
  headerDigest: boolean;
  dataDigest: boolean;
  /** Required when either digest is on. */
  crc32c?: Crc32cFn;
  /**
   * Both digests of a PDU in one call (digests.ts): the header digest then goes out in one buffer with a copy
   * of the BHS, and the data digest with the padding, so digests add one writev entry at most.
   */
  seal?: PduSealFn;
}

// Shared, never written: padding for writev.
const PAD = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)] as const;

function digestBuffer(crc: number): Buffer {
  // The digest goes on the wire least significant byte first (RFC 7143 B.4 examples).
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(crc >>> 0, 0);
  return b;
}

/**
 * Complete a PDU for writev: writes TotalAHSLength and DataSegmentLength into
 * `bhs` and returns [bhs, ahs?, headerDigest?, ...data, pad?, dataDigest?].
 * Data buffers are passed through, never copied.
 * @throws RangeError on an AHS not a multiple of 4 or too long, or data over 2^24-1 bytes.
 */
export function frame(
  bhs: Buffer,
  data: Buffer | readonly Buffer[] | null,
  opts: FrameOptions,
  ahs?: Buffer | null,
): Buffer[] {
  if (bhs.length !== BHS_LENGTH) throw new RangeError(`BHS must be ${BHS_LENGTH} bytes`);
  const ahsLen = ahs == null ? 0 : ahs.length;
  if ((ahsLen & 3) !== 0 || ahsLen > MAX_AHS_LENGTH) throw new RangeError(`bad AHS length ${ahsLen}`);
  let dataLen = 0;
  if (data !== null) {
    if (Buffer.isBuffer(data)) dataLen = data.length;
    else for (let i = 0; i < data.length; i++) dataLen += data[i]!.length;
  }
  if (dataLen > MAX_DATA_SEGMENT_LENGTH) throw new RangeError(`data segment too long: ${dataLen}`);
  bhs[4] = ahsLen >>> 2;
  bhs[5] = (dataLen >>> 16) & 0xff;
  bhs[6] = (dataLen >>> 8) & 0xff;
  bhs[7] = dataLen & 0xff;

  const crc = opts.crc32c;
  if ((opts.headerDigest || opts.dataDigest) && crc === undefined) {
    throw new TypeError('frame: digests need a crc32c function');
  }
  if (opts.seal !== undefined && ahsLen === 0 && (data === null || Buffer.isBuffer(data)))
    return sealed(bhs, data, dataLen, opts);
  const out: Buffer[] = [bhs];
  if (ahsLen > 0) out.push(ahs!);
  if (opts.headerDigest) {
    let h = crc!(bhs);
    if (ahsLen > 0) h = crc!(ahs!, h);
    out.push(digestBuffer(h));
  }
  if (dataLen === 0) return out;
  const pad = (4 - (dataLen & 3)) & 3;
  let d = 0;
  if (Buffer.isBuffer(data)) {
    out.push(data);
    if (opts.dataDigest) d = crc!(data);
  } else {
    const parts = data as readonly Buffer[];
    let first = true;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (p.length === 0) continue;
      out.push(p);
      if (opts.dataDigest) {
        d = first ? crc!(p) : crc!(p, d);
        first = false;
      }
    }
  }
  if (pad > 0) {
    out.push(PAD[pad]!);
    if (opts.dataDigest) d = crc!(PAD[pad]!, d);
  }
  if (opts.dataDigest) out.push(digestBuffer(d));
  return out;
}

/** frame() with opts.seal: [bhs + header digest | bhs, data?, pad + data digest | pad?]. */
function sealed(bhs: Buffer, data: Buffer | null, dataLen: number, opts: FrameOptions): Buffer[] {
  const pad = (4 - (dataLen & 3)) & 3;
  const hdr = opts.headerDigest ? Buffer.allocUnsafe(BHS_LENGTH + 4) : null;
  const trailer = opts.dataDigest && dataLen > 0 ? Buffer.allocUnsafe(4 + pad) : null;
  if (hdr !== null || trailer !== null) opts.seal!(bhs, hdr, dataLen > 0 ? data : null, trailer);
  const out: Buffer[] = [hdr ?? bhs];
  if (dataLen === 0) return out;
  out.push(data!);
  if (trailer !== null) out.push(trailer);
  else if (pad > 0) out.push(PAD[pad]!);
  return out;
}

/** frame() concatenated into one buffer: for tests and cold paths. */
export function frameToBuffer(
  bhs: Buffer,
  data: Buffer | readonly Buffer[] | null,
  opts: FrameOptions,
  ahs?: Buffer | null,
): Buffer {
  return Buffer.concat(frame(bhs, data, opts, ahs));
}
