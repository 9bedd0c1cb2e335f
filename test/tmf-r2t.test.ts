/**
 * Task management of WRITEs that wait for their data (an R2T outstanding, InitialR2T=Yes).
 *
 * RFC 7143 sec. 4.2.3.3 (TaskReporting=RFC3720, the only value nodetgt offers): for ABORT TASK SET, CLEAR TASK
 * SET, LOGICAL UNIT RESET and TARGET WARM/COLD RESET the target waits for the issuing initiator's answers to every
 * currently valid TTT of the affected tasks before the TMF Response; third-party initiators' TTTs it may or may
 * not wait for (nodetgt does not). That data is discarded: nothing written, no SCSI Response, no Reject. The wait
 * is bounded (TMF_DATA_OUT_WAIT_MS): an initiator that never sends the data gets the response then, counted.
 * ABORT TASK is not a multi-task abort (sec. 4.2.3.3 does not list it, nor does sec. 11.5.1 ask it to wait): it
 * is answered at once, and the Data-Out that comes afterwards is the same late data, discarded.
 */
import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { loginAs, startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, TaskAbortedError, defaultOperationalKeys } from './helpers/initiator';
import { TmfFunction, TmfResponse, Opcode, opcodeName } from '../src/pdu/opcodes';
import type { R2T } from '../src/pdu/pdu';
import { encodeDataOut } from '../src/pdu/serializer';
import { readCounters } from '../src/metrics/counters';
import { TMF_DATA_OUT_WAIT_MS } from '../src/session/tmf';
import { cdb10 } from './scsi-helpers';

const READ10 = 0x28;
const WRITE10 = 0x2a;
const BLOCKS = 8;
const BYTES = BLOCKS * 512;
const LBA = 300;
/** What the blocks hold before the aborted WRITE: a write of its own, so "unchanged" is not just "zeros". */
const OLD = 0x5a;
const NEW = 0xa1;
/** How long "no response yet" is watched: long beside a loopback round trip, short beside the bound. */
const SILENCE_MS = 500;
const TASK_ABORTED = 0x40;

type Run = (ini: TestInitiator, tt: TestTarget) => Promise<void>;

async function withSession(t: ExecutionContext, run: Run): Promise<void> {
  const tt: TestTarget = await startTestTarget({
    workers: 1,
    luns: [{ lun: 0, path: 'lun0.img', size: '16M' }],
  });
  let ini: TestInitiator | undefined;
  try {
    ini = await TestInitiator.connect(tt.port);
    const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
      k === 'InitialR2T' ? [k, 'Yes'] : k === 'ImmediateData' ? [k, 'No'] : [k, v],
    );
    const r = await ini.login({
      targetName: TEST_TARGET,
      initiatorName: 'iqn.2026-11.io.nodetgt.test:r2t',
      keys,
    });
    t.is(r.status, 0, 'login');
    const w = await ini.scsi(cdb10(WRITE10, LBA, BLOCKS), {
      edtl: BYTES,
      write: true,
      data: Buffer.alloc(BYTES, OLD),
      immediate: 0,
    });
    t.is(w.status, 0, 'the old content is written');
    await run(ini, tt);
    ini.close();
  } finally {
    ini?.socket.destroy();
    await tt.close();
  }
}

const expired = (tt: TestTarget) =>
  (readCounters(tt.target.counters).total as Record<string, number>).tmfDataOutWaitExpired;

async function content(t: ExecutionContext, ini: TestInitiator, lba = LBA): Promise<Buffer> {
  const r = await ini.scsi(cdb10(READ10, lba, BLOCKS), { edtl: BYTES, read: true });
  t.is(r.status, 0);
  return r.data;
}

const heldWrite = (ini: TestInitiator, lba = LBA, fill = NEW) =>
  ini.start(cdb10(WRITE10, lba, BLOCKS), {
    edtl: BYTES,
    write: true,
    data: Buffer.alloc(BYTES, fill),
    immediate: 0,
    holdData: true,
  });

