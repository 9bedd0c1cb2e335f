/**
 * ErrorRecoveryLevel 2 (RFC 7143 sec. 7.1.4, 7.2.2, 11.5.1): a connection killed in the middle of a write burst
 * leaves its tasks to the session; TASK REASSIGN on another connection (or on a new one, session continuation)
 * resumes them, the target asking with R2Ts only for the data it lacks; Time2Wait + Time2Retain passing with
 * no reassignment aborts them and ends a session left with no connection. Below ERL 2 TASK REASSIGN is refused.
 */
import test, { type ExecutionContext } from 'ava';
import { readCounters, type CounterName } from '../src/metrics/counters';
import { Opcode, RESERVED_TAG, TmfFunction, TmfResponse } from '../src/pdu/opcodes';
import { encodeDataOut, encodeScsiCommand } from '../src/pdu/serializer';
import { decodeR2T, decodeScsiResponse } from '../src/pdu/pdu';
import { normalizeParams } from '../src/config/params';
import { startTestTarget, loginAs, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys, type ScsiTask } from './helpers/initiator';
import { McsSession } from './helpers/mcs-initiator';
import { recoverConnection, reassignTasks, removeForRecovery } from './helpers/erl2-initiator';
import { cdb10, pattern } from './scsi-helpers';
import { snLt } from '../src/session/serial';

const WRITE10 = 0x2a;
const READ10 = 0x28;
const BLOCK = 512;
const KiB = 1024;
const MiB = 1024 * KiB;
const SESSION_DOES_NOT_EXIST = 0x020a;
/** The first write at this LBA on each worker waits HOLD_MS in the backstore (src/backstore/slow-write.ts). */
const SLOW_LBA = 100_000;
const HOLD_MS = 2500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the target has received the command of `cmdSN` (ExpCmdSN, seen from `ini`, passed it). */
async function delivered(ini: TestInitiator, cmdSN: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (snLt(cmdSN, (await ini.nop()).bhs.readUInt32BE(28))) return;
    await sleep(50);
  }
  throw new Error(`CmdSN ${cmdSN} not received`);
}

/** Waits (up to 15 s: a loaded machine is slow) until `cond` holds; returns whether it did. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 300 && !cond(); i++) await sleep(50);
  return cond();
}

// Read by the workers when they start (each test starts its own target).
process.env.NODETGT_TEST_HOOKS = '1';
process.env.NODETGT_TEST_SLOW_WRITE = `${SLOW_LBA * BLOCK}:${HOLD_MS}`;

const count = (tt: TestTarget, name: CounterName) => readCounters(tt.target.counters).total[name];

/**
 * Keys asking for ERL `erl`: 128 KiB bursts (a 512 KiB write takes several R2Ts), one R2T outstanding,
 * 64 KiB of immediate data, and the given DefaultTime2Retain.
 */
function keys(erl: number, time2Retain = 20, more: Record<string, string> = {}): Array<[string, string]> {
  const over: Record<string, string> = {
    ...more,
    ErrorRecoveryLevel: String(erl),
    DefaultTime2Retain: String(time2Retain),
    DefaultTime2Wait: '0',
    MaxBurstLength: String(128 * KiB),
    FirstBurstLength: String(64 * KiB),
  };
  return defaultOperationalKeys().map(([k, v]) => [k, over[k] ?? v]);
}

function startErl2Target(params: Record<string, unknown> = {}): Promise<TestTarget> {
  // Time2Wait is numerical-max: the target's 0 lets the initiator's 0 stand (a short Time2Retain test).
  return startTestTarget({
    workers: 2,
    extra: { params: { ErrorRecoveryLevel: 2, DefaultTime2Wait: 0, ...params } },
  });
}

async function openSession(
  t: ExecutionContext,
  tt: TestTarget,
  n: number,
  erl = 2,
  t2r = 20,
  more: Record<string, string> = {},
) {
  const s = await McsSession.open(tt.port, n, { targetName: TEST_TARGET, keys: keys(erl, t2r, more) });
  t.teardown(() => {
    try {
      s.close();
    } catch {
      // a violation was already reported by the test that saw it
    }
  });
  return s;
}

