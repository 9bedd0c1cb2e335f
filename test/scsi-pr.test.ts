/**
 * Persistent reservations and SPC-2 RESERVE/RELEASE at the device server: two LogicalUnits over one LuShared
 * memory with different lanes act as two workers, so every change made through one must be seen through the
 * other (registrations, reservations, unit attentions, conflicts).
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBackstore } from '../src/backstore/memory';
import { ScsiDispatcher, type ScsiResult } from '../src/scsi/dispatcher';
import { LogicalUnit, type LogicalUnitOptions } from '../src/scsi/lu';
import { LuShared, allocateLuShared } from '../src/scsi/lu-shared';
import { aptplPath, loadAptpl } from '../src/scsi/pr-aptpl';
import { ILLEGAL, TARGET, fieldPointer, good, sense, testIdentity } from './scsi-helpers';

const A = `iqn.2026-11.test:a,i,0x000000000001|${TARGET}`;
const B = `iqn.2026-11.test:b,i,0x000000000002|${TARGET}`;
const C = `iqn.2026-11.test:c,i,0x000000000003|${TARGET}`;
/** Only reads the state: never has a unit attention pending. */
const OBSERVER = `iqn.2026-11.test:observer,i,0x000000000009|${TARGET}`;
const CONFLICT = 0x18;
const UNIT_ATTENTION = 0x06;

const WE = 1;
const EA = 3;
const WE_RO = 5;
const EA_RO = 6;
const WE_AR = 7;
const EA_AR = 8;
const TYPES = [WE, EA, WE_RO, EA_RO, WE_AR, EA_AR];

interface Worker {
  lu: LogicalUnit;
  disp: ScsiDispatcher;
  run(nexus: string, cdb: Buffer, data?: Buffer): Promise<ScsiResult>;
  badRequests: string[];
}

/** Two workers' views of one LU (same shared memory, lanes 1 and 2). */
function twoWorkers(opts: LogicalUnitOptions = {}): [Worker, Worker] {
  const mem = allocateLuShared();
  const store = new MemoryBackstore({ sizeBytes: 1024 * 512 });
  const identity = testIdentity();
  return [1, 2].map((lane) => {
    const lu = new LogicalUnit(store, identity, { ...opts, shared: new LuShared(mem, lane) });
    const badRequests: string[] = [];
    lu.badRequest = (what: string) => void badRequests.push(what);
    const disp = new ScsiDispatcher(new Map([[0, lu]]));
    return {
      lu,
      disp,
      badRequests,
      run: (nexus: string, cdb: Buffer, data?: Buffer) =>
        disp.execute({
          lun: 0,
          cdb,
          expectedLength: data?.length ?? 0,
          readFlag: data === undefined,
          writeFlag: data !== undefined,
          dataOut: data ? [data] : [],
          nexus,
        }),
    };
  }) as [Worker, Worker];
}

function key(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** PERSISTENT RESERVE OUT CDB and its 24-byte parameter list. */
function prOut(sa: number, type: number, k: number, saKey: number, flags = 0, length = 24): [Buffer, Buffer] {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x5f;
  cdb[1] = sa;
  cdb[2] = type;
  cdb.writeUInt32BE(length, 5);
  const data = Buffer.alloc(Math.max(length, 24));
  key(k).copy(data, 0);
  key(saKey).copy(data, 8);
  data[20] = flags;
  return [cdb, data.subarray(0, length)];
}

function prIn(sa: number, alloc = 4096): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x5e;
  cdb[1] = sa;
  cdb.writeUInt16BE(alloc, 7);
  return cdb;
}

const REGISTER = 0;
const RESERVE = 1;
const RELEASE = 2;
const CLEAR = 3;
const PREEMPT = 4;
const REG_IGNORE = 6;
const REG_MOVE = 7;

