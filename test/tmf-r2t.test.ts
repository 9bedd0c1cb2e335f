/**
 * Task management of WRITEs that wait for their data (an R2T outstanding, InitialR2T=Yes): the function ends
 * them, its response comes, and the Data-Out the initiator sends afterwards anyway, answering the R2T it still
 * holds, is discarded without a word: no Reject, no SCSI Response, nothing written, the session going on.
 *
 * RFC 7143 sec. 4.2.3.3 (TaskReporting=RFC3720) has the initiator keep answering the R2Ts of affected tasks after
 * a multi-task abort, so such Data-Out is expected, not an error; an ABORT TASK's is the same late data.
 */
import test, { type ExecutionContext } from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, TaskAbortedError, defaultOperationalKeys } from './helpers/initiator';
import { TmfFunction, TmfResponse, Opcode, opcodeName } from '../src/pdu/opcodes';
import { encodeDataOut } from '../src/pdu/serializer';
import { cdb10 } from './scsi-helpers';

const READ10 = 0x28;
const WRITE10 = 0x2a;
const BLOCKS = 8;
const BYTES = BLOCKS * 512;
const LBA = 300;
/** What the blocks hold before the aborted WRITE: a write of its own, so "unchanged" is not just "zeros". */
const OLD = 0x5a;
const NEW = 0xa1;

async function withSession(t: ExecutionContext, run: (ini: TestInitiator) => Promise<void>): Promise<void> {
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
    await run(ini);
    ini.close();
  } finally {
    ini?.socket.destroy();
    await tt.close();
  }
}

async function content(t: ExecutionContext, ini: TestInitiator): Promise<Buffer> {
  const r = await ini.scsi(cdb10(READ10, LBA, BLOCKS), { edtl: BYTES, read: true });
  t.is(r.status, 0);
  return r.data;
}

const cases: Array<[string, number, (itt: number) => Parameters<TestInitiator['tmf']>[1]]> = [
  ['ABORT TASK', TmfFunction.AbortTask, (itt) => ({ referencedTaskTag: itt, lun: 0 })],
  ['ABORT TASK SET', TmfFunction.AbortTaskSet, () => ({ lun: 0 })],
  ['CLEAR TASK SET', TmfFunction.ClearTaskSet, () => ({ lun: 0 })],
  ['LOGICAL UNIT RESET', TmfFunction.LogicalUnitReset, () => ({ lun: 0 })],
];

for (const [name, fn, opts] of cases) {
  test.serial(
    `${name} of a WRITE waiting on its R2T: answered, late Data-Out discarded silently`,
    async (t) => {
      await withSession(t, async (ini) => {
        const task = ini.start(cdb10(WRITE10, LBA, BLOCKS), {
          edtl: BYTES,
          write: true,
          data: Buffer.alloc(BYTES, NEW),
          immediate: 0,
          holdData: true,
        });
        const r2t = await task.r2t();
        t.is(r2t.desiredDataTransferLength, BYTES, 'InitialR2T=Yes: every byte is solicited');
        // The initiator withholds the data: the response comes all the same, once the task has ended.
        const r = await ini.tmf(fn, opts(task.itt));
        t.is(r.response, TmfResponse.FunctionComplete);
        t.deepEqual(r.aborted, [task.itt], 'the WRITE is ended by the function');
        await t.throwsAsync(task.done, { instanceOf: TaskAbortedError });
        // Now the Data-Out the R2T asked for. A NOP round trip later nothing has come for it.
        task.answer(r2t);
        const echo = await ini.nop(Buffer.from('after the late Data-Out'));
        t.is(echo.opcode, Opcode.NopIn);
        t.deepEqual(
          ini.pending.map((p) => opcodeName(p.opcode)),
          [],
          'no Reject, no SCSI Response for the discarded Data-Out',
        );
        t.false(ini.closed, 'the connection stays');
        if (fn === TmfFunction.LogicalUnitReset) {
          const ua = await ini.scsi(cdb10(READ10, LBA, BLOCKS), { edtl: BYTES, read: true });
          t.is(ua.status, 0x02, 'the unit attention of the reset comes first');
        }
        t.deepEqual(
          await content(t, ini),
          Buffer.alloc(BYTES, OLD),
          'the aborted WRITE never reached the LU',
        );
        // The session keeps working: a new WRITE (same ITT space, new TTT) lands.
        const again = await ini.scsi(cdb10(WRITE10, LBA, BLOCKS), {
          edtl: BYTES,
          write: true,
          data: Buffer.alloc(BYTES, 0x3c),
          immediate: 0,
        });
        t.is(again.status, 0);
        t.deepEqual(await content(t, ini), Buffer.alloc(BYTES, 0x3c));
      });
    },
  );
}

test.serial('Data-Out for a task that never existed is still rejected (invalid PDU field)', async (t) => {
  await withSession(t, async (ini) => {
    // A task ended by ABORT TASK leaves its TTT known; a made-up ITT and TTT are not.
    const task = ini.start(cdb10(WRITE10, LBA, BLOCKS), {
      edtl: BYTES,
      write: true,
      data: Buffer.alloc(BYTES, NEW),
      immediate: 0,
      holdData: true,
    });
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