function startWrite(ini: TestInitiator, lba: number, data: Buffer, holdData = false): ScsiTask {
  return ini.start(cdb10(WRITE10, lba, data.length / BLOCK), {
    edtl: data.length,
    write: true,
    data,
    holdData,
  });
}

async function readBack(ini: TestInitiator, lba: number, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let off = 0; off < bytes; off += MiB) {
    const n = Math.min(MiB, bytes - off);
    const r = await ini.scsi(cdb10(READ10, lba + off / BLOCK, n / BLOCK), { edtl: n, read: true });
    if (r.status !== 0) throw new Error(`READ at ${lba + off / BLOCK}: status ${r.status}`);
    parts.push(r.data);
  }
  return Buffer.concat(parts);
}

/** A plain write and read on another session: it is unharmed. */
async function healthy(t: ExecutionContext, ini: TestInitiator, lba: number, seed: number): Promise<void> {
  const data = pattern(8 * KiB, seed);
  const w = await startWrite(ini, lba, data).done;
  t.is(w.status, 0, 'the other session still writes');
  t.true((await readBack(ini, lba, data.length)).equals(data), 'and reads back what it wrote');
}

test('negotiation: the target offers ErrorRecoveryLevel 2 by default and honours a lower level', async (t) => {
  const tt = await startTestTarget({ workers: 1 });
  try {
    for (const erl of [2, 1, 0]) {
      const ini = await TestInitiator.connect(tt.port);
      const r = await ini.login({ targetName: TEST_TARGET, keys: keys(erl) });
      t.is(r.status, 0);
      t.is(r.keys.get('ErrorRecoveryLevel'), String(erl), `asked ${erl}, got ${erl}`);
      ini.close();
    }
  } finally {
    await tt.close();
  }
  t.is(normalizeParams({ ErrorRecoveryLevel: 2 }, 'params').ErrorRecoveryLevel, 2);
  t.throws(() => normalizeParams({ ErrorRecoveryLevel: 3 }, 'params'), { message: /from 0 to 2/ });
});

