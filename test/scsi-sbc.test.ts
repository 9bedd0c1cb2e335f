import test from 'ava';
import { ILLEGAL, cdb10, cdb12, cdb16, fieldPointer, fixture, good, pattern, sense } from './scsi-helpers';

const BS = 512;
const BLOCKS = 1024;

test('READ CAPACITY(10): last LBA and block length; PMI=0 with LBA != 0 is refused', async (t) => {
  const f = fixture();
  const r = await f.run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  good(t, r);
  t.is(r.dataIn!.readUInt32BE(0), BLOCKS - 1);
  t.is(r.dataIn!.readUInt32BE(4), BS);
  sense(t, await f.run([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), ILLEGAL, 0x24, 0);
  good(t, await f.run([0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0]));
});

test('READ CAPACITY(10) reports FFFFFFFFh beyond 2^32 blocks; READ CAPACITY(16) has the real value', async (t) => {
  const f = fixture({ sizeBytes: 4 * 1024 ** 4 });
  const r = await f.run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.is(r.dataIn!.readUInt32BE(0), 0xffffffff);
  const r16 = await f.run(cdb16(0x9e, 0, 32, 0x10));
  good(t, r16);
  t.is(Number(r16.dataIn!.readBigUInt64BE(0)), (4 * 1024 ** 4) / BS - 1);
});

test('READ CAPACITY(16): 32 bytes, LBPME/LBPRZ when thin, no protection; allocation length clips', async (t) => {
  const f = fixture();
  const r = await f.run(cdb16(0x9e, 0, 32, 0x10));
  good(t, r);
  const d = r.dataIn!;
  t.is(d.length, 32);
  t.is(Number(d.readBigUInt64BE(0)), BLOCKS - 1);
  t.is(d.readUInt32BE(8), BS);
  t.is(d[12], 0);
  t.is(d[13], 0);
  t.is(d[14] & 0xc0, 0xc0);
  for (let i = 0; i < 16; i++) {
    const c = await f.run(cdb16(0x9e, 0, i, 0x10));
    good(t, c);
    t.is(c.dataIn?.length ?? 0, i);
  }
  const full = fixture({ thinProvisioned: false });
  t.is((await full.run(cdb16(0x9e, 0, 32, 0x10))).dataIn![14] & 0xc0, 0);
});

test('SERVICE ACTION IN(16) with an unknown service action: INVALID FIELD IN CDB at byte 1', async (t) => {
  const f = fixture();
  const r = await f.run(cdb16(0x9e, 0, 32, 0x1f)); // no such service action
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 4]);
});

for (const [name, mk] of [
  ['10', (lba: number, n: number, b1 = 0) => cdb10(0x2f, lba, n, b1)],
  ['12', (lba: number, n: number, b1 = 0) => cdb12(0xaf, lba, n, b1)],
  ['16', (lba: number, n: number, b1 = 0) => cdb16(0x8f, lba, n, b1)],
] as const) {
  test(`VERIFY(${name}): BYTCHK 0 range check, BYTCHK 1 compare with MISCOMPARE offset`, async (t) => {
    const f = fixture();
    const data = pattern(16 * BS, 5);
    good(t, await f.run(cdb10(0x2a, 10, 16), { data }));
    good(t, await f.run(mk(10, 16)));
    good(t, await f.run(mk(10, 16, 0x02), { data }));
    good(t, await f.run(mk(10, 16, 0x12), { data })); // DPO
    const bad = Buffer.from(data);
    bad[3 * BS + 77] ^= 0x58;
    const r = await f.run(mk(10, 16, 0x02), { data: [bad.subarray(0, 1000), bad.subarray(1000)] });
    sense(t, r, 0x0e, 0x1d, 0x00);
    t.is(r.sense![0], 0xf0);
    t.is(r.sense!.readUInt32BE(3), 3 * BS + 77);
    sense(t, await f.run(mk(BLOCKS, 1)), ILLEGAL, 0x21, 0);
    sense(t, await f.run(mk(BLOCKS - 1, 2, 0x02), { data: pattern(2 * BS) }), ILLEGAL, 0x21, 0);
    good(t, await f.run(mk(0, 0, 0x02)));
    sense(t, await f.run(mk(BLOCKS + 1, 0)), ILLEGAL, 0x21, 0);
    for (let p = 1; p < 8; p++) sense(t, await f.run(mk(0, 1, (p << 5) | 2), { data }), ILLEGAL, 0x24, 0);
    sense(t, await f.run(mk(0, 1, 0x04)), ILLEGAL, 0x24, 0); // BYTCHK 10b reserved
    t.is(f.disp.dataOutLength({ cdb: mk(0, 4, 0x02), lun: 0 }), 4 * BS);
    t.is(f.disp.dataOutLength({ cdb: mk(0, 4), lun: 0 }), 0);
  });
}

