/**
 * A worker whose last connection has just closed keeps running its event loop: the writes that connection left
 * in flight complete and give back their range locks, so an atomic command on another worker is not held up.
 *
 * Found in CI (iscsi-test-cu iSCSITMF.LUNResetSimpleAsync, then CompareAndWrite.Simple timed out): piscina's
 * default 'sync' atomics mode parks an idle worker in Atomics.wait() once its last task (the connection) has
 * returned, which freezes I/O completions and timers on that thread until the next connection arrives. The
 * portal starts its pool with atomics 'disabled' (src/portal/portal.ts).
 */
import test from 'ava';
import { loginAs, startTestTarget } from './helpers/target';
import { cdbCaw } from './scsi-helpers';

const BS = 512;
const ROUNDS = 12;
const WRITES = 16;
const WRITE_BYTES = 64 * 1024;

/** WRITE(16) with FUA: slower to complete, so some are still in the kernel when the connection goes. */
function write16Fua(lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x8a;
  c[1] = 0x08;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(blocks, 10);
  return c;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

test('writes left in flight by a closing connection complete: a CAW on the other worker is not held up', async (t) => {
  t.timeout(120_000);
  const tt = await startTestTarget({ workers: 2, luns: [{ lun: 0, path: 'lun0.img', size: '16M' }] });
  const a = await loginAs(tt, 'idle-a');
  try {
    // LBA 0 holds what every CAW of `a` compares against: zeros, rewritten by each CAW.
    for (let round = 0; round < ROUNDS; round++) {
      const b = await loginAs(tt, `idle-b${round}`);
      const per = [...tt.target.connectionsPerWorker().values()].sort();
      t.deepEqual(per, [1, 1], `round ${round}: a and b on two different workers`);
      // b: writes of zeros over the first MiB (the CAW's stripe), then gone without waiting for them.
      const blocks = WRITE_BYTES / BS;
      for (let i = 0; i < WRITES; i++)
        void b
          .scsi(write16Fua(i * blocks, blocks), {
            lun: 0,
            edtl: WRITE_BYTES,
            write: true,
            data: Buffer.alloc(WRITE_BYTES),
          })
          .catch(() => undefined);
      b.socket.end();
      // Until the target has let b's connection go: b's worker then has no task left.
      for (
        let i = 0;
        i < 500 && [...tt.target.connectionsPerWorker().values()].reduce((x, y) => x + y, 0) > 1;
        i++
      )
        await sleep(10);
      const caw = Buffer.concat([Buffer.alloc(BS), Buffer.alloc(BS)]);
      const started = Date.now();
      const r = await a.scsi(cdbCaw(0, 1), {
        lun: 0,
        edtl: 2 * BS,
        write: true,
        data: caw,
        timeoutMs: 10_000,
      });
      const ms = Date.now() - started;
      t.is(r.status, 0, `round ${round}: COMPARE AND WRITE GOOD (sense ${r.sense?.toString('hex') ?? '-'})`);
      t.true(ms < 5_000, `round ${round}: COMPARE AND WRITE answered in ${ms} ms`);
    }
  } finally {
    a.socket.destroy();
    await tt.close();
  }
});