async function out(w: Worker, nexus: string, sa: number, type: number, k: number, saKey: number, flags = 0) {
  const [cdb, data] = prOut(sa, type, k, saKey, flags);
  return w.run(nexus, cdb, data);
}

async function keys(w: Worker, nexus = OBSERVER): Promise<{ generation: number; keys: number[] }> {
  const r = await w.run(nexus, prIn(0));
  const d = r.dataIn!;
  const n = d.readUInt32BE(4) / 8;
  return {
    generation: d.readUInt32BE(0),
    keys: Array.from({ length: n }, (_, i) => Number(d.readBigUInt64BE(8 + 8 * i))),
  };
}

async function reservation(w: Worker): Promise<{ key: number; type: number } | null> {
  const d = (await w.run(OBSERVER, prIn(1))).dataIn!;
  if (d.readUInt32BE(4) === 0) return null;
  return { key: Number(d.readBigUInt64BE(8)), type: d[21] & 0x0f };
}

const READ10 = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
const WRITE10 = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
const TUR = Buffer.alloc(6);
const INQUIRY = Buffer.from([0x12, 0, 0, 0, 36, 0]);
const MODE_SENSE6 = Buffer.from([0x1a, 0, 0x3f, 0, 255, 0]);
const READ_CAPACITY10 = Buffer.alloc(10, 0).fill(0x25, 0, 1);
const PREVENT = Buffer.from([0x1e, 0, 0, 0, 1, 0]);
const ALLOW = Buffer.from([0x1e, 0, 0, 0, 0, 0]);
const RESERVE6 = Buffer.from([0x16, 0, 0, 0, 0, 0]);
const RELEASE6 = Buffer.from([0x17, 0, 0, 0, 0, 0]);
const BLOCK = Buffer.alloc(512, 7);

/** Run a command and say whether it got RESERVATION CONFLICT (anything else must be GOOD). */
async function conflicts(t: import('ava').ExecutionContext, w: Worker, nexus: string, cdb: Buffer) {
  const r = await w.run(nexus, cdb, cdb === WRITE10 ? BLOCK : undefined);
  if (r.status !== CONFLICT) good(t, r);
  return r.status === CONFLICT;
}

test('a registration made through one worker is seen through the other, with PRgeneration', async (t) => {
  const [w1, w2] = twoWorkers();
  t.false(w1.lu.shared.prActive);
  good(t, await out(w1, A, REGISTER, 0, 0, 0x1111));
  good(t, await out(w2, B, REGISTER, 0, 0, 0x2222));
  t.deepEqual(await keys(w2), { generation: 2, keys: [0x1111, 0x2222] });
  t.true(w2.lu.shared.prActive);
  // Changing a key needs the current one; unregistering (key 0) bumps the generation too.
  t.is((await out(w1, A, REGISTER, 0, 0x9999, 0x3333)).status, CONFLICT);
  good(t, await out(w1, A, REGISTER, 0, 0x1111, 0x3333));
  good(t, await out(w2, A, REGISTER, 0, 0x3333, 0));
  good(t, await out(w2, B, REG_IGNORE, 0, 0x7777, 0));
  t.deepEqual(await keys(w1), { generation: 5, keys: [] });
  t.false(w1.lu.shared.prActive, 'nothing left: the hot path skips the check again');
  // Unregistered nexus: a non-zero RESERVATION KEY conflicts; a zero SA key does nothing.
  t.is((await out(w1, C, REGISTER, 0, 0x1, 0x2)).status, CONFLICT);
  good(t, await out(w1, C, REGISTER, 0, 0, 0));
  t.is((await keys(w1)).generation, 5);
});

test('READ KEYS keeps ADDITIONAL LENGTH when truncated by the allocation length', async (t) => {
  const [w1] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xabc));
  const r = await w1.run(A, prIn(0, 8));
  t.is(r.dataIn!.length, 8);
  t.is(r.dataIn!.readUInt32BE(4), 8);
});