test('ERL 2: a connection killed in a 16 MiB write burst, its tasks reassigned to the other connection: data intact', async (t) => {
  const tt = await startErl2Target();
  try {
    const other = await loginAs(tt, 'erl2-bystander');
    await healthy(t, other, 60 * 1024 * 2, 1);
    const s = await openSession(t, tt, 2);
    const c0 = count(tt, 'cxnRecoveries');
    const r0 = count(tt, 'taskReassignments');

    // 16 MiB: 24 writes of 512 KiB and 16 of 256 KiB, at most 12 outstanding, alternating over CID 0 and 1.
    const sizes = [...Array<number>(24).fill(512 * KiB), ...Array<number>(16).fill(256 * KiB)];
    const image = pattern(16 * MiB, 77);
    const writes: Array<{ lba: number; size: number }> = [];
    for (let off = 0, i = 0; i < sizes.length; off += sizes[i], i++)
      writes.push({ lba: off / BLOCK, size: sizes[i] });
    t.is(
      writes.reduce((a, w) => a + w.size, 0),
      16 * MiB,
    );

    // Two writes on CID 1 whose data is held back: one has only its immediate data at the target, the other
    // also its first R2T's 128 KiB (the target has asked for the next burst). Both are mid-transfer when it dies.
    const heldA = startWrite(s.conn(1), writes[0].lba, image.subarray(0, writes[0].size), true);
    const heldB = startWrite(
      s.conn(1),
      writes[1].lba,
      image.subarray(writes[0].size, writes[0].size + writes[1].size),
      true,
    );
    await heldA.r2t();
    const first = await heldB.r2t();
    heldB.answer(first);
    const second = await heldB.r2t();
    t.is(second.bufferOffset, 64 * KiB + 128 * KiB, 'B: the target has its first 192 KiB');

    const all: Array<Promise<unknown>> = [heldA.done, heldB.done];
    let next = 2;
    let completed = 0;
    let killed = false;
    let recovery: Promise<Awaited<ReturnType<typeof recoverConnection>>> | null = null;
    await new Promise<void>((resolve, reject) => {
      let outstanding = 0;
      const pump = (): void => {
        while (outstanding < 12 && next < writes.length) {
          const w = writes[next++];
          const off = w.lba * BLOCK;
          const task = startWrite(s.next(), w.lba, image.subarray(off, off + w.size));
          outstanding++;
          all.push(task.done);
          task.done.then((r) => {
            if (r.status !== 0) return reject(new Error(`write at ${w.lba}: status ${r.status}`));
            outstanding--;
            completed++;
            // Mid-burst: a third of the writes done, CID 1 is killed and its tasks go to CID 0.
            if (!killed && completed === 12) {
              killed = true;
              recovery = recoverConnection(s, 1, 0);
              recovery.catch(reject);
            }
            if (next < writes.length) pump();
            else if (outstanding === 0) resolve();
          }, reject);
        }
      };
      pump();
    });
    t.true(killed);
    const reassigned = await recovery!;
    const results = (await Promise.all(all)) as Array<{ status: number }>;
    t.true(
      results.every((r) => r.status === 0),
      'every write completed GOOD',
    );
    t.log(
      `CID 1 killed after 12 of ${writes.length} writes completed: ` +
        `${reassigned.filter((r) => r.response === 0).length} tasks reassigned, ` +
        `${reassigned.filter((r) => r.response === 1).length} never received and sent again`,
    );
    t.true(reassigned.length >= 2, `${reassigned.length} tasks of CID 1 reassigned or retried`);
    const a = reassigned.find((r) => r.task === heldA)!;
    const b = reassigned.find((r) => r.task === heldB)!;
    t.is(a.response, TmfResponse.FunctionComplete);
    t.is(b.response, TmfResponse.FunctionComplete);
    t.is(
      heldA.r2tLog[a.r2tsBefore].bufferOffset,
      64 * KiB,
      'A: R2Ts on the new connection start after its immediate data',
    );
    t.is(
      heldB.r2tLog[b.r2tsBefore].bufferOffset,
      192 * KiB,
      'B: only the data the target lacks is asked for',
    );
    t.true(count(tt, 'cxnRecoveries') - c0 >= 1, 'the recovery counted');
    t.true(count(tt, 'taskReassignments') - r0 >= 2, 'the reassignments counted');

    const back = await readBack(s.conn(0), 0, 16 * MiB);
    let bad = -1;
    for (let i = 0; i < back.length && bad < 0; i += 4096)
      if (!back.subarray(i, i + 4096).equals(image.subarray(i, i + 4096))) bad = i;
    t.is(bad, -1, 'every byte of the 16 MiB reads back as written');
    await healthy(t, other, 60 * 1024 * 2, 2);
    other.close();
  } finally {
    await tt.close();
  }
});

test('ERL 2 session continuation: the only connection dies; a new one joins with the TSIH and takes its tasks', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 1);
    const data = pattern(512 * KiB, 5);
    const w = startWrite(s.conn(0), 2048, data, true);
    const r2t = await w.r2t();
    w.answer(r2t);
    await w.r2t();
    const tasks = s.conn(0).abandon();
    s.forget(0);
    // The same CID again: the old connection, if the target still has it, is logged out implicitly.
    const j = await s.join(0);
    t.is(j.status, 0, 'the session is still there for a new connection');
    const re = await reassignTasks(j.ini, tasks);
    t.deepEqual(
      re.map((r) => r.response),
      [TmfResponse.FunctionComplete],
    );
    t.is((await w.done).status, 0);
    t.true((await readBack(j.ini, 2048, data.length)).equals(data), 'the write is whole');
  } finally {
    await tt.close();
  }
});

test('ERL 2: a completed write whose status was lost is answered again after TASK REASSIGN', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const lost = s.conn(1);
    const data = pattern(32 * KiB, 9);
    // The write goes whole as immediate data; the socket stops reading so the status stays unread.
    lost.socket.pause();
    const w = startWrite(lost, 4096, data);
    // Its SCSI Response (48 bytes, the only PDU the connection gets) sits unread in the paused socket.
    for (let i = 0; i < 500 && lost.socket.readableLength < 48; i++)
      await new Promise((r) => setTimeout(r, 20));
    t.is(lost.socket.readableLength, 48, 'the status was sent, and not read');
    const tasks = lost.abandon();
    s.forget(1);
    t.is((await removeForRecovery(s.conn(0), 1)).response, 0);
    const re = await reassignTasks(s.conn(0), tasks);
    t.is(re[0].response, TmfResponse.FunctionComplete, 'the target still had its status');
    const r = await w.done;
    t.is(r.status, 0);
    t.true((await readBack(s.conn(0), 4096, data.length)).equals(data));
  } finally {
    await tt.close();
  }
});

