import test from 'ava';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import { MemoryBackstore } from '../src/backstore/memory';
import {
  ILLEGAL,
  cdb10,
  cdb12,
  cdb16,
  cdb6,
  fieldPointer,
  fixture,
  good,
  pattern,
  sense,
  testIdentity,
} from './scsi-helpers';

const BS = 512;
const BLOCKS = 1024;

test('WRITE(10) then READ(10) round-trips; Data-In is exactly the blocks asked for', async (t) => {
  const f = fixture();
  const data = pattern(8 * BS);
  good(t, await f.run(cdb10(0x2a, 100, 8), { data }));
  const r = await f.run(cdb10(0x28, 100, 8));
  good(t, r);
  t.true(r.pooled);
  t.deepEqual(r.dataIn, data);
});

for (const [name, rd, wr] of [
  ['6', (l: number, n: number) => cdb6(0x08, l, n), (l: number, n: number) => cdb6(0x0a, l, n)],
  ['10', (l: number, n: number) => cdb10(0x28, l, n), (l: number, n: number) => cdb10(0x2a, l, n)],
  ['12', (l: number, n: number) => cdb12(0xa8, l, n), (l: number, n: number) => cdb12(0xaa, l, n)],
  ['16', (l: number, n: number) => cdb16(0x88, l, n), (l: number, n: number) => cdb16(0x8a, l, n)],
] as const) {
  test(`READ/WRITE(${name}): last block ok, last+1 and straddling end are LBA OUT OF RANGE`, async (t) => {
    const f = fixture();
    const blk = pattern(BS, 7);
    good(t, await f.run(wr(BLOCKS - 1, 1), { data: blk }));
    const r = await f.run(rd(BLOCKS - 1, 1));
    good(t, r);
    t.deepEqual(r.dataIn, blk);
    sense(t, await f.run(rd(BLOCKS, 1)), ILLEGAL, 0x21, 0x00);
    sense(t, await f.run(rd(BLOCKS - 1, 2)), ILLEGAL, 0x21, 0x00);
    sense(t, await f.run(wr(BLOCKS, 1), { data: blk }), ILLEGAL, 0x21, 0x00);
    sense(t, await f.run(wr(BLOCKS - 1, 2), { data: pattern(2 * BS) }), ILLEGAL, 0x21, 0x00);
    t.is(f.store.stats.writes, 1);
  });
}

test('READ(6)/WRITE(6): transfer length 0 means 256 blocks', async (t) => {
  const f = fixture();
  const data = pattern(256 * BS, 3);
  good(t, await f.run(cdb6(0x0a, 10, 0), { data }));
  const r = await f.run(cdb6(0x08, 10, 0));
  good(t, r);
  t.is(r.dataIn?.length, 256 * BS);
  t.deepEqual(r.dataIn, data);
  t.is(f.disp.dataOutLength({ cdb: cdb6(0x0a, 10, 0), lun: 0 }), 256 * BS);
});

test('transfer length 0 on READ/WRITE(10/12/16) is GOOD with no data and no I/O', async (t) => {
  const f = fixture();
  for (const c of [cdb10(0x28, 5, 0), cdb12(0xa8, 5, 0), cdb16(0x88, 5, 0)]) {
    const r = await f.run(c);
    good(t, r);
    t.is(r.dataIn, undefined);
  }
  for (const c of [cdb10(0x2a, 5, 0), cdb12(0xaa, 5, 0), cdb16(0x8a, 5, 0)]) good(t, await f.run(c));
  t.is(f.store.stats.reads + f.store.stats.writes, 0);
  // ... but the LBA must still exist
  sense(t, await f.run(cdb10(0x28, BLOCKS + 1, 0)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb10(0x28, 0xffffffff, 0)), ILLEGAL, 0x21, 0);
});

test('READ(16)/WRITE(16) at huge LBAs: 2^63, 2^64-1 (LBA + length wraps) are out of range', async (t) => {
  const f = fixture();
  for (const lba of [1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 256n, 1n << 53n, (1n << 53n) - 1n]) {
    sense(t, await f.run(cdb16(0x88, lba, 256)), ILLEGAL, 0x21, 0);
    sense(t, await f.run(cdb16(0x8a, lba, 1), { data: pattern(BS) }), ILLEGAL, 0x21, 0);
  }
  sense(t, await f.run(cdb12(0xa8, 0xffffffff, 0xffffffff)), ILLEGAL, 0x21, 0);
});