// Expected access of a nexus that does not hold the reservation (SPC-4 5.13.1, SBC-3 4.17), written out by hand:
// [registered non-holder read, write], [unregistered read, write]; true = allowed.
const ACCESS: Record<number, [[boolean, boolean], [boolean, boolean]]> = {
  [WE]: [
    [true, false],
    [true, false],
  ],
  [EA]: [
    [false, false],
    [false, false],
  ],
  [WE_RO]: [
    [true, true],
    [true, false],
  ],
  [EA_RO]: [
    [true, true],
    [false, false],
  ],
  [WE_AR]: [
    [true, true],
    [true, false],
  ],
  [EA_AR]: [
    [true, true],
    [false, false],
  ],
};

for (const type of TYPES)
  test(`conflict table, type ${type}: holder, registered and unregistered nexuses on two workers`, async (t) => {
    const [w1, w2] = twoWorkers();
    good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
    good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
    good(t, await out(w1, A, RESERVE, type, 0xa, 0));
    t.deepEqual(await reservation(w2), { key: type >= WE_AR ? 0 : 0xa, type });
    for (const cdb of [READ10, WRITE10, TUR, MODE_SENSE6, PREVENT, ALLOW])
      t.false(await conflicts(t, w1, A, cdb), `holder ${cdb[0].toString(16)}`);
    const [[regRead, regWrite], [unregRead, unregWrite]] = ACCESS[type];
    t.is(await conflicts(t, w2, B, READ10), !regRead, 'registered READ');
    t.is(await conflicts(t, w2, B, WRITE10), !regWrite, 'registered WRITE');
    t.is(await conflicts(t, w2, C, READ10), !unregRead, 'unregistered READ');
    t.is(await conflicts(t, w2, C, WRITE10), !unregWrite, 'unregistered WRITE');
    // Allowed under every type: INQUIRY, TEST UNIT READY, READ CAPACITY, PREVENT=0. Conflicting for everyone
    // without access: MODE SENSE, PREVENT=1.
    for (const cdb of [INQUIRY, TUR, READ_CAPACITY10, ALLOW]) t.false(await conflicts(t, w2, C, cdb));
    t.true(await conflicts(t, w2, C, MODE_SENSE6));
    t.true(await conflicts(t, w2, C, PREVENT));
    t.is(await conflicts(t, w2, B, MODE_SENSE6), type < WE_RO, 'registrants have access under RO/AR types');
  });

test('RESERVE: a second reservation conflicts, the same one again is GOOD; RELEASE of another type is refused', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  t.is((await out(w1, A, RESERVE, WE, 0xb, 0)).status, CONFLICT, 'wrong key');
  t.is((await out(w1, C, RESERVE, WE, 0, 0)).status, CONFLICT, 'not registered');
  good(t, await out(w1, A, RESERVE, WE, 0xa, 0));
  good(t, await out(w2, A, RESERVE, WE, 0xa, 0));
  t.is((await out(w2, A, RESERVE, EA, 0xa, 0)).status, CONFLICT, 'holder, other type');
  t.is((await out(w2, B, RESERVE, WE, 0xb, 0)).status, CONFLICT, 'not the holder');
  good(t, await out(w2, B, RELEASE, WE, 0xb, 0)); // not the holder: nothing happens
  t.deepEqual(await reservation(w1), { key: 0xa, type: WE });
  const r = await out(w2, A, RELEASE, EA, 0xa, 0);
  sense(t, r, ILLEGAL, 0x26, 0x04);
  good(t, await out(w2, A, RELEASE, WE, 0xa, 0));
  t.is(await reservation(w1), null);
  t.is((await keys(w1)).generation, 2, 'RESERVE and RELEASE leave PRgeneration');
});

