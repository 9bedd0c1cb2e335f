/**
 * Byte layouts written by hand from RFC 7143 section 11, independent of the codec: for every PDU type the
 * target sends, the 48-byte BHS is spelled out byte by byte (offsets and field names in the comments) and the
 * encoder's output must equal it; the hand-built bytes are then parsed and decoded and every field checked.
 * Every field holds a value that differs from its neighbours and has distinct bytes, so a swapped field, a
 * wrong offset or a wrong byte order fails. Flag bits are checked one at a time (a swap of two flags set
 * together would not show).
 *
 * The initiator's PDUs (what the target decodes) get the same treatment at the end.
 *
 * Layouts: RFC 7143 11.3-11.19, cross-checked against the Linux kernel's include/scsi/iscsi_proto.h.
 */
import test, { type ExecutionContext } from 'ava';
import {
  AsyncEvent,
  LoginStage,
  LogoutReason,
  LogoutResponseCode,
  RejectReason,
  ScsiResponseCode,
  ScsiStatus,
  SnackType,
  TaskAttribute,
  TmfFunction,
  TmfResponse,
} from '../src/pdu/opcodes';
import {
  decodeAsyncMessage,
  decodeDataIn,
  decodeDataOut,
  decodeLoginRequest,
  decodeLoginResponse,
  decodeLogoutRequest,
  decodeLogoutResponse,
  decodeNopIn,
  decodeNopOut,
  decodeR2T,
  decodeReject,
  decodeScsiCommand,
  decodeScsiResponse,
  decodeSenseSegment,
  decodeSnackRequest,
  decodeTaskMgmtRequest,
  decodeTaskMgmtResponse,
  decodeTextRequest,
  decodeTextResponse,
  type Pdu,
} from '../src/pdu/pdu';
import { PduParser } from '../src/pdu/parser';
import {
  encodeAsyncMessage,
  encodeDataIn,
  encodeDataOut,
  encodeLoginRequest,
  encodeLoginResponse,
  encodeLogoutRequest,
  encodeLogoutResponse,
  encodeNopIn,
  encodeNopOut,
  encodeR2T,
  encodeReject,
  encodeScsiCommand,
  encodeScsiResponse,
  encodeSenseSegment,
  encodeSnackRequest,
  encodeTaskMgmtRequest,
  encodeTaskMgmtResponse,
  encodeTextRequest,
  encodeTextResponse,
  frameToBuffer,
} from '../src/pdu/serializer';

const NO_DIGESTS = { headerDigest: false, dataDigest: false };

/** Hex with whitespace and `# comments` removed. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex');
}

/** A BHS as 12 labelled rows of 4 bytes: a failing comparison points at the row that differs. */
function rows(b: Buffer): string[] {
  const out: string[] = [];
  for (let i = 0; i < b.length; i += 4)
    out.push(`bytes ${String(i).padStart(2)}-${String(i + 3).padStart(2)}: ${b.toString('hex', i, i + 4)}`);
  return out;
}

function pad(n: number): Buffer {
  return Buffer.alloc((4 - (n & 3)) & 3);
}

/** A BHS of zeros but for the opcode (byte 0) and the flags (byte 1): to decode flag bits by hand. */
function handBhs(opcode: number, byte1: number): Buffer {
  const b = Buffer.alloc(48);
  b[0] = opcode;
  b[1] = byte1;
  return b;
}

/** Parse exactly one PDU from `wire` with the project's parser (no digests). */
function parseOne(wire: Buffer): Pdu {
  const pdus: Pdu[] = [];
  const p = new PduParser({
    onPdu: (x) => pdus.push(x),
    onError: (e) => {
      throw e;
    },
    maxDataSegmentLength: 1 << 24,
  });
  p.push(wire);
  if (pdus.length !== 1 || !p.idle) throw new Error(`expected one complete PDU, got ${pdus.length}`);
  return pdus[0]!;
}

/**
 * The encoder's framed output must be the hand-written BHS followed by the data and its padding; the
 * hand-built wire bytes (not the encoder's) are then parsed, and the parsed PDU returned for decoding.
 */
