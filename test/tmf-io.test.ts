/**
 * Task management, session reinstatement and logout while a write is really in the backstore: the test-only
 * slow-write hook (src/backstore/slow-write.ts) holds the first write at SLOW_LBA of each worker for HOLD_MS
 * before it is submitted, so a command is deterministically executing when the function arrives. Each case
 * checks that the answer (TMF Response, Logout Response, the new session's first write) comes only after
 * that write has landed, and that nothing of an ended task lands afterwards.
 */
import test, { type ExecutionContext } from 'ava';
import { loginAs, startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, TaskAbortedError } from './helpers/initiator';
import { TmfFunction, TmfResponse } from '../src/pdu/opcodes';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';

const BLOCKS = 8;
const BYTES = BLOCKS * 512;
const SLOW_LBA = 1000;
const HOLD_MS = 1500;
/** How long the tests let the slow write get into the backstore before acting. */
const SETTLE_MS = 200;
const TASK_ABORTED = 0x40;

// Read by the workers when they start (each target below starts its own).
process.env.NODETGT_TEST_HOOKS = '1';
process.env.NODETGT_TEST_SLOW_WRITE = `${SLOW_LBA * 512}:${HOLD_MS}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const write = (ini: TestInitiator, lba: number, fill: number) =>
  ini.start(cdb10(0x2a, lba, BLOCKS), { lun: 0, edtl: BYTES, write: true, data: Buffer.alloc(BYTES, fill) });
const read = (ini: TestInitiator, lba: number) =>
  ini.scsi(cdb10(0x28, lba, BLOCKS), { lun: 0, edtl: BYTES, read: true });

/** The blocks hold `fill`, after the unit attention a reset left for this nexus if any. */
async function holds(t: ExecutionContext, ini: TestInitiator, lba: number, fill: number, what: string) {
  let r = await read(ini, lba);
  if (r.status === 0x02 && r.sense && (r.sense[2] & 0x0f) === 0x06) r = await read(ini, lba);
  t.is(r.status, 0);
  t.deepEqual(r.data, Buffer.alloc(BYTES, fill), what);
}

async function withTarget(workers: number, run: (tt: TestTarget) => Promise<void>): Promise<void> {
  const tt = await startTestTarget({ workers, luns: [{ lun: 0, path: 'lun0.img', size: '16M' }] });
  try {
    await run(tt);
  } finally {
    await tt.close();
  }
}

test.serial(
  'ABORT TASK of a write in the backstore: the response waits for it; nothing lands afterwards',
  async (t) => {
    await withTarget(1, async (tt) => {
      const ini = await loginAs(tt, 'abort');
      const w = write(ini, SLOW_LBA, 0xaa);
      await sleep(SETTLE_MS);
      const t0 = Date.now();
      const r = await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: w.itt });
      const waited = Date.now() - t0;
      t.is(r.response, TmfResponse.FunctionComplete);
      t.deepEqual(r.aborted, [w.itt]);
      await t.throwsAsync(w.done, { instanceOf: TaskAbortedError });
      t.true(waited >= HOLD_MS - SETTLE_MS - 300, `the TMF Response waited for the write (${waited} ms)`);
      // Awaited, not cancelled: the write is on the medium now, and stays as it is.
      await holds(t, ini, SLOW_LBA, 0xaa, 'the aborted write landed before the response');
      await sleep(300);
      await holds(t, ini, SLOW_LBA, 0xaa, 'and nothing changed afterwards');
      ini.close();
    });
  },
);

test.serial(
  "LOGICAL UNIT RESET on one worker waits for the other worker's write in the backstore",
  async (t) => {
    await withTarget(2, async (tt) => {
      const a = await loginAs(tt, 'a');
      const b = await loginAs(tt, 'b');
      const placement = [...tt.target.connectionsPerWorker().values()];
      t.deepEqual(placement, [1, 1], 'one session on each worker');
      const w = write(b, SLOW_LBA, 0xbb);
      await sleep(SETTLE_MS);
      const t0 = Date.now();
      const r = await a.tmf(TmfFunction.LogicalUnitReset, { lun: 0 });
      const waited = Date.now() - t0;
      t.is(r.response, TmfResponse.FunctionComplete);
      t.true(waited >= HOLD_MS - SETTLE_MS - 300, `the TMF Response waited for B's write (${waited} ms)`);
      // The write ran through the reset: TAS = 1, TASK ABORTED; its data is on the medium, already.
      t.is((await w.done).status, TASK_ABORTED);
      await holds(t, a, SLOW_LBA, 0xbb, "B's write landed before A's TMF Response");
      a.close();
      b.close();
    });
  },
);