test('RELEASE of a registrants-only reservation: RESERVATIONS RELEASED for the other registrants only', async (t) => {
  const [w1, w2] = twoWorkers();
  for (const [w, n, k] of [
    [w1, A, 0xa],
    [w2, B, 0xb],
    [w2, C, 0xc],
  ] as const)
    good(t, await out(w, n, REGISTER, 0, 0, k));
  good(t, await out(w1, A, RESERVE, WE_RO, 0xa, 0));
  good(t, await out(w1, A, RELEASE, WE_RO, 0xa, 0));
  sense(t, await w2.run(B, TUR), UNIT_ATTENTION, 0x2a, 0x04);
  sense(t, await w2.run(C, TUR), UNIT_ATTENTION, 0x2a, 0x04);
  good(t, await w1.run(A, TUR));
});

test('the holder unregistering ends its reservation; an all-registrants one lasts while a registrant remains', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  good(t, await out(w1, A, RESERVE, EA_AR, 0xa, 0));
  good(t, await out(w1, A, REGISTER, 0, 0xa, 0));
  t.deepEqual(await reservation(w2), { key: 0, type: EA_AR });
  t.is((await out(w2, B, RELEASE, EA_AR, 0xb, 0)).status, 0, 'any registrant holds it');
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w1, A, RESERVE, EA, 0xa, 0));
  good(t, await out(w1, A, REGISTER, 0, 0xa, 0));
  t.is(await reservation(w2), null);
});

test('CLEAR removes everything and tells the other registrants RESERVATIONS PREEMPTED', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  good(t, await out(w1, A, RESERVE, EA, 0xa, 0));
  t.is((await out(w2, C, CLEAR, 0, 0xc, 0)).status, CONFLICT);
  good(t, await out(w2, B, CLEAR, 0, 0xb, 0));
  t.deepEqual(await keys(w1, C), { generation: 3, keys: [] });
  sense(t, await w1.run(A, TUR), UNIT_ATTENTION, 0x2a, 0x03);
  good(t, await w2.run(B, TUR));
  t.false(w1.lu.shared.prActive);
});

test('PREEMPT of the holder: its registration goes, the reservation moves, the UA comes before the conflict', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  good(t, await out(w2, C, REGISTER, 0, 0, 0xc));
  good(t, await out(w1, A, RESERVE, WE, 0xa, 0));
  good(t, await out(w2, B, PREEMPT, EA, 0xb, 0xa));
  t.deepEqual(await keys(w2, B), { generation: 4, keys: [0xb, 0xc] });
  t.deepEqual(await reservation(w2), { key: 0xb, type: EA });
  // A was preempted: it hears REGISTRATIONS PREEMPTED first, then meets the reservation.
  sense(t, await w1.run(A, WRITE10, BLOCK), UNIT_ATTENTION, 0x2a, 0x05);
  t.is((await w1.run(A, WRITE10, BLOCK)).status, CONFLICT);
  // C stayed registered and the type changed: RESERVATIONS RELEASED.
  sense(t, await w2.run(C, TUR), UNIT_ATTENTION, 0x2a, 0x04);
});

test('PREEMPT without a reservation removes registrations by key; a zero key is refused; no match conflicts', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  const r = await out(w2, B, PREEMPT, EA, 0xb, 0);
  sense(t, r, ILLEGAL, 0x26, 0x00);
  t.deepEqual(fieldPointer(r), [false, 8, undefined]);
  t.true(w2.badRequests.length > 0);
  t.is((await out(w2, B, PREEMPT, EA, 0xb, 0x5)).status, CONFLICT);
  good(t, await out(w2, B, PREEMPT, EA, 0xb, 0xa));
  t.deepEqual(await keys(w1, B), { generation: 3, keys: [0xb] });
  t.is(await reservation(w1), null);
  sense(t, await w1.run(A, TUR), UNIT_ATTENTION, 0x2a, 0x05);
});

test('PREEMPT of an all-registrants reservation with key 0 takes it over and removes the others', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  good(t, await out(w1, A, RESERVE, WE_AR, 0xa, 0));
  good(t, await out(w2, B, PREEMPT, WE, 0xb, 0));
  t.deepEqual(await keys(w1, B), { generation: 3, keys: [0xb] });
  t.deepEqual(await reservation(w1), { key: 0xb, type: WE });
});

