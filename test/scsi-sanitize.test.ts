/** SANITIZE: OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE, the NOT READY state while one runs, failure mode. */
import test from 'ava';
import { LuShared, releaseLane } from '../src/scsi/lu-shared';
import { ILLEGAL, cdb10, fieldPointer, fixture, good, sense, type Fixture } from './scsi-helpers';

const BS = 512;
const BLOCKS = 1024;

function sanitizeCdb(sa: number, paramLen = 0, byte1 = 0): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x48;
  c[1] = byte1 | sa;
  c.writeUInt16BE(paramLen, 7);
  return c;
}

function overwriteParams(pattern: Buffer, count = 1, invert = false): Buffer {
  const p = Buffer.alloc(4 + pattern.length);
  p[0] = (invert ? 0x80 : 0) | count;
  p.writeUInt16BE(pattern.length, 2);
  pattern.copy(p, 4);
  return p;
}

const TUR = Buffer.alloc(6);
const readAll = async (f: Fixture) => (await f.run(cdb10(0x28, 0, BLOCKS))).dataIn!;

test('OVERWRITE: the pattern repeated over every block, COUNT passes with INVERT alternating', async (t) => {
  const f = fixture();
  const p = overwriteParams(Buffer.from([1, 2, 3]));
  good(t, await f.run(sanitizeCdb(1, p.length), { data: p }));
  const all = await readAll(f);
  t.true(all.subarray(0, BS).equals(Buffer.alloc(BS, Buffer.from([1, 2, 3]))));
  t.true(all.equals(Buffer.alloc(BLOCKS * BS).fill(all.subarray(0, BS))));
  t.is(f.store.stats.flushes, 1, 'flushed before GOOD');
  const q = overwriteParams(Buffer.from([0x0f]), 2, true);
  good(t, await f.run(sanitizeCdb(1, q.length), { data: q }));
  t.true((await readAll(f)).equals(Buffer.alloc(BLOCKS * BS, 0xf0)), 'second pass inverted');
  const r = overwriteParams(Buffer.from([0x0f]), 3, true);
  good(t, await f.run(sanitizeCdb(1, r.length), { data: r }));
  t.true((await readAll(f)).equals(Buffer.alloc(BLOCKS * BS, 0x0f)));
});

test('OVERWRITE refusals: parameter list length in the CDB, COUNT 0, pattern length, TEST', async (t) => {
  const f = fixture();
  for (const len of [0, 1, 4, BS + 5]) {
    const r = await f.run(sanitizeCdb(1, len), { data: Buffer.alloc(len) });
    sense(t, r, ILLEGAL, 0x24, 0);
    t.deepEqual(fieldPointer(r), [true, 7, 7]);
  }
  const bad: Array<[Buffer, number]> = [
    [overwriteParams(Buffer.alloc(8), 0), 0],
    [Buffer.from([1, 0, 0, 0, 9]), 2],
    [Buffer.from([1, 0, 0, 9, 9]), 2],
    [Buffer.from([0x21, 0, 0, 1, 9]), 0],
  ];
  for (const [p, byte] of bad) {
    const r = await f.run(sanitizeCdb(1, p.length), { data: p });
    sense(t, r, ILLEGAL, 0x26, 0);
    t.is(fieldPointer(r)?.[1], byte);
  }
  t.is(f.store.stats.flushes, 0, 'nothing ran');
});

test('BLOCK ERASE deallocates every block on a thin LU and is not offered on a full one; CRYPTO ERASE never', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 0, 8), { data: Buffer.alloc(8 * BS, 0xaa) }));
  sense(t, await f.run(sanitizeCdb(2, 8), { data: Buffer.alloc(8) }), ILLEGAL, 0x24, 0);
  good(t, await f.run(sanitizeCdb(2)));
  t.true((await readAll(f)).equals(Buffer.alloc(BLOCKS * BS)));
  const m = Buffer.alloc(16);
  m[0] = 0x9e;
  m[1] = 0x12;
  m.writeUInt32BE(64, 10);
  const st = (await f.run(m)).dataIn!;
  t.is(st.readUInt32BE(8 + 8), BLOCKS, 'one descriptor over the whole LU');
  t.is(st[8 + 12], 1, 'deallocated');
  const full = fixture({ thinProvisioned: false });
  for (const [fx, sa] of [
    [full, 2],
    [f, 3],
  ] as const) {
    const r = await fx.run(sanitizeCdb(sa));
    sense(t, r, ILLEGAL, 0x24, 0);
    t.deepEqual(fieldPointer(r), [true, 1, 4]);
  }
  const b1 = (await full.run(Buffer.from([0x12, 1, 0xb1, 0, 64, 0]))).dataIn!;
  t.is(b1[7] & 0xf0, 0, 'WABEREQ 0 where BLOCK ERASE is not offered');
  t.is((await f.run(Buffer.from([0x12, 1, 0xb1, 0, 64, 0]))).dataIn![7] & 0xf0, 0x40, 'WABEREQ 01b');
});

