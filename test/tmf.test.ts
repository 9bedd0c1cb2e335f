/**
 * Task management functions (RFC 7143 11.5/11.6) as the target answers them at ErrorRecoveryLevel 0: what each
 * does to outstanding tasks (WRITEs whose data the initiator withholds, so they sit waiting for Data-Out), the
 * response code, ITT and StatSN of the TMF Response, unit attentions after resets, and that another session
 * on the same target stays healthy. A target per test, one worker (both sessions share the logical units);
 * serial, to keep the machine's load from stretching the timings.
 */
import test, { type ExecutionContext } from 'ava';
import { loginAs, startTestTarget, type TestTarget } from './helpers/target';
import { TestInitiator, TaskAbortedError, type ScsiTask } from './helpers/initiator';
import { TmfFunction, TmfResponse, Opcode, opcodeName } from '../src/pdu/opcodes';
import { type R2T } from '../src/pdu/pdu';
import { cdb10 } from './scsi-helpers';

const READ10 = 0x28;
const WRITE10 = 0x2a;
const BLOCKS = 8;
const BYTES = BLOCKS * 512;

interface Setup {
  tt: TestTarget;
  /** The session that sends the task management functions. */
  ini: TestInitiator;
  /** Another session on the same target (and worker). */
  other: TestInitiator;
}

const session = loginAs;

async function setup(t: ExecutionContext, run: (s: Setup) => Promise<void>): Promise<void> {
  const tt = await startTestTarget({
    workers: 1,
    luns: [
      { lun: 0, path: 'lun0.img', size: '16M' },
      { lun: 1, path: 'lun1.img', size: '16M' },
    ],
  });
  let ini: TestInitiator | undefined;
  let other: TestInitiator | undefined;
  try {
    ini = await session(tt, 'tmf');
    other = await session(tt, 'other');
    // Both sessions address both LUs first (the LUs know each I_T nexus from its login on; this checks they work).
    for (const s of [ini, other]) for (const lun of [0, 1]) t.is((await read(s, lun, 0)).status, 0);
    await run({ tt, ini, other });
    ini.close();
    other.close();
  } finally {
    ini?.socket.destroy();
    other?.socket.destroy();
    await tt.close();
  }
}

function read(ini: TestInitiator, lun: number, lba: number) {
  return ini.scsi(cdb10(READ10, lba, BLOCKS), { lun, edtl: BYTES, read: true });
}

/** A WRITE of BYTES bytes of `fill` whose data the initiator withholds: the target waits on its R2T. */
async function heldWrite(
  t: ExecutionContext,
  ini: TestInitiator,
  lun: number,
  lba: number,
  fill: number,
): Promise<{ task: ScsiTask; r2t: R2T }> {
  const task = ini.start(cdb10(WRITE10, lba, BLOCKS), {
    lun,
    edtl: BYTES,
    write: true,
    data: Buffer.alloc(BYTES, fill),
    immediate: 0,
    holdData: true,
  });
  const r2t = await task.r2t();
  t.is(r2t.bufferOffset, 0);
  t.is(r2t.desiredDataTransferLength, BYTES, 'the target waits for all the data');
  return { task, r2t };
}

/** The blocks hold `fill` (a write that happened) or zeros (one that did not: the LUN files start sparse). */
async function expectContent(
  t: ExecutionContext,
  ini: TestInitiator,
  lun: number,
  lba: number,
  fill: number,
) {
  const r = await read(ini, lun, lba);
  t.is(r.status, 0);
  t.deepEqual(r.data, Buffer.alloc(BYTES, fill), `LUN ${lun} LBA ${lba} holds 0x${fill.toString(16)}`);
}

/** The next command to `lun` gets CHECK CONDITION, UNIT ATTENTION, 29h/03h (BUS DEVICE RESET FUNCTION OCCURRED). */
async function expectResetUa(t: ExecutionContext, ini: TestInitiator, lun: number, who: string) {
  const r = await read(ini, lun, 0);
  t.is(r.status, 0x02, `${who}: CHECK CONDITION on LUN ${lun} after the reset`);
  t.truthy(r.sense);
  t.is(r.sense![2] & 0x0f, 0x06, `${who}: UNIT ATTENTION`);
  t.deepEqual([r.sense![12], r.sense![13]], [0x29, 0x03], `${who}: BUS DEVICE RESET FUNCTION OCCURRED`);
}

