/**
 * Header and data digests (CRC32C) once negotiated: with a real initiator, with ours, and when corrupted.
 * That digests were really used is read on the target's side: the parser counts the PDUs whose header / data
 * digest it checked and found right (pduHeaderDigestsVerified / pduDataDigestsVerified), and the digest errors
 * (instSsnDigestErrors).
 */
import test, { type ExecutionContext } from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { run } from './helpers/run';
import { encodeNopOut, encodeScsiCommand, frame } from '../src/pdu/serializer';
import { crc32cRef } from '../src/pdu/crc32c-ref';
import { decodeReject } from '../src/pdu/pdu';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';

const counters = (tt: TestTarget) => readCounters(tt.target.counters).total;

function digestKeys(header: boolean, data: boolean): Array<[string, string]> {
  return defaultOperationalKeys().map(([k, v]): [string, string] =>
    (k === 'HeaderDigest' && header) || (k === 'DataDigest' && data) ? [k, 'CRC32C'] : [k, v],
  );
}

async function login(
  t: ExecutionContext,
  tt: TestTarget,
  name: string,
  header = false,
  data = false,
): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(tt.port);
  const lr = await ini.login({
    targetName: TEST_TARGET,
    initiatorName: `iqn.2026-11.io.nodetgt.test:${name}`,
    keys: digestKeys(header, data),
  });
  t.is(lr.status, 0);
  t.is(lr.keys.get('HeaderDigest'), header ? 'CRC32C' : 'None');
  t.is(lr.keys.get('DataDigest'), data ? 'CRC32C' : 'None');
  return ini;
}

async function readOk(t: ExecutionContext, ini: TestInitiator, who: string): Promise<void> {
  const r = await ini.scsi(cdb10(0x28, 0, 8), { edtl: 4096, read: true });
  t.is(r.status, 0, `${who}: READ succeeds`);
  t.is(r.data.length, 4096);
}

test('QEMU with HeaderDigest=CRC32C writes and reads back a pattern; the target checked its header digests', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const before = counters(tt);
    const opts = `driver=iscsi,transport=tcp,portal=127.0.0.1:${tt.port},target=${TEST_TARGET},lun=0,header-digest=crc32c`;
    const r = await run(
      'qemu-io',
      ['--image-opts', opts, '-c', 'write -P 0x3c 4096 1M', '-c', 'read -P 0x3c 4096 1M'],
      60_000,
    );
    t.is(r.code, 0, r.stderr + r.stdout);
    t.regex(r.stdout, /read 1048576\/1048576 bytes/);
    t.notRegex(r.stdout, /Pattern verification failed/);
    const after = counters(tt);
    const headers = after.pduHeaderDigestsVerified - before.pduHeaderDigestsVerified;
    const received = after.ssnCmdPDUs - before.ssnCmdPDUs;
    t.log(`PDUs received ${received}, header digests verified ${headers}`);
    // Every PDU after the login carries a header digest the target checked (the login PDUs have none).
    t.true(headers > 0, 'the target verified header digests');
    t.true(received - headers >= 1 && received - headers <= 4, 'all but the login PDUs');
    t.is(after.pduDataDigestsVerified - before.pduDataDigestsVerified, 0, 'no data digest asked for');
    t.is(after.instSsnDigestErrors - before.instSsnDigestErrors, 0);
  } finally {
    await tt.close();
  }
});

