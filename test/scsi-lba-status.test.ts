/** GET LBA STATUS (SERVICE ACTION IN(16), service action 12h) over the memory backstore's allocation map. */
import test, { type ExecutionContext } from 'ava';
import { MemoryBackstore } from '../src/backstore/memory';
import { NullBackstore } from '../src/backstore/null';
import type { Backstore } from '../src/backstore/types';
import { ScsiDispatcher, type ScsiResult } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import { MAX_LBA_STATUS_DESCRIPTORS } from '../src/scsi/sbc';
import {
  ILLEGAL,
  TARGET,
  cdb16,
  fieldPointer,
  fixture,
  good,
  sense,
  testIdentity,
  type Fixture,
} from './scsi-helpers';

const BS = 512;
const BLOCKS = 1024;
const MAPPED = 0;
const DEALLOCATED = 1;

type Desc = [lba: number, blocks: number, status: number];

const gls = (lba: bigint | number, alloc: number) => cdb16(0x9e, lba, alloc, 0x12);

/** PARAMETER DATA LENGTH and the descriptors, checking the reserved bytes on the way. */
function parse(r: ScsiResult): { length: number; descs: Desc[] } {
  const d = r.dataIn!;
  const descs: Desc[] = [];
  for (let off = 8; off + 16 <= d.length; off += 16) {
    if (d[off + 12] & 0xf0 || d[off + 13] || d[off + 14] || d[off + 15]) throw new Error('reserved bits set');
    descs.push([Number(d.readBigUInt64BE(off)), d.readUInt32BE(off + 8), d[off + 12] & 0x0f]);
  }
  if (d.readUInt32BE(4) !== 0) throw new Error('reserved header bytes set');
  return { length: d.readUInt32BE(0), descs };
}

async function status(t: ExecutionContext, f: Fixture, lba: number, alloc = 65536): Promise<Desc[]> {
  const r = await f.run(gls(lba, alloc));
  good(t, r);
  const p = parse(r);
  t.is(p.length, 4 + 16 * p.descs.length, 'PARAMETER DATA LENGTH');
  return p.descs;
}

/** Block-exact map: one chunk per block. */
const exact = () => fixture({ chunkSize: BS });

const write = (f: Fixture, lba: number, n: number) =>
  f.run(cdb16(0x8a, lba, n), { data: Buffer.alloc(n * BS, 0xa5) });

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
const unmap = (f: Fixture, ranges: Array<[number, number]>) => {
  const list = unmapList(ranges);
  return f.run([0x42, 0, 0, 0, 0, 0, 0, list.length >> 8, list.length & 0xff, 0], { data: list });
};

test('a fresh thin LU is one deallocated extent; PARAMETER DATA LENGTH is 20', async (t) => {
  const f = exact();
  const r = await f.run(gls(0, 24));
  good(t, r);
  t.is(r.dataIn!.length, 24);
  t.deepEqual(parse(r), { length: 20, descs: [[0, BLOCKS, DEALLOCATED]] });
});

test('mapped and deallocated runs, in order and back to back', async (t) => {
  const f = exact();
  good(t, await write(f, 10, 10));
  good(t, await write(f, 40, 10));
  good(t, await write(f, BLOCKS - 1, 1));
  t.deepEqual(await status(t, f, 0), [
    [0, 10, DEALLOCATED],
    [10, 10, MAPPED],
    [20, 20, DEALLOCATED],
    [40, 10, MAPPED],
    [50, BLOCKS - 51, DEALLOCATED],
    [BLOCKS - 1, 1, MAPPED],
  ]);
});

test('the first descriptor starts at STARTING LBA, inside its extent', async (t) => {
  const f = exact();
  good(t, await write(f, 10, 10));
  t.deepEqual(await status(t, f, 15), [
    [15, 5, MAPPED],
    [20, BLOCKS - 20, DEALLOCATED],
  ]);
  t.deepEqual(await status(t, f, 3), [
    [3, 7, DEALLOCATED],
    [10, 10, MAPPED],
    [20, BLOCKS - 20, DEALLOCATED],
  ]);
  t.deepEqual(await status(t, f, BLOCKS - 1), [[BLOCKS - 1, 1, DEALLOCATED]]);
});

test('UNMAP and WRITE SAME with UNMAP deallocate; a rewrite maps again', async (t) => {
  const f = exact();
  good(t, await write(f, 0, 64));
  good(
    t,
    await unmap(f, [
      [8, 4],
      [30, 2],
    ]),
  );
  t.deepEqual(await status(t, f, 0), [
    [0, 8, MAPPED],
    [8, 4, DEALLOCATED],
    [12, 18, MAPPED],
    [30, 2, DEALLOCATED],
    [32, 32, MAPPED],
    [64, BLOCKS - 64, DEALLOCATED],
  ]);
  good(t, await f.run(cdb16(0x93, 32, 32, 0x08), { data: Buffer.alloc(BS) }));
  good(t, await write(f, 8, 1));
  t.deepEqual(await status(t, f, 0), [
    [0, 9, MAPPED],
    [9, 3, DEALLOCATED],
    [12, 18, MAPPED],
    [30, BLOCKS - 30, DEALLOCATED],
  ]);
});