test.serial(
  'ERL 2: Time2Retain passes with no reassignment: the tasks are aborted, an empty session ends',
  async (t) => {
    const tt = await startErl2Target();
    try {
      const other = await loginAs(tt, 'erl2-bystander-2');
      const e0 = count(tt, 'taskReassignExpired');
      // DefaultTime2Retain=1, Time2Wait=0: the tasks are kept 1 s.
      const s = await openSession(t, tt, 2, 2, 1);
      const w = startWrite(s.conn(1), 8192, pattern(256 * KiB, 3), true);
      await w.r2t();
      const tasks = s.conn(1).abandon();
      s.forget(1);
      const lo = await removeForRecovery(s.conn(0), 1);
      t.is(lo.response, 0);
      t.is(lo.time2Retain, 1, 'the Logout Response gives Time2Retain');
      t.true(await until(() => count(tt, 'taskReassignExpired') - e0 >= 1), 'the kept task was aborted');
      const tmf = await s.conn(0).tmf(TmfFunction.TaskReassign, { referencedTaskTag: tasks[0].itt });
      t.is(tmf.response, TmfResponse.TaskDoesNotExist, 'after Time2Retain the task is gone');
      const back = await readBack(s.conn(0), 8192, 256 * KiB);
      t.true(back.equals(Buffer.alloc(256 * KiB)), 'the aborted write never landed');

      // A session whose only connection is lost ends once Time2Retain passes: its TSIH can no longer be joined.
      const lone = await openSession(t, tt, 1, 2, 1);
      lone.conn(0).abandon();
      lone.forget(0);
      await sleep(4000); // Time2Retain is 1 s
      const j = await lone.join(0);
      t.is(j.status, SESSION_DOES_NOT_EXIST);
      await healthy(t, other, 60 * 1024 * 2, 4);
      other.close();
    } finally {
      await tt.close();
    }
  },
);

test('ERL 2: TASK REASSIGN of a task on a live connection (3) and of an unknown ITT (1)', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const w = startWrite(s.conn(1), 100, pattern(64 * KiB + 4 * KiB, 7), true);
    const r2t = await w.r2t();
    const live = await s.conn(0).tmf(TmfFunction.TaskReassign, { referencedTaskTag: w.itt });
    t.is(live.response, TmfResponse.TaskStillAllegiant, 'CID 1 is alive: its task stays there');
    const unknown = await s.conn(0).tmf(TmfFunction.TaskReassign, { referencedTaskTag: 0x0badf00d });
    t.is(unknown.response, TmfResponse.TaskDoesNotExist);
    w.answer(r2t);
    t.is((await w.done).status, 0, 'the task went on');
  } finally {
    await tt.close();
  }
});

test('ERL 1: TASK REASSIGN is refused (4), counted, and harms nothing; Logout reason 2 is not supported (2)', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2, 1);
    t.is(s.keys.get('ErrorRecoveryLevel'), '1');
    const before = count(tt, 'taskReassignRefusals');
    const w = startWrite(s.conn(1), 300, pattern(64 * KiB + 4 * KiB, 8), true);
    const r2t = await w.r2t();
    const r = await s.conn(0).tmf(TmfFunction.TaskReassign, { referencedTaskTag: w.itt });
    t.is(r.response, TmfResponse.TaskAllegianceReassignmentNotSupported);
    t.is(count(tt, 'taskReassignRefusals') - before, 1);
    t.is((await removeForRecovery(s.conn(0), 1)).response, 2, 'connection recovery is not supported');
    w.answer(r2t);
    t.is((await w.done).status, 0);
    // A drop below ERL 2 still ends the session (RFC 7143 sec. 7.1.4 needs ERL 2 for connection recovery).
    s.conn(1).abandon();
    await s.conn(0).closedPromise;
    t.pass();
  } finally {
    await tt.close();
  }
});