function layout(
  t: ExecutionContext,
  encoded: Buffer,
  expectedBhs: Buffer,
  data: Buffer = Buffer.alloc(0),
): Pdu {
  t.is(expectedBhs.length, 48, 'the hand-written BHS is 48 bytes');
  const wire = frameToBuffer(encoded, data.length ? data : null, NO_DIGESTS);
  t.deepEqual(rows(wire.subarray(0, 48)), rows(expectedBhs));
  t.true(wire.subarray(48).equals(Buffer.concat([data, pad(data.length)])), 'data segment and padding');
  const pdu = parseOne(Buffer.concat([expectedBhs, data, pad(data.length)]));
  t.is(pdu.opcode, expectedBhs[0]! & 0x3f);
  t.is(pdu.dataLength, data.length);
  t.true(pdu.data.equals(data));
  t.is(pdu.ahs, null);
  return pdu;
}

// Field values used throughout: all different, none a byte palindrome, several with the top bit set.
const LUN = 0x0102030405060708n;
const ITT = 0xa1a2a3a4;
const TTT = 0xb1b2b3b4;
const STATSN = 0xc1c2c3c4;
const EXPCMDSN = 0xd1d2d3d4;
const MAXCMDSN = 0xe1e2e3e4;

// ---------------------------------------------------------------------------
// Target -> initiator

test('NOP-In (11.19) byte layout', (t) => {
  const f = { lun: LUN, itt: ITT, ttt: TTT, statSN: STATSN, expCmdSN: EXPCMDSN, maxCmdSN: MAXCMDSN };
  const data = Buffer.from(Array.from({ length: 0x105 }, (_, i) => (i * 7) & 0xff)); // 261 bytes: 3 pad
  const pdu = layout(
    t,
    encodeNopIn(f),
    hex(`
      20 80 00 00   # 0: opcode 0x20 (bits 6-7 reserved); 1: bit 7 = 1, rest reserved; 2-3: reserved
      00 00 01 05   # 4: TotalAHSLength 0; 5-7: DataSegmentLength 261
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      00 00 00 00   # 36-47: reserved
      00 00 00 00
      00 00 00 00
    `),
    data,
  );
  t.like(pdu, { final: true, immediate: false, itt: ITT });
  t.deepEqual(decodeNopIn(pdu), f);
});

test('SCSI Response (11.4) byte layout', (t) => {
  const f = {
    bidiReadResidualOverflow: true,
    bidiReadResidualUnderflow: false,
    residualOverflow: false,
    residualUnderflow: true,
    response: ScsiResponseCode.TargetFailure,
    status: ScsiStatus.CheckCondition,
    itt: ITT,
    snackTag: TTT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    expDataSN: 0xf1f2f3f4,
    bidiReadResidualCount: 0x0a0b0c0d,
    residualCount: 0x1a1b1c1d,
  };
  // Fixed-format sense data (MEDIUM ERROR, UNRECOVERED READ ERROR 11h/00h) behind its 2-byte SenseLength.
  const sense = hex('70 00 03 00 00 00 00 0a 00 00 00 00 11 00 00 00 00 00');
  const data = encodeSenseSegment(sense);
  const pdu = layout(
    t,
    encodeScsiResponse(f),
    hex(`
      21 92 01 02   # 0: opcode 0x21; 1: bit 7 = 1, bit 4 o, bit 3 u, bit 2 O, bit 1 U (o+U here); 2: Response; 3: Status
      00 00 00 14   # 4: TotalAHSLength; 5-7: DataSegmentLength 20
      00 00 00 00   # 8-15: reserved
      00 00 00 00
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: SNACK Tag
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      f1 f2 f3 f4   # 36-39: ExpDataSN
      0a 0b 0c 0d   # 40-43: Bidirectional Read Residual Count
      1a 1b 1c 1d   # 44-47: Residual Count
    `),
    hex(`00 12 ${sense.toString('hex')}`), // SenseLength 18, then the sense bytes
  );
  t.true(data.equals(pdu.data));
  t.deepEqual(decodeScsiResponse(pdu), f);
  t.deepEqual(decodeSenseSegment(pdu.data)?.sense, sense);
});