test('a block partly allocated counts as mapped (64 KiB chunks: unmap inside a chunk keeps it mapped)', async (t) => {
  const f = fixture({ chunkSize: 64 * 1024 }); // 128 blocks per chunk
  good(t, await write(f, 130, 1));
  t.deepEqual(await status(t, f, 0), [
    [0, 128, DEALLOCATED],
    [128, 128, MAPPED],
    [256, BLOCKS - 256, DEALLOCATED],
  ]);
  good(t, await unmap(f, [[130, 1]]));
  t.deepEqual((await status(t, f, 0))[1], [128, 128, MAPPED]);
  good(t, await unmap(f, [[128, 128]]));
  t.deepEqual(await status(t, f, 0), [[0, BLOCKS, DEALLOCATED]]);
});

test('ALLOCATION LENGTH: as many descriptors as fit; under 24 truncates; 0 transfers nothing', async (t) => {
  const f = exact();
  for (let lba = 0; lba < 64; lba += 2) good(t, await write(f, lba, 1));
  const all = await status(t, f, 0);
  t.is(all.length, 64); // 32 single mapped blocks, 31 single holes, then the hole to the end
  for (const [alloc, n] of [
    [24, 1],
    [39, 1],
    [40, 2],
    [8 + 16 * 10, 10],
    [8 + 16 * 10 + 15, 10],
  ]) {
    const r = await f.run(gls(0, alloc));
    good(t, r);
    t.is(r.dataIn!.length, 8 + 16 * n, `alloc ${alloc}`);
    t.deepEqual(parse(r), { length: 4 + 16 * n, descs: all.slice(0, n) });
  }
  for (const alloc of [1, 4, 8, 16, 23]) {
    const r = await f.run(gls(0, alloc));
    good(t, r);
    t.is(r.dataIn!.length, alloc);
    if (alloc >= 4) t.is(r.dataIn!.readUInt32BE(0), 20);
  }
  const zero = await f.run(gls(0, 0));
  good(t, zero);
  t.is(zero.dataIn?.length ?? 0, 0);
});

test('STARTING LBA beyond the last block: LBA OUT OF RANGE (also with ALLOCATION LENGTH 0)', async (t) => {
  const f = exact();
  for (const lba of [BLOCKS, BLOCKS + 1, 1n << 63n, (1n << 64n) - 1n]) {
    sense(t, await f.run(gls(lba, 24)), ILLEGAL, 0x21, 0);
    sense(t, await f.run(gls(lba, 0)), ILLEGAL, 0x21, 0);
  }
});

test('an extent over 2^32 - 1 blocks takes several descriptors', async (t) => {
  const f = fixture({ chunkSize: BS, sizeBytes: 2 ** 33 * BS }); // 2^33 blocks
  good(t, await write(f, 2 ** 33 - 1, 1));
  t.deepEqual(await status(t, f, 0), [
    [0, 0xffffffff, DEALLOCATED],
    [0xffffffff, 0xffffffff, DEALLOCATED],
    [0x1fffffffe, 1, DEALLOCATED],
    [2 ** 33 - 1, 1, MAPPED],
  ]);
  t.deepEqual(await status(t, f, 5, 40), [
    [5, 0xffffffff, DEALLOCATED],
    [0xffffffff + 5, 2 ** 33 - 1 - (0xffffffff + 5), DEALLOCATED], // the rest of the extent; 40 bytes hold two
  ]);
});

test(`at most ${MAX_LBA_STATUS_DESCRIPTORS} descriptors per command, whatever the allocation length`, async (t) => {
  const n = MAX_LBA_STATUS_DESCRIPTORS + 100;
  const f = fixture({ chunkSize: BS, sizeBytes: 2 * n * BS });
  const one = Buffer.alloc(BS, 1);
  for (let lba = 0; lba < 2 * n; lba += 2) await f.store.write(lba * BS, [one], false);
  const r = await f.run(gls(0, 0xffffffff));
  good(t, r);
  const p = parse(r);
  t.is(p.descs.length, MAX_LBA_STATUS_DESCRIPTORS);
  t.is(p.length, 4 + 16 * MAX_LBA_STATUS_DESCRIPTORS);
  p.descs.forEach(([lba, blocks, st], i) => t.true(lba === i && blocks === 1 && st === i % 2));
  // and the next command goes on from where this one stopped
  t.deepEqual((await status(t, f, MAX_LBA_STATUS_DESCRIPTORS, 40))[0], [
    MAX_LBA_STATUS_DESCRIPTORS,
    1,
    MAPPED,
  ]);
});

