/**
 * ErrorRecoveryLevel 1 (RFC 7143 sec. 7, 11.16): negotiation, a Data-Out lost to a data digest error asked
 * for again with a recovery R2T, and the SNACKs (Status, Data, DataACK, R-Data) answered from what the target
 * kept; a SNACK for what was never sent or was acknowledged is rejected. The initiator here plays the lossy
 * side on purpose: it corrupts a digest, or ignores a PDU it received and asks for it again.
 */
import test, { type ExecutionContext } from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { encodeDataOut, encodeScsiCommand, encodeSnackRequest, frame } from '../src/pdu/serializer';
import { crc32cRef } from '../src/pdu/crc32c-ref';
import { decodeDataIn, decodeReject, decodeScsiResponse, decodeR2T, type Pdu } from '../src/pdu/pdu';
import { Opcode, SnackType, RESERVED_TAG } from '../src/pdu/opcodes';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';

const counters = (tt: TestTarget) => readCounters(tt.target.counters).total;
const TUR = Buffer.alloc(6);

function erlTarget(level: number | null): Promise<TestTarget> {
  return startTestTarget({
    workers: 1,
    extra: level === null ? {} : { params: { ErrorRecoveryLevel: level } },
  });
}

async function login(
  t: ExecutionContext,
  tt: TestTarget,
  name: string,
  keys: Record<string, string>,
): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(tt.port);
  const lr = await ini.login({
    targetName: TEST_TARGET,
    initiatorName: `iqn.2026-11.io.nodetgt.test:${name}`,
    keys: defaultOperationalKeys().map(([k, v]): [string, string] => [k, keys[k] ?? v]),
  });
  t.is(lr.status, 0);
  return ini;
}

/** A session at ERL 1 on a target that offers it, for `body`; both end after. */
async function onErl1(
  t: ExecutionContext,
  name: string,
  keys: Record<string, string>,
  body: (ini: TestInitiator, tt: TestTarget) => Promise<void>,
): Promise<void> {
  const tt = await erlTarget(1);
  try {
    const ini = await login(t, tt, name, keys);
    await body(ini, tt);
    ini.close();
  } finally {
    await tt.close();
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 9)) & 0xff;
  return b;
}

/** A SCSI command sent by hand (its PDUs come back through next()); returns its ITT. */
function sendByHand(
  ini: TestInitiator,
  cdb: Buffer,
  o: { edtl: number; read?: boolean; write?: boolean },
): number {
  const itt = ini.byHand(ini.itt++);
  ini.send(
    encodeScsiCommand({
      final: true,
      read: !!o.read,
      write: !!o.write,
      attr: 1,
      itt,
      expectedDataTransferLength: o.edtl,
      cmdSN: ini.cmdSN++,
      expStatSN: ini.expStatSN,
      cdb,
    }),
  );
  return itt;
}

async function nextOf(t: ExecutionContext, ini: TestInitiator, op: number, what: string): Promise<Pdu> {
  const p = await ini.next(5000);
  t.truthy(p, `${what}: a PDU comes`);
  t.is(p!.opcode, op, `${what}: opcode 0x${op.toString(16)}`);
  return p!;
}

function snack(
  ini: TestInitiator,
  f: { type: number; itt?: number; ttt?: number; begRun: number; runLength: number; expStatSN?: number },
): void {
  ini.send(
    encodeSnackRequest({
      type: f.type,
      itt: f.itt ?? RESERVED_TAG,
      ttt: f.ttt ?? RESERVED_TAG,
      expStatSN: f.expStatSN ?? ini.expStatSN,
      begRun: f.begRun,
      runLength: f.runLength,
    }),
  );
}