test('SCSI Response (11.4) flag bits one at a time', (t) => {
  const base = { status: 0, itt: 1, statSN: 2, expCmdSN: 3, maxCmdSN: 4 };
  const none = { ...base, bidiReadResidualOverflow: false, bidiReadResidualUnderflow: false };
  const flags: Array<[Partial<Record<string, boolean>>, number]> = [
    [{}, 0x80],
    [{ bidiReadResidualOverflow: true }, 0x90], // o: bit 4
    [{ bidiReadResidualUnderflow: true }, 0x88], // u: bit 3
    [{ residualOverflow: true }, 0x84], // O: bit 2
    [{ residualUnderflow: true }, 0x82], // U: bit 1
  ];
  for (const [set, byte1] of flags) {
    const bhs = encodeScsiResponse({ ...none, ...set });
    t.is(bhs[1], byte1, JSON.stringify(set));
    t.like(decodeScsiResponse(parseOne(handBhs(0x21, byte1))), {
      bidiReadResidualOverflow: false,
      bidiReadResidualUnderflow: false,
      residualOverflow: false,
      residualUnderflow: false,
      ...set,
    });
  }
});

test('Task Management Function Response (11.6) byte layout', (t) => {
  const f = {
    response: TmfResponse.TmfNotSupported,
    itt: ITT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
  };
  const pdu = layout(
    t,
    encodeTaskMgmtResponse(f),
    hex(`
      22 80 05 00   # 0: opcode 0x22; 1: bit 7 = 1; 2: Response (5 = not supported); 3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength 0
      00 00 00 00   # 8-15: reserved
      00 00 00 00
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      00 00 00 00   # 20-23: reserved
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      00 00 00 00   # 36-47: reserved
      00 00 00 00
      00 00 00 00
    `),
  );
  t.like(pdu, { final: true, itt: ITT });
  t.deepEqual(decodeTaskMgmtResponse(pdu), f);
  // The 255 response code (function rejected) fills the whole byte.
  t.is(encodeTaskMgmtResponse({ ...f, response: TmfResponse.FunctionRejected })[2], 0xff);
});

test('Login Response (11.13) byte layout', (t) => {
  const f = {
    transit: true,
    continue: false,
    csg: LoginStage.LoginOperationalNegotiation,
    nsg: LoginStage.FullFeaturePhase,
    versionMax: 0x0a,
    versionActive: 0x0b,
    isid: hex('80 12 34 56 78 9a'),
    tsih: 0xbeef,
    itt: ITT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    statusClass: 0x02,
    statusDetail: 0x05,
  };
  const data = Buffer.from('TargetPortalGroupTag=1\0'); // 23 bytes: 1 pad
  const pdu = layout(
    t,
    encodeLoginResponse(f),
    hex(`
      23 87 0a 0b   # 0: opcode 0x23; 1: T (bit 7), C (bit 6) = 0, CSG (bits 2-3) = 1, NSG (bits 0-1) = 3;
                    # 2: Version-max; 3: Version-active
      00 00 00 17   # 4: TotalAHSLength; 5-7: DataSegmentLength 23
      80 12 34 56   # 8-13: ISID
      78 9a be ef   #        14-15: TSIH
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      00 00 00 00   # 20-23: reserved
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      02 05 00 00   # 36: Status-Class; 37: Status-Detail; 38-47: reserved
      00 00 00 00
      00 00 00 00
    `),
    data,
  );
  t.like(pdu, { final: true, itt: ITT });
  t.deepEqual(decodeLoginResponse(pdu), f);
});

test('Login Response (11.13) T, C, CSG and NSG bits one at a time', (t) => {
  const base = {
    transit: false,
    continue: false,
    csg: 0,
    nsg: 0,
    isid: Buffer.alloc(6),
    tsih: 0,
    itt: 0,
    statSN: 0,
    expCmdSN: 0,
    maxCmdSN: 0,
    statusClass: 0,
    statusDetail: 0,
  };
  const cases: Array<[Partial<typeof base>, number]> = [
    [{}, 0x00],
    [{ transit: true }, 0x80], // T: bit 7
    [{ continue: true }, 0x40], // C: bit 6
    [{ csg: 1 }, 0x04], // CSG: bits 2-3
    [{ csg: 2 }, 0x08],
    [{ nsg: 1 }, 0x01], // NSG: bits 0-1
    [{ nsg: 2 }, 0x02],
  ];
  for (const [set, byte1] of cases) {
    const bhs = encodeLoginResponse({ ...base, ...set });
    t.is(bhs[1], byte1, JSON.stringify(set));
    t.like(decodeLoginResponse(parseOne(handBhs(0x23, byte1))), {
      transit: false,
      continue: false,
      csg: 0,
      nsg: 0,
      ...set,
    });
  }
});

