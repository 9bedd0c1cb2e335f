/**
 * Task management at the edges: ABORT TASK racing the command's own completion (many rounds, either outcome,
 * never both), CLEAR TASK SET reaching another session's task, the answers to bad requests (unknown task, LUN
 * that does not exist, TASK REASSIGN at ErrorRecoveryLevel 0), and an ITT reused within the session on
 * another connection. One target for the file, one worker.
 */
import test from 'ava';
import { loginAs, startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, TaskAbortedError } from './helpers/initiator';
import { Opcode, TmfFunction, TmfResponse } from '../src/pdu/opcodes';
import { decodeReject } from '../src/pdu/pdu';
import { encodeScsiCommand } from '../src/pdu/serializer';
import { lunField } from '../src/scsi/lun';
import { readCounters } from '../src/metrics/counters';
import { cdb10 } from './scsi-helpers';

const BLOCKS = 8;
const BYTES = BLOCKS * 512;
const TASK_ABORTED = 0x40;

let tt: TestTarget;
test.before(async () => {
  tt = await startTestTarget({ workers: 1, luns: [{ lun: 0, path: 'lun0.img', size: '16M' }] });
});
test.after.always(async () => {
  await tt?.close();
});

const counter = (name: string) => (readCounters(tt.target.counters).total as Record<string, number>)[name];
const read = (ini: TestInitiator, lba: number) =>
  ini.scsi(cdb10(0x28, lba, BLOCKS), { lun: 0, edtl: BYTES, read: true });
const heldWrite = (ini: TestInitiator, lba: number, fill: number) =>
  ini.start(cdb10(0x2a, lba, BLOCKS), {
    lun: 0,
    edtl: BYTES,
    write: true,
    data: Buffer.alloc(BYTES, fill),
    immediate: 0,
    holdData: true,
  });

test.serial(
  'ABORT TASK racing the command’s completion: aborted and unanswered, or answered and gone',
  async (t) => {
    const ini = await loginAs(tt, 'race');
    const rounds = 60;
    const outcome = { aborted: 0, completed: 0 };
    const fills: Array<{ lba: number; fill: number; completed: boolean }> = [];
    for (let i = 0; i < rounds; i++) {
      const lba = 2000 + i * BLOCKS;
      const fill = (i % 254) + 1;
      const task = ini.start(cdb10(0x2a, lba, BLOCKS), {
        lun: 0,
        edtl: BYTES,
        write: true,
        data: Buffer.alloc(BYTES, fill),
      });
      const done = task.done.then(
        (r) => r,
        (e: Error) => e,
      );
      // From "in the same TCP segment" to "after a few turns of our loop": both sides of the race.
      const wait = i % 4;
      if (wait === 1) await new Promise((r) => setImmediate(r));
      else if (wait >= 2) await new Promise((r) => setTimeout(r, wait - 1));
      const r = await ini.tmf(TmfFunction.AbortTask, { referencedTaskTag: task.itt, lun: 0 });
      const settled = await done;
      if (r.response === TmfResponse.FunctionComplete) {
        t.deepEqual(
          r.aborted,
          [task.itt],
          'Function complete: the task was still outstanding, never answered',
        );
        t.true(settled instanceof TaskAbortedError);
        outcome.aborted++;
      } else {
        t.is(
          r.response,
          TmfResponse.TaskDoesNotExist,
          'otherwise the task had completed: Task does not exist',
        );
        t.false(settled instanceof Error, 'and its status had arrived first');
        if (!(settled instanceof Error)) t.is(settled.status, 0);
        outcome.completed++;
      }
      fills.push({ lba, fill, completed: r.response !== TmfResponse.FunctionComplete });
    }
    // A NOP round trip: no late status of an aborted task is on its way (the initiator fails on one).
    await ini.nop();
    for (const f of fills) {
      const r = await read(ini, f.lba);
      const landed = r.data.equals(Buffer.alloc(BYTES, f.fill));
      if (f.completed) t.true(landed, `completed write at LBA ${f.lba} is on the medium`);
      else
        t.true(landed || r.data.equals(Buffer.alloc(BYTES)), `aborted write at LBA ${f.lba}: all or nothing`);
    }
    t.log(`outcomes over ${rounds} rounds: ${JSON.stringify(outcome)}`);
    t.is(outcome.aborted + outcome.completed, rounds);
    ini.close();
  },
);

test.serial(
  "CLEAR TASK SET ends another session's task on the LU with TASK ABORTED, without unit attention",
  async (t) => {
    const ini = await loginAs(tt, 'clearer');
    const other = await loginAs(tt, 'bystander');
    const mine = heldWrite(ini, 300, 0x31);
    const theirs = heldWrite(other, 400, 0x41);
    const [myR2t, r2t] = await Promise.all([mine.r2t(), theirs.r2t()]);
    // RFC 7143 4.2.3.3: the response waits for the requester's answer to its own R2T (its data discarded).
    const pending = ini.tmf(TmfFunction.ClearTaskSet, { lun: 0 });
    mine.answer(myR2t);
    const r = await pending;
    t.is(r.response, TmfResponse.FunctionComplete);
    t.deepEqual(r.aborted, [mine.itt], "the requester's own task ends silently");
    await t.throwsAsync(mine.done, { instanceOf: TaskAbortedError });
    theirs.answer(r2t);
    t.is((await theirs.done).status, TASK_ABORTED, 'TAS = 1: the other nexus hears TASK ABORTED');
    for (const s of [ini, other]) {
      const rr = await read(s, 400);
      t.is(rr.status, 0, 'no unit attention (SAM-5: TAS = 1)');
      t.deepEqual(rr.data, Buffer.alloc(BYTES), 'the cleared write never ran');
    }
    ini.close();
    other.close();
  },
);