test('FUA on WRITE(10/12/16) reaches the backstore as fua=true; DPO alone does not', async (t) => {
  const f = fixture();
  const blk = pattern(BS);
  for (const c of [cdb10(0x2a, 1, 1, 0x08), cdb12(0xaa, 1, 1, 0x08), cdb16(0x8a, 1, 1, 0x08)]) {
    good(t, await f.run(c, { data: blk }));
    t.true(f.store.writes.at(-1)?.fua);
  }
  good(t, await f.run(cdb10(0x2a, 1, 1, 0x10), { data: blk }));
  t.false(f.store.writes.at(-1)?.fua);
  good(t, await f.run(cdb10(0x2a, 1, 1, 0x18), { data: blk }));
  t.true(f.store.writes.at(-1)?.fua);
  good(t, await f.run(cdb6(0x0a, 1, 1), { data: blk }));
  t.false(f.store.writes.at(-1)?.fua);
  // DPO / FUA on reads are accepted
  good(t, await f.run(cdb10(0x28, 1, 1, 0x18)));
});

test('write data goes to the backstore as the received slices (no concatenation or copy)', async (t) => {
  const f = fixture();
  const a = pattern(3 * BS, 1);
  const b = pattern(5 * BS + 100, 2); // more than needed: trimmed with a view
  good(t, await f.run(cdb10(0x2a, 0, 8), { data: [a, b] }));
  const w = f.store.writes.at(-1)!;
  t.is(w.length, 8 * BS);
  t.is(w.buffers.length, 2);
  t.is(w.buffers[0], a);
  t.is(w.buffers[1].buffer, b.buffer);
  t.is(w.buffers[1].byteOffset, b.byteOffset);
  t.is(w.buffers[1].length, 5 * BS);
});

test('EDTL < transfer length: only the whole blocks received are written; EDTL > TL: only TL', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 0, 2), { data: Buffer.alloc(2 * BS, 'a') }));
  good(t, await f.run(cdb10(0x2a, 0, 2), { data: Buffer.alloc(BS, 'b') }));
  let r = await f.run(cdb10(0x28, 0, 2));
  t.is(r.dataIn!.subarray(0, BS).toString(), 'b'.repeat(BS));
  t.is(r.dataIn!.subarray(BS).toString(), 'a'.repeat(BS));
  good(t, await f.run(cdb10(0x2a, 0, 1), { data: Buffer.alloc(2 * BS, 'c') }));
  r = await f.run(cdb10(0x28, 0, 2));
  t.is(r.dataIn!.subarray(0, BS).toString(), 'c'.repeat(BS));
  t.is(r.dataIn!.subarray(BS).toString(), 'a'.repeat(BS));
  // no data at all / less than a block: GOOD, nothing written
  const before = f.store.stats.writes;
  good(t, await f.run(cdb10(0x2a, 0, 1)));
  good(t, await f.run(cdb10(0x2a, 0, 1), { data: Buffer.alloc(200) }));
  t.is(f.store.stats.writes, before);
});

test('RDPROTECT / WRPROTECT non-zero: INVALID FIELD IN CDB pointing at byte 1 bit 7..5', async (t) => {
  const f = fixture();
  for (let p = 1; p < 8; p++) {
    for (const c of [cdb10(0x28, 0, 1, p << 5), cdb12(0xa8, 0, 1, p << 5), cdb16(0x88, 0, 1, p << 5)]) {
      const r = await f.run(c);
      sense(t, r, ILLEGAL, 0x24, 0);
      t.deepEqual(fieldPointer(r), [true, 1, p & 4 ? 7 : p & 2 ? 6 : 5]);
    }
    for (const c of [cdb10(0x2a, 0, 1, p << 5), cdb12(0xaa, 0, 1, p << 5), cdb16(0x8a, 0, 1, p << 5)]) {
      sense(t, await f.run(c, { data: pattern(BS) }), ILLEGAL, 0x24, 0);
    }
  }
  t.is(f.store.stats.writes, 0);
});

test('GROUP NUMBER is accepted; NACA in CONTROL is refused (not supported)', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x28, 0, 1, 0, 3)));
  const c = cdb10(0x28, 0, 1);
  c[9] = 0x04;
  const r = await f.run(c);
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 9, 2]);
});

