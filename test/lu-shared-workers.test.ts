/**
 * One logical unit for every worker: two sessions of one target placed on two different worker threads see
 * the same LU state — software write protect set by MODE SELECT, the unit attentions that go with it and with
 * resets (each reported once per nexus), a reset's effect on a task waiting for data on the other worker, and
 * a TARGET COLD RESET closing the other worker's session.
 */
import test, { type ExecutionContext } from 'ava';
import { loginAs, startTestTarget, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { TmfFunction, TmfResponse } from '../src/pdu/opcodes';
import { cdb10 } from './scsi-helpers';

const BLOCKS = 8;
const BYTES = BLOCKS * 512;
const CHECK_CONDITION = 0x02;
const TASK_ABORTED = 0x40;

interface Pair {
  tt: TestTarget;
  a: TestInitiator;
  b: TestInitiator;
}

const login = loginAs;

/** A target with 2 workers and one session on each (checked, not assumed). */
async function pair(t: ExecutionContext, run: (p: Pair) => Promise<void>): Promise<void> {
  const tt = await startTestTarget({ workers: 2, luns: [{ lun: 0, path: 'lun0.img', size: '16M' }] });
  const sessions: TestInitiator[] = [];
  try {
    sessions.push(await login(tt, 'a'));
    sessions.push(await login(tt, 'b'));
    const placement = [...tt.target.connectionsPerWorker().entries()];
    t.is(placement.length, 2, `the two sessions are on two workers: ${JSON.stringify(placement)}`);
    t.true(
      placement.every(([, n]) => n === 1),
      'one session on each worker',
    );
    t.log(`placement (worker threadId -> connections): ${JSON.stringify(placement)}`);
    await run({ tt, a: sessions[0], b: sessions[1] });
  } finally {
    for (const s of sessions) s.socket.destroy();
    await tt.close();
  }
}

const read = (ini: TestInitiator, lba = 0) =>
  ini.scsi(cdb10(0x28, lba, BLOCKS), { lun: 0, edtl: BYTES, read: true });
const write = (ini: TestInitiator, lba: number, fill: number) =>
  ini.scsi(cdb10(0x2a, lba, BLOCKS), { lun: 0, edtl: BYTES, write: true, data: Buffer.alloc(BYTES, fill) });

function senseOf(r: { status: number; sense?: Buffer | null }): string {
  if (r.status !== CHECK_CONDITION || !r.sense) return `status 0x${r.status.toString(16)}`;
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `${hex(r.sense[2] & 0x0f)}/${hex(r.sense[12])}/${hex(r.sense[13])}`;
}

/** MODE SELECT(6) of the Control page as MODE SENSE reports it, with SWP set or cleared. */
async function setSwp(ini: TestInitiator, on: boolean): Promise<string> {
  const sense = await ini.scsi(Buffer.from([0x1a, 0x08, 0x0a, 0, 255, 0]), { lun: 0, edtl: 255, read: true });
  if (sense.status !== 0) return senseOf(sense);
  const page = Buffer.from(sense.data.subarray(4, 4 + 12));
  page[4] = on ? page[4] | 0x08 : page[4] & ~0x08;
  const list = Buffer.concat([Buffer.alloc(4), page]);
  const r = await ini.scsi(Buffer.from([0x15, 0x10, 0, 0, list.length, 0]), {
    lun: 0,
    edtl: list.length,
    write: true,
    data: list,
  });
  return r.status === 0 ? 'GOOD' : senseOf(r);
}

test.serial('MODE SELECT SWP on one worker write-protects the LU for a session on the other', async (t) => {
  await pair(t, async ({ a, b }) => {
    t.is(senseOf(await write(b, 10, 0x11)), 'status 0x0', 'B writes before');
    t.is(await setSwp(a, true), 'GOOD');
    t.is(senseOf(await write(b, 10, 0x22)), '06/2a/01', 'B: MODE PARAMETERS CHANGED, once');
    t.is(senseOf(await write(b, 10, 0x22)), '07/27/02', 'B: SOFTWARE WRITE PROTECTED');
    t.is(
      senseOf(await write(a, 10, 0x22)),
      '07/27/02',
      'A (no unit attention for the nexus that changed it)',
    );
    t.is(await setSwp(a, false), 'GOOD');
    t.is(senseOf(await write(b, 10, 0x33)), '06/2a/01', 'B: MODE PARAMETERS CHANGED again');
    t.is(senseOf(await write(b, 10, 0x33)), 'status 0x0', 'B writes again');
    const r = await read(a, 10);
    t.deepEqual(r.data, Buffer.alloc(BYTES, 0x33), 'A reads what B wrote');
  });
});

test.serial(
  "LOGICAL UNIT RESET on one worker: the other worker's WRITE waiting for data ends TASK ABORTED, unwritten; one unit attention per nexus",
  async (t) => {
    await pair(t, async ({ a, b }) => {
      const held = b.start(cdb10(0x2a, 100, BLOCKS), {
        lun: 0,
        edtl: BYTES,
        write: true,
        data: Buffer.alloc(BYTES, 0xbb),
        immediate: 0,
        holdData: true,
      });
      const r2t = await held.r2t();
      const tmf = await a.tmf(TmfFunction.LogicalUnitReset, { lun: 0 });
      t.is(tmf.response, TmfResponse.FunctionComplete);
      held.answer(r2t);
      t.is((await held.done).status, TASK_ABORTED, 'B: TASK ABORTED (TAS = 1)');
      t.is(senseOf(await read(b)), '06/29/03', 'B: BUS DEVICE RESET FUNCTION OCCURRED');
      t.is(senseOf(await read(b)), 'status 0x0', 'B: once');
      t.is(senseOf(await read(a)), '06/29/03', 'A: the same unit attention');
      const r = await read(a, 100);
      t.is(r.status, 0);
      t.deepEqual(r.data, Buffer.alloc(BYTES), 'the aborted WRITE never reached the medium');
    });
  },
);

test.serial('TARGET COLD RESET on one worker closes the session on the other', async (t) => {
  await pair(t, async ({ tt, a, b }) => {
    const r = await a.tmf(TmfFunction.TargetColdReset, {});
    t.is(r.response, TmfResponse.FunctionComplete);
    const closed = (i: TestInitiator) =>
      Promise.race([
        i.closedPromise.then(() => true),
        new Promise((res) => setTimeout(() => res(false), 3000)),
      ]);
    t.true(await closed(a), 'A closed');
    t.true(await closed(b), 'B (other worker) closed');
    const c = await login(tt, 'c');
    t.is(senseOf(await read(c)), 'status 0x0', 'a new session works');
    c.close();
  });
});