test('both digests: our initiator writes and reads, every PDU digest-checked; a corrupted data digest gets Reject (0x02), counted once', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const plain = await login(t, tt, 'plain');
    const c0 = counters(tt);
    await readOk(t, plain, 'a session without digests');
    t.is(counters(tt).pduHeaderDigestsVerified, c0.pduHeaderDigestsVerified, 'no digest, nothing counted');

    const ini = await login(t, tt, 'digests', true, true);
    t.true(ini.headerDigest && ini.dataDigest);
    const c1 = counters(tt);
    const data = Buffer.alloc(65536 + 512, 0x77);
    const w = cdb10(0x2a, 0, data.length / 512);
    t.is((await ini.scsi(w, { edtl: data.length, write: true, data, immediate: 8192 })).status, 0);
    const back = await ini.scsi(cdb10(0x28, 0, data.length / 512), { edtl: data.length, read: true });
    t.is(back.status, 0);
    t.true(back.data.equals(data));
    const c2 = counters(tt);
    t.is(
      c2.pduHeaderDigestsVerified - c1.pduHeaderDigestsVerified,
      ini.pdusSent,
      'every PDU sent: header digest',
    );
    t.is(
      c2.pduDataDigestsVerified - c1.pduDataDigestsVerified,
      ini.dataPdusSent,
      'every data segment: data digest',
    );

    // A NOP-Out whose data digest is wrong: Reject (data digest error), one digest error, the connection stays.
    const iov = frame(
      encodeNopOut({ immediate: true, itt: 42, ttt: 0xffffffff, cmdSN: ini.cmdSN, expStatSN: ini.expStatSN }),
      Buffer.from('hello world!'),
      { headerDigest: true, dataDigest: true, crc32c: crc32cRef },
    );
    const wire = Buffer.concat(iov);
    wire[wire.length - 1] ^= 0xff;
    ini.sendRaw(wire);
    const p = await ini.next();
    t.is(p?.opcode, 0x3f);
    t.is(decodeReject(p!).reason, 0x02);
    t.is(p!.data.readUInt32BE(16), 42, 'the Reject carries the NOP-Out header');
    const nop = await ini.nop(Buffer.from('still here'));
    t.is(nop.data.toString(), 'still here');
    const c3 = counters(tt);
    t.is(c3.instSsnDigestErrors - c2.instSsnDigestErrors, 1, 'one digest error');
    t.is(c3.pduDataDigestsVerified - c2.pduDataDigestsVerified, 1, 'only the good NOP-Out data verified');
    await readOk(t, plain, 'the other session');
    ini.close();
    plain.close();
  } finally {
    await tt.close();
  }
});

test('a corrupted header digest: the PDU cannot be trusted, the connection is dropped (ERL 0), counted once; others go on', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    const plain = await login(t, tt, 'plain');
    const ini = await login(t, tt, 'header-digest', true, false);
    await readOk(t, ini, 'the digest session');
    const c0 = counters(tt);
    // A READ whose header digest is wrong (one bit of the CRC flipped).
    const wire = Buffer.concat(
      frame(
        encodeScsiCommand({
          final: true,
          read: true,
          attr: 1,
          itt: 0x77,
          expectedDataTransferLength: 4096,
          cmdSN: ini.cmdSN,
          expStatSN: ini.expStatSN,
          cdb: cdb10(0x28, 0, 8),
        }),
        null,
        { headerDigest: true, dataDigest: false, crc32c: crc32cRef },
      ),
    );
    t.is(wire.length, 52);
    wire[50] ^= 0x01;
    ini.sendRaw(wire);
    t.is(await ini.next(5000), null, 'nothing comes back: no Reject for a header that cannot be trusted');
    await ini.closedPromise;
    t.true(ini.closed, 'the target dropped the connection');
    const c1 = counters(tt);
    t.is(c1.instSsnDigestErrors - c0.instSsnDigestErrors, 1, 'one digest error');
    t.is(
      c1.pduHeaderDigestsVerified,
      c0.pduHeaderDigestsVerified,
      'the bad header was not counted as verified',
    );
    t.is(c1.scsiCommands, c0.scsiCommands, 'the READ was not executed');
    await readOk(t, plain, 'the other session');
    const again = await login(t, tt, 'header-digest', true, false);
    await readOk(t, again, 'a new digest session');
    again.close();
    plain.close();
  } finally {
    await tt.close();
  }
});

test('data digest held over to the next PDU of a turn: many Data-In in one turn, odd lengths, then logout', async (t) => {
  // The target writes a data PDU's digest in front of the next PDU's header (or at the turn's end, or
  // before a logout ends the socket): every digest must still arrive right after its data, in order.
  const tt = await startTestTarget({ workers: 1 });
  try {
    const ini = await login(t, tt, 'held-digests', true, true);
    const pattern = Buffer.alloc(8 * 512);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + 3) & 0xff;
    const w = await ini.scsi(cdb10(0x2a, 40, 8), { edtl: pattern.length, write: true, data: pattern });
    t.is(w.status, 0);
    // 16 reads at once: their Data-In leave in one corked turn. A 3-byte EDTL (underflow) gives a padded segment.
    const reads = Array.from({ length: 16 }, (_, i) =>
      ini.start(cdb10(0x28, 40, 8), { edtl: i % 4 === 3 ? 3 : pattern.length, read: true }),
    );
    const results = await Promise.all(reads.map((r) => r.done));
    results.forEach((r, i) => {
      t.is(r.status, 0, `read ${i}`);
      t.deepEqual(r.data, pattern.subarray(0, i % 4 === 3 ? 3 : pattern.length), `read ${i} data`);
    });
    await ini.logout();
    ini.close();
  } finally {
    await tt.close();
  }
});
