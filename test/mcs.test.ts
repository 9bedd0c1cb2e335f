/**
 * Multiple connections per session (MC/S), end to end with the TypeScript initiator: one CmdSN space per
 * session, StatSN per connection, connection allegiance, joins refused with their RFC 7143 login statuses,
 * connection reinstatement, logout of one connection or of the session, and ERL 0 session failure.
 */
import test, { type ExecutionContext } from 'ava';
import { readCounters, type CounterName } from '../src/metrics/counters';
import { encodeDataOut } from '../src/pdu/serializer';
import { Opcode, RejectReason } from '../src/pdu/opcodes';
import { decodeReject } from '../src/pdu/pdu';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { McsSession } from './helpers/mcs-initiator';
import { cdb10, pattern } from './scsi-helpers';

const WRITE10 = 0x2a;
const READ10 = 0x28;
const BLOCK = 512;
const SESSION_DOES_NOT_EXIST = 0x020a;
const TOO_MANY_CONNECTIONS = 0x0206;
const INITIATOR_ERROR = 0x0200;

const count = (tt: TestTarget, name: CounterName) => readCounters(tt.target.counters).total[name];

/** Keys of a leading login asking for `n` connections. */
function asking(n: number): Array<[string, string]> {
  return defaultOperationalKeys().map(([k, v]) => [k, k === 'MaxConnections' ? String(n) : v]);
}

async function write(s: McsSession, cid: number, lba: number, data: Buffer): Promise<void> {
  const r = await s.scsi(
    cdb10(WRITE10, lba, data.length / BLOCK),
    { edtl: data.length, write: true, data },
    cid,
  );
  if (r.status !== 0) throw new Error(`WRITE on CID ${cid}: status ${r.status}`);
}

async function read(s: McsSession, cid: number, lba: number, blocks: number): Promise<Buffer> {
  const r = await s.scsi(cdb10(READ10, lba, blocks), { edtl: blocks * BLOCK, read: true }, cid);
  if (r.status !== 0) throw new Error(`READ on CID ${cid}: status ${r.status}`);
  return r.data;
}

/** Resolves true once the connection is closed, false if it is still open after `ms`. */
function closesWithin(ini: TestInitiator, ms: number): Promise<boolean> {
  return Promise.race([
    ini.closedPromise.then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
  ]);
}

/** A session of `n` connections on the shared target, asking for MaxConnections=`ask`, dropped after the test. */
async function openSession(t: ExecutionContext, n: number, ask: number): Promise<McsSession> {
  const s = await McsSession.open(tt.port, n, { targetName: TEST_TARGET, keys: asking(ask) });
  t.teardown(() => s.close());
  return s;
}

let tt: TestTarget;
test.before(async () => {
  // Two workers: every connection of a session must still land on the session's worker.
  tt = await startTestTarget({ workers: 2 });
});
test.after.always(async () => {
  await tt.close();
});

test.serial(
  '4 connections: writes on every connection, each block read back on another, one CmdSN space',
  async (t) => {
    const s = await openSession(t, 4, 4);
    t.is(s.conns.size, 4);
    // Each connection writes its own blocks, all at once (CmdSNs interleave over the connections).
    const blocks = new Map<number, Buffer>();
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 16; i++) {
      const data = pattern(8 * BLOCK, i + 1);
      blocks.set(i * 8, data);
      writes.push(write(s, i % 4, i * 8, data));
    }
    await Promise.all(writes);
    // Read every range on a different connection than the one that wrote it.
    const reads = [...blocks].map(async ([lba, data], i) => {
      const got = await read(s, (i + 1) % 4, lba, 8);
      t.true(got.equals(data), `LBA ${lba} written on CID ${i % 4}, read on CID ${(i + 1) % 4}`);
    });
    await Promise.all(reads);
    // The session's window: the answer on any connection acknowledges every CmdSN sent on all of them.
    const next = s.lead.cmdSN;
    for (const [cid, c] of s.conns) {
      const nop = await c.nop();
      t.is(nop.bhs.readUInt32BE(28), next, `ExpCmdSN on CID ${cid}`);
    }
    // Round-robin with a large read: Data-In on the connection each command arrived on.
    const big = await Promise.all(
      [0, 1, 2, 3].map(() => s.scsi(cdb10(READ10, 0, 128), { edtl: 128 * BLOCK, read: true })),
    );
    for (const r of big) t.true(r.data.subarray(0, 8 * BLOCK).equals(blocks.get(0)!));
  },
);