test('VERIFY BYTCHK 11b compares one Data-Out block against every block', async (t) => {
  const f = fixture();
  const blk = pattern(BS, 11);
  good(t, await f.run(cdb10(0x2a, 0, 4), { data: [blk, blk, blk, blk] }));
  good(t, await f.run(cdb10(0x2f, 0, 4, 0x06), { data: blk }));
  t.is(f.disp.dataOutLength({ cdb: cdb10(0x2f, 0, 4, 0x06), lun: 0 }), BS);
  const other = Buffer.from(blk);
  other[100] ^= 1;
  good(t, await f.run(cdb10(0x2a, 2, 1), { data: other }));
  const r = await f.run(cdb10(0x2f, 0, 4, 0x06), { data: blk });
  sense(t, r, 0x0e, 0x1d, 0);
  t.is(r.sense!.readUInt32BE(3), 100);
});

for (const [name, mk] of [
  ['10', (lba: number, n: number, b1 = 0) => cdb10(0x2e, lba, n, b1)],
  ['12', (lba: number, n: number, b1 = 0) => cdb12(0xae, lba, n, b1)],
  ['16', (lba: number, n: number, b1 = 0) => cdb16(0x8e, lba, n, b1)],
] as const) {
  test(`WRITE AND VERIFY(${name}): writes durably (fua) and verifies; range and protect checks`, async (t) => {
    const f = fixture();
    const data = pattern(8 * BS, 2);
    good(t, await f.run(mk(BLOCKS - 8, 8), { data }));
    t.true(f.store.writes.at(-1)!.fua);
    good(t, await f.run(mk(BLOCKS - 8, 8, 0x02), { data }));
    good(t, await f.run(mk(BLOCKS - 8, 8, 0x12), { data }));
    t.deepEqual((await f.run(cdb10(0x28, BLOCKS - 8, 8))).dataIn, data);
    sense(t, await f.run(mk(BLOCKS - 7, 8), { data }), ILLEGAL, 0x21, 0);
    sense(t, await f.run(mk(0, 1, 0x20), { data }), ILLEGAL, 0x24, 0);
    good(t, await f.run(mk(0, 0)));
  });
}

test('PRE-FETCH(10/16): GOOD within range, LBA OUT OF RANGE beyond, IMMED and GROUP accepted', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x34, 0, 256)));
  good(t, await f.run(cdb10(0x34, BLOCKS - 1, 1, 0x02, 3)));
  good(t, await f.run(cdb10(0x34, 0, 0)));
  sense(t, await f.run(cdb10(0x34, BLOCKS, 1)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb10(0x34, BLOCKS - 1, 2)), ILLEGAL, 0x21, 0);
  good(t, await f.run(cdb16(0x90, BLOCKS - 256, 256)));
  sense(t, await f.run(cdb16(0x90, 1n << 63n, 1)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb16(0x90, (1n << 64n) - 1n, 256)), ILLEGAL, 0x21, 0);
});

test('SYNCHRONIZE CACHE(10/16) flushes the backstore; range checked; 0 blocks = to the end', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x35, 0, 0)));
  good(t, await f.run(cdb16(0x91, 10, 20, 0x02)));
  t.is(f.store.stats.flushes, 2);
  sense(t, await f.run(cdb10(0x35, BLOCKS, 0)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb16(0x91, BLOCKS - 1, 2)), ILLEGAL, 0x21, 0);
  t.is(f.store.stats.flushes, 2);
});