/** Whether `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = p.then(
    () => true,
    () => true,
  );
  return Promise.race([settled, sleep(ms).then(() => false)]);
}

/** One Data-Out PDU answering part of an R2T, built by hand. */
function dataOut(
  ini: TestInitiator,
  r2t: R2T,
  dataSN: number,
  from: number,
  len: number,
  final: boolean,
): void {
  ini.send(
    encodeDataOut({
      final,
      lun: 0n,
      itt: r2t.itt,
      ttt: r2t.ttt,
      expStatSN: ini.expStatSN,
      dataSN,
      bufferOffset: r2t.bufferOffset + from,
    }),
    Buffer.alloc(len, NEW),
  );
}

/** After the function: nothing more for the ended task, the block as before, the session working. */
async function aftermath(t: ExecutionContext, ini: TestInitiator, fn: number): Promise<void> {
  const echo = await ini.nop(Buffer.from('after the Data-Out'));
  t.is(echo.opcode, Opcode.NopIn);
  t.deepEqual(
    ini.pending.map((p) => opcodeName(p.opcode)),
    [],
    'no Reject, no SCSI Response for the discarded Data-Out',
  );
  t.false(ini.closed, 'the connection stays');
  if (fn === TmfFunction.LogicalUnitReset || fn === TmfFunction.TargetWarmReset) {
    const ua = await ini.scsi(cdb10(READ10, LBA, BLOCKS), { edtl: BYTES, read: true });
    t.is(ua.status, 0x02, 'the unit attention of the reset comes first');
  }
  t.deepEqual(await content(t, ini), Buffer.alloc(BYTES, OLD), 'the aborted WRITE never reached the LU');
  // The session keeps working: a new WRITE (same ITT space, new TTT) lands.
  const again = await ini.scsi(cdb10(WRITE10, LBA, BLOCKS), {
    edtl: BYTES,
    write: true,
    data: Buffer.alloc(BYTES, 0x3c),
    immediate: 0,
  });
  t.is(again.status, 0);
  t.deepEqual(await content(t, ini), Buffer.alloc(BYTES, 0x3c));
}

const multiTask: Array<[string, number]> = [
  ['ABORT TASK SET', TmfFunction.AbortTaskSet],
  ['CLEAR TASK SET', TmfFunction.ClearTaskSet],
  ['LOGICAL UNIT RESET', TmfFunction.LogicalUnitReset],
  ['TARGET WARM RESET', TmfFunction.TargetWarmReset],
];

for (const [name, fn] of multiTask) {
  test.serial(`${name} waits for the final Data-Out of the R2T outstanding, then answers`, async (t) => {
    await withSession(t, async (ini, tt) => {
      const before = expired(tt);
      const task = heldWrite(ini);
      const r2t = await task.r2t();
      t.is(r2t.desiredDataTransferLength, BYTES, 'InitialR2T=Yes: every byte is solicited');
      const pending = ini.tmf(fn, { lun: 0 });
      t.false(await settlesWithin(pending, SILENCE_MS), 'no TMF Response while the R2T is unanswered');
      // Half the data, without the F bit: the TTT is still valid, the response still waits.
      dataOut(ini, r2t, 0, 0, BYTES / 2, false);
      t.false(await settlesWithin(pending, SILENCE_MS), 'no TMF Response before the final Data-Out');
      dataOut(ini, r2t, 1, BYTES / 2, BYTES / 2, true);
      task.answeredByHand(r2t);
      const r = await pending;
      t.is(r.response, TmfResponse.FunctionComplete, 'answered once the final Data-Out is in');
      t.deepEqual(r.aborted, [task.itt], 'the WRITE is ended by the function');
      await t.throwsAsync(task.done, { instanceOf: TaskAbortedError });
      t.is(expired(tt), before, 'answered by the data, not by the bound');
      await aftermath(t, ini, fn);
    });
  });
}

test.serial('an initiator that never sends the data gets the response at the bound, counted', async (t) => {
  await withSession(t, async (ini, tt) => {
    const before = expired(tt);
    const task = heldWrite(ini);
    const r2t = await task.r2t();
    const t0 = Date.now();
    const r = await ini.tmf(TmfFunction.AbortTaskSet, { lun: 0, timeoutMs: TMF_DATA_OUT_WAIT_MS + 30_000 });
    const waited = Date.now() - t0;
    t.is(r.response, TmfResponse.FunctionComplete);
    t.deepEqual(r.aborted, [task.itt]);
    t.true(waited >= TMF_DATA_OUT_WAIT_MS - 50, `answered at the bound (${waited} ms)`);
    t.is(expired(tt), before + 1, 'the expiry is counted');
    await t.throwsAsync(task.done, { instanceOf: TaskAbortedError });
    // Data that comes after all is still the ended task's: discarded without a word.
    task.answer(r2t);
    await aftermath(t, ini, TmfFunction.AbortTaskSet);
  });
});

