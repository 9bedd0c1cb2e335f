/**
 * WRITE ATOMIC(16) on a store that applies a write inside one of its objects whole and keeps a redo journal in
 * the cluster for the others (the RBD LU, src/backstore/rbd-atomic.ts), without a cluster: a memory store with
 * 64 KiB "objects" and an in-memory stand-in for the image's RADOS objects. What the LU offers (Block Limits)
 * with and without ALUA and with two active gateways, before and after a live change of the states; which
 * writes go through the journal and in what order; a failed journal write; the replay of records (complete,
 * torn, stale) and when the portal replays or discards them (journalAction).
 */
import test from 'ava';
import { decodeJournal, HEADER_BYTES } from '../src/backstore/atomic-journal';
import { MemoryBackstore } from '../src/backstore/memory';
import {
  atomicLimitsShrink,
  atomicObjectName,
  journalAction,
  RbdAtomicJournal,
  replayRbdJournals,
} from '../src/backstore/rbd-atomic';
import type { RedoJournal } from '../src/backstore/types';
import { soleWriter, type AluaConfig, type AluaState } from '../src/config/alua';
import type { RbdImage } from '../src/native/rbd';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import { TargetPortGroups } from '../src/scsi/port-groups';
import { ILLEGAL, cdb10, good, pattern, runOn, sense, testIdentity, cdbAtomic } from './scsi-helpers';

const BS = 512;
const OBJECT = 64 * 1024;
const BLOCKS = 8192; // 4 MiB: 64 objects

/** RADOS objects in memory: what RbdAtomicJournal and replayRbdJournals use of an RbdImage. */
class FakeObjects {
  readonly objects = new Map<string, Buffer>();
  failWrites = false;
  writes: string[] = [];
  constructor(readonly store?: MemoryBackstore) {}
  async objWrite(obj: string, offset: number, bufs: readonly Buffer[]): Promise<void> {
    if (this.failWrites) throw Object.assign(new Error('rados_write: EIO'), { code: 'EIO' });
    const data = Buffer.concat(bufs);
    const old = this.objects.get(obj) ?? Buffer.alloc(0);
    const next = Buffer.alloc(Math.max(old.length, offset + data.length));
    old.copy(next);
    data.copy(next, offset);
    this.objects.set(obj, next);
    this.writes.push(`${obj}@${offset}+${data.length}`);
  }
  async objRead(obj: string, offset: number, length: number): Promise<Buffer | null> {
    const o = this.objects.get(obj);
    return o ? Buffer.from(o.subarray(offset, offset + length)) : null;
  }
  async objSize(obj: string): Promise<number | null> {
    return this.objects.get(obj)?.length ?? null;
  }
  writev(offset: number, bufs: readonly Buffer[]): Promise<void> {
    return this.store!.write(offset, bufs, false);
  }
  async flush(): Promise<void> {}
  get image(): RbdImage {
    return this as unknown as RbdImage;
  }
}

/** The RBD backstore's shape over memory: 4 KiB physical blocks, whole writes inside a 64 KiB object. */
class ObjectStore extends MemoryBackstore {
  readonly physicalBlockSize = 4096;
  readonly atomicWriteMax = 4096;
  readonly fake = new FakeObjects(this);
  readonly journals = new Map<string, RbdAtomicJournal>();
  appliesWhole(offset: number, length: number): boolean {
    return Math.floor(offset / OBJECT) === Math.floor((offset + length - 1) / OBJECT);
  }
  redoJournal(port: number, lane: number): RedoJournal {
    const key = `${port}/${lane}`;
    if (!this.journals.has(key))
      this.journals.set(key, new RbdAtomicJournal(this.fake.image, atomicObjectName('img', port), lane));
    return this.journals.get(key)!;
  }
}

function alua(states: AluaState[], localGroup: number, ports?: number[][]): AluaConfig {
  return {
    localGroup,
    port: ports ? ports[localGroup - 1][0] : localGroup,
    groups: states.map((state, i) => ({ id: i + 1, state, ports: ports?.[i] ?? [i + 1], preferred: false })),
  };
}

function rig(settings?: AluaConfig) {
  const store = new ObjectStore({ sizeBytes: BLOCKS * BS });
  const ports = new TargetPortGroups(settings);
  const lu = new LogicalUnit(store, testIdentity(), { ports });
  const disp = new ScsiDispatcher(new Map([[0, lu]]));
  const exec = runOn(disp);
  const run = (cdb: Buffer, data?: Buffer) => exec(cdb, data ? { data } : {});
  const limits = async () => {
    const vpd = (await run(Buffer.from([0x12, 1, 0xb0, 0, 64, 0]))).dataIn!;
    return [vpd.readUInt32BE(44), vpd.readUInt32BE(48), vpd.readUInt32BE(52)];
  };
  return { store, ports, lu, run, limits };
}