test('WRITE SAME(10/16) repeats the block; 0 blocks = to the end (WSNZ 0); ANCHOR refused', async (t) => {
  const f = fixture();
  const blk = pattern(BS, 4);
  good(t, await f.run(cdb10(0x41, BLOCKS - 5, 5), { data: blk }));
  let r = await f.run(cdb10(0x28, BLOCKS - 5, 5));
  for (let i = 0; i < 5; i++) t.deepEqual(r.dataIn!.subarray(i * BS, (i + 1) * BS), blk);
  good(t, await f.run(cdb16(0x93, 0, 1000), { data: blk }));
  r = await f.run(cdb10(0x28, 0, 1000));
  t.true(r.dataIn!.equals(Buffer.alloc(1000 * BS).fill(blk)));
  const blk2 = pattern(BS, 9);
  good(t, await f.run(cdb10(0x41, BLOCKS - 3, 0), { data: blk2 }));
  r = await f.run(cdb10(0x28, BLOCKS - 4, 4));
  t.true(r.dataIn!.subarray(BS).equals(Buffer.alloc(3 * BS).fill(blk2)));
  t.true(r.dataIn!.subarray(0, BS).equals(blk));
  sense(t, await f.run(cdb10(0x41, BLOCKS, 0), { data: blk }), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb16(0x93, 2n ** 63n, 0), { data: blk }), ILLEGAL, 0x21, 0);
  // 0 blocks is held to MAXIMUM WRITE SAME LENGTH like any count.
  const small = fixture({}, { maxWriteSameBlocks: 100 });
  const z = await small.run(cdb16(0x93, 0, 0), { data: blk });
  sense(t, z, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(z), [true, 10, 7]);
  good(t, await small.run(cdb16(0x93, BLOCKS - 100, 0), { data: blk }));
  sense(t, await f.run(cdb10(0x41, BLOCKS - 1, 2), { data: blk }), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb10(0x41, 0, 1, 0x10), { data: blk }), ILLEGAL, 0x24, 0); // ANCHOR
  sense(t, await f.run(cdb10(0x41, 0, 1, 0x18), { data: blk }), ILLEGAL, 0x24, 0); // ANCHOR+UNMAP
  t.is(f.disp.dataOutLength({ cdb: cdb16(0x93, 0, 3000), lun: 0 }), BS);
});

test('WRITE SAME(16) NDOB: no Data-Out, zeros written (or unmapped with UNMAP); Data-Out length must match', async (t) => {
  for (const thin of [true, false]) {
    const f = fixture({ thinProvisioned: thin });
    good(t, await f.run(cdb10(0x2a, 10, 4), { data: Buffer.alloc(4 * BS, 0xee) }));
    t.is(f.disp.dataOutLength({ cdb: cdb16(0x93, 10, 4, 0x01), lun: 0 }), 0);
    good(t, await f.run(cdb16(0x93, 10, 4, 0x01)));
    t.true((await f.run(cdb10(0x28, 10, 4))).dataIn!.equals(Buffer.alloc(4 * BS)));
    if (thin) {
      good(t, await f.run(cdb10(0x2a, 10, 4), { data: Buffer.alloc(4 * BS, 0xee) }));
      good(t, await f.run(cdb16(0x93, 11, 2, 0x09)));
      const r = (await f.run(cdb10(0x28, 10, 4))).dataIn!;
      t.true(r.subarray(BS, 3 * BS).equals(Buffer.alloc(2 * BS)));
      t.is(r[0], 0xee);
    }
    // Half a block, two blocks, or data with NDOB: the command is refused and nothing written.
    sense(t, await f.run(cdb10(0x41, 10, 1), { data: Buffer.alloc(BS / 2, 1) }), ILLEGAL, 0x24, 0);
    sense(t, await f.run(cdb16(0x93, 10, 1), { data: Buffer.alloc(2 * BS, 1) }), ILLEGAL, 0x24, 0);
    sense(t, await f.run(cdb16(0x93, 10, 1, 0x01), { data: Buffer.alloc(BS, 1) }), ILLEGAL, 0x24, 0);
    t.is((await f.run(cdb10(0x28, 10, 1))).dataIn![0], thin ? 0xee : 0);
    // ANCHOR (byte 1 bit 4) is refused with the field pointer: no anchored state (ANC_SUP 0).
    const a = await f.run(cdb16(0x93, 10, 1, 0x19));
    sense(t, a, ILLEGAL, 0x24, 0);
    t.deepEqual(fieldPointer(a), [true, 1, 4]);
  }
});

test('WRITE SAME with UNMAP deallocates on a thin LU (reads zeros) and is refused on a full one', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 0, 8), { data: Buffer.alloc(8 * BS, 0xff) }));
  good(t, await f.run(cdb10(0x41, 0, 8, 0x08), { data: Buffer.alloc(BS, 0xff) }));
  t.true((await f.run(cdb10(0x28, 0, 8))).dataIn!.equals(Buffer.alloc(8 * BS)));
  const full = fixture({ thinProvisioned: false });
  const r = await full.run(cdb16(0x93, 0, 1, 0x08), { data: Buffer.alloc(BS) });
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 3]);
});