test('negotiation: ERL 1 only when both offer it (the default target offers 2); at ERL 0 a SNACK is Rejected 0x05', async (t) => {
  const dflt = await erlTarget(null);
  const one = await erlTarget(1);
  try {
    const a = await TestInitiator.connect(dflt.port);
    const ra = await a.login({
      targetName: TEST_TARGET,
      keys: defaultOperationalKeys().map(([k, v]): [string, string] => [
        k,
        k === 'ErrorRecoveryLevel' ? '1' : v,
      ]),
    });
    t.is(ra.keys.get('ErrorRecoveryLevel'), '1', 'default target (offers 2), initiator 1: 1 (the minimum)');
    a.close();

    const b = await login(t, one, 'erl0-initiator', {});
    t.is(b.params.errorRecoveryLevel, 0, 'target 1, initiator 0: 0');
    snack(b, { type: SnackType.Status, begRun: 0, runLength: 0 });
    const rej = await nextOf(t, b, Opcode.Reject, 'SNACK at ERL 0');
    t.is(decodeReject(rej).reason, 0x05, 'Command not supported');
    b.close();
    const c = await login(t, one, 'erl1', { ErrorRecoveryLevel: '1' });
    t.is(c.params.errorRecoveryLevel, 1, 'both 1: 1');
    c.close();
  } finally {
    await dflt.close();
    await one.close();
  }
});

test('ERL 1: a Data-Out with a bad data digest is Rejected (0x02) and asked for again by a recovery R2T; the connection stays and the data on disk is right', async (t) => {
  await onErl1(t, 'dd', { ErrorRecoveryLevel: '1', DataDigest: 'CRC32C' }, async (ini, tt) => {
    t.true(ini.dataDigest);
    const c0 = counters(tt);
    const data = pattern(3 * 8192, 7);
    const task = ini.start(cdb10(0x2a, 100, data.length / 512), {
      edtl: data.length,
      write: true,
      data,
      immediate: 0,
      holdData: true,
    });
    const r2t = await task.r2t();
    task.answeredByHand(r2t);
    t.is(r2t.bufferOffset, 0);
    t.is(r2t.desiredDataTransferLength, data.length);
    for (let i = 0; i < 3; i++) {
      const wire = Buffer.concat(
        frame(
          encodeDataOut({
            final: i === 2,
            itt: task.itt,
            ttt: r2t.ttt,
            expStatSN: ini.expStatSN,
            dataSN: i,
            bufferOffset: i * 8192,
          }),
          data.subarray(i * 8192, (i + 1) * 8192),
          { headerDigest: false, dataDigest: true, crc32c: crc32cRef },
        ),
      );
      if (i === 1) wire[wire.length - 1] ^= 0x10; // the second PDU's data digest
      ini.sendRaw(wire);
    }
    const rej = await nextOf(t, ini, Opcode.Reject, 'bad data digest');
    t.is(decodeReject(rej).reason, 0x02, 'Data (payload) digest error');
    t.is(rej.data.readUInt32BE(40), 8192, 'the Reject carries the lost Data-Out header');
    const again = await task.r2t();
    t.is(again.r2tSN, 1, 'a recovery R2T takes the next R2TSN');
    t.is(again.bufferOffset, 8192, 'from the lost PDU');
    t.is(again.desiredDataTransferLength, 16384, 'to the end of the broken sequence');
    task.answer(again);
    t.is((await task.done).status, 0, 'the WRITE completes GOOD');
    const back = await ini.scsi(cdb10(0x28, 100, data.length / 512), { edtl: data.length, read: true });
    t.true(back.data.equals(data), 'the data on disk is what was sent');
    const c1 = counters(tt);
    t.is(c1.instSsnDigestErrors - c0.instSsnDigestErrors, 1, 'one digest error');
    t.is(c1.recoveryR2ts - c0.recoveryR2ts, 1, 'one recovery R2T');
    t.false(ini.closed, 'the connection stays');
    t.is((await ini.nop(Buffer.from('alive'))).data.toString(), 'alive');
  });
});