test('Text Response (11.11) byte layout', (t) => {
  const f = {
    final: false,
    continue: true,
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
  };
  const data = Buffer.from('TargetName=iqn.2026-11.io.nodetgt:a\0TargetAddress=[::1]:3260,1\0'); // 63: 1 pad
  const pdu = layout(
    t,
    encodeTextResponse(f),
    hex(`
      24 40 00 00   # 0: opcode 0x24; 1: F (bit 7) = 0, C (bit 6) = 1; 2-3: reserved
      00 00 00 3f   # 4: TotalAHSLength; 5-7: DataSegmentLength 63
      01 02 03 04   # 8-15: LUN or reserved
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      00 00 00 00   # 36-47: reserved
      00 00 00 00
      00 00 00 00
    `),
    data,
  );
  t.like(pdu, { final: false, itt: ITT });
  t.deepEqual(decodeTextResponse(pdu), f);
  for (const [set, byte1] of [
    [{ final: true, continue: false }, 0x80],
    [{ final: false, continue: true }, 0x40],
    [{ final: false, continue: false }, 0x00],
  ] as const) {
    const bhs = encodeTextResponse({ ...f, ...set });
    t.is(bhs[1], byte1, JSON.stringify(set));
    t.like(decodeTextResponse(parseOne(handBhs(0x24, byte1))), set);
  }
});

test('SCSI Data-In (11.7) byte layout, 24-bit DataSegmentLength', (t) => {
  const f = {
    final: true,
    ack: true,
    residualOverflow: true,
    residualUnderflow: false,
    statusPresent: true,
    status: ScsiStatus.ConditionMet,
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    dataSN: 0xf1f2f3f4,
    bufferOffset: 0x0a0b0c0d,
    residualCount: 0x1a1b1c1d,
  };
  const data = Buffer.from(Array.from({ length: 0x010203 }, (_, i) => (i * 13 + 5) & 0xff)); // 66051: 1 pad
  const pdu = layout(
    t,
    encodeDataIn(f),
    hex(`
      25 c5 00 04   # 0: opcode 0x25; 1: F (7), A (6), O (2), U (1) = 0, S (0); 2: reserved; 3: Status
      00 01 02 03   # 4: TotalAHSLength; 5-7: DataSegmentLength 0x010203
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      f1 f2 f3 f4   # 36-39: DataSN
      0a 0b 0c 0d   # 40-43: Buffer Offset
      1a 1b 1c 1d   # 44-47: Residual Count
    `),
    data,
  );
  t.like(pdu, { final: true, itt: ITT });
  t.deepEqual(decodeDataIn(pdu), f);
});

test('SCSI Data-In (11.7) flag bits one at a time', (t) => {
  const none = {
    final: false,
    ack: false,
    residualOverflow: false,
    residualUnderflow: false,
    statusPresent: false,
    itt: 1,
    expCmdSN: 2,
    maxCmdSN: 3,
    dataSN: 4,
    bufferOffset: 5,
  };
  const cases: Array<[Partial<typeof none>, number]> = [
    [{}, 0x00],
    [{ final: true }, 0x80], // F: bit 7
    [{ ack: true }, 0x40], // A: bit 6
    [{ residualOverflow: true }, 0x04], // O: bit 2
    [{ residualUnderflow: true }, 0x02], // U: bit 1
    [{ statusPresent: true }, 0x01], // S: bit 0
  ];
  for (const [set, byte1] of cases) {
    const bhs = encodeDataIn({ ...none, ...set });
    t.is(bhs[1], byte1, JSON.stringify(set));
    t.like(decodeDataIn(parseOne(handBhs(0x25, byte1))), {
      final: false,
      ack: false,
      residualOverflow: false,
      residualUnderflow: false,
      statusPresent: false,
      ...set,
    });
  }
});

test('Logout Response (11.15) byte layout', (t) => {
  const f = {
    response: LogoutResponseCode.CleanupFailed,
    itt: ITT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    time2Wait: 0x0e10,
    time2Retain: 0x0123,
  };
  const pdu = layout(
    t,
    encodeLogoutResponse(f),
    hex(`
      26 80 03 00   # 0: opcode 0x26; 1: bit 7 = 1; 2: Response (3 = cleanup failed); 3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength 0
      00 00 00 00   # 8-15: reserved
      00 00 00 00
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      00 00 00 00   # 20-23: reserved
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      00 00 00 00   # 36-39: reserved
      0e 10 01 23   # 40-41: Time2Wait (3600); 42-43: Time2Retain (291)
      00 00 00 00   # 44-47: reserved
    `),
  );
  t.like(pdu, { final: true, itt: ITT });
  t.deepEqual(decodeLogoutResponse(pdu), f);
});