function moveParams(k: number, saKey: number, port: string, rtpi = 1, unreg = false): Buffer {
  const name = Buffer.from(port);
  const len = (name.length + 1 + 3) & ~3;
  const tid = Buffer.alloc(4 + len);
  tid[0] = 0x45;
  tid.writeUInt16BE(len, 2);
  name.copy(tid, 4);
  const p = Buffer.alloc(24 + tid.length);
  key(k).copy(p, 0);
  key(saKey).copy(p, 8);
  p[17] = unreg ? 0x02 : 0;
  p.writeUInt16BE(rtpi, 18);
  p.writeUInt32BE(tid.length, 20);
  tid.copy(p, 24);
  return p;
}

function moveCdb(length: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x5f;
  cdb[1] = REG_MOVE;
  cdb.writeUInt32BE(length, 5);
  return cdb;
}

test('REGISTER AND MOVE hands the reservation to another I_T nexus; READ FULL STATUS shows it', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  good(t, await out(w1, A, RESERVE, EA, 0xa, 0));
  const p = moveParams(0xa, 0xb, 'iqn.2026-11.test:b,i,0x000000000002', 1, true);
  good(t, await w1.run(A, moveCdb(p.length), p));
  t.deepEqual(await keys(w2, B), { generation: 2, keys: [0xb] });
  t.true(await conflicts(t, w2, A, READ10));
  t.false(await conflicts(t, w2, B, WRITE10));
  const d = (await w2.run(B, prIn(3))).dataIn!;
  t.is(d.readUInt32BE(4), d.length - 8);
  t.is(Number(d.readBigUInt64BE(8)), 0xb);
  t.is(d[8 + 12] & 0x01, 1, 'R_HOLDER');
  t.is(d[8 + 13], EA);
  t.is(d.readUInt16BE(8 + 18), 1, 'relative target port');
  const tid = d.subarray(8 + 24, 8 + 24 + d.readUInt32BE(8 + 20));
  t.is(tid[0], 0x45);
  t.is(tid.subarray(4).toString().replace(/\0+$/, ''), 'iqn.2026-11.test:b,i,0x000000000002');
});

test('REGISTER AND MOVE refusals: same nexus, other target port, format 00h, short list, not the holder', async (t) => {
  const [w1] = twoWorkers();
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa));
  const port = 'iqn.2026-11.test:b,i,0x000000000002';
  t.is((await w1.run(A, moveCdb(64), moveParams(0xa, 0xb, port))).status, CONFLICT, 'no reservation');
  good(t, await out(w1, A, RESERVE, WE, 0xa, 0));
  const self = moveParams(0xa, 0xb, 'iqn.2026-11.test:a,i,0x000000000001');
  sense(t, await w1.run(A, moveCdb(self.length), self), ILLEGAL, 0x26, 0x00);
  const otherPort = moveParams(0xa, 0xb, port, 7);
  sense(t, await w1.run(A, moveCdb(otherPort.length), otherPort), ILLEGAL, 0x26, 0x00);
  const nameOnly = moveParams(0xa, 0xb, 'iqn.2026-11.test:b');
  nameOnly[24] = 0x05;
  sense(t, await w1.run(A, moveCdb(nameOnly.length), nameOnly), ILLEGAL, 0x26, 0x00);
  const ok = moveParams(0xa, 0xb, port);
  sense(t, await w1.run(A, moveCdb(30), ok.subarray(0, 30)), ILLEGAL, 0x1a, 0x00);
  t.true(w1.badRequests.length >= 4);
  t.deepEqual(await reservation(w1), { key: 0xa, type: WE }, 'nothing moved');
});