test('ERL 1: a Status SNACK gets a lost response again; acknowledged or never sent StatSNs are Rejected 0x04', async (t) => {
  await onErl1(t, 'status', { ErrorRecoveryLevel: '1' }, async (ini, tt) => {
    const itt = sendByHand(ini, TUR, { edtl: 0 });
    const lost = await nextOf(t, ini, Opcode.ScsiResponse, 'TEST UNIT READY');
    const sn = decodeScsiResponse(lost).statSN;
    // The initiator lost it: its ExpStatSN stays at sn, and it asks for sn again.
    snack(ini, { type: SnackType.Status, begRun: sn, runLength: 1, expStatSN: sn });
    const again = await nextOf(t, ini, Opcode.ScsiResponse, 'Status SNACK');
    const r = decodeScsiResponse(again);
    t.is(r.statSN, sn, 'the same StatSN');
    t.is(r.itt, itt);
    t.true(again.bhs.subarray(0, 28).equals(lost.bhs.subarray(0, 28)), 'an exact replica up to ExpCmdSN');

    const c0 = counters(tt);
    // ExpStatSN sn + 1 acknowledges it: asking again is a protocol error, as is a StatSN never sent.
    snack(ini, { type: SnackType.Status, begRun: sn, runLength: 1, expStatSN: sn + 1 });
    const rej = await nextOf(t, ini, Opcode.Reject, 'acknowledged status');
    t.is(decodeReject(rej).reason, 0x04, 'Protocol error');
    snack(ini, { type: SnackType.Status, begRun: sn + 50, runLength: 2 });
    t.is(decodeReject(await nextOf(t, ini, Opcode.Reject, 'never sent')).reason, 0x04);
    const c1 = counters(tt);
    t.is(c1.rejectsSent - c0.rejectsSent, 2, 'counted');
    t.is(c1.snackRequests - c0.snackRequests, 2);
    await ini.nop();
  });
});