test('offered exactly where LBPME = 1: not on a fully provisioned LU (INVALID FIELD IN CDB at the service action)', async (t) => {
  const full = fixture({ thinProvisioned: false });
  const r = await full.run(gls(0, 24));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 4]);
  const rc16 = async (f: Fixture) => (await f.run(cdb16(0x9e, 0, 32, 0x10))).dataIn![14] & 0x80;
  t.is(await rc16(full), 0);
  t.is(await rc16(exact()), 0x80);
});

test('REPORT SUPPORTED OPERATION CODES: GET LBA STATUS with its usage map, on thin LUs only', async (t) => {
  const one = (f: Fixture) => {
    const c = Buffer.alloc(12);
    c[0] = 0xa3;
    c[1] = 0x0c;
    c[2] = 0x02;
    c[3] = 0x9e;
    c.writeUInt16BE(0x12, 4);
    c.writeUInt32BE(256, 6);
    return f.run(c);
  };
  const r = await one(exact());
  good(t, r);
  t.is(r.dataIn![1] & 7, 3);
  t.is(r.dataIn!.readUInt16BE(2), 16);
  t.deepEqual(
    [...r.dataIn!.subarray(4, 20)],
    [0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
  );
  const none = await one(fixture({ thinProvisioned: false }));
  good(t, none);
  t.is(none.dataIn![1] & 7, 1);
});

test('reserved bits refused with a field pointer: byte 1 bits 7-5, byte 14 (no REPORT TYPE), CONTROL', async (t) => {
  const f = exact();
  for (const [byte, value, bit] of [
    [1, 0x12 | 0x20, 5],
    [14, 0x01, 0],
    [14, 0x02, 1],
    [15, 0x04, 2],
  ]) {
    const c = gls(0, 24);
    c[byte] = value;
    const r = await f.run(c);
    sense(t, r, ILLEGAL, 0x24, 0);
    t.deepEqual(fieldPointer(r), [true, byte, bit]);
  }
});

test('a failing allocation map is a MEDIUM ERROR, not a wrong answer', async (t) => {
  const f = exact();
  f.store.failNext('mapping', Object.assign(new Error('EIO'), { code: 'EIO' }));
  sense(t, await f.run(gls(0, 24)), 0x03, 0x11, 0);
  good(t, await f.run(gls(0, 24)));
});

function luOver(store: Backstore): ScsiDispatcher {
  const lu = new LogicalUnit(store, testIdentity(TARGET, 0));
  return new ScsiDispatcher(new Map([[0, lu]]));
}

const exec = (d: ScsiDispatcher, cdb: Buffer) =>
  d.execute({ lun: 0, cdb, expectedLength: 0, readFlag: true, writeFlag: false, dataOut: [], nexus: 'n' });

test('the null backstore is not thin (no LBPME, no GET LBA STATUS) so initiators really read it', async (t) => {
  const d = luOver(new NullBackstore({ size: '1M' }));
  const r = await exec(d, gls(100, 64));
  t.is(r.status, 0x02);
  t.is(r.sense![2] & 0x0f, 0x05, 'ILLEGAL REQUEST');
  t.is(r.sense![12], 0x24, 'INVALID FIELD IN CDB (service action not offered)');
  const rc16 = Buffer.alloc(16);
  rc16[0] = 0x9e;
  rc16[1] = 0x10;
  rc16.writeUInt32BE(32, 10);
  const cap = await d.execute({
    lun: 0,
    cdb: rc16,
    expectedLength: 32,
    readFlag: true,
    writeFlag: false,
    dataOut: [],
    nexus: 'n',
  });
  t.is(cap.dataIn![14] & 0x80, 0, 'LBPME clear');
});

test('a thin backstore without an allocation map reports everything mapped-or-unknown (0h)', async (t) => {
  const mem = new MemoryBackstore({ sizeBytes: BLOCKS * BS });
  const bare: Backstore = {
    blockSize: mem.blockSize,
    sizeBytes: mem.sizeBytes,
    readOnly: false,
    writeCacheEnabled: true,
    thinProvisioned: true,
    read: (o, b) => mem.read(o, b),
    write: (o, d, fua) => mem.write(o, d, fua),
    flush: () => mem.flush(),
    unmap: (o, l) => mem.unmap(o, l),
    close: () => mem.close(),
  };
  const r = await exec(luOver(bare), gls(7, 24));
  good(t, r);
  t.deepEqual(parse(r).descs, [[7, BLOCKS - 7, MAPPED]]);
});