test.serial(
  'connection allegiance: Data-Out for a command of another connection is rejected there',
  async (t) => {
    const s = await openSession(t, 2, 2);
    const data = pattern(4 * BLOCK, 77);
    // No immediate data: the whole write waits for an R2T on CID 0.
    const task = s
      .conn(0)
      .start(cdb10(WRITE10, 900, 4), { edtl: data.length, write: true, data, immediate: 0, holdData: true });
    const r2t = await task.r2t();
    const other = s.conn(1);
    other.send(
      encodeDataOut({
        final: true,
        lun: task.lunRaw,
        itt: task.itt,
        ttt: r2t.ttt,
        expStatSN: other.expStatSN,
        dataSN: 0,
        bufferOffset: 0,
      }),
      data,
    );
    const rej = await other.next(10_000);
    t.is(rej?.opcode, Opcode.Reject);
    t.is(decodeReject(rej!).reason, RejectReason.InvalidPduField);
    // The command goes on where it belongs.
    task.answer(r2t);
    t.is((await task.done).status, 0);
    t.true((await read(s, 1, 900, 4)).equals(data));
  },
);

test.serial('logout reason 1 closes one connection; the others carry on', async (t) => {
  const s = await openSession(t, 3, 4);
  const normals = count(tt, 'tgtLogoutNormals');
  const resp = await s.conn(2).logout({ reason: 1, cid: 2 });
  t.is(resp.bhs[2], 0, 'Logout Response: success');
  await s.conn(2).closedPromise;
  s.forget(2);
  // One connection logs out another (CID 1 from CID 0): CID 1 is closed by the target.
  const resp1 = await s.conn(0).logout({ reason: 1, cid: 1 });
  t.is(resp1.bhs[2], 0);
  t.true(await closesWithin(s.conn(1), 5000), 'CID 1 closed by the target');
  s.forget(1);
  t.is(count(tt, 'tgtLogoutNormals'), normals + 2);
  // The session goes on with CID 0, and takes a new connection in the freed places.
  const data = pattern(BLOCK, 5);
  await write(s, 0, 2000, data);
  const j = await s.join(2);
  t.is(j.status, 0);
  t.true((await read(s, 2, 2000, 1)).equals(data));
});

test.serial(
  'logout naming an unknown CID: response 1; reason 2 at ERL 0: response 2; nothing closes',
  async (t) => {
    const s = await openSession(t, 2, 2);
    const before = count(tt, 'cxnLogoutCidNotFound');
    const r = await s.conn(0).logout({ reason: 1, cid: 7 });
    t.is(r.bhs[2], 1, 'CID not found');
    t.is(count(tt, 'cxnLogoutCidNotFound'), before + 1);
    const r2 = await s.conn(1).logout({ reason: 2, cid: 1 });
    t.is(r2.bhs[2], 2, 'connection recovery is not supported');
    // Both connections still serve.
    await Promise.all([s.conn(0).nop(), s.conn(1).nop()]);
    t.false(s.conn(0).closed || s.conn(1).closed);
  },
);

test.serial('logout reason 0 closes every connection of the session', async (t) => {
  const s = await openSession(t, 3, 4);
  const r = await s.conn(1).logout({ reason: 0 });
  t.is(r.bhs[2], 0);
  for (const cid of [0, 2]) t.true(await closesWithin(s.conn(cid), 5000), `CID ${cid} closed`);
  s.conn(1).close();
  // The TSIH names no session any more.
  const j = await s.join(3);
  t.is(j.status, SESSION_DOES_NOT_EXIST);
});

test.serial('joining a TSIH that names no session: 0x020a, logged and counted', async (t) => {
  const s = await openSession(t, 1, 4);
  const before = count(tt, 'tgtLoginNoSession');
  const bogus = s.tsih === 0xfffe ? 0xfffd : 0xfffe;
  const j = await s.join(1, { tsih: bogus });
  t.is(j.status, SESSION_DOES_NOT_EXIST);
  t.is(count(tt, 'tgtLoginNoSession'), before + 1);
  // The right TSIH with another initiator's ISID is no session of its either.
  const other = await TestInitiator.connect(tt.port);
  const r = await other.login({ targetName: TEST_TARGET, tsih: s.tsih, cid: 1 });
  other.close();
  t.is(r.status, SESSION_DOES_NOT_EXIST);
  t.is(count(tt, 'tgtLoginNoSession'), before + 2);
});