test.serial('bad TMF requests: each answered per RFC 7143, counted; the sessions go on', async (t) => {
  const ini = await loginAs(tt, 'bad-tmf');
  const other = await loginAs(tt, 'bad-tmf-other');
  const held = heldWrite(ini, 500, 0x51);
  const r2t = await held.r2t();
  const before = counter('tmfNotComplete');
  const cases: Array<[string, number, Parameters<TestInitiator['tmf']>[1], number]> = [
    ['ABORT TASK SET, no such LUN', TmfFunction.AbortTaskSet, { lun: 7 }, TmfResponse.LunDoesNotExist],
    ['CLEAR TASK SET, no such LUN', TmfFunction.ClearTaskSet, { lun: 7 }, TmfResponse.LunDoesNotExist],
    ['CLEAR ACA, no such LUN', TmfFunction.ClearAca, { lun: 7 }, TmfResponse.LunDoesNotExist],
    ['LU RESET, no such LUN', TmfFunction.LogicalUnitReset, { lun: 7 }, TmfResponse.LunDoesNotExist],
    [
      'TASK REASSIGN of an unknown task',
      TmfFunction.TaskReassign,
      { referencedTaskTag: 0x0badf00d },
      TmfResponse.TaskDoesNotExist,
    ],
    [
      'TASK REASSIGN at ErrorRecoveryLevel 0',
      TmfFunction.TaskReassign,
      { referencedTaskTag: held.itt },
      TmfResponse.TaskAllegianceReassignmentNotSupported,
    ],
    [
      // In the window, but not below the TMF's own CmdSN: not a command lost on the way (RFC 7143 11.6.1).
      'ABORT TASK, unknown tag, RefCmdSN not below the TMF CmdSN',
      TmfFunction.AbortTask,
      { referencedTaskTag: 0x0badf00d, refCmdSN: ini.cmdSN },
      TmfResponse.TaskDoesNotExist,
    ],
  ];
  for (const [what, fn, o, expected] of cases) {
    const r = await ini.tmf(fn, o);
    t.is(r.response, expected, what);
    t.deepEqual(r.aborted, [], `${what}: no task ended`);
  }
  t.is(
    counter('tmfNotComplete'),
    before + cases.length,
    'each answer other than Function complete is counted',
  );
  held.answer(r2t);
  t.is((await held.done).status, 0, 'the outstanding task went on');
  t.is((await read(other, 500)).status, 0, 'the other session is unharmed');
  ini.close();
  other.close();
});

test.serial(
  'an ITT in use on one connection of a session, reused on another: Reject (task in progress), counted',
  async (t) => {
    const name = 'iqn.2026-11.io.nodetgt.test:itt';
    const a = await TestInitiator.connect(tt.port);
    const ra = await a.login({ targetName: TEST_TARGET, initiatorName: name });
    t.is(ra.status, 0);
    const b = await TestInitiator.connect(tt.port);
    const rb = await b.login({
      targetName: TEST_TARGET,
      initiatorName: name,
      isid: ra.isid,
      tsih: ra.tsih,
      cid: 1,
    });
    t.is(rb.status, 0, 'second connection of the session (MC/S)');
    const held = heldWrite(a, 600, 0x61);
    const r2t = await held.r2t();
    const before = counter('instSsnFormatErrors');
    b.send(
      encodeScsiCommand({
        immediate: true, // no CmdSN consumed, so the Reject leaves no gap to plug
        final: true,
        read: true,
        write: false,
        attr: 1,
        lun: lunField(0),
        itt: held.itt,
        expectedDataTransferLength: BYTES,
        cmdSN: b.cmdSN,
        expStatSN: b.expStatSN,
        cdb: cdb10(0x28, 600, BLOCKS),
      }),
    );
    const rej = await b.next(5000);
    t.is(rej?.opcode, Opcode.Reject);
    t.is(decodeReject(rej!).reason, 0x07, 'Reject reason: task in progress');
    t.is(rej!.data.readUInt32BE(16), held.itt, 'carrying the offending header');
    t.is(counter('instSsnFormatErrors'), before + 1);
    held.answer(r2t);
    t.is((await held.done).status, 0, 'the task that owns the ITT goes on');
    // Once it is over, the ITT is free again, on either connection (CmdSN is the session's: A used some).
    b.cmdSN = a.cmdSN;
    const again = await b.scsi(cdb10(0x28, 600, BLOCKS), { lun: 0, edtl: BYTES, read: true });
    t.deepEqual(again.data, Buffer.alloc(BYTES, 0x61));
    a.close();
    b.close();
  },
);