const FILE_LIMITS = [2048, 8, 8]; // 1 MiB of 512-byte blocks, aligned to the 4 KiB physical block
const STORE_LIMITS = [8, 8, 8]; // 4 KiB, aligned to itself: never crosses an object

test('soleWriter: no ALUA, or the active groups hold exactly this port', (t) => {
  t.true(soleWriter(undefined));
  t.true(soleWriter(alua(['active-optimized', 'standby'], 1)));
  t.true(soleWriter(alua(['unavailable', 'active-non-optimized'], 2)));
  t.false(soleWriter(alua(['active-optimized', 'standby'], 2)), 'another gateway is the active one');
  t.false(soleWriter(alua(['active-optimized', 'active-non-optimized'], 1)), 'two active groups');
  t.false(soleWriter(alua(['standby', 'unavailable'], 1)), 'nobody active');
  t.false(
    soleWriter(alua(['active-optimized', 'standby'], 1, [[1, 3], [2]])),
    'two ports in the active group',
  );
});

test('journalAction: replay when beginning to serve as the sole writer, discard when another may have written', (t) => {
  const aActive = alua(['active-optimized', 'standby'], 1);
  const bStandby = alua(['active-optimized', 'standby'], 2);
  const bAfterFlip = alua(['unavailable', 'active-optimized'], 2);
  const bNothing = alua(['unavailable', 'standby'], 2);
  const both = alua(['active-optimized', 'active-optimized'], 2);
  t.is(journalAction(null, undefined), 'replay', 'start-up without ALUA');
  t.is(journalAction(null, aActive), 'replay', 'start-up as the active gateway');
  t.is(journalAction(null, bStandby), null, 'start-up on standby: nothing yet');
  t.is(journalAction(null, both), 'discard', 'start-up beside another active gateway');
  t.is(journalAction(bStandby, bAfterFlip), 'replay', 'failover: standby to sole active');
  t.is(journalAction(bNothing, bAfterFlip), 'replay', 'failover in two steps (the README order)');
  t.is(journalAction(bStandby, both), 'discard', 'made active beside the other one');
  t.is(journalAction(both, bAfterFlip), 'discard', 'was serving beside the other one: records may be stale');
  t.is(journalAction(aActive, aActive), null);
  t.is(journalAction(bAfterFlip, bNothing), null, 'stops serving');
  // INQUIRY DATA HAS CHANGED only where the limits shrink under a gateway that keeps serving.
  t.true(atomicLimitsShrink(aActive, alua(['active-optimized', 'active-optimized'], 1)));
  t.false(atomicLimitsShrink(bStandby, bAfterFlip), 'a failover: they grow');
  t.false(atomicLimitsShrink(aActive, alua(['standby', 'active-optimized'], 1)), 'A stops serving');
});

test('sole writer: Block Limits as a file LU; a write inside one object goes straight, a crossing one through the journal', async (t) => {
  for (const settings of [undefined, alua(['active-optimized', 'standby'], 1)]) {
    const r = rig(settings);
    t.is(r.lu.atomicWrites, 'cluster');
    t.deepEqual(await r.limits(), FILE_LIMITS);
    // 64 KiB inside object 1: no journal write at all.
    const inside = pattern(128 * BS, 3);
    good(t, await r.run(cdbAtomic(128, 128), inside));
    t.deepEqual(r.store.fake.writes, []);
    // 64 KiB straddling the boundary of objects 1 and 2 (LBA 256): record, in place, cleared.
    const across = pattern(128 * BS, 5);
    good(t, await r.run(cdbAtomic(192, 128), across));
    const obj = atomicObjectName('img', settings ? 1 : 1);
    const slot = (r.lu.shared.lane - 1) * (1024 * 1024 + 4096);
    t.deepEqual(r.store.fake.writes, [
      `${obj}@${slot}+${HEADER_BYTES + across.length}`,
      `${obj}@${slot}+${HEADER_BYTES}`,
    ]);
    t.true((await r.run(cdb10(0x28, 192, 128))).dataIn!.equals(across));
    t.true((await r.run(cdb10(0x28, 128, 64))).dataIn!.equals(inside.subarray(0, 64 * BS)));
    const left = await r.store.fake.objRead(obj, slot, HEADER_BYTES + across.length);
    t.is(decodeJournal(left!).kind, 'idle', 'the record is cleared before GOOD');
    // The largest offered: 1 MiB across 17 objects.
    const big = pattern(2048 * BS, 7);
    good(t, await r.run(cdbAtomic(8, 2048), big));
    t.true((await r.run(cdb10(0x28, 8, 2048))).dataIn!.equals(big));
  }
});