test('ERL 2: a write in the backstore when its connection dies completes there, and answers once reassigned', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const data = pattern(16 * KiB, 21);
    const t0 = Date.now();
    const w = startWrite(s.conn(1), SLOW_LBA, data);
    await delivered(s.conn(0), w.cmdSN); // in the backstore now, for HOLD_MS
    const tasks = s.conn(1).abandon();
    s.forget(1);
    t.is((await removeForRecovery(s.conn(0), 1)).response, 0);
    const re = await reassignTasks(s.conn(0), tasks);
    t.deepEqual(
      re.map((r) => r.response),
      [TmfResponse.FunctionComplete],
    );
    const r = await w.done;
    t.is(r.status, 0, 'the status held while no connection had the task arrives on the new one');
    t.true(Date.now() - t0 >= HOLD_MS - 50, 'after the write left the backstore');
    t.true((await readBack(s.conn(0), SLOW_LBA, data.length)).equals(data));
  } finally {
    await tt.close();
  }
});

test.serial(
  'ERL 2: Time2Retain passes while a write is in the backstore: never answered, on any connection',
  async (t) => {
    const tt = await startErl2Target();
    try {
      const s = await openSession(t, tt, 2, 2, 1);
      const e0 = count(tt, 'taskReassignExpired');
      const w = startWrite(s.conn(1), SLOW_LBA, pattern(16 * KiB, 22));
      await delivered(s.conn(0), w.cmdSN); // in the backstore now, for HOLD_MS
      const [task] = s.conn(1).abandon();
      s.forget(1);
      t.is((await removeForRecovery(s.conn(0), 1)).response, 0);
      t.true(await until(() => count(tt, 'taskReassignExpired') - e0 === 1), 'aborted at expiry');
      const r = await s.conn(0).tmf(TmfFunction.TaskReassign, { referencedTaskTag: task.itt });
      t.is(r.response, TmfResponse.TaskDoesNotExist);
      // The write leaves the backstore now; nothing about it may reach the initiator (a PDU for the ITT would
      // be a violation on CID 0, which no longer expects it).
      await sleep(HOLD_MS);
      await s.conn(0).nop();
      t.false(w.isOver, 'the task never completed');
      t.is(s.conn(0).failure, null);
    } finally {
      await tt.close();
    }
  },
);

test('ERL 2: a READ whose Data-In was partly received: TASK REASSIGN with ExpDataSN sends the rest and the status', async (t) => {
  const tt = await startErl2Target();
  try {
    // Our MaxRecvDataSegmentLength 8 KiB: a 256 KiB READ comes as 32 Data-In PDUs of 48 + 8192 bytes.
    const s = await openSession(t, tt, 2, 2, 20, { MaxRecvDataSegmentLength: '8192' });
    const data = pattern(256 * KiB, 31);
    t.is((await startWrite(s.conn(0), 6000, data).done).status, 0);
    const lost = s.conn(1);
    lost.socket.pause();
    const rd = lost.start(cdb10(READ10, 6000, data.length / BLOCK), { edtl: data.length, read: true });
    // Let exactly three Data-In PDUs through to the initiator; the rest stays unread, then is lost.
    const pdu = 48 + 8192;
    for (let i = 0; i < 500 && lost.socket.readableLength < 3 * pdu; i++) await sleep(20);
    for (let got = 0; got < 3;) {
      if (lost.socket.read(pdu) !== null) got++;
      else await sleep(20);
    }
    t.is(rd.expDataSN, 3, 'DataSN 0..2 received');
    const tasks = lost.abandon();
    s.forget(1);
    t.is((await removeForRecovery(s.conn(0), 1)).response, 0);
    const re = await reassignTasks(s.conn(0), tasks);
    t.is(re[0].response, TmfResponse.FunctionComplete);
    const r = await rd.done;
    t.is(r.status, 0);
    t.true(
      r.data.equals(data),
      'the first three PDUs from the lost connection and the rest resent make the data',
    );
  } finally {
    await tt.close();
  }
});