for (const [name, fn] of [
  ['CLEAR TASK SET', TmfFunction.ClearTaskSet],
  ['LOGICAL UNIT RESET', TmfFunction.LogicalUnitReset],
] as const) {
  test.serial(`${name}: a third-party session's outstanding R2T is not waited for`, async (t) => {
    await withSession(t, async (ini, tt) => {
      const before = expired(tt);
      const other = await loginAs(tt, 'r2t-bystander');
      try {
        const theirs = heldWrite(other, 600, 0x41);
        const r2t = await theirs.r2t();
        const t0 = Date.now();
        const r = await ini.tmf(fn, { lun: 0 });
        const waited = Date.now() - t0;
        t.is(r.response, TmfResponse.FunctionComplete);
        t.true(waited < TMF_DATA_OUT_WAIT_MS, `answered without the other session's data (${waited} ms)`);
        t.is(expired(tt), before, 'no wait expired');
        // The bystander's task was ended by the function; its data, sent now, never lands.
        theirs.answer(r2t);
        const outcome = await theirs.done.then(
          (res) => res.status,
          (e: Error) => e.name,
        );
        if (fn === TmfFunction.ClearTaskSet)
          t.is(outcome, TASK_ABORTED, 'TAS = 1: the other nexus hears TASK ABORTED');
        else t.log(`the bystander's WRITE after the reset: ${String(outcome)}`);
        const rr = await other.scsi(cdb10(READ10, 600, BLOCKS), { edtl: BYTES, read: true });
        if (rr.status === 0x02) t.log('the bystander gets the unit attention first');
        if (fn === TmfFunction.LogicalUnitReset) {
          const ua = await ini.scsi(cdb10(READ10, 600, BLOCKS), { edtl: BYTES, read: true });
          t.is(ua.status, 0x02, "the issuer's unit attention of the reset comes first");
        }
        t.deepEqual(await content(t, ini, 600), Buffer.alloc(BYTES), "the bystander's WRITE never ran");
      } finally {
        other.close();
      }
    });
  });
}

test.serial(
  'ABORT TASK does not wait for the data: answered at once, the late Data-Out discarded',
  async (t) => {
    await withSession(t, async (ini, tt) => {
      const before = expired(tt);
      const task = heldWrite(ini);
      const r2t = await task.r2t();
      const t0 = Date.now();
      const r = await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: task.itt, lun: 0 });
      t.true(Date.now() - t0 < TMF_DATA_OUT_WAIT_MS, 'not held until the bound');
      t.is(r.response, TmfResponse.FunctionComplete);
      t.deepEqual(r.aborted, [task.itt], 'the WRITE is ended by the function');
      await t.throwsAsync(task.done, { instanceOf: TaskAbortedError });
      t.is(expired(tt), before);
      task.answer(r2t);
      await aftermath(t, ini, TmfFunction.AbortTask);
    });
  },
);

test.serial('Data-Out for a task that never existed is still rejected (invalid PDU field)', async (t) => {
  await withSession(t, async (ini) => {
    // A task ended by ABORT TASK leaves its TTT known; a made-up ITT and TTT are not.
    const task = heldWrite(ini);
    const r2t = await task.r2t();
    t.is((await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: task.itt, lun: 0 })).response, 0);
    await t.throwsAsync(task.done, { instanceOf: TaskAbortedError });
    ini.send(
      encodeDataOut({
        final: true,
        lun: 0n,
        itt: 0x00fedcba,
        ttt: (r2t.ttt + 0x1000) & 0x7fffffff,
        expStatSN: ini.expStatSN,
        dataSN: 0,
        bufferOffset: 0,
      }),
      Buffer.alloc(BYTES, NEW),
    );
    const rej = await ini.next();
    t.is(rej?.opcode, Opcode.Reject);
    t.is(rej!.data.readUInt32BE(16), 0x00fedcba, 'the Reject carries the bogus header');
    t.deepEqual(await content(t, ini), Buffer.alloc(BYTES, OLD));
  });
});