test('R2T (11.8) byte layout', (t) => {
  const f = {
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    r2tSN: 0xf1f2f3f4,
    bufferOffset: 0x0a0b0c0d,
    desiredDataTransferLength: 0x1a1b1c1d,
  };
  const pdu = layout(
    t,
    encodeR2T(f),
    hex(`
      31 80 00 00   # 0: opcode 0x31; 1: bit 7 = 1; 2-3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength 0
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      f1 f2 f3 f4   # 36-39: R2TSN
      0a 0b 0c 0d   # 40-43: Buffer Offset
      1a 1b 1c 1d   # 44-47: Desired Data Transfer Length
    `),
  );
  t.like(pdu, { final: true, itt: ITT });
  t.deepEqual(decodeR2T(pdu), f);
});

test('Asynchronous Message (11.9) byte layout', (t) => {
  const f = {
    lun: LUN,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    asyncEvent: AsyncEvent.VendorSpecific,
    asyncVCode: 0x5a,
    parameter1: 0x1112,
    parameter2: 0x2122,
    parameter3: 0x3132,
  };
  const data = Buffer.from('vendor-specific data'); // 20 bytes
  const pdu = layout(
    t,
    encodeAsyncMessage(f),
    hex(`
      32 80 00 00   # 0: opcode 0x32; 1: bit 7 = 1; 2-3: reserved
      00 00 00 14   # 4: TotalAHSLength; 5-7: DataSegmentLength 20
      01 02 03 04   # 8-15: LUN or reserved
      05 06 07 08
      ff ff ff ff   # 16-19: 0xffffffff (no task)
      00 00 00 00   # 20-23: reserved
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      ff 5a 11 12   # 36: AsyncEvent (255 vendor specific); 37: AsyncVCode; 38-39: Parameter1
      21 22 31 32   # 40-41: Parameter2; 42-43: Parameter3
      00 00 00 00   # 44-47: reserved
    `),
    data,
  );
  t.like(pdu, { final: true, itt: 0xffffffff });
  t.deepEqual(decodeAsyncMessage(pdu), f);
});

test('Reject (11.17) byte layout; the data segment is the rejected header', (t) => {
  const f = {
    reason: RejectReason.InvalidPduField,
    statSN: STATSN,
    expCmdSN: EXPCMDSN,
    maxCmdSN: MAXCMDSN,
    dataSN: 0xf1f2f3f4,
  };
  // The offending PDU's BHS: a SNACK (opcode 0x10) with a nonsense type, written out by hand too.
  const offending = hex(`
    10 8f 00 00  00 00 00 00  00 00 00 00  00 00 00 00
    01 02 03 04  ff ff ff ff  00 00 00 00  00 00 00 07
    00 00 00 00  00 00 00 00  00 00 00 01  00 00 00 02
  `);
  const pdu = layout(
    t,
    encodeReject(f),
    hex(`
      3f 80 09 00   # 0: opcode 0x3f; 1: bit 7 = 1; 2: Reason (9 = invalid PDU field); 3: reserved
      00 00 00 30   # 4: TotalAHSLength; 5-7: DataSegmentLength 48
      00 00 00 00   # 8-15: reserved
      00 00 00 00
      ff ff ff ff   # 16-19: 0xffffffff
      00 00 00 00   # 20-23: reserved
      c1 c2 c3 c4   # 24-27: StatSN
      d1 d2 d3 d4   # 28-31: ExpCmdSN
      e1 e2 e3 e4   # 32-35: MaxCmdSN
      f1 f2 f3 f4   # 36-39: DataSN/R2TSN or reserved
      00 00 00 00   # 40-47: reserved
      00 00 00 00
    `),
    offending,
  );
  t.like(pdu, { final: true, itt: 0xffffffff });
  t.deepEqual(decodeReject(pdu), f);
  t.true(pdu.data.equals(offending));
});

// ---------------------------------------------------------------------------
// Initiator -> target: what the target decodes (and the test initiator encodes)

