/**
 * COMPARE AND WRITE is atomic across workers: two sessions on two different workers of one target race
 * CAWs on one block, and a plain WRITE from one worker never lands between the compare and the write of a CAW
 * running on the other.
 */
import test, { type ExecutionContext } from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, type ScsiResult } from './helpers/initiator';
import { cdb10, cdbCaw } from './scsi-helpers';

const BS = 512;

const caw = cdbCaw;

const rw = (op: 0x28 | 0x2a, lba: number, blocks: number): Buffer => cdb10(op, lba, blocks);

/** Content no other round or side writes: side, round and the offset in every 8 bytes. */
function content(side: number, round: number, blocks = 1): Buffer {
  const b = Buffer.alloc(blocks * BS);
  for (let i = 0; i < b.length; i += 8) {
    b.writeUInt32BE(round, i);
    b.writeUInt16BE(side, i + 4);
    b.writeUInt16BE(i & 0xffff, i + 6);
  }
  return b;
}

const isMiscompare = (r: ScsiResult) =>
  r.status === 2 &&
  r.sense !== null &&
  (r.sense[2] & 0x0f) === 0x0e &&
  r.sense[12] === 0x1d &&
  r.sense[13] === 0;

/** Two sessions of different initiators, checked to be served by two different workers. */
async function twoWorkers(t: ExecutionContext, tt: TestTarget): Promise<[TestInitiator, TestInitiator]> {
  const a = await TestInitiator.connect(tt.port);
  t.is(
    (await a.login({ targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:caw-a' })).status,
    0,
  );
  const b = await TestInitiator.connect(tt.port);
  t.is(
    (await b.login({ targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:caw-b' })).status,
    0,
  );
  const per = tt.target.connectionsPerWorker();
  t.log(`connections per worker: ${JSON.stringify([...per.entries()])}`);
  t.deepEqual([...per.values()].sort(), [1, 1], 'one session on each of the two workers');
  return [a, b];
}

async function read(i: TestInitiator, lba: number, blocks: number): Promise<Buffer> {
  const r = await i.scsi(rw(0x28, lba, blocks), { edtl: blocks * BS, read: true });
  if (r.status !== 0) throw new Error(`READ failed: ${r.sense?.toString('hex')}`);
  return r.data;
}

test('CAW race, two workers, 10,000 rounds: exactly one wins each round and the block is as the winner wrote it', async (t) => {
  t.timeout(300_000);
  const tt = await startTestTarget({ workers: 2 });
  try {
    const [a, b] = await twoWorkers(t, tt);
    const lba = 4242;
    let current = content(0, 0);
    const w = await a.scsi(rw(0x2a, lba, 1), { edtl: BS, write: true, data: current });
    t.is(w.status, 0);
    const ROUNDS = 10_000;
    const wins = [0, 0];
    const started = process.hrtime.bigint();
    for (let round = 1; round <= ROUNDS; round++) {
      const mine = [content(1, round), content(2, round)];
      const [ra, rb] = await Promise.all(
        [a, b].map((s, i) =>
          s.scsi(caw(lba, 1), { edtl: 2 * BS, write: true, data: Buffer.concat([current, mine[i]]) }),
        ),
      );
      const good = [ra.status === 0, rb.status === 0];
      if (good[0] === good[1] || !(isMiscompare(ra) || isMiscompare(rb))) {
        t.fail(
          `round ${round}: statuses ${ra.status}/${rb.status} (${ra.sense?.toString('hex')}, ${rb.sense?.toString('hex')})`,
        );
        return;
      }
      const winner = good[0] ? 0 : 1;
      wins[winner]++;
      current = mine[winner];
      // The block is what the winner wrote, not the loser's and not a mix.
      const now = await read(round % 2 ? a : b, lba, 1);
      if (!now.equals(current)) {
        t.fail(`round ${round}: block does not hold the winner's data`);
        return;
      }
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    t.log(
      `rounds ${ROUNDS}: session A won ${wins[0]}, session B won ${wins[1]}, ${ms.toFixed(0)} ms (${((ms * 1000) / ROUNDS).toFixed(0)} us/round)`,
    );
    t.is(wins[0] + wins[1], ROUNDS);
    // Both sides must win sometimes, or the two never really raced.
    t.true(wins[0] > 0 && wins[1] > 0, 'both sessions won some rounds');
    a.close();
    b.close();
  } finally {
    await tt.close();
  }
});

test('a WRITE from one worker never lands between the compare and the write of a CAW on the other', async (t) => {
  t.timeout(300_000);
  const tt = await startTestTarget({ workers: 2 });
  try {
    const [a, b] = await twoWorkers(t, tt);
    // 64 blocks (32 KiB) compared and written: a window worth aiming at.
    const lba = 1000;
    const N = 64;
    const ROUNDS = 2000;
    const outcome = { cawFirst: 0, writeFirst: 0 };
    const started = process.hrtime.bigint();
    for (let round = 1; round <= ROUNDS; round++) {
      const x = content(1, round, N);
      const y = content(2, round, N);
      const wData = content(3, round, N);
      t.is((await a.scsi(rw(0x2a, lba, N), { edtl: N * BS, write: true, data: x })).status, 0);
      // The CAW (X -> Y) on A's worker and the WRITE (W) on B's, at once. Serialized, either the CAW comes
      // first (GOOD, then W overwrites Y) or the WRITE does (the CAW miscompares): the blocks end as W either
      // way. Only a WRITE between the compare and the write leaves Y.
      const [rc, rwr] = await Promise.all([
        a.scsi(caw(lba, N), { edtl: 2 * N * BS, write: true, data: Buffer.concat([x, y]) }),
        b.scsi(rw(0x2a, lba, N), { edtl: N * BS, write: true, data: wData }),
      ]);
      t.is(rwr.status, 0);
      if (rc.status === 0) outcome.cawFirst++;
      else if (isMiscompare(rc)) outcome.writeFirst++;
      else t.fail(`round ${round}: CAW status ${rc.status} ${rc.sense?.toString('hex')}`);
      const now = await read(b, lba, N);
      if (!now.equals(wData)) {
        t.fail(`round ${round}: the WRITE was lost inside a COMPARE AND WRITE (CAW ${rc.status})`);
        return;
      }
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    t.log(
      `rounds ${ROUNDS}: CAW first ${outcome.cawFirst}, WRITE first ${outcome.writeFirst}, ${ms.toFixed(0)} ms`,
    );
    t.is(outcome.cawFirst + outcome.writeFirst, ROUNDS);
    a.close();
    b.close();
  } finally {
    await tt.close();
  }
});