test('bad PR OUT requests get their sense and are counted, never a crash', async (t) => {
  const [w1] = twoWorkers();
  // Parameter list length other than 24.
  const [cdb, data] = prOut(REGISTER, 0, 0, 0xa, 0, 20);
  sense(t, await w1.run(A, cdb, data), ILLEGAL, 0x1a, 0x00);
  const [cdb2, data2] = prOut(REGISTER, 0, 0, 0xa, 0, 28);
  sense(t, await w1.run(A, cdb2, data2), ILLEGAL, 0x1a, 0x00);
  // SPEC_I_PT is not offered.
  const r = await out(w1, A, REGISTER, 0, 0, 0xa, 0x08);
  sense(t, r, ILLEGAL, 0x26, 0x00);
  t.deepEqual(fieldPointer(r), [false, 20, 3]);
  good(t, await out(w1, A, REGISTER, 0, 0, 0xa, 0x04)); // ALL_TG_PT is
  // Unknown type, non-LU scope, unknown service action.
  sense(t, await out(w1, A, RESERVE, 2, 0xa, 0), ILLEGAL, 0x24, 0x00);
  sense(t, await out(w1, A, RESERVE, 0x11, 0xa, 0), ILLEGAL, 0x24, 0x00);
  const unknownSa = await out(w1, A, 0x08, WE, 0xa, 0);
  sense(t, unknownSa, ILLEGAL, 0x24, 0x00);
  t.deepEqual(fieldPointer(unknownSa), [true, 1, 4]);
  sense(t, await w1.run(A, prIn(4)), ILLEGAL, 0x24, 0x00);
  t.is(w1.badRequests.length, 7);
  // A parameter list longer than any we take is refused on arrival, before its data.
  const huge = Buffer.from(cdb);
  huge.writeUInt32BE(0x1000000, 5);
  const admitted = w1.disp.admitDataOut({ cdb: huge, lun: 0 });
  t.true('sense' in admitted && admitted.sense[12] === 0x1a);
});