test('NOP-Out (11.18) byte layout', (t) => {
  const f = { immediate: true, lun: LUN, itt: ITT, ttt: TTT, cmdSN: 0xc5c6c7c8, expStatSN: 0xd5d6d7d8 };
  const pdu = layout(
    t,
    encodeNopOut(f),
    hex(`
      40 80 00 00   # 0: I (bit 6), opcode 0x00; 1: bit 7 = 1; 2-3: reserved
      00 00 00 04   # 4: TotalAHSLength; 5-7: DataSegmentLength 4
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-47: reserved
      00 00 00 00
      00 00 00 00
      00 00 00 00
    `),
    Buffer.from('ping'),
  );
  t.like(pdu, { immediate: true, final: true, itt: ITT });
  t.deepEqual(decodeNopOut(pdu), f);
});

test('SCSI Command (11.3) byte layout', (t) => {
  const cdb = hex('8a 08 00 00 00 01 02 03 04 05 00 00 00 80 00 00'); // WRITE(16), FUA, LBA 0x0102030405, 128 blocks
  const f = {
    immediate: false,
    final: true,
    read: false,
    write: true,
    attr: TaskAttribute.Ordered,
    lun: LUN,
    itt: ITT,
    expectedDataTransferLength: 0x00010000,
    cmdSN: 0xc5c6c7c8,
    expStatSN: 0xd5d6d7d8,
    cdb,
    bidiReadLength: null,
  };
  const pdu = layout(
    t,
    encodeScsiCommand(f),
    hex(`
      01 a2 00 00   # 0: opcode 0x01; 1: F (7), R (6) = 0, W (5), ATTR (bits 0-2) = 2 ordered; 2-3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength 0
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      00 01 00 00   # 20-23: Expected Data Transfer Length
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      8a 08 00 00   # 32-47: SCSI CDB
      00 01 02 03
      04 05 00 00
      00 80 00 00
    `),
  );
  t.deepEqual(decodeScsiCommand(pdu), f);
  t.is(encodeScsiCommand({ ...f, write: false, read: true, final: false, attr: TaskAttribute.Aca })[1], 0x44);
});

test('Task Management Function Request (11.5) byte layout', (t) => {
  const f = {
    immediate: true,
    function: TmfFunction.AbortTask,
    lun: LUN,
    itt: ITT,
    referencedTaskTag: TTT,
    cmdSN: 0xc5c6c7c8,
    expStatSN: 0xd5d6d7d8,
    refCmdSN: 0xe5e6e7e8,
    expDataSN: 0xf5f6f7f8,
  };
  const pdu = layout(
    t,
    encodeTaskMgmtRequest(f),
    hex(`
      42 81 00 00   # 0: I, opcode 0x02; 1: bit 7 = 1, Function (bits 0-6) = 1 abort task; 2-3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength
      01 02 03 04   # 8-15: LUN
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Referenced Task Tag
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      e5 e6 e7 e8   # 32-35: RefCmdSN
      f5 f6 f7 f8   # 36-39: ExpDataSN
      00 00 00 00   # 40-47: reserved
      00 00 00 00
    `),
  );
  t.deepEqual(decodeTaskMgmtRequest(pdu), f);
  t.is(encodeTaskMgmtRequest({ ...f, function: TmfFunction.QueryAsyncEvent })[1], 0x8c);
});

test('Login Request (11.12) byte layout', (t) => {
  const f = {
    transit: false,
    continue: true,
    csg: LoginStage.SecurityNegotiation,
    nsg: LoginStage.LoginOperationalNegotiation,
    versionMax: 0x0a,
    versionMin: 0x0b,
    isid: hex('40 00 01 37 00 2a'),
    tsih: 0xbeef,
    itt: ITT,
    cid: 0xcafe,
    cmdSN: 0xc5c6c7c8,
    expStatSN: 0xd5d6d7d8,
  };
  const data = Buffer.from('InitiatorName=iqn.2026-11.io.nodetgt:i\0'); // 39: 1 pad
  const pdu = layout(
    t,
    encodeLoginRequest(f),
    hex(`
      43 41 0a 0b   # 0: I (always), opcode 0x03; 1: T = 0, C (6), CSG (2-3) = 0, NSG (0-1) = 1;
                    # 2: Version-max; 3: Version-min
      00 00 00 27   # 4: TotalAHSLength; 5-7: DataSegmentLength 39
      40 00 01 37   # 8-13: ISID
      00 2a be ef   #        14-15: TSIH
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      ca fe 00 00   # 20-21: CID; 22-23: reserved
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-47: reserved
      00 00 00 00
      00 00 00 00
      00 00 00 00
    `),
    data,
  );
  t.deepEqual(decodeLoginRequest(pdu), f);
});

