// PDU types and header decoders (RFC 7143 section 11). The parser produces a
// generic `Pdu`; these decoders turn its 48-byte BHS into a typed object. Offsets
// are byte offsets into the BHS, numbers are big-endian unless said otherwise.
//
// Lifetime: `bhs`, `ahs` and `data` of a delivered Pdu (and `cdb` of a decoded
// SCSI Command) may be views into the chunk given to PduParser.push(). They stay
// valid for as long as the caller leaves that chunk's memory alone.

import { AhsType, Opcode, RESERVED_TAG } from './opcodes';

export const BHS_LENGTH = 48;
/** DataSegmentLength is a 24-bit field. */
export const MAX_DATA_SEGMENT_LENGTH = 0xffffff;
/** TotalAHSLength is an 8-bit count of 4-byte words. */
export const MAX_AHS_LENGTH = 255 * 4;
export const DIGEST_LENGTH = 4;

/** A framed PDU as the parser delivers it: header bytes and data, digests stripped. */
export interface Pdu {
  /** The 48-byte Basic Header Segment. */
  bhs: Buffer;
  /** Additional Header Segments (TotalAHSLength * 4 bytes) or null. */
  ahs: Buffer | null;
  /** DataSegmentLength bytes: no padding, no digest. */
  data: Buffer;
  /** Byte 0 bits 0-5. */
  opcode: number;
  /** Byte 0 bit 6. */
  immediate: boolean;
  /** Byte 1 bit 7 (F, or T for Login). */
  final: boolean;
  /** Bytes 16-19: Initiator Task Tag. */
  itt: number;
  dataLength: number;
}

/** CRC32C over buf, continuing from `prev` (the result of a previous call) when given. */
export type Crc32cFn = (buf: Uint8Array, prev?: number) => number;

/** Thrown by decoders when a header field is malformed (reply with a Reject). */
export class PduFormatError extends Error {
  override readonly name = 'PduFormatError';
}

// ---------------------------------------------------------------------------
// Typed headers: initiator -> target