function unmapList(ranges: Array<[number, number]>): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(b.length - 2, 0);
  b.writeUInt16BE(16 * ranges.length, 2);
  ranges.forEach(([lba, n], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(n, 16 + 16 * i);
  });
  return b;
}

const unmapCdb = (len: number, anchor = 0) => [0x42, anchor, 0, 0, 0, 0, 0, len >> 8, len & 0xff, 0];

test('UNMAP: ranges read back as zeros; 0 blocks at end-of-LUN ok; beyond is LBA OUT OF RANGE', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 0, 256), { data: Buffer.alloc(256 * BS, 'a') }));
  const list = unmapList([
    [0, 10],
    [100, 1],
    [BLOCKS, 0],
  ]);
  good(t, await f.run(unmapCdb(list.length), { data: list }));
  const r = (await f.run(cdb10(0x28, 0, 101))).dataIn!;
  t.true(r.subarray(0, 10 * BS).equals(Buffer.alloc(10 * BS)));
  t.is(r[10 * BS], 0x61);
  t.true(r.subarray(100 * BS).equals(Buffer.alloc(BS)));
  const empty = unmapList([]);
  good(t, await f.run(unmapCdb(empty.length), { data: empty }));
  good(t, await f.run(unmapCdb(0)));
  const oob = unmapList([
    [0, 1],
    [BLOCKS - 1, 2],
  ]);
  sense(t, await f.run(unmapCdb(oob.length), { data: oob }), ILLEGAL, 0x21, 0);
  sense(t, await f.run(unmapCdb(4), { data: Buffer.alloc(4) }), ILLEGAL, 0x1a, 0);
  sense(t, await f.run(unmapCdb(list.length, 1), { data: list }), ILLEGAL, 0x24, 0); // ANCHOR
  t.is(f.disp.dataOutLength({ cdb: Buffer.from(unmapCdb(24)), lun: 0 }), 24);
});

test('UNMAP merges adjacent and overlapping descriptors: one backstore call per run of blocks', async (t) => {
  // On RBD every backstore unmap is a cluster round trip: libiscsi's Unmap.Simple sends up to 256 one-block
  // descriptors back to back, which took 33152 sequential discards (about 40 s) before they were merged.
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 0, 256), { data: Buffer.alloc(256 * BS, 'a') }));
  const calls: [number, number][] = [];
  const unmap = f.store.unmap.bind(f.store);
  f.store.unmap = (offset: number, length: number) => {
    calls.push([offset / BS, length / BS]);
    return unmap(offset, length);
  };
  const list = unmapList([
    [3, 1],
    [0, 1],
    [1, 2],
    [2, 1],
    [10, 5],
    [12, 1],
    [20, 1],
  ]);
  good(t, await f.run(unmapCdb(list.length), { data: list }));
  t.deepEqual(calls, [
    [0, 4],
    [10, 5],
    [20, 1],
  ]);
  const r = (await f.run(cdb10(0x28, 0, 22))).dataIn!;
  t.true(r.subarray(0, 4 * BS).equals(Buffer.alloc(4 * BS)), 'blocks 0-3 zero');
  t.is(r[4 * BS], 0x61, 'block 4 kept');
  t.true(r.subarray(20 * BS, 21 * BS).equals(Buffer.alloc(BS)), 'block 20 zero');
});

test('UNMAP limits: too many descriptors or blocks is INVALID FIELD IN PARAMETER LIST', async (t) => {
  const f = fixture({ sizeBytes: 64 * 1024 * 1024 }, { maxUnmapDescriptors: 2, maxUnmapBlocks: 100 });
  const three = unmapList([
    [0, 1],
    [2, 1],
    [4, 1],
  ]);
  sense(t, await f.run(unmapCdb(three.length), { data: three }), ILLEGAL, 0x26, 0);
  const big = unmapList([
    [0, 60],
    [100, 41],
  ]);
  const r = await f.run(unmapCdb(big.length), { data: big });
  sense(t, r, ILLEGAL, 0x26, 0);
  t.deepEqual(fieldPointer(r), [false, 8 + 16 + 8, 7]);
});

test('UNMAP is not offered on a fully provisioned LU', async (t) => {
  const f = fixture({ thinProvisioned: false });
  const list = unmapList([[0, 1]]);
  sense(t, await f.run(unmapCdb(list.length), { data: list }), ILLEGAL, 0x20, 0);
});