test('Text Request (11.10) byte layout', (t) => {
  const f = {
    immediate: true,
    final: true,
    continue: false,
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    cmdSN: 0xc5c6c7c8,
    expStatSN: 0xd5d6d7d8,
  };
  const data = Buffer.from('SendTargets=All\0'); // 16
  const pdu = layout(
    t,
    encodeTextRequest(f),
    hex(`
      44 80 00 00   # 0: I, opcode 0x04; 1: F (7), C (6) = 0; 2-3: reserved
      00 00 00 10   # 4: TotalAHSLength; 5-7: DataSegmentLength 16
      01 02 03 04   # 8-15: LUN or reserved
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-47: reserved
      00 00 00 00
      00 00 00 00
      00 00 00 00
    `),
    data,
  );
  t.deepEqual(decodeTextRequest(pdu), f);
  t.is(encodeTextRequest({ ...f, final: false, continue: true })[1], 0x40);
});

test('SCSI Data-Out (11.7) byte layout', (t) => {
  const f = {
    final: true,
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    expStatSN: 0xd5d6d7d8,
    dataSN: 0xf5f6f7f8,
    bufferOffset: 0x0a0b0c0d,
  };
  const data = Buffer.alloc(512, 0xa5);
  const pdu = layout(
    t,
    encodeDataOut(f),
    hex(`
      05 80 00 00   # 0: opcode 0x05; 1: F (7); 2-3: reserved
      00 00 02 00   # 4: TotalAHSLength; 5-7: DataSegmentLength 512
      01 02 03 04   # 8-15: LUN or reserved
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      b1 b2 b3 b4   # 20-23: Target Transfer Tag
      00 00 00 00   # 24-27: reserved
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-35: reserved
      f5 f6 f7 f8   # 36-39: DataSN
      0a 0b 0c 0d   # 40-43: Buffer Offset
      00 00 00 00   # 44-47: reserved
    `),
    data,
  );
  t.deepEqual(decodeDataOut(pdu), f);
});

test('Logout Request (11.14) byte layout', (t) => {
  const f = {
    immediate: true,
    reasonCode: LogoutReason.RemoveConnectionForRecovery,
    itt: ITT,
    cid: 0xcafe,
    cmdSN: 0xc5c6c7c8,
    expStatSN: 0xd5d6d7d8,
  };
  const pdu = layout(
    t,
    encodeLogoutRequest(f),
    hex(`
      46 82 00 00   # 0: I, opcode 0x06; 1: bit 7 = 1, Reason Code (bits 0-6) = 2; 2-3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength
      00 00 00 00   # 8-15: reserved
      00 00 00 00
      a1 a2 a3 a4   # 16-19: Initiator Task Tag
      ca fe 00 00   # 20-21: CID or reserved; 22-23: reserved
      c5 c6 c7 c8   # 24-27: CmdSN
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-47: reserved
      00 00 00 00
      00 00 00 00
      00 00 00 00
    `),
  );
  t.deepEqual(decodeLogoutRequest(pdu), f);
});

test('SNACK Request (11.16) byte layout', (t) => {
  const f = {
    type: SnackType.RData,
    lun: LUN,
    itt: ITT,
    ttt: TTT,
    expStatSN: 0xd5d6d7d8,
    begRun: 0x0a0b0c0d,
    runLength: 0x1a1b1c1d,
  };
  const pdu = layout(
    t,
    encodeSnackRequest(f),
    hex(`
      10 83 00 00   # 0: opcode 0x10; 1: bit 7 = 1, Type (bits 0-3) = 3 R-Data; 2-3: reserved
      00 00 00 00   # 4: TotalAHSLength; 5-7: DataSegmentLength
      01 02 03 04   # 8-15: LUN or reserved
      05 06 07 08
      a1 a2 a3 a4   # 16-19: Initiator Task Tag or 0xffffffff
      b1 b2 b3 b4   # 20-23: Target Transfer Tag or SNACK Tag
      00 00 00 00   # 24-27: reserved
      d5 d6 d7 d8   # 28-31: ExpStatSN
      00 00 00 00   # 32-39: reserved
      00 00 00 00
      0a 0b 0c 0d   # 40-43: BegRun
      1a 1b 1c 1d   # 44-47: RunLength
    `),
  );
  t.deepEqual(decodeSnackRequest(pdu), f);
});