test('write protected: DATA PROTECT; reserved CDB bits refused', async (t) => {
  const f = fixture();
  f.lu.softwareWriteProtect = true;
  sense(t, await f.run(sanitizeCdb(2)), 0x07, 0x27, 0x02);
  const p = overwriteParams(Buffer.from([1]));
  sense(t, await f.run(sanitizeCdb(1, p.length), { data: p }), 0x07, 0x27, 0x02);
  f.lu.softwareWriteProtect = false;
  const r = await f.run(sanitizeCdb(2, 0, 0x40));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 6]);
});

test('while a sanitize runs (IMMED): NOT READY / SANITIZE IN PROGRESS with progress, INQUIRY and REQUEST SENSE served', async (t) => {
  const f = fixture();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const write = f.store.write.bind(f.store);
  let writes = 0;
  f.store.write = async (off, data, fua) => {
    if (++writes === 2) await gate; // hold the sanitize after its first chunk
    return write(off, data, fua);
  };
  const small = fixture({}, { shared: f.lu.shared }); // another worker's LU object, same shared state
  const p = overwriteParams(Buffer.from([7]), 2);
  good(t, await f.run(sanitizeCdb(1, p.length, 0x80), { data: p }));
  await new Promise((r) => setTimeout(r, 20));
  for (const fx of [f, small]) {
    const r = await fx.run(TUR);
    sense(t, r, 0x02, 0x04, 0x1b);
    t.is(r.sense![15], 0x80, 'SKSV');
    t.is(r.sense!.readUInt16BE(16), 0x8000, 'progress: the first of two passes done');
    sense(t, await fx.run(cdb10(0x28, 0, 1)), 0x02, 0x04, 0x1b);
    good(t, await fx.run(Buffer.from([0x12, 0, 0, 0, 36, 0])));
    const rs = await fx.run(Buffer.from([0x03, 0, 0, 0, 18, 0]));
    good(t, rs);
    t.deepEqual([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]], [0x02, 0x04, 0x1b]);
  }
  sense(t, await small.run(sanitizeCdb(2)), 0x02, 0x04, 0x1b);
  release();
  for (let i = 0; i < 100 && (await f.run(TUR)).status !== 0; i++)
    await new Promise((r) => setTimeout(r, 10));
  good(t, await small.run(TUR));
  t.true((await readAll(f)).equals(Buffer.alloc(BLOCKS * BS, 7)));
});

test('failure mode: a failed sanitize leaves MEDIUM ERROR / SANITIZE COMMAND FAILED until EXIT FAILURE MODE (AUSE) or a sanitize', async (t) => {
  const f = fixture();
  const write = f.store.write.bind(f.store);
  let fail = true;
  f.store.write = async (off, data, fua) => {
    if (fail) throw Object.assign(new Error('EIO'), { code: 'EIO' });
    return write(off, data, fua);
  };
  sense(t, await f.run(sanitizeCdb(0x1f)), ILLEGAL, 0x2c, 0); // nothing to exit
  const p = overwriteParams(Buffer.from([1]));
  sense(t, await f.run(sanitizeCdb(1, p.length), { data: p }), 0x03, 0x31, 0x03);
  sense(t, await f.run(TUR), 0x03, 0x31, 0x03);
  sense(t, await f.run(cdb10(0x28, 0, 1)), 0x03, 0x31, 0x03);
  const rs = await f.run(Buffer.from([0x03, 0, 0, 0, 18, 0]));
  t.deepEqual([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]], [0x03, 0x31, 0x03]);
  // AUSE was 0: only a sanitize that completes ends failure mode.
  sense(t, await f.run(sanitizeCdb(0x1f)), ILLEGAL, 0x24, 0);
  sense(t, await f.run(sanitizeCdb(1, p.length, 0x20), { data: p }), 0x03, 0x31, 0x03);
  good(t, await f.run(sanitizeCdb(0x1f))); // AUSE = 1 this time
  good(t, await f.run(TUR));
  sense(t, await f.run(sanitizeCdb(1, p.length), { data: p }), 0x03, 0x31, 0x03);
  fail = false;
  good(t, await f.run(sanitizeCdb(1, p.length), { data: p }));
  good(t, await f.run(TUR));
  sense(t, await f.run(sanitizeCdb(0x1f, 8), { data: Buffer.alloc(8) }), ILLEGAL, 0x24, 0);
});

test('a worker that dies during a sanitize leaves the LU in failure mode, with EXIT FAILURE MODE allowed', async (t) => {
  const dead = new LuShared(undefined, 3);
  t.true(dead.beginSanitize());
  const other = new LuShared(dead.memory, 4);
  t.false(other.beginSanitize(), 'one sanitize at a time');
  releaseLane(dead.memory, 3);
  const f = fixture({}, { shared: other });
  sense(t, await f.run(TUR), 0x03, 0x31, 0x03);
  good(t, await f.run(sanitizeCdb(0x1f)));
  good(t, await f.run(TUR));
});