test('two active groups, or another gateway active: 4 KiB limits, and a live change of the states moves them', async (t) => {
  const r = rig(alua(['active-optimized', 'active-non-optimized'], 1));
  t.deepEqual(await r.limits(), STORE_LIMITS);
  sense(t, await r.run(cdbAtomic(192, 128), pattern(128 * BS)), ILLEGAL, 0x24, 0);
  good(t, await r.run(cdbAtomic(248, 8), pattern(8 * BS, 2)));
  t.deepEqual(r.store.fake.writes, [], 'no journal: nothing may replay it');
  // The other group goes standby: this gateway is the sole writer now (TargetNode.setConfig does both).
  r.ports.update(alua(['active-optimized', 'standby'], 1));
  r.lu.refreshAtomicLimits();
  t.deepEqual(await r.limits(), FILE_LIMITS);
  good(t, await r.run(cdbAtomic(192, 128), pattern(128 * BS, 9)));
  t.is(r.store.fake.writes.length, 2);
  // Back to two active groups.
  r.ports.update(alua(['active-optimized', 'active-optimized'], 1));
  r.lu.refreshAtomicLimits();
  t.deepEqual(await r.limits(), STORE_LIMITS);
  const standby = rig(alua(['active-optimized', 'standby'], 2));
  t.deepEqual(await standby.limits(), STORE_LIMITS, 'a standby gateway is not the writer');
});

test('a journal write that fails: MEDIUM ERROR, nothing in place; a record it could not clear stops the lane', async (t) => {
  const r = rig();
  r.store.fake.failWrites = true;
  const data = pattern(128 * BS, 11);
  const res = await r.run(cdbAtomic(192, 128), data);
  t.is(res.status, 2);
  t.is(res.sense![2] & 0x0f, 0x03);
  t.true((await r.run(cdb10(0x28, 192, 128))).dataIn!.equals(Buffer.alloc(128 * BS)));
  // The record could not be cleared either (every write fails): the lane stops rather than risk a replay.
  r.store.fake.failWrites = false;
  const again = await r.run(cdbAtomic(192, 128), data);
  t.is(again.status, 2, 'a lane whose record state is unknown refuses');
  good(t, await r.run(cdbAtomic(128, 64), pattern(64 * BS))); // inside one object: no journal needed
});

test('replay: a complete record is written in place and cleared, a torn one cleared, a stale one only cleared', async (t) => {
  const store = new MemoryBackstore({ sizeBytes: BLOCKS * BS });
  const fake = new FakeObjects(store);
  const lu = { blockSize: BS, numBlocks: BLOCKS };
  const data = pattern(64 * BS, 13);
  // Gateway 1 lane 2 left a complete record; gateway 2 lane 1 a torn one (half of its data).
  await new RbdAtomicJournal(fake.image, atomicObjectName('img', 1), 2).append(100, 64, BS, [data]);
  await new RbdAtomicJournal(fake.image, atomicObjectName('img', 2), 1).append(300, 64, BS, [data]);
  const torn = fake.objects.get(atomicObjectName('img', 2))!;
  torn.fill(0, HEADER_BYTES + data.length / 2, HEADER_BYTES + data.length);
  const actions = await replayRbdJournals(fake.image, 'img', [1, 2, 3], lu);
  t.deepEqual(
    actions.map((a) => [a.outcome, a.record?.lba ?? null, a.why ?? null]),
    [
      ['applied', 100, null],
      ['discarded', null, 'CRC mismatch'],
    ],
  );
  const back = Buffer.alloc(64 * BS);
  await store.read(100 * BS, back);
  t.true(back.equals(data), 'rolled forward');
  await store.read(300 * BS, back);
  t.true(back.equals(Buffer.alloc(64 * BS)), 'the torn record wrote nothing');
  t.deepEqual(await replayRbdJournals(fake.image, 'img', [1, 2], lu), [], 'both cleared');
  // Discard: a complete record is cleared without being applied.
  await new RbdAtomicJournal(fake.image, atomicObjectName('img', 1), 1).append(500, 64, BS, [data]);
  const stale = await replayRbdJournals(fake.image, 'img', [1], lu, { discard: true });
  t.deepEqual(
    stale.map((a) => [a.outcome, a.record?.lba]),
    [['discarded', 500]],
  );
  await store.read(500 * BS, back);
  t.true(back.equals(Buffer.alloc(64 * BS)));
  // A record that does not fit the LU is kept, and the replay fails (the portal takes the LU offline).
  await new RbdAtomicJournal(fake.image, atomicObjectName('img', 1), 1).append(BLOCKS - 8, 64, BS, [data]);
  await t.throwsAsync(replayRbdJournals(fake.image, 'img', [1], lu), { message: /does not fit this LU/ });
  const kept = await fake.objRead(atomicObjectName('img', 1), 0, HEADER_BYTES + data.length);
  t.is(decodeJournal(kept!).kind, 'complete', 'kept for a later replay');
});