test('ERL 2: two TASK REASSIGNs of one task back to back: the first moves it, the second finds it allegiant (3)', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const data = pattern(64 * KiB + 8 * KiB, 41);
    const w = startWrite(s.conn(1), 7000, data, true);
    await w.r2t();
    const [task] = s.conn(1).abandon();
    s.forget(1);
    const via = s.conn(0);
    t.is((await removeForRecovery(via, 1)).response, 0);
    task.holdData = false;
    via.adoptTask(task);
    // Both requests leave in one write: the target reads them in one batch.
    via.socket.cork();
    const first = via.tmf(TmfFunction.TaskReassign, { referencedTaskTag: task.itt });
    const second = via.tmf(TmfFunction.TaskReassign, { referencedTaskTag: task.itt });
    via.socket.uncork();
    t.deepEqual(
      [(await first).response, (await second).response],
      [TmfResponse.FunctionComplete, TmfResponse.TaskStillAllegiant],
    );
    t.is((await w.done).status, 0);
    t.true((await readBack(via, 7000, data.length)).equals(data));
  } finally {
    await tt.close();
  }
});

test('ERL 2: the tasks of a killed connection go to a new connection of the session (new CID)', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const a = pattern(512 * KiB, 51);
    const b = pattern(256 * KiB, 52);
    const wa = startWrite(s.conn(1), 9000, a, true);
    const wb = startWrite(s.conn(1), 10_024, b, true);
    await wa.r2t();
    await wb.r2t();
    const re = await recoverConnection(s, 1, 2, { join: true });
    t.deepEqual(
      re.map((r) => r.response),
      [TmfResponse.FunctionComplete, TmfResponse.FunctionComplete],
    );
    t.is((await wa.done).status, 0);
    t.is((await wb.done).status, 0);
    t.deepEqual([...s.conns.keys()].sort(), [0, 2]);
    t.true((await readBack(s.conn(0), 9000, a.length)).equals(a), 'read back on the other connection');
    t.true((await readBack(s.conn(2), 10_024, b.length)).equals(b));
  } finally {
    await tt.close();
  }
});

test('ERL 2: a write whose unsolicited burst the failure cut: after TASK REASSIGN, R2Ts ask for the rest', async (t) => {
  const tt = await startErl2Target();
  try {
    const s = await openSession(t, tt, 2);
    const lost = s.conn(1);
    const via = s.conn(0);
    const data = pattern(128 * KiB, 61);
    // By hand: 16 KiB immediate data, F=0 (unsolicited Data-Out to follow), then one 16 KiB unsolicited Data-Out.
    const itt = lost.byHand(lost.itt++);
    via.byHand(itt);
    lost.send(
      encodeScsiCommand({
        final: false,
        read: false,
        write: true,
        attr: 1,
        itt,
        expectedDataTransferLength: data.length,
        cmdSN: lost.cmdSN++,
        expStatSN: lost.expStatSN,
        cdb: cdb10(WRITE10, 12_000, data.length / BLOCK),
      }),
      data.subarray(0, 16 * KiB),
    );
    lost.send(
      encodeDataOut({
        final: false,
        itt,
        ttt: RESERVED_TAG,
        expStatSN: lost.expStatSN,
        dataSN: 0,
        bufferOffset: 16 * KiB,
      }),
      data.subarray(16 * KiB, 32 * KiB),
    );
    await lost.nop(); // answered after the Data-Out was taken in: the target has 32 KiB of the 64 KiB burst
    lost.abandon();
    s.forget(1);
    t.is((await removeForRecovery(via, 1)).response, 0);
    t.is((await via.tmf(TmfFunction.TaskReassign, { referencedTaskTag: itt })).response, 0);
    const offsets: number[] = [];
    for (;;) {
      const p = await via.next(15_000);
      if (!p) return t.fail('no R2T or status after the reassignment');
      if (p.opcode === Opcode.R2T) {
        const r = decodeR2T(p);
        offsets.push(r.bufferOffset);
        const end = r.bufferOffset + r.desiredDataTransferLength;
        via.send(
          encodeDataOut({
            final: true,
            itt,
            ttt: r.ttt,
            expStatSN: via.expStatSN,
            dataSN: 0,
            bufferOffset: r.bufferOffset,
          }),
          data.subarray(r.bufferOffset, end),
        );
        continue;
      }
      t.is(p.opcode, Opcode.ScsiResponse);
      t.is(decodeScsiResponse(p).status, 0);
      break;
    }
    t.deepEqual(offsets, [32 * KiB], 'one R2T, for what the cut burst and the rest lacked');
    t.true((await readBack(via, 12_000, data.length)).equals(data));
  } finally {
    await tt.close();
  }
});