test.serial(
  'session reinstatement: the new session runs nothing until the old one’s write has landed; the new write wins',
  async (t) => {
    await withTarget(2, async (tt) => {
      const name = 'iqn.2026-11.io.nodetgt.test:reinstate';
      const isid = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x77, 0x01]);
      const old = await TestInitiator.connect(tt.port);
      t.is((await old.login({ targetName: TEST_TARGET, initiatorName: name, isid })).status, 0);
      const oldWrite = write(old, SLOW_LBA, 0xaa);
      const oldDone = oldWrite.done.then(
        () => 'answered',
        () => 'unanswered',
      );
      await sleep(SETTLE_MS);
      const t0 = Date.now();
      const neu = await TestInitiator.connect(tt.port);
      const lr = await neu.login({ targetName: TEST_TARGET, initiatorName: name, isid });
      t.is(lr.status, 0);
      await old.closedPromise;
      t.is(await oldDone, 'unanswered', 'the old session is gone, its write unanswered');
      const nw = await write(neu, SLOW_LBA, 0xbb).done;
      const waited = Date.now() - t0;
      t.is(nw.status, 0);
      t.true(waited >= HOLD_MS - SETTLE_MS - 300, `the new write waited for the old one (${waited} ms)`);
      // Past the time the old write would have landed had it been submitted after the new one.
      await sleep(Math.max(0, HOLD_MS + 300 - (Date.now() - t0)));
      await holds(t, neu, SLOW_LBA, 0xbb, 'the new session’s write is the last one');
      neu.close();
    });
  },
);

test.serial(
  'Logout: nothing after the request is dispatched; the response waits for the write in the backstore',
  async (t) => {
    await withTarget(1, async (tt) => {
      const counter = (name: string) =>
        (readCounters(tt.target.counters).total as Record<string, number>)[name];
      const ini = await loginAs(tt, 'logout');
      const slow = write(ini, SLOW_LBA, 0xcc);
      const held = ini.start(cdb10(0x2a, 50, BLOCKS), {
        lun: 0,
        edtl: BYTES,
        write: true,
        data: Buffer.alloc(BYTES, 0x50),
        immediate: 0,
        holdData: true,
      });
      await held.r2t();
      await sleep(SETTLE_MS);
      const dropped = counter('instSsnFormatErrors');
      const t0 = Date.now();
      const lo = ini.logout();
      const late = write(ini, 60, 0x60); // the initiator must not; the target must not run it
      const resp = await lo;
      const waited = Date.now() - t0;
      t.is(resp.bhs[2], 0, 'Logout Response: closed successfully');
      t.true(waited >= HOLD_MS - SETTLE_MS - 300, `the Logout Response waited for the write (${waited} ms)`);
      await ini.closedPromise;
      for (const task of [slow, held, late]) await t.throwsAsync(task.done, undefined, 'never answered');
      t.is(counter('instSsnFormatErrors'), dropped + 1, 'the command after the Logout Request is counted');
      const after = await loginAs(tt, 'after');
      await holds(t, after, SLOW_LBA, 0xcc, 'the write executing at logout landed before the response');
      await holds(t, after, 50, 0x00, 'the write waiting for data never ran');
      await holds(t, after, 60, 0x00, 'the command after the Logout Request never ran');
      after.close();
    });
  },
);

test.serial(
  'a LU RESET delivered before a Logout is answered before the Logout Response (the reset waits for the write)',
  async (t) => {
    await withTarget(1, async (tt) => {
      const ini = await loginAs(tt, 'reset-then-logout');
      const order: string[] = [];
      const slow = write(ini, SLOW_LBA, 0xdd);
      slow.done.catch(() => undefined);
      await sleep(SETTLE_MS);
      const reset = ini.tmf(TmfFunction.LogicalUnitReset, { lun: 0 }).then((r) => {
        order.push('tmf');
        return r;
      });
      const lo = ini.logout().then((r) => {
        order.push('logout');
        return r;
      });
      const [r, resp] = await Promise.all([reset, lo]);
      t.is(r.response, TmfResponse.FunctionComplete);
      t.is(resp.bhs[2], 0, 'Logout Response: closed successfully');
      t.deepEqual(order, ['tmf', 'logout'], 'the TMF response came first');
    });
  },
);