test('ERL 1: a Data SNACK gets a dropped Data-In again; a DataACK frees the data below it; R-Data SNACK resends the rest and the status with its tag', async (t) => {
  await onErl1(
    t,
    'data',
    {
      ErrorRecoveryLevel: '1',
      MaxRecvDataSegmentLength: '8192',
      MaxBurstLength: '16384',
      FirstBurstLength: '16384',
    },
    async (ini) => {
      const data = pattern(65536, 3);
      const w = await ini.scsi(cdb10(0x2a, 0, 128), { edtl: 65536, write: true, data, immediate: 16384 });
      t.is(w.status, 0);

      const itt = sendByHand(ini, cdb10(0x28, 0, 128), { edtl: 65536, read: true });
      const pdus: Pdu[] = [];
      for (let i = 0; i < 8; i++) pdus.push(await nextOf(t, ini, Opcode.DataIn, `Data-In ${i}`));
      const ins = pdus.map(decodeDataIn);
      t.deepEqual(
        ins.map((d) => d.dataSN),
        [0, 1, 2, 3, 4, 5, 6, 7],
      );
      t.deepEqual(
        ins.map((d) => d.ack),
        [false, true, false, true, false, true, false, false],
        'the A bit ends each 16 KiB sequence without status',
      );
      const ackTtt = ins[1]!.ttt;
      t.not(ackTtt, RESERVED_TAG, 'a Data-In with A carries a Target Transfer Tag');
      t.true(ins[7]!.statusPresent);
      const statSN = ins[7]!.statSN;

      // DataSN 3 "lost": ask for it (the status is not acknowledged while data is missing).
      snack(ini, { type: SnackType.DataR2T, itt, begRun: 3, runLength: 1, expStatSN: statSN });
      const re = await nextOf(t, ini, Opcode.DataIn, 'Data SNACK');
      t.is(decodeDataIn(re).dataSN, 3);
      t.true(re.data.equals(data.subarray(3 * 8192, 4 * 8192)), 'the same bytes');

      // DataACK up to DataSN 4: DataSN 0..3 are freed; asking for 2 again is a protocol error.
      snack(ini, { type: SnackType.DataAck, ttt: ackTtt, begRun: 4, runLength: 0, expStatSN: statSN });
      snack(ini, { type: SnackType.DataR2T, itt, begRun: 2, runLength: 1, expStatSN: statSN });
      const rej = await nextOf(t, ini, Opcode.Reject, 'SNACK for acknowledged data');
      t.is(decodeReject(rej).reason, 0x04, 'Protocol error');
      t.is(decodeReject(rej).dataSN, 8, 'the Reject names the next DataSN');
      snack(ini, { type: SnackType.DataR2T, itt, begRun: 9, runLength: 1, expStatSN: statSN });
      t.is(decodeReject(await nextOf(t, ini, Opcode.Reject, 'never sent')).reason, 0x04);
      snack(ini, { type: SnackType.DataAck, ttt: ackTtt, begRun: 12, runLength: 0, expStatSN: statSN });
      t.is(
        decodeReject(await nextOf(t, ini, Opcode.Reject, 'DataACK beyond')).reason,
        0x08,
        'Invalid DataACK',
      );

      // R-Data SNACK: the unacknowledged Data-In (DataSN 4..7) again, then the status with the SNACK Tag.
      snack(ini, { type: SnackType.RData, itt, ttt: 0x5a5a, begRun: 0, runLength: 0, expStatSN: statSN });
      const rest: Buffer[] = [];
      for (let sn = 4; sn < 8; sn++) {
        const p = await nextOf(t, ini, Opcode.DataIn, `R-Data ${sn}`);
        const d = decodeDataIn(p);
        t.is(d.dataSN, sn);
        t.false(d.statusPresent);
        rest.push(p.data);
      }
      t.true(Buffer.concat(rest).equals(data.subarray(4 * 8192)), 'the unacknowledged half');
      const rsp = decodeScsiResponse(await nextOf(t, ini, Opcode.ScsiResponse, 'R-Data status'));
      t.is(rsp.snackTag, 0x5a5a, 'the SNACK Tag');
      t.is(rsp.statSN, statSN, "the task's StatSN");
      t.is(rsp.status, 0);
      t.is(rsp.expDataSN, 8);

      // ExpStatSN past the status: everything of the READ is dropped; a SNACK for it is a protocol error.
      await ini.nop();
      snack(ini, { type: SnackType.DataR2T, itt, begRun: 4, runLength: 1 });
      t.is(decodeReject(await nextOf(t, ini, Opcode.Reject, 'after the status ack')).reason, 0x04);
    },
  );
});

test('ERL 1: an R2T SNACK gets an R2T again, a replica', async (t) => {
  await onErl1(t, 'r2t', { ErrorRecoveryLevel: '1' }, async (ini) => {
    const data = pattern(8192, 9);
    const itt = sendByHand(ini, cdb10(0x2a, 200, 16), { edtl: 8192, write: true });
    const first = await nextOf(t, ini, Opcode.R2T, 'R2T');
    snack(ini, { type: SnackType.DataR2T, itt, begRun: 0, runLength: 1 });
    const again = await nextOf(t, ini, Opcode.R2T, 'R2T SNACK');
    t.true(again.bhs.subarray(0, 28).equals(first.bhs.subarray(0, 28)), 'the same R2T');
    t.is(decodeR2T(again).r2tSN, 0);
    snack(ini, { type: SnackType.DataR2T, itt, begRun: 1, runLength: 1 });
    const rej = decodeReject(await nextOf(t, ini, Opcode.Reject, 'R2TSN never sent'));
    t.is(rej.reason, 0x04);
    t.is(rej.dataSN, 1, 'the next R2TSN');
    ini.send(
      encodeDataOut({
        final: true,
        itt,
        ttt: decodeR2T(first).ttt,
        expStatSN: ini.expStatSN,
        dataSN: 0,
        bufferOffset: 0,
      }),
      data,
    );
    t.is(decodeScsiResponse(await nextOf(t, ini, Opcode.ScsiResponse, 'WRITE')).status, 0);
    const back = await ini.scsi(cdb10(0x28, 200, 16), { edtl: 8192, read: true });
    t.true(back.data.equals(data));
  });
});