test('REPORT CAPABILITIES: what is offered, and PTPL_A follows APTPL', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-pr-'));
  try {
    const [w1] = twoWorkers({ prFile: path.join(dir, 'pr', 'x.json') });
    let d = (await w1.run(A, prIn(2))).dataIn!;
    t.deepEqual([...d], [0, 8, 0x15, 0x90, 0xea, 0x01, 0, 0]);
    good(t, await out(w1, A, REGISTER, 0, 0, 0xa, 0x01));
    d = (await w1.run(A, prIn(2))).dataIn!;
    t.is(d[3] & 0x01, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('APTPL: the state is in the file before the command completes, and leaves it when APTPL is cleared', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-pr-'));
  try {
    const [w1, w2] = twoWorkers();
    const serial = w1.lu.identity.serial;
    const file = aptplPath(dir, serial);
    const [p1, p2] = [w1, w2].map(
      (w) => new LogicalUnit(w.lu.backstore, w.lu.identity, { shared: w.lu.shared, prFile: file }),
    );
    const d1 = new ScsiDispatcher(new Map([[0, p1]]));
    const d2 = new ScsiDispatcher(new Map([[0, p2]]));
    const run = (d: ScsiDispatcher, nexus: string, [cdb, data]: [Buffer, Buffer]) =>
      d.execute({
        lun: 0,
        cdb,
        expectedLength: 24,
        readFlag: false,
        writeFlag: true,
        dataOut: [data],
        nexus,
      });
    good(t, await run(d1, A, prOut(REGISTER, 0, 0, 0xa)));
    t.false(fs.existsSync(file), 'no APTPL yet: nothing kept');
    good(t, await run(d1, A, prOut(REGISTER, 0, 0xa, 0xa, 0x01)));
    // APTPL is the value of the last register-type command (SPC-4 5.13.5), so B sets it too.
    good(t, await run(d2, B, prOut(REGISTER, 0, 0, 0xb, 0x01)));
    good(t, await run(d2, B, prOut(RESERVE, EA_RO, 0xb, 0)));
    const kept = loadAptpl(file, serial)!;
    t.deepEqual(
      kept.registrations.map((r) => r.key),
      ['000000000000000a', '000000000000000b'],
    );
    t.deepEqual(kept.reservation, { holder: B, type: EA_RO });
    t.is(kept.generation, 3);
    good(t, await run(d1, A, prOut(REGISTER, 0, 0xa, 0xa, 0)));
    t.false(fs.existsSync(file), 'APTPL cleared: the file is removed');
    t.is(loadAptpl(file, serial), null);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('APTPL files that cannot be restored whole are refused with the file named', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-pr-'));
  try {
    const file = aptplPath(dir, 'ABC');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    t.is(loadAptpl(file, 'ABC'), null);
    const good1 = {
      version: 1,
      serial: 'ABC',
      generation: 2,
      registrations: [{ nexus: A, key: '000000000000000a', allTgPt: false }],
      reservation: { holder: A, type: WE },
    };
    fs.writeFileSync(file, JSON.stringify(good1));
    t.is(loadAptpl(file, 'ABC')!.registrations.length, 1);
    for (const bad of [
      JSON.stringify(good1).slice(0, 40), // truncated
      JSON.stringify({ ...good1, serial: 'XYZ' }),
      JSON.stringify({ ...good1, reservation: { holder: B, type: WE } }),
      JSON.stringify({ ...good1, registrations: [{ nexus: A, key: 'zz', allTgPt: false }] }),
    ]) {
      fs.writeFileSync(file, bad);
      const e = t.throws(() => loadAptpl(file, 'ABC'));
      t.true(e!.message.includes(file), e!.message);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SPC-2 RESERVE(6): other nexuses conflict except INQUIRY and RELEASE; PR commands conflict; reset frees it', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await w1.run(A, RESERVE6));
  t.is((await w2.run(A, RESERVE6)).status, 0, 'again from the holder');
  t.is((await w2.run(B, RESERVE6)).status, CONFLICT);
  t.is((await w2.run(B, TUR)).status, CONFLICT);
  t.is((await w2.run(B, READ10)).status, CONFLICT);
  good(t, await w2.run(B, INQUIRY));
  good(t, await w2.run(B, RELEASE6)); // not the holder: nothing happens
  t.is((await w2.run(B, TUR)).status, CONFLICT);
  good(t, await w1.run(A, WRITE10, BLOCK));
  t.is((await w2.run(A, prIn(0))).status, CONFLICT, 'PR IN conflicts, even for the holder');
  t.is((await out(w2, B, REGISTER, 0, 0, 0xb)).status, CONFLICT);
  w2.lu.reset();
  sense(t, await w1.run(A, TUR), UNIT_ATTENTION, 0x29, 0x03);
  sense(t, await w2.run(B, TUR), UNIT_ATTENTION, 0x29, 0x03);
  good(t, await w2.run(B, TUR));
  t.false(w1.lu.shared.prActive);
});

test('SPC-2 RESERVE ends with its holder nexus; RESERVE/RELEASE conflict while PR registrations exist', async (t) => {
  const [w1, w2] = twoWorkers();
  good(t, await w1.run(A, RESERVE6));
  w2.lu.nexusLost(B); // someone else's nexus: nothing
  t.is((await w2.run(B, TUR)).status, CONFLICT);
  w1.lu.nexusLost(A);
  good(t, await w2.run(B, TUR));
  good(t, await out(w2, B, REGISTER, 0, 0, 0xb));
  t.is((await w1.run(A, RESERVE6)).status, CONFLICT);
  t.is((await w1.run(A, RELEASE6)).status, CONFLICT);
  // Persistent reservations survive a reset.
  good(t, await out(w2, B, RESERVE, EA, 0xb, 0));
  w1.lu.reset();
  t.deepEqual(await reservation(w1), { key: 0xb, type: EA });
});