/** A session works: a READ on each LUN succeeds, after the unit attention of a reset where one is due. */
async function healthy(t: ExecutionContext, ini: TestInitiator, who: string, uaOn: number[] = []) {
  for (const lun of [0, 1]) {
    if (uaOn.includes(lun)) await expectResetUa(t, ini, lun, who);
    const r = await read(ini, lun, 0);
    t.is(r.status, 0, `${who}: READ on LUN ${lun} succeeds`);
    t.is(r.data.length, BYTES);
  }
}

/** The target no longer knows the task: ABORT TASK of it (RefCmdSN long acknowledged) says Task Does Not Exist. */
async function expectGone(t: ExecutionContext, ini: TestInitiator, task: ScsiTask) {
  const r = await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: task.itt, refCmdSN: task.cmdSN });
  t.is(r.response, TmfResponse.TaskDoesNotExist, `task ITT ${task.itt} is gone from the target`);
}

/** Send the TMF and check its Response: code, ITT, StatSN (the initiator checks StatSN order on every PDU). */
async function tmf(
  t: ExecutionContext,
  ini: TestInitiator,
  fn: number,
  o: Parameters<TestInitiator['tmf']>[1],
  expected: number,
  /** Sent right after the request, before its response (RFC 7143 10.6.2: the initiator keeps answering R2Ts). */
  then?: () => void,
) {
  const itt = ini.itt;
  const statSN = ini.expStatSN;
  const pending = ini.tmf(fn, o);
  then?.();
  const r = await pending;
  t.is(r.response, expected, `TMF Response code for function ${fn}`);
  t.is(r.itt, itt, 'TMF Response carries the request ITT');
  // Data-Out sent after the request for tasks it ended is discarded without an answer, so nothing takes a
  // StatSN before the response. (The initiator also checks that StatSN runs on by one over every PDU.)
  t.is(r.statSN, statSN, 'TMF Response carries the next StatSN');
  t.is(r.pdu.opcode, Opcode.TaskMgmtResponse);
  return r;
}

/**
 * Data-Out the initiator sent for tasks the TMF ended: once a NOP round trip has flushed the target's answers,
 * nothing came for them — discarded silently (RFC 7143 4.2.3.3: the initiator keeps answering R2Ts after the
 * request), never executed (checked by reading the blocks back) and never answered with a status or a Reject.
 */
async function dataOutOfEndedTasks(
  t: ExecutionContext,
  ini: TestInitiator,
  ended: ScsiTask[],
): Promise<number> {
  await ini.nop(Buffer.from('flush'));
  const unsolicited = ini.pending.map((p) => `${opcodeName(p.opcode)} ITT ${p.itt}`);
  t.deepEqual(
    unsolicited,
    [],
    `Data-Out of ended tasks ${ended.map((e) => e.itt).join(',')} discarded silently`,
  );
  return unsolicited.length;
}

test.serial(
  'ABORT TASK of a WRITE waiting for its data: Function complete; the task is gone, its Data-Out is discarded, the session goes on',
  async (t) => {
    await setup(t, async ({ ini, other }) => {
      const w = await heldWrite(t, ini, 0, 100, 0xa1);
      const r = await tmf(
        t,
        ini,
        TmfFunction.AbortTask,
        { referencedTaskTag: w.task.itt, lun: 0 },
        TmfResponse.FunctionComplete,
      );
      t.deepEqual(r.aborted, [w.task.itt]);
      await t.throwsAsync(w.task.done, { instanceOf: TaskAbortedError });
      await expectGone(t, ini, w.task);
      // The Data-Out the target asked for, sent after the abort: discarded without a word (tmf-r2t.test.ts).
      w.task.answer(w.r2t);
      t.is(await dataOutOfEndedTasks(t, ini, [w.task]), 0, 'not rejected');
      await expectContent(t, ini, 0, 100, 0x00);
      await healthy(t, ini, 'the aborting session');
      await healthy(t, other, 'the other session');
    });
  },
);

test.serial('ABORT TASK of a task that does not exist: Task Does Not Exist (1)', async (t) => {
  await setup(t, async ({ ini, other }) => {
    // A tag never used, RefCmdSN an acknowledged CmdSN (outside the window): RFC 7143 11.6.1 c).
    const r = await tmf(
      t,
      ini,
      TmfFunction.AbortTask,
      { referencedTaskTag: 0x00abcdef, refCmdSN: (ini.cmdSN - 1) >>> 0 },
      TmfResponse.TaskDoesNotExist,
    );
    t.deepEqual(r.aborted, []);
    await healthy(t, ini, 'the aborting session');
    await healthy(t, other, 'the other session');
  });
});

