/**
 * LuShared, the state of one LU that every worker shares (src/scsi/lu-shared.ts): two handles on one memory,
 * with different lanes, act as two workers. Unit attentions (each condition once per nexus, except/only, the
 * order they are reported in), prevent-removal, the range locks of atomic commands against plain writes, the
 * PR document's lock and sequence, and what the portal frees when a worker dies. A last test runs the range
 * lock across two real worker threads.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import {
  FLAG_SWP,
  LuShared,
  MAX_NEXUS,
  PR_CAPACITY,
  PrCapacityError,
  UA,
  UA_SENSE,
  allocateLuShared,
  releaseLane,
} from '../src/scsi/lu-shared';

const N1 = 'iqn.a,i,0x400000000001|iqn.t';
const N2 = 'iqn.b,i,0x400000000002|iqn.t';
const N3 = 'iqn.c,i,0x400000000003|iqn.t';

function twoWorkers(): [LuShared, LuShared] {
  const mem = allocateLuShared();
  return [new LuShared(mem, 1), new LuShared(mem, 2)];
}

test('every condition reaches every nexus on every worker once; the one that raised it is spared', (t) => {
  const [w1, w2] = twoWorkers();
  w1.slotOf(N1);
  w2.slotOf(N2);
  w2.slotOf(N3);
  w1.establish(UA.MODE_PARAMETERS_CHANGED, { except: N1 });
  w1.establish(UA.MODE_PARAMETERS_CHANGED, { except: N1 }); // twice: still once
  t.false(w1.hasUnitAttention(N1));
  for (const n of [N2, N3]) {
    t.true(w2.hasUnitAttention(n));
    t.deepEqual(w2.takeUnitAttention(n), UA_SENSE[UA.MODE_PARAMETERS_CHANGED]);
    t.is(w2.takeUnitAttention(n), undefined, 'once');
  }
});

test('several conditions are reported highest priority first (resets before parameter changes)', (t) => {
  const [w1, w2] = twoWorkers();
  w2.slotOf(N2);
  for (const c of [UA.REPORTED_LUNS_DATA_CHANGED, UA.CAPACITY_DATA_CHANGED, UA.BUS_DEVICE_RESET])
    w1.establish(c);
  t.deepEqual(w2.takeUnitAttention(N2), [0x29, 0x03]);
  t.deepEqual(w2.takeUnitAttention(N2), [0x2a, 0x09]);
  t.deepEqual(w2.takeUnitAttention(N2), [0x3f, 0x0e]);
  t.is(w2.takeUnitAttention(N2), undefined);
});

test('only: a condition for named nexuses (e.g. preempted registrants) reaches just them', (t) => {
  const [w1, w2] = twoWorkers();
  w1.slotOf(N1);
  w2.slotOf(N2);
  w2.slotOf(N3);
  w1.establish(UA.REGISTRATIONS_PREEMPTED, { only: [N3] });
  t.false(w1.hasUnitAttention(N1));
  t.false(w2.hasUnitAttention(N2));
  t.deepEqual(w2.takeUnitAttention(N3), [0x2a, 0x05]);
});

test('a nexus that ends drops its conditions and its slot; one that comes later does not see old ones', (t) => {
  const [w1, w2] = twoWorkers();
  w2.slotOf(N2);
  w1.establish(UA.BUS_DEVICE_RESET);
  w2.releaseNexus(N2);
  w2.slotOf(N2);
  t.false(w2.hasUnitAttention(N2), 'a new session of the same nexus starts clean');
});

test('flags and prevent-removal are seen by the other worker', (t) => {
  const [w1, w2] = twoWorkers();
  t.true(w1.setFlag(FLAG_SWP, true));
  t.false(w1.setFlag(FLAG_SWP, true), 'no change the second time');
  t.true(w2.flag(FLAG_SWP));
  w1.setPrevent(N1, true);
  t.true(w2.removalPrevented);
  w1.releaseNexus(N1);
  t.false(w2.removalPrevented, 'PREVENT ends with its I_T nexus');
  w2.setPrevent(N2, true);
  w1.clearAllPrevent();
  t.false(w2.removalPrevented, 'and with a reset');
});

test('an atomic command waits for plain writes in flight on its range, and writes wait for it', async (t) => {
  const [w1, w2] = twoWorkers();
  const order: string[] = [];
  let releaseWrite!: () => void;
  const write = w1.guardWrite(4096, 4096, async () => {
    order.push('write start');
    await new Promise<void>((r) => (releaseWrite = r));
    order.push('write end');
  });
  await new Promise((r) => setImmediate(r));
  const atomic = w2.exclusive(4096, 512, async () => {
    order.push('atomic');
    await new Promise((r) => setTimeout(r, 20));
    order.push('atomic end');
  });
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(order, ['write start'], 'the atomic command waits for the write in flight');
  releaseWrite();
  await new Promise((r) => setTimeout(r, 5));
  const later = w1.guardWrite(0, 8192, async () => void order.push('later write'));
  await Promise.all([write, atomic, later]);
  t.deepEqual(order, ['write start', 'write end', 'atomic', 'atomic end', 'later write']);
});

test('writes elsewhere on the medium do not wait for an atomic command', async (t) => {
  const [w1, w2] = twoWorkers();
  let release!: () => void;
  const atomic = w2.exclusive(0, 512, () => new Promise<void>((r) => (release = r)));
  await new Promise((r) => setImmediate(r));
  let done = false;
  // 1 MiB stripes, 16 of them: 5 MiB in is another stripe.
  await w1.guardWrite(5 * 1024 * 1024, 4096, async () => void (done = true));
  t.true(done);
  release();
  await atomic;
});

test('PR document: changes under the lock, readers on the other worker see each version whole', (t) => {
  const [w1, w2] = twoWorkers();
  t.false(w2.prActive);
  t.is(w2.prDocument(), null);
  const r = w1.updatePr<{ keys: string[] }, string>((d) => ({
    doc: { keys: [...(d?.keys ?? []), 'k1'] },
    active: true,
    result: 'ok',
  }));
  t.is(r, 'ok');
  t.true(w2.prActive);
  t.deepEqual(w2.prDocument(), { keys: ['k1'] });
  w2.updatePr<{ keys: string[] }, void>((d) => ({
    doc: { keys: [...d!.keys, 'k2'] },
    active: true,
    result: undefined,
  }));
  t.deepEqual(w1.prDocument(), { keys: ['k1', 'k2'] });
  const seq = w1.prSeq;
  t.throws(() => w1.updatePr(() => ({ doc: { big: 'x'.repeat(PR_CAPACITY) }, active: true, result: 0 })), {
    instanceOf: PrCapacityError,
  });
  t.is(w1.prSeq, seq, 'a document that does not fit changes nothing');
  t.deepEqual(w2.prDocument(), { keys: ['k1', 'k2'] });
  w1.updatePr(() => ({ doc: {}, active: false, result: 0 }));
  t.false(w2.prActive);
});

test('releaseLane frees what a dead worker held: its slots, its writes in flight, its range locks', async (t) => {
  const mem = allocateLuShared();
  const dead = new LuShared(mem, 3);
  const live = new LuShared(mem, 1);
  dead.slotOf(N3);
  dead.setPrevent(N3, true);
  void dead.guardWrite(0, 512, () => new Promise(() => undefined)); // never ends: the thread died
  void dead.exclusive(2 * 1024 * 1024, 512, () => new Promise(() => undefined));
  await new Promise((r) => setImmediate(r));
  t.true(live.removalPrevented);
  releaseLane(mem, 3);
  t.false(live.removalPrevented, "the dead worker's nexus is gone");
  let ran = 0;
  await live.exclusive(0, 512, async () => void ran++);
  await live.guardWrite(2 * 1024 * 1024, 512, async () => void ran++);
  t.is(ran, 2, 'neither its write in flight nor its atomic command blocks anyone');
});

test("two real worker threads: plain writes never land inside the other thread's atomic read-modify-write", async (t) => {
  const mem = allocateLuShared();
  const counter = new SharedArrayBuffer(8);
  // Each thread does 300 atomic increments (read, wait a moment, write back: inside exclusive) and 300 plain
  // increments (Atomics.add, inside guardWrite, on the same range). A plain write that ran inside the other
  // thread's atomic section would be overwritten by its write-back: the total would come short of 1200.
  const src = `
    const { workerData, parentPort } = require('node:worker_threads');
    const { LuShared } = require(${JSON.stringify(require.resolve('../src/scsi/lu-shared'))});
    const lu = new LuShared(workerData.mem, workerData.lane);
    const c = new Int32Array(workerData.counter);
    (async () => {
      let overlaps = 0;
      for (let i = 0; i < 300; i++) {
        await lu.exclusive(0, 512, async () => {
          Atomics.store(c, 1, 1);
          const v = Atomics.load(c, 0);
          await new Promise((r) => setTimeout(r, 0));
          Atomics.store(c, 0, v + 1);
          Atomics.store(c, 1, 0);
        });
        await lu.guardWrite(0, 512, async () => {
          await new Promise((r) => setImmediate(r));
          if (Atomics.load(c, 1) !== 0) overlaps++;
          Atomics.add(c, 0, 1);
        });
      }
      parentPort.postMessage(overlaps);
    })();`;
  const run = (lane: number) =>
    new Promise<number>((resolve, reject) => {
      const w = new Worker(src, { eval: true, workerData: { mem, lane, counter } });
      w.once('message', (m: number) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
  const overlaps = await Promise.all([run(1), run(2)]);
  t.deepEqual(overlaps, [0, 0], 'no plain write ran inside an atomic section');
  t.is(new Int32Array(counter)[0], 1200, 'no lost update: no plain write landed inside an atomic section');
});

test('past MAX_NEXUS nexuses on one LU a new one gets no slot (-1) and no unit attention; a freed slot is reused', (t) => {
  const [w1, w2] = twoWorkers();
  for (let i = 0; i < MAX_NEXUS; i++) t.true(w1.slotOf(`iqn.n${i},i,0x1|iqn.t`) >= 0);
  t.is(w2.slotOf(N2), -1);
  w1.establish(UA.BUS_DEVICE_RESET);
  t.false(w2.hasUnitAttention(N2));
  w1.releaseNexus('iqn.n7,i,0x1|iqn.t');
  t.true(w2.slotOf(N2) >= 0, 'a slot freed by a session that ended is taken');
});
