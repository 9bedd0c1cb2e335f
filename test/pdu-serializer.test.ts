import test from 'ava';

import {
  AsyncEvent,
  LoginStage,
  LogoutReason,
  LogoutResponseCode,
  Opcode,
  RejectReason,
  ScsiStatus,
  SnackType,
  TaskAttribute,
  TmfFunction,
  TmfResponse,
  opcodeName,
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
  isidFromHex,
  isidToHex,
  parseAhs,
  PduFormatError,
  type Pdu,
} from '../src/pdu/pdu';
import { crc32cRef } from '../src/pdu/crc32c-ref';
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
  frame,
  frameToBuffer,
  scsiCommandAhs,
  senseLengthPrefix,
  type FrameOptions,
} from '../src/pdu/serializer';
import { crc32c } from './helpers/crc32c-table';
import { lunField, lunFromField } from '../src/scsi/lun';

const NO_DIGESTS: FrameOptions = { headerDigest: false, dataDigest: false };
const DIGESTS: FrameOptions = { headerDigest: true, dataDigest: true, crc32c };

/** Hex with any whitespace/comments removed: expected layouts are written 4 bytes a line. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex');
}

function parseOne(wire: Buffer, opts: FrameOptions, max = 1 << 24): Pdu {
  const pdus: Pdu[] = [];
  const p = new PduParser({
    onPdu: (x) => pdus.push(x),
    onError: (e) => {
      throw e;
    },
    crc32c,
    maxDataSegmentLength: max,
  });
  p.headerDigest = opts.headerDigest;
  p.dataDigest = opts.dataDigest;
  p.push(wire);
  if (pdus.length !== 1 || !p.idle) throw new Error(`expected one complete PDU, got ${pdus.length}`);
  return pdus[0]!;
}

function roundtrip(bhs: Buffer, data: Buffer | null, opts: FrameOptions, ahs?: Buffer | null): Pdu {
  return parseOne(frameToBuffer(bhs, data, opts, ahs), opts);
}

test('local crc32c matches RFC 3720 B.4 vectors', (t) => {
  t.is(crc32c(Buffer.alloc(32)), 0x8a9136aa);
  t.is(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
  t.is(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e);
  t.is(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c);
  const b = Buffer.from(Array.from({ length: 40 }, (_, i) => i * 7));
  t.is(crc32c(b.subarray(13), crc32c(b.subarray(0, 13))), crc32c(b));
});

test('local crc32c agrees with crc32cRef, including continuation', (t) => {
  const b = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 131) & 0xff));
  t.is(crc32cRef(b), crc32c(b));
  t.is(crc32cRef(b.subarray(501), crc32cRef(b.subarray(0, 501))), crc32c(b));
});

test('opcodeName', (t) => {
  t.is(opcodeName(0x25), 'DataIn');
  t.is(opcodeName(0x1c), 'Unknown(0x1c)');
});

// ---------------------------------------------------------------------------
// Byte-exact layouts written by hand from RFC 7143 field offsets

test('RFC B.4 example: SCSI Read(10) command and its header digest bytes', (t) => {
  const bhs = encodeScsiCommand({
    final: true,
    read: true,
    attr: TaskAttribute.Untagged,
    lun: 0n,
    itt: 0x14000000,
    expectedDataTransferLength: 0x400,
    cmdSN: 0x14,
    expStatSN: 0x18,
    cdb: hex('28000000 00000000 02000000 00000000'),
  });
  const wire = frameToBuffer(bhs, null, { headerDigest: true, dataDigest: true, crc32c });
  t.deepEqual(
    wire,
    hex(`
      01 c0 00 00
      00 00 00 00
      00 00 00 00
      00 00 00 00
      14 00 00 00
      00 00 04 00
      00 00 00 14
      00 00 00 18
      28 00 00 00
      00 00 00 00
      02 00 00 00
      00 00 00 00
      56 3a 96 d9   # header digest, least significant byte first
    `),
  );
});

test('Login Response byte layout (11.13)', (t) => {
  const bhs = encodeLoginResponse({
    transit: true,
    continue: false,
    csg: LoginStage.LoginOperationalNegotiation,
    nsg: LoginStage.FullFeaturePhase,
    versionMax: 0,
    versionActive: 0,
    isid: isidFromHex('00023d000001'),
    tsih: 0x0102,
    itt: 0x11223344,
    statSN: 0x01020304,
    expCmdSN: 5,
    maxCmdSN: 0x24,
    statusClass: 0x02,
    statusDetail: 0x01,
  });
  const data = Buffer.from('HeaderDigest=None\0'); // 18 bytes: 2 pad bytes
  t.deepEqual(
    frameToBuffer(bhs, data, NO_DIGESTS),
    Buffer.concat([
      hex(`
        23 87 00 00   # opcode, T|CSG=1|NSG=3, VersionMax, VersionActive
        00 00 00 12   # TotalAHSLength, DataSegmentLength=18
        00 02 3d 00   # ISID
        00 01 01 02   # ISID, TSIH
        11 22 33 44   # ITT
        00 00 00 00   # reserved
        01 02 03 04   # StatSN
        00 00 00 05   # ExpCmdSN
        00 00 00 24   # MaxCmdSN
        02 01 00 00   # Status-Class, Status-Detail, reserved
        00 00 00 00
        00 00 00 00
      `),
      data,
      hex('0000'),
    ]),
  );
});

test('SCSI Response with sense data byte layout (11.4)', (t) => {
  const bhs = encodeScsiResponse({
    residualUnderflow: true,
    response: 0,
    status: ScsiStatus.CheckCondition,
    itt: 0xdeadbeef,
    statSN: 100,
    expCmdSN: 200,
    maxCmdSN: 231,
    expDataSN: 3,
    residualCount: 512,
  });
  // Fixed-format sense: ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h).
  const sense = hex('70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00');
  const wire = frameToBuffer(bhs, encodeSenseSegment(sense), NO_DIGESTS);
  t.deepEqual(
    wire,
    hex(`
      21 82 00 02   # opcode, F|U, Response, Status=CHECK CONDITION
      00 00 00 14   # DataSegmentLength = 2 + 18
      00 00 00 00
      00 00 00 00
      de ad be ef   # ITT
      00 00 00 00   # SNACK Tag
      00 00 00 64   # StatSN
      00 00 00 c8   # ExpCmdSN
      00 00 00 e7   # MaxCmdSN
      00 00 00 03   # ExpDataSN
      00 00 00 00   # Bidirectional Read Residual Count
      00 00 02 00   # Residual Count
      00 12         # SenseLength
      70 00 05 00 00 00 00 0a 00 00 00 00 24 00 00 00 00 00
    `),
  );
  // Zero-copy form: prefix + sense as separate iovecs gives the same bytes.
  const bhs2 = Buffer.from(bhs);
  t.deepEqual(frameToBuffer(bhs2, [senseLengthPrefix(sense.length), sense], NO_DIGESTS), wire);
  const pdu = parseOne(wire, NO_DIGESTS);
  const seg = decodeSenseSegment(pdu.data);
  t.truthy(seg);
  t.deepEqual(seg!.sense, sense);
  t.is(seg!.responseData.length, 0);
});

test('Data-In byte layout (11.7)', (t) => {
  const bhs = encodeDataIn({
    final: true,
    residualUnderflow: true,
    statusPresent: true,
    status: ScsiStatus.Good,
    lun: lunField(1),
    itt: 0x0a0b0c0d,
    ttt: 0xffffffff,
    statSN: 7,
    expCmdSN: 8,
    maxCmdSN: 39,
    dataSN: 2,
    bufferOffset: 0x2000,
    residualCount: 0x100,
  });
  t.deepEqual(
    frameToBuffer(bhs, Buffer.from('hello'), NO_DIGESTS),
    hex(`
      25 83 00 00   # opcode, F|U|S, reserved, Status
      00 00 00 05   # DataSegmentLength
      00 01 00 00   # LUN 1
      00 00 00 00
      0a 0b 0c 0d   # ITT
      ff ff ff ff   # TTT
      00 00 00 07   # StatSN
      00 00 00 08   # ExpCmdSN
      00 00 00 27   # MaxCmdSN
      00 00 00 02   # DataSN
      00 00 20 00   # Buffer Offset
      00 00 01 00   # Residual Count
      68 65 6c 6c 6f 00 00 00
    `),
  );
});

test('R2T byte layout (11.8)', (t) => {
  const bhs = encodeR2T({
    lun: lunField(2),
    itt: 1,
    ttt: 0x12345678,
    statSN: 9,
    expCmdSN: 10,
    maxCmdSN: 41,
    r2tSN: 0,
    bufferOffset: 65536,
    desiredDataTransferLength: 262144,
  });
  t.deepEqual(
    frameToBuffer(bhs, null, NO_DIGESTS),
    hex(`
      31 80 00 00
      00 00 00 00
      00 02 00 00
      00 00 00 00
      00 00 00 01   # ITT
      12 34 56 78   # TTT
      00 00 00 09   # StatSN
      00 00 00 0a   # ExpCmdSN
      00 00 00 29   # MaxCmdSN
      00 00 00 00   # R2TSN
      00 01 00 00   # Buffer Offset
      00 04 00 00   # Desired Data Transfer Length
    `),
  );
});

// ---------------------------------------------------------------------------
// Every opcode: encode, frame, parse, decode, compare all fields

const OPTS: Array<[string, FrameOptions]> = [
  ['no digests', NO_DIGESTS],
  ['digests', DIGESTS],
];

for (const [label, opts] of OPTS) {
  test(`roundtrip NOP-Out (${label})`, (t) => {
    const f = {
      immediate: true,
      lun: lunField(3),
      itt: 0x01020304,
      ttt: 0xffffffff,
      cmdSN: 77,
      expStatSN: 88,
    };
    const ping = Buffer.from('ping-data');
    const pdu = roundtrip(encodeNopOut(f), ping, opts);
    t.like(pdu, { opcode: Opcode.NopOut, immediate: true, final: true, itt: f.itt, dataLength: ping.length });
    t.deepEqual(pdu.data, ping);
    t.deepEqual(decodeNopOut(pdu), f);
  });

  test(`roundtrip SCSI Command (${label})`, (t) => {
    const f = {
      immediate: false,
      final: false,
      read: false,
      write: true,
      attr: TaskAttribute.Ordered,
      lun: lunField(300),
      itt: 0xfedcba98,
      expectedDataTransferLength: 1 << 20,
      cmdSN: 0xfffffffe,
      expStatSN: 0x80000000,
      cdb: hex('2a 00 01 02 03 04 00 00 08 00 00 00 00 00 00 00'),
      bidiReadLength: null,
    };
    const imm = Buffer.alloc(1001, 0xab);
    const pdu = roundtrip(encodeScsiCommand(f), imm, opts);
    t.like(pdu, { opcode: Opcode.ScsiCommand, immediate: false, final: false, itt: f.itt, dataLength: 1001 });
    t.is(pdu.ahs, null);
    t.deepEqual(pdu.data, imm);
    t.deepEqual(decodeScsiCommand(pdu), f);
  });

  test(`roundtrip SCSI Command with extended CDB and bidi AHS (${label})`, (t) => {
    const cdb = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x7f + i)); // 32-byte CDB
    const f = {
      immediate: true,
      final: true,
      read: true,
      write: true,
      attr: TaskAttribute.HeadOfQueue,
      lun: 0n,
      itt: 9,
      expectedDataTransferLength: 4096,
      cmdSN: 1,
      expStatSN: 2,
      cdb,
      bidiReadLength: 8192,
    };
    const ahs = scsiCommandAhs(f)!;
    // Extended CDB: AHSLength 17 (reserved + 16), type 1, reserved, 16 bytes => 20; bidi: 8.
    t.is(ahs.length, 20 + 8);
    t.deepEqual(ahs.subarray(0, 4), hex('00 11 01 00'));
    t.deepEqual(ahs.subarray(20), hex('00 05 02 00 00 00 20 00'));
    const pdu = roundtrip(encodeScsiCommand(f), null, opts, ahs);
    t.is(pdu.bhs[4], 7);
    t.deepEqual(pdu.ahs, ahs);
    t.deepEqual(decodeScsiCommand(pdu), f);
    t.deepEqual(
      parseAhs(ahs)!.map((s) => s.type),
      [1, 2],
    );
  });

  test(`roundtrip Task Management Request (${label})`, (t) => {
    const f = {
      immediate: true,
      function: TmfFunction.AbortTask,
      lun: lunField(5),
      itt: 0x55,
      referencedTaskTag: 0x44,
      cmdSN: 1000,
      expStatSN: 2000,
      refCmdSN: 999,
      expDataSN: 12,
    };
    const pdu = roundtrip(encodeTaskMgmtRequest(f), null, opts);
    t.like(pdu, { opcode: Opcode.TaskMgmtRequest, immediate: true, final: true, itt: 0x55, dataLength: 0 });
    t.deepEqual(decodeTaskMgmtRequest(pdu), f);
  });

  test(`roundtrip Login Request (${label})`, (t) => {
    const f = {
      transit: true,
      continue: false,
      csg: LoginStage.SecurityNegotiation,
      nsg: LoginStage.LoginOperationalNegotiation,
      versionMax: 0,
      versionMin: 0,
      isid: isidFromHex('80123456789a'),
      tsih: 0,
      itt: 0x10000000,
      cid: 0x0102,
      cmdSN: 0x7fffffff,
      expStatSN: 0xabcdef01,
    };
    const keys = Buffer.from('InitiatorName=iqn.2024-01.test:init\0SessionType=Normal\0');
    const pdu = roundtrip(encodeLoginRequest(f), keys, opts);
    t.like(pdu, { opcode: Opcode.LoginRequest, immediate: true, final: true, itt: f.itt });
    t.deepEqual(pdu.data, keys);
    const d = decodeLoginRequest(pdu);
    t.deepEqual(d, f);
    t.is(isidToHex(d.isid), '80123456789a');
  });

  test(`roundtrip Text Request (${label})`, (t) => {
    const f = {
      immediate: true,
      final: false,
      continue: true,
      lun: 0n,
      itt: 3,
      ttt: 0x0badf00d,
      cmdSN: 4,
      expStatSN: 5,
    };
    const pdu = roundtrip(encodeTextRequest(f), Buffer.from('SendTargets=All\0'), opts);
    t.like(pdu, { opcode: Opcode.TextRequest, immediate: true, final: false, dataLength: 16 });
    t.deepEqual(decodeTextRequest(pdu), f);
  });

  test(`roundtrip Data-Out (${label})`, (t) => {
    const f = {
      final: true,
      lun: lunField(7),
      itt: 0x11111111,
      ttt: 0x22222222,
      expStatSN: 0x33333333,
      dataSN: 0x44,
      bufferOffset: 0x55555555,
    };
    const payload = Buffer.from(Array.from({ length: 8191 }, (_, i) => i & 0xff));
    const pdu = roundtrip(encodeDataOut(f), payload, opts);
    t.like(pdu, { opcode: Opcode.DataOut, immediate: false, final: true, itt: f.itt, dataLength: 8191 });
    t.deepEqual(pdu.data, payload);
    t.deepEqual(decodeDataOut(pdu), f);
  });

  test(`roundtrip Logout Request (${label})`, (t) => {
    const f = {
      immediate: true,
      reasonCode: LogoutReason.RemoveConnectionForRecovery,
      itt: 0x66,
      cid: 0xfffe,
      cmdSN: 12,
      expStatSN: 13,
    };
    const pdu = roundtrip(encodeLogoutRequest(f), null, opts);
    t.like(pdu, { opcode: Opcode.LogoutRequest, immediate: true, final: true });
    t.deepEqual(decodeLogoutRequest(pdu), f);
  });

  test(`roundtrip SNACK (${label})`, (t) => {
    const f = {
      type: SnackType.RData,
      lun: lunField(1),
      itt: 0x77,
      ttt: 0x88,
      expStatSN: 0x99,
      begRun: 4,
      runLength: 6,
    };
    const pdu = roundtrip(encodeSnackRequest(f), null, opts);
    t.like(pdu, { opcode: Opcode.Snack, final: true, itt: 0x77 });
    t.deepEqual(decodeSnackRequest(pdu), f);
  });

  test(`roundtrip NOP-In (${label})`, (t) => {
    const f = { lun: lunField(9), itt: 0xffffffff, ttt: 0x1234, statSN: 1, expCmdSN: 2, maxCmdSN: 3 };
    const pdu = roundtrip(encodeNopIn(f), Buffer.from('pong'), opts);
    t.like(pdu, { opcode: Opcode.NopIn, final: true, itt: 0xffffffff, dataLength: 4 });
    t.deepEqual(decodeNopIn(pdu), f);
  });

  test(`roundtrip SCSI Response (${label})`, (t) => {
    const f = {
      bidiReadResidualOverflow: true,
      bidiReadResidualUnderflow: false,
      residualOverflow: false,
      residualUnderflow: true,
      response: 1,
      status: ScsiStatus.TaskSetFull,
      itt: 0x31,
      snackTag: 0x32,
      statSN: 0x33,
      expCmdSN: 0x34,
      maxCmdSN: 0x35,
      expDataSN: 0x36,
      bidiReadResidualCount: 0x37,
      residualCount: 0x38,
    };
    const seg = encodeSenseSegment(hex('70000600000000'), hex('abcd'));
    const pdu = roundtrip(encodeScsiResponse(f), seg, opts);
    t.like(pdu, { opcode: Opcode.ScsiResponse, final: true, itt: 0x31, dataLength: 11 });
    t.deepEqual(decodeScsiResponse(pdu), f);
    const s = decodeSenseSegment(pdu.data)!;
    t.deepEqual(s.sense, hex('70000600000000'));
    t.deepEqual(s.responseData, hex('abcd'));
  });

  test(`roundtrip Task Management Response (${label})`, (t) => {
    const f = {
      response: TmfResponse.FunctionRejected,
      itt: 0x41,
      statSN: 0x42,
      expCmdSN: 0x43,
      maxCmdSN: 0x44,
    };
    const pdu = roundtrip(encodeTaskMgmtResponse(f), null, opts);
    t.like(pdu, { opcode: Opcode.TaskMgmtResponse, final: true, itt: 0x41 });
    t.deepEqual(decodeTaskMgmtResponse(pdu), f);
  });

  test(`roundtrip Login Response (${label})`, (t) => {
    const f = {
      transit: false,
      continue: true,
      csg: LoginStage.LoginOperationalNegotiation,
      nsg: 0,
      versionMax: 0,
      versionActive: 0,
      isid: isidFromHex('400001370000'),
      tsih: 0xbeef,
      itt: 0x51,
      statSN: 0x52,
      expCmdSN: 0x53,
      maxCmdSN: 0x54,
      statusClass: 0,
      statusDetail: 0,
    };
    const pdu = roundtrip(encodeLoginResponse(f), Buffer.from('MaxRecvDataSegmentLength=262144\0'), opts);
    t.like(pdu, { opcode: Opcode.LoginResponse, final: false, itt: 0x51 });
    t.deepEqual(decodeLoginResponse(pdu), f);
  });

  test(`roundtrip Text Response (${label})`, (t) => {
    const f = {
      final: true,
      continue: false,
      lun: 0n,
      itt: 0x61,
      ttt: 0xffffffff,
      statSN: 0x62,
      expCmdSN: 0x63,
      maxCmdSN: 0x64,
    };
    const pdu = roundtrip(
      encodeTextResponse(f),
      Buffer.from('TargetName=iqn.x\0TargetAddress=1.2.3.4:3260,1\0'),
      opts,
    );
    t.like(pdu, { opcode: Opcode.TextResponse, final: true, itt: 0x61 });
    t.deepEqual(decodeTextResponse(pdu), f);
  });

  test(`roundtrip Data-In (${label})`, (t) => {
    const f = {
      final: false,
      ack: true,
      residualOverflow: true,
      residualUnderflow: false,
      statusPresent: false,
      status: 0,
      lun: lunField(16383),
      itt: 0x71,
      ttt: 0x72,
      statSN: 0,
      expCmdSN: 0x74,
      maxCmdSN: 0x75,
      dataSN: 0x76,
      bufferOffset: 0x77,
      residualCount: 0x78,
    };
    const parts = [Buffer.alloc(100, 1), Buffer.alloc(0), Buffer.alloc(3, 2)];
    const wire = Buffer.concat(frame(encodeDataIn(f), parts, opts));
    const pdu = parseOne(wire, opts);
    t.like(pdu, { opcode: Opcode.DataIn, final: false, itt: 0x71, dataLength: 103 });
    t.deepEqual(pdu.data, Buffer.concat(parts));
    t.deepEqual(decodeDataIn(pdu), f);
  });

  test(`roundtrip Logout Response (${label})`, (t) => {
    const f = {
      response: LogoutResponseCode.CleanupFailed,
      itt: 0x81,
      statSN: 0x82,
      expCmdSN: 0x83,
      maxCmdSN: 0x84,
      time2Wait: 2,
      time2Retain: 20,
    };
    const pdu = roundtrip(encodeLogoutResponse(f), null, opts);
    t.like(pdu, { opcode: Opcode.LogoutResponse, final: true, itt: 0x81 });
    t.deepEqual(decodeLogoutResponse(pdu), f);
  });

  test(`roundtrip R2T (${label})`, (t) => {
    const f = {
      lun: lunField(4),
      itt: 0x91,
      ttt: 0x92,
      statSN: 0x93,
      expCmdSN: 0x94,
      maxCmdSN: 0x95,
      r2tSN: 0x96,
      bufferOffset: 0x97,
      desiredDataTransferLength: 0x98,
    };
    const pdu = roundtrip(encodeR2T(f), null, opts);
    t.like(pdu, { opcode: Opcode.R2T, final: true, itt: 0x91 });
    t.deepEqual(decodeR2T(pdu), f);
  });

  test(`roundtrip Async Message (${label})`, (t) => {
    const f = {
      lun: lunField(6),
      statSN: 0xa1,
      expCmdSN: 0xa2,
      maxCmdSN: 0xa3,
      asyncEvent: AsyncEvent.LogoutRequest,
      asyncVCode: 0x5a,
      parameter1: 0x1111,
      parameter2: 0x2222,
      parameter3: 0x3333,
    };
    const pdu = roundtrip(encodeAsyncMessage(f), Buffer.from([0, 0]), opts);
    t.like(pdu, { opcode: Opcode.AsyncMessage, final: true, itt: 0xffffffff, dataLength: 2 });
    t.deepEqual(decodeAsyncMessage(pdu), f);
  });

  test(`roundtrip Reject with the offending BHS as data (${label})`, (t) => {
    const offending = encodeNopOut({ itt: 5, cmdSN: 6, expStatSN: 7 });
    const f = {
      reason: RejectReason.ProtocolError,
      statSN: 0xb1,
      expCmdSN: 0xb2,
      maxCmdSN: 0xb3,
      dataSN: 0xb4,
    };
    const pdu = roundtrip(encodeReject(f), offending, opts);
    t.like(pdu, { opcode: Opcode.Reject, final: true, itt: 0xffffffff, dataLength: 48 });
    t.deepEqual(decodeReject(pdu), f);
    t.deepEqual(pdu.data, offending);
  });
}

// ---------------------------------------------------------------------------
// frame()

test('frame returns an iovec list and never copies data', (t) => {
  const bhs = encodeDataIn({ itt: 1, expCmdSN: 1, maxCmdSN: 1, dataSN: 0, bufferOffset: 0 });
  const a = Buffer.alloc(5, 1);
  const b = Buffer.alloc(6, 2);
  const iov = frame(bhs, [a, b], DIGESTS);
  t.is(iov.length, 6); // bhs, hdigest, a, b, pad, ddigest
  t.is(iov[0], bhs);
  t.is(iov[2], a);
  t.is(iov[3], b);
  t.deepEqual(iov[4], Buffer.alloc(1));
  t.is(iov[1]!.readUInt32LE(0), crc32c(bhs));
  t.is(iov[5]!.readUInt32LE(0), crc32c(Buffer.concat([a, b, Buffer.alloc(1)])));
  t.is(bhs.readUIntBE(5, 3), 11);

  const plain = frame(encodeNopIn({ itt: 1, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }), null, NO_DIGESTS);
  t.is(plain.length, 1);
  const hdOnly = frame(
    encodeNopIn({ itt: 1, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }),
    Buffer.alloc(0),
    DIGESTS,
  );
  t.is(hdOnly.length, 2); // no data: no pad, no data digest
});

test('frame header digest covers BHS and AHS', (t) => {
  const f = { itt: 1, expectedDataTransferLength: 0, cmdSN: 1, expStatSN: 1, cdb: Buffer.alloc(20, 9) };
  const ahs = scsiCommandAhs(f)!;
  const iov = frame(encodeScsiCommand(f), null, DIGESTS, ahs);
  t.is(iov.length, 3);
  t.is(iov[1], ahs);
  t.is(iov[0]![4], ahs.length / 4);
  t.is(iov[2]!.readUInt32LE(0), crc32c(Buffer.concat([iov[0]!, ahs])));
});

test('frame rejects bad arguments', (t) => {
  const bhs = encodeNopIn({ itt: 1, statSN: 1, expCmdSN: 1, maxCmdSN: 1 });
  t.throws(() => frame(bhs, Buffer.alloc(0x1000000), NO_DIGESTS), { instanceOf: RangeError });
  t.throws(() => frame(bhs, null, NO_DIGESTS, Buffer.alloc(6)), { instanceOf: RangeError });
  t.throws(() => frame(bhs, null, NO_DIGESTS, Buffer.alloc(1024)), { instanceOf: RangeError });
  t.throws(() => frame(bhs, null, { headerDigest: true, dataDigest: false }), { instanceOf: TypeError });
  t.throws(() => frame(Buffer.alloc(47), null, NO_DIGESTS), { instanceOf: RangeError });
  t.notThrows(() => frame(bhs, Buffer.alloc(0xffffff), NO_DIGESTS));
});

test('encoders default optional fields', (t) => {
  const nop = decodeNopOut(
    parseOne(frameToBuffer(encodeNopOut({ itt: 1, cmdSN: 2, expStatSN: 3 }), null, NO_DIGESTS), NO_DIGESTS),
  );
  t.deepEqual(nop, { immediate: false, lun: 0n, itt: 1, ttt: 0xffffffff, cmdSN: 2, expStatSN: 3 });
  const cmd = encodeScsiCommand({
    itt: 1,
    expectedDataTransferLength: 0,
    cmdSN: 1,
    expStatSN: 1,
    cdb: hex('00'),
  });
  t.is(cmd[1], 0x81); // F, ATTR=Simple
  t.deepEqual(cmd.subarray(32), Buffer.alloc(16));
  t.is(scsiCommandAhs({ cdb: Buffer.alloc(16) }), null);
  t.is(
    encodeLoginRequest({
      transit: false,
      continue: false,
      csg: 0,
      nsg: 0,
      isid: Buffer.alloc(6),
      itt: 0,
      cmdSN: 0,
      expStatSN: 0,
    })[0],
    0x43,
  );
  t.throws(() =>
    encodeLoginResponse({
      transit: false,
      continue: false,
      csg: 0,
      nsg: 0,
      isid: Buffer.alloc(5),
      tsih: 0,
      itt: 0,
      statSN: 0,
      expCmdSN: 0,
      maxCmdSN: 0,
      statusClass: 0,
      statusDetail: 0,
    }),
  );
});

// ---------------------------------------------------------------------------
// Helpers

test('malformed AHS makes decodeScsiCommand throw PduFormatError', (t) => {
  const bhs = encodeScsiCommand({
    itt: 1,
    expectedDataTransferLength: 0,
    cmdSN: 1,
    expStatSN: 1,
    cdb: Buffer.alloc(16),
  });
  const bad = hex('00 10 01 00'); // AHSLength 16 overruns a 4-byte AHS
  const pdu = roundtrip(bhs, null, NO_DIGESTS, bad);
  t.throws(() => decodeScsiCommand(pdu), { instanceOf: PduFormatError });
  t.is(parseAhs(bad), null);
  t.deepEqual(parseAhs(Buffer.alloc(0)), []);
  const badBidi = roundtrip(Buffer.from(bhs), null, NO_DIGESTS, hex('00 04 02 00 00 00 00 00'));
  t.throws(() => decodeScsiCommand(badBidi), { instanceOf: PduFormatError });
  // Unknown AHS types are ignored.
  const unk = roundtrip(Buffer.from(bhs), null, NO_DIGESTS, hex('00 01 7f 00'));
  t.is(decodeScsiCommand(unk).cdb.length, 16);
});

test('LUN helpers', (t) => {
  t.is(lunField(0), 0n);
  t.is(lunField(5), 0x0005000000000000n);
  t.is(lunField(256), 0x4100000000000000n);
  for (const n of [0, 1, 255, 256, 4095, 16383]) t.is(lunFromField(lunField(n)), n);
  t.is(lunFromField(0x0005000000000001n), -1);
  t.is(lunFromField(0x8000000000000000n), -1);
  t.is(lunFromField(0x0105000000000000n), -1); // bus 1
  t.throws(() => lunField(16384));
});

test('ISID and sense helpers', (t) => {
  t.is(isidToHex(hex('00023d000001')), '00023d000001');
  t.throws(() => isidFromHex('00023d00000'));
  t.deepEqual(decodeSenseSegment(Buffer.alloc(0)), { sense: Buffer.alloc(0), responseData: Buffer.alloc(0) });
  t.is(decodeSenseSegment(hex('00')), null);
  t.is(decodeSenseSegment(hex('0005 0102')), null);
  t.deepEqual(senseLengthPrefix(18), hex('0012'));
});