for (const [name, fn] of [
  ['ABORT TASK SET', TmfFunction.AbortTaskSet],
  ['CLEAR TASK SET', TmfFunction.ClearTaskSet],
] as const) {
  test.serial(`${name} on LUN 0: its tasks end, LUN 1's task completes, no unit attention`, async (t) => {
    await setup(t, async ({ ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      const b = await heldWrite(t, ini, 0, 200, 0xb2);
      const c = await heldWrite(t, ini, 1, 100, 0xc3);
      const r = await tmf(t, ini, fn, { lun: 0 }, TmfResponse.FunctionComplete, () => {
        a.task.answer(a.r2t);
        b.task.answer(b.r2t);
      });
      t.deepEqual(r.aborted.sort(), [a.task.itt, b.task.itt].sort());
      await t.throwsAsync(a.task.done, { instanceOf: TaskAbortedError });
      await t.throwsAsync(b.task.done, { instanceOf: TaskAbortedError });
      await dataOutOfEndedTasks(t, ini, [a.task, b.task]);
      await expectGone(t, ini, a.task);
      await expectGone(t, ini, b.task);
      c.task.answer(c.r2t);
      t.is((await c.task.done).status, 0, "LUN 1's task untouched");
      await expectContent(t, ini, 0, 100, 0x00);
      await expectContent(t, ini, 0, 200, 0x00);
      await expectContent(t, ini, 1, 100, 0xc3);
      await healthy(t, ini, 'the aborting session');
      await healthy(t, other, 'the other session');
    });
  });
}

test.serial(
  'LOGICAL UNIT RESET of LUN 0: its task ends, LUN 1 untouched; unit attention on LUN 0 for every nexus',
  async (t) => {
    await setup(t, async ({ ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      const c = await heldWrite(t, ini, 1, 100, 0xc3);
      const r = await tmf(
        t,
        ini,
        TmfFunction.LogicalUnitReset,
        { lun: 0 },
        TmfResponse.FunctionComplete,
        () => a.task.answer(a.r2t),
      );
      t.deepEqual(r.aborted, [a.task.itt]);
      await t.throwsAsync(a.task.done, { instanceOf: TaskAbortedError });
      await dataOutOfEndedTasks(t, ini, [a.task]);
      await expectGone(t, ini, a.task);
      c.task.answer(c.r2t);
      t.is((await c.task.done).status, 0, "LUN 1's task untouched");
      // The unit attention comes first (lu.ts reset()), then LUN 0 works; LUN 1 has none.
      await healthy(t, ini, 'the resetting session', [0]);
      await healthy(t, other, 'the other session', [0]);
      await expectContent(t, ini, 0, 100, 0x00);
      await expectContent(t, ini, 1, 100, 0xc3);
    });
  },
);

test.serial(
  'LOGICAL UNIT RESET of a LUN that does not exist: LUN Does Not Exist (2), nothing else happens',
  async (t) => {
    await setup(t, async ({ ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      const r = await tmf(t, ini, TmfFunction.LogicalUnitReset, { lun: 5 }, TmfResponse.LunDoesNotExist);
      t.deepEqual(r.aborted, []);
      a.task.answer(a.r2t);
      t.is((await a.task.done).status, 0, 'the task on LUN 0 goes on');
      await healthy(t, ini, 'the resetting session');
      await healthy(t, other, 'the other session');
      await expectContent(t, ini, 0, 100, 0xa1);
    });
  },
);

// TARGET COLD RESET does the same and then closes every connection: its own test below.
for (const [name, fn] of [['TARGET WARM RESET', TmfFunction.TargetWarmReset]] as const) {
  test.serial(
    `${name}: every task of the session ends; unit attention on every LUN for every nexus`,
    async (t) => {
      await setup(t, async ({ ini, other }) => {
        const a = await heldWrite(t, ini, 0, 100, 0xa1);
        const c = await heldWrite(t, ini, 1, 100, 0xc3);
        const r = await tmf(t, ini, fn, {}, TmfResponse.FunctionComplete, () => {
          a.task.answer(a.r2t);
          c.task.answer(c.r2t);
        });
        t.deepEqual(r.aborted.sort(), [a.task.itt, c.task.itt].sort());
        await t.throwsAsync(a.task.done, { instanceOf: TaskAbortedError });
        await t.throwsAsync(c.task.done, { instanceOf: TaskAbortedError });
        await dataOutOfEndedTasks(t, ini, [a.task, c.task]);
        await expectGone(t, ini, a.task);
        await healthy(t, ini, 'the resetting session', [0, 1]);
        await healthy(t, other, 'the other session', [0, 1]);
        await expectContent(t, ini, 0, 100, 0x00);
        await expectContent(t, ini, 1, 100, 0x00);
      });
    },
  );
}

test.serial(
  'TASK REASSIGN at ErrorRecoveryLevel 0: allegiance reassignment not supported (4), the task goes on',
  async (t) => {
    await setup(t, async ({ ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      const r = await tmf(
        t,
        ini,
        TmfFunction.TaskReassign,
        { referencedTaskTag: a.task.itt, immediate: false },
        TmfResponse.TaskAllegianceReassignmentNotSupported,
      );
      t.deepEqual(r.aborted, []);
      a.task.answer(a.r2t);
      t.is((await a.task.done).status, 0);
      await expectContent(t, ini, 0, 100, 0xa1);
      await healthy(t, ini, 'the requesting session');
      await healthy(t, other, 'the other session');
    });
  },
);

test.serial(
  'CLEAR ACA and unknown functions: Task management function not supported (5), nothing else happens',
  async (t) => {
    await setup(t, async ({ ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      await tmf(t, ini, TmfFunction.ClearAca, { lun: 0 }, TmfResponse.TmfNotSupported);
      for (const fn of [13, 0x7f]) {
        await tmf(t, ini, fn, { lun: 0 }, TmfResponse.TmfNotSupported);
        await tmf(t, ini, fn, { lun: 0, immediate: false }, TmfResponse.TmfNotSupported);
      }
      a.task.answer(a.r2t);
      t.is((await a.task.done).status, 0, 'the outstanding task goes on');
      await expectContent(t, ini, 0, 100, 0xa1);
      await healthy(t, ini, 'the requesting session');
      await healthy(t, other, 'the other session');
    });
  },
);

test.serial(
  'ABORT TASK of a command the target never received, RefCmdSN in the window: Function complete, the CmdSN counts as received (RFC 7143 11.6.1 b)',
  async (t) => {
    await setup(t, async ({ ini }) => {
      // CmdSN n is "lost" (as a command dropped for a data digest error would be); n + 1 waits behind it.
      const lostItt = ini.itt++;
      const lost = ini.cmdSN++;
      const next = ini.start(Buffer.alloc(16), { edtl: 0, timeoutMs: 3000 });
      const r = await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: lostItt, refCmdSN: lost });
      t.is(r.response, TmfResponse.FunctionComplete);
      t.is((await next.done).status, 0, 'the command queued behind the hole runs');
    });
  },
);

test.serial(
  'TARGET COLD RESET: the response arrives, then every connection of every session to the target closes (RFC 7143 11.5.1)',
  async (t) => {
    await setup(t, async ({ tt, ini, other }) => {
      const a = await heldWrite(t, ini, 0, 100, 0xa1);
      const b = await heldWrite(t, other, 1, 200, 0xb2);
      // The requester answers its R2T (RFC 7143 4.2.3.3); the other session's is not waited for.
      const r = await tmf(t, ini, TmfFunction.TargetColdReset, {}, TmfResponse.FunctionComplete, () =>
        a.task.answer(a.r2t),
      );
      t.deepEqual(r.aborted, [a.task.itt]);
      const closed = (i: TestInitiator) =>
        Promise.race([
          i.closedPromise.then(() => true),
          new Promise((r) => setTimeout(() => r(false), 2000)),
        ]);
      t.true(await closed(ini), 'the resetting connection is closed');
      t.true(await closed(other), 'the other session is closed');
      await t.throwsAsync(b.task.done, undefined, "the other session's held WRITE never completes");
      // Nothing of the held writes reached the medium; a new session works.
      const again = await session(tt, 'after');
      await healthy(t, again, 'a new session');
      await expectContent(t, again, 0, 100, 0x00);
      await expectContent(t, again, 1, 200, 0x00);
      again.close();
    });
  },
);