export interface NopOut {
  immediate: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

export interface ScsiCommand {
  immediate: boolean;
  final: boolean;
  read: boolean;
  write: boolean;
  /** TaskAttribute, byte 1 bits 0-2. */
  attr: number;
  lun: bigint;
  itt: number;
  expectedDataTransferLength: number;
  cmdSN: number;
  expStatSN: number;
  /** 16 bytes from the BHS, longer when an Extended CDB AHS is present. */
  cdb: Buffer;
  /** Bidirectional Read Expected Data Transfer Length AHS, null when absent. */
  bidiReadLength: number | null;
}

export interface TaskMgmtRequest {
  immediate: boolean;
  /** TmfFunction, byte 1 bits 0-6. */
  function: number;
  lun: bigint;
  itt: number;
  referencedTaskTag: number;
  cmdSN: number;
  expStatSN: number;
  refCmdSN: number;
  expDataSN: number;
}

export interface LoginRequest {
  /** T bit. */
  transit: boolean;
  /** C bit. */
  continue: boolean;
  /** Current stage, byte 1 bits 2-3. */
  csg: number;
  /** Next stage, byte 1 bits 0-1. */
  nsg: number;
  versionMax: number;
  versionMin: number;
  /** 6 bytes (a copy: sessions keep it). */
  isid: Buffer;
  tsih: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

export interface TextRequest {
  immediate: boolean;
  final: boolean;
  continue: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

export interface DataOut {
  final: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  expStatSN: number;
  dataSN: number;
  bufferOffset: number;
}

export interface LogoutRequest {
  immediate: boolean;
  /** LogoutReason, byte 1 bits 0-6. */
  reasonCode: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

export interface SnackRequest {
  /** SnackType, byte 1 bits 0-3. */
  type: number;
  lun: bigint;
  itt: number;
  /** Target Transfer Tag or SNACK Tag (bytes 20-23). */
  ttt: number;
  expStatSN: number;
  begRun: number;
  runLength: number;
}

// ---------------------------------------------------------------------------
// Typed headers: target -> initiator

export interface NopIn {
  lun: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

export interface ScsiResponse {
  /** o: bidirectional read residual overflow. */
  bidiReadResidualOverflow: boolean;
  /** u: bidirectional read residual underflow. */
  bidiReadResidualUnderflow: boolean;
  /** O: residual overflow. */
  residualOverflow: boolean;
  /** U: residual underflow. */
  residualUnderflow: boolean;
  /** ScsiResponseCode. */
  response: number;
  /** ScsiStatus. */
  status: number;
  itt: number;
  snackTag: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  expDataSN: number;
  bidiReadResidualCount: number;
  residualCount: number;
}

export interface TaskMgmtResponse {
  /** TmfResponse. */
  response: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

export interface LoginResponse {
  transit: boolean;
  continue: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionActive: number;
  isid: Buffer;
  tsih: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  statusClass: number;
  statusDetail: number;
}

export interface TextResponse {
  final: boolean;
  continue: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

export interface DataIn {
  final: boolean;
  /** A: acknowledge requested (ErrorRecoveryLevel > 0). */
  ack: boolean;
  residualOverflow: boolean;
  residualUnderflow: boolean;
  /** S: status present; then `status` and `statSN` are valid. */
  statusPresent: boolean;
  status: number;
  lun: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  dataSN: number;
  bufferOffset: number;
  residualCount: number;
}

export interface LogoutResponse {
  /** LogoutResponseCode. */
  response: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  time2Wait: number;
  time2Retain: number;
}

export interface R2T {
  lun: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  r2tSN: number;
  bufferOffset: number;
  desiredDataTransferLength: number;
}

export interface AsyncMessage {
  lun: bigint;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  asyncEvent: number;
  asyncVCode: number;
  parameter1: number;
  parameter2: number;
  parameter3: number;
}

export interface Reject {
  /** RejectReason. */
  reason: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  /** DataSN/R2TSN (bytes 36-39), meaningful for SNACK rejects. */
  dataSN: number;
}

// ---------------------------------------------------------------------------
// Common field readers, cheap enough to call on the hot path without decoding.

export function bhsOpcode(bhs: Buffer): number {
  return bhs[0]! & 0x3f;
}
export function bhsTotalAhsLength(bhs: Buffer): number {
  return bhs[4]! * 4;
}
export function bhsDataSegmentLength(bhs: Buffer): number {
  return (bhs[5]! << 16) | (bhs[6]! << 8) | bhs[7]!;
}
export function bhsLun(bhs: Buffer): bigint {
  return bhs.readBigUInt64BE(8);
}
export function bhsItt(bhs: Buffer): number {
  return bhs.readUInt32BE(16);
}

/**
 * The StatSN a target PDU consumed (RFC 7143 4.2.2.2: responses, a Data-In with status, a NOP-In answer, Text,
 * Logout, TMF, Async Message, Reject), or null for one that only reports the next StatSN (R2T, Data-In, ping).
 */
export function bhsConsumedStatSN(bhs: Buffer): number | null {
  const op = bhs[0]! & 0x3f;
  const withStatus =
    op === Opcode.ScsiResponse ||
    op === Opcode.TaskMgmtResponse ||
    op === Opcode.TextResponse ||
    op === Opcode.LogoutResponse ||
    op === Opcode.AsyncMessage ||
    op === Opcode.Reject ||
    (op === Opcode.DataIn && (bhs[1]! & 0x01) !== 0) ||
    (op === Opcode.NopIn && bhs.readUInt32BE(16) !== RESERVED_TAG);
  return withStatus ? bhs.readUInt32BE(24) : null;
}

// ---------------------------------------------------------------------------
// Decoders: initiator -> target

export function decodeNopOut(pdu: Pdu): NopOut {
  const b = pdu.bhs;
  return {
    immediate: (b[0]! & 0x40) !== 0,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
  };
}

/** @throws PduFormatError when the AHS is malformed. */
export function decodeScsiCommand(pdu: Pdu): ScsiCommand {
  const b = pdu.bhs;
  const f = b[1]!;
  let cdb = b.subarray(32, 48);
  let bidiReadLength: number | null = null;
  if (pdu.ahs !== null && pdu.ahs.length > 0) {
    const segs = parseAhs(pdu.ahs);
    if (segs === null) throw new PduFormatError('malformed AHS');
    for (const s of segs) {
      if (s.type === AhsType.ExtendedCdb) {
        // One reserved byte, then the CDB bytes beyond the first 16.
        if (s.data.length < 2) throw new PduFormatError('short Extended CDB AHS');
        cdb = Buffer.concat([cdb, s.data.subarray(1)]);
      } else if (s.type === AhsType.BidiReadLength) {
        if (s.data.length !== 5) throw new PduFormatError('bad Bidirectional Read Length AHS');
        bidiReadLength = s.data.readUInt32BE(1);
      }
    }
  }
  return {
    immediate: (b[0]! & 0x40) !== 0,
    final: (f & 0x80) !== 0,
    read: (f & 0x40) !== 0,
    write: (f & 0x20) !== 0,
    attr: f & 0x07,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    expectedDataTransferLength: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    cdb,
    bidiReadLength,
  };
}

export function decodeTaskMgmtRequest(pdu: Pdu): TaskMgmtRequest {
  const b = pdu.bhs;
  return {
    immediate: (b[0]! & 0x40) !== 0,
    function: b[1]! & 0x7f,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    referencedTaskTag: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
    refCmdSN: b.readUInt32BE(32),
    expDataSN: b.readUInt32BE(36),
  };
}

export function decodeLoginRequest(pdu: Pdu): LoginRequest {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    transit: (f & 0x80) !== 0,
    continue: (f & 0x40) !== 0,
    csg: (f >> 2) & 0x03,
    nsg: f & 0x03,
    versionMax: b[2]!,
    versionMin: b[3]!,
    isid: Buffer.from(b.subarray(8, 14)),
    tsih: b.readUInt16BE(14),
    itt: b.readUInt32BE(16),
    cid: b.readUInt16BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
  };
}

export function decodeTextRequest(pdu: Pdu): TextRequest {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    immediate: (b[0]! & 0x40) !== 0,
    final: (f & 0x80) !== 0,
    continue: (f & 0x40) !== 0,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
  };
}

export function decodeDataOut(pdu: Pdu): DataOut {
  const b = pdu.bhs;
  return {
    final: (b[1]! & 0x80) !== 0,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    expStatSN: b.readUInt32BE(28),
    dataSN: b.readUInt32BE(36),
    bufferOffset: b.readUInt32BE(40),
  };
}

export function decodeLogoutRequest(pdu: Pdu): LogoutRequest {
  const b = pdu.bhs;
  return {
    immediate: (b[0]! & 0x40) !== 0,
    reasonCode: b[1]! & 0x7f,
    itt: b.readUInt32BE(16),
    cid: b.readUInt16BE(20),
    cmdSN: b.readUInt32BE(24),
    expStatSN: b.readUInt32BE(28),
  };
}

export function decodeSnackRequest(pdu: Pdu): SnackRequest {
  const b = pdu.bhs;
  return {
    type: b[1]! & 0x0f,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    expStatSN: b.readUInt32BE(28),
    begRun: b.readUInt32BE(40),
    runLength: b.readUInt32BE(44),
  };
}

// ---------------------------------------------------------------------------
// Decoders: target -> initiator (for the test initiator)

export function decodeNopIn(pdu: Pdu): NopIn {
  const b = pdu.bhs;
  return {
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
  };
}

export function decodeScsiResponse(pdu: Pdu): ScsiResponse {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    bidiReadResidualOverflow: (f & 0x10) !== 0,
    bidiReadResidualUnderflow: (f & 0x08) !== 0,
    residualOverflow: (f & 0x04) !== 0,
    residualUnderflow: (f & 0x02) !== 0,
    response: b[2]!,
    status: b[3]!,
    itt: b.readUInt32BE(16),
    snackTag: b.readUInt32BE(20),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    expDataSN: b.readUInt32BE(36),
    bidiReadResidualCount: b.readUInt32BE(40),
    residualCount: b.readUInt32BE(44),
  };
}

export function decodeTaskMgmtResponse(pdu: Pdu): TaskMgmtResponse {
  const b = pdu.bhs;
  return {
    response: b[2]!,
    itt: b.readUInt32BE(16),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
  };
}

export function decodeLoginResponse(pdu: Pdu): LoginResponse {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    transit: (f & 0x80) !== 0,
    continue: (f & 0x40) !== 0,
    csg: (f >> 2) & 0x03,
    nsg: f & 0x03,
    versionMax: b[2]!,
    versionActive: b[3]!,
    isid: Buffer.from(b.subarray(8, 14)),
    tsih: b.readUInt16BE(14),
    itt: b.readUInt32BE(16),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    statusClass: b[36]!,
    statusDetail: b[37]!,
  };
}

export function decodeTextResponse(pdu: Pdu): TextResponse {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    final: (f & 0x80) !== 0,
    continue: (f & 0x40) !== 0,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
  };
}

export function decodeDataIn(pdu: Pdu): DataIn {
  const b = pdu.bhs;
  const f = b[1]!;
  return {
    final: (f & 0x80) !== 0,
    ack: (f & 0x40) !== 0,
    residualOverflow: (f & 0x04) !== 0,
    residualUnderflow: (f & 0x02) !== 0,
    statusPresent: (f & 0x01) !== 0,
    status: b[3]!,
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    dataSN: b.readUInt32BE(36),
    bufferOffset: b.readUInt32BE(40),
    residualCount: b.readUInt32BE(44),
  };
}

export function decodeLogoutResponse(pdu: Pdu): LogoutResponse {
  const b = pdu.bhs;
  return {
    response: b[2]!,
    itt: b.readUInt32BE(16),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    time2Wait: b.readUInt16BE(40),
    time2Retain: b.readUInt16BE(42),
  };
}

export function decodeR2T(pdu: Pdu): R2T {
  const b = pdu.bhs;
  return {
    lun: b.readBigUInt64BE(8),
    itt: b.readUInt32BE(16),
    ttt: b.readUInt32BE(20),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    r2tSN: b.readUInt32BE(36),
    bufferOffset: b.readUInt32BE(40),
    desiredDataTransferLength: b.readUInt32BE(44),
  };
}

export function decodeAsyncMessage(pdu: Pdu): AsyncMessage {
  const b = pdu.bhs;
  return {
    lun: b.readBigUInt64BE(8),
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    asyncEvent: b[36]!,
    asyncVCode: b[37]!,
    parameter1: b.readUInt16BE(38),
    parameter2: b.readUInt16BE(40),
    parameter3: b.readUInt16BE(42),
  };
}

export function decodeReject(pdu: Pdu): Reject {
  const b = pdu.bhs;
  return {
    reason: b[2]!,
    statSN: b.readUInt32BE(24),
    expCmdSN: b.readUInt32BE(28),
    maxCmdSN: b.readUInt32BE(32),
    dataSN: b.readUInt32BE(36),
  };
}

// ---------------------------------------------------------------------------
// AHS, ISID, LUN and sense helpers

export interface AhsSegment {
  type: number;
  /** The AHS-specific bytes (AHSLength of them), a view into the AHS buffer. */
  data: Buffer;
}

/**
 * Split an AHS area into segments: each is AHSLength (2 bytes), AHSType (1 byte),
 * then AHSLength bytes, padded to a multiple of 4. Null when the lengths overrun.
 */
export function parseAhs(ahs: Buffer): AhsSegment[] | null {
  const out: AhsSegment[] = [];
  let off = 0;
  while (off < ahs.length) {
    if (ahs.length - off < 4) return null;
    const len = ahs.readUInt16BE(off);
    const type = ahs[off + 2]!;
    const end = off + 3 + len;
    if (end > ahs.length) return null;
    out.push({ type, data: ahs.subarray(off + 3, end) });
    off = (end + 3) & ~3;
  }
  return out;
}

/** ISID as 12 lowercase hex digits (the form used in session keys and logs). */
export function isidToHex(isid: Uint8Array): string {
  return Buffer.from(isid.buffer, isid.byteOffset, isid.byteLength).toString('hex');
}

/** Inverse of isidToHex; throws on anything but 12 hex digits. */
export function isidFromHex(hex: string): Buffer {
  if (!/^[0-9a-fA-F]{12}$/.test(hex)) throw new RangeError(`bad ISID hex: ${hex}`);
  return Buffer.from(hex, 'hex');
}

/**
 * Split a SCSI Response data segment into sense data and response data
 * (RFC 7143 11.4.7: a 2-byte SenseLength, the sense, then any response data).
 * Empty data gives empty sense. Null when SenseLength overruns the segment.
 */
export function decodeSenseSegment(data: Buffer): { sense: Buffer; responseData: Buffer } | null {
  if (data.length === 0) return { sense: data, responseData: data };
  if (data.length < 2) return null;
  const len = data.readUInt16BE(0);
  if (2 + len > data.length) return null;
  return { sense: data.subarray(2, 2 + len), responseData: data.subarray(2 + len) };
}