test('read-only LU: writes get DATA PROTECT / WRITE PROTECTED, reads work', async (t) => {
  const f = fixture({ readOnly: true });
  const blk = pattern(BS);
  const wp = (r: Awaited<ReturnType<typeof f.run>>) => sense(t, r, 0x07, 0x27, 0x00);
  wp(await f.run(cdb6(0x0a, 0, 1), { data: blk }));
  wp(await f.run(cdb10(0x2a, 0, 1), { data: blk }));
  wp(await f.run(cdb12(0xaa, 0, 1), { data: blk }));
  wp(await f.run(cdb16(0x8a, 0, 1), { data: blk }));
  wp(await f.run(cdb10(0x2e, 0, 1), { data: blk }));
  wp(await f.run(cdb10(0x41, 0, 1), { data: blk }));
  wp(await f.run(cdb16(0x93, 0, 1), { data: blk }));
  good(t, await f.run(cdb10(0x28, 0, 1)));
  good(t, await f.run(cdb10(0x35, 0, 0)));
  t.is(f.store.stats.writes, 0);
  // WRITE SAME with UNMAP on a read-only, fully provisioned LU: DATA PROTECT comes first
  const ro = fixture({ readOnly: true, thinProvisioned: false });
  sense(t, await ro.run(cdb10(0x41, 0, 1, 0x08)), 0x07, 0x27, 0x00);
  sense(t, await ro.run(cdb16(0x93, 0, 1, 0x08)), 0x07, 0x27, 0x00);
  sense(t, await ro.run(cdb10(0x2a, 0, 1, 0x20), { data: blk }), ILLEGAL, 0x24, 0x00); // WRPROTECT first
});

test('transfer length above the Block Limits maximum is INVALID FIELD IN CDB', async (t) => {
  const f = fixture({ sizeBytes: 64 * 1024 * 1024 }, { maxTransferBytes: 1024 * 1024 });
  good(t, await f.run(cdb10(0x28, 0, 2048)));
  const r = await f.run(cdb10(0x28, 0, 2049));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 7, 7]);
});

test('backstore failures: MEDIUM ERROR 11h/00h on read, 0Ch/00h on write; ENOSPC is DATA PROTECT 27h/07h', async (t) => {
  const f = fixture();
  f.store.failNext('read', new Error('EIO'));
  const r = await f.run(cdb10(0x28, 42, 1));
  sense(t, r, 0x03, 0x11, 0x00);
  t.is(r.sense![0], 0xf0); // VALID: INFORMATION holds the LBA
  t.is(r.sense!.readUInt32BE(3), 42);
  f.store.failNext('write', new Error('EIO'));
  sense(t, await f.run(cdb10(0x2a, 0, 1), { data: pattern(BS) }), 0x03, 0x0c, 0x00);
  f.store.failNext('write', Object.assign(new Error('full'), { code: 'ENOSPC' }));
  sense(t, await f.run(cdb10(0x2a, 0, 1), { data: pattern(BS) }), 0x07, 0x27, 0x07);
  f.store.failNext('flush', new Error('EIO'));
  sense(t, await f.run(cdb10(0x35, 0, 0)), 0x03, 0x0c, 0x00);
});

test('pooled Data-In buffers are reused after releaseDataIn', async (t) => {
  const f = fixture();
  const r1 = await f.run(cdb10(0x28, 0, 8));
  f.disp.releaseDataIn(r1.dataIn!);
  const r2 = await f.run(cdb10(0x28, 0, 8));
  t.is(r2.dataIn!.buffer, r1.dataIn!.buffer);
  f.disp.releaseDataIn(r2.dataIn!);
  f.disp.releaseDataIn(r2.dataIn!); // double release is ignored
  const a = await f.run(cdb10(0x28, 0, 8));
  const b = await f.run(cdb10(0x28, 0, 8));
  t.not(a.dataIn!.buffer, b.dataIn!.buffer);
});

test('4096-byte blocks and a 2 TiB sparse LU', async (t) => {
  const store = new MemoryBackstore({ sizeBytes: 2 * 1024 ** 4, blockSize: 4096 });
  const lu = new LogicalUnit(store, testIdentity('iqn.x', 0));
  const disp = new ScsiDispatcher(new Map([[0, lu]]));
  const run = (cdb: Buffer, dataOut: Buffer[] = []) =>
    disp.execute({ lun: 0, cdb, expectedLength: 0, readFlag: true, writeFlag: false, dataOut, nexus: 'n' });
  const last = (2 * 1024 ** 4) / 4096 - 1;
  const blk = pattern(4096, 9);
  t.is((await run(cdb16(0x8a, last, 1), [blk])).status, 0);
  const r = await run(cdb16(0x88, last, 1));
  t.deepEqual(r.dataIn, blk);
  t.is((await run(cdb16(0x88, last + 1, 1))).status, 2);
  t.true(store.allocatedBytes < 1024 * 1024);
});