test.serial('a 5th connection with MaxConnections=4: 0x0206; the 4 go on', async (t) => {
  const s = await openSession(t, 4, 4);
  const before = count(tt, 'tgtLoginTooManyConnections');
  const j = await s.join(4);
  t.is(j.status, TOO_MANY_CONNECTIONS);
  t.is(count(tt, 'tgtLoginTooManyConnections'), before + 1);
  await Promise.all([...s.conns.values()].map((c) => c.nop()));
});

test.serial(
  'a leading-only key in a non-leading login is an initiator error (0x0200); IO keys are fine',
  async (t) => {
    const s = await openSession(t, 1, 4);
    const ok = await s.join(1, {
      keys: [
        ['HeaderDigest', 'CRC32C,None'],
        ['MaxRecvDataSegmentLength', '65536'],
      ],
    });
    t.is(ok.status, 0, 'connection-only keys are negotiated on every connection');
    t.is(ok.keys.get('HeaderDigest'), 'CRC32C', 'digests are per connection: this one has a header digest');
    for (const [cid, key] of [
      [2, ['MaxConnections', '2']],
      [3, ['MaxBurstLength', '65536']],
      [3, ['ErrorRecoveryLevel', '0']],
    ] as const) {
      const bad = await s.join(cid, { keys: [[key[0], key[1]]], sendLeadingOnly: true });
      t.is(bad.status, INITIATOR_ERROR, key[0]);
    }
    // The digest applies on that connection only; both serve.
    await Promise.all([s.conn(0).nop(), s.conn(1).nop()]);
    t.true(s.conn(1).headerDigest);
    t.false(s.conn(0).headerDigest);
  },
);

test.serial(
  'a CID used again: the old connection is logged out, the new one works, the session stays',
  async (t) => {
    const s = await openSession(t, 3, 4);
    const before = count(tt, 'cxnReinstatements');
    const old = s.conn(1);
    const data = pattern(2 * BLOCK, 9);
    await write(s, 1, 3000, data);
    const j = await s.join(1);
    t.is(j.status, 0);
    t.true(await closesWithin(old, 5000), 'the old CID 1 connection is closed');
    t.is(count(tt, 'cxnReinstatements'), before + 1);
    t.true((await read(s, 1, 3000, 2)).equals(data), 'the new CID 1 serves');
    await Promise.all([s.conn(0).nop(), s.conn(2).nop()]);
    // The leading connection's CID too: the session survives even with the old one gone first.
    const lead = s.conn(0);
    t.is((await s.join(0)).status, 0);
    t.true(await closesWithin(lead, 5000));
    t.true((await read(s, 0, 3000, 2)).equals(data));
  },
);

test.serial('ERL 0: one connection that drops ends the session, its other connections closed', async (t) => {
  const s = await openSession(t, 3, 4);
  const before = count(tt, 'ssnConnectionFailures');
  s.conn(1).socket.destroy();
  for (const cid of [0, 2]) t.true(await closesWithin(s.conn(cid), 5000), `CID ${cid} closed by the target`);
  t.is(count(tt, 'ssnConnectionFailures'), before + 1);
  const j = await s.join(1);
  t.is(j.status, SESSION_DOES_NOT_EXIST);
});

test.serial('MaxConnections per target (params) and the default 8: the result is the minimum', async (t) => {
  const t2 = await startTestTarget({
    workers: 1,
    targets: [
      { name: TEST_TARGET, luns: [{ lun: 0, path: 'a.img', size: '4M' }], params: { MaxConnections: 2 } },
    ],
  });
  t.teardown(() => t2.close());
  const s = await McsSession.open(t2.port, 2, { targetName: TEST_TARGET, keys: asking(4) });
  t.teardown(() => s.close());
  t.is(s.keys.get('MaxConnections'), '2');
  t.is((await s.join(2)).status, TOO_MANY_CONNECTIONS);
  // Without a per-target value the target offers 8: an initiator asking for 16 gets 8.
  const ini = await TestInitiator.connect(tt.port);
  t.teardown(() => ini.close());
  const r = await ini.login({ targetName: TEST_TARGET, keys: asking(16) });
  t.is(r.keys.get('MaxConnections'), '8');
});
