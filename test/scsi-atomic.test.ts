/** COMPARE AND WRITE, ORWRITE(16), READ DEFECT DATA and the physical-block reporting, against the memory backstore. */
import test from 'ava';
import { MemoryBackstore } from '../src/backstore/memory';
import { LogicalUnit } from '../src/scsi/lu';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import {
  ILLEGAL,
  cdb10,
  cdb16,
  cdbCaw,
  fieldPointer,
  fixture,
  good,
  pattern,
  sense,
  testIdentity,
} from './scsi-helpers';

const BS = 512;
const BLOCKS = 1024;

const caw = cdbCaw;

test('COMPARE AND WRITE: writes when the blocks match, MISCOMPARE with the offset and nothing written when not', async (t) => {
  const f = fixture();
  const old = pattern(4 * BS, 1);
  const next = pattern(4 * BS, 2);
  good(t, await f.run(cdb10(0x2a, 100, 4), { data: old }));
  t.is(f.disp.dataOutLength({ cdb: caw(100, 4), lun: 0 }), 8 * BS);
  good(t, await f.run(caw(100, 4, 0x18), { data: Buffer.concat([old, next]) })); // DPO + FUA
  t.true((await f.run(cdb10(0x28, 100, 4))).dataIn!.equals(next));
  const wrong = Buffer.from(next);
  wrong[3 * BS + 27] ^= 1;
  const r = await f.run(caw(100, 4), { data: Buffer.concat([wrong, old]) });
  sense(t, r, 0x0e, 0x1d, 0);
  t.is(r.sense![0] & 0x80, 0x80, 'VALID');
  t.is(r.sense!.readUInt32BE(3), 3 * BS + 27, 'INFORMATION: offset of the first differing byte');
  t.true((await f.run(cdb10(0x28, 100, 4))).dataIn!.equals(next), 'nothing written');
  // Data-Out split over several slices compares the same.
  const parts = [next.subarray(0, 100), next.subarray(100), old];
  good(t, await f.run(caw(100, 4), { data: parts }));
  t.true((await f.run(cdb10(0x28, 100, 4))).dataIn!.equals(old));
});

test('COMPARE AND WRITE refusals: length over the VPD maximum, range, Data-Out length, WRPROTECT, write protect', async (t) => {
  const f = fixture({ blockSize: 4096, sizeBytes: 1024 * 4096 });
  const max = f.lu.limits.maxCompareAndWriteBlocks;
  t.is(max, 32); // 128 KiB of 4096-byte blocks
  const vpd = (await f.run([0x12, 1, 0xb0, 0, 64, 0])).dataIn!;
  t.is(vpd[5], max);
  let r = await f.run(caw(0, max + 1), { data: Buffer.alloc(2 * (max + 1) * 4096) });
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 13, 7]);
  sense(t, await f.run(caw(1023, 2), { data: Buffer.alloc(4 * 4096) }), ILLEGAL, 0x21, 0);
  // Data-Out of another length than 2 x blocks: refused, nothing compared or written.
  sense(t, await f.run(caw(0, 1), { data: Buffer.alloc(4 * 4096) }), ILLEGAL, 0x24, 0);
  sense(t, await f.run(caw(0, 3), { data: Buffer.alloc(4 * 4096) }), ILLEGAL, 0x24, 0);
  sense(t, await f.run(caw(0, 0), { data: Buffer.alloc(2 * 4096) }), ILLEGAL, 0x24, 0);
  good(t, await f.run(caw(0, 0)));
  r = await f.run(caw(0, 1, 0x20), { data: Buffer.alloc(2 * 4096) });
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 1, 5]);
  f.lu.softwareWriteProtect = true;
  sense(t, await f.run(caw(0, 1), { data: Buffer.alloc(2 * 4096) }), 0x07, 0x27, 0x02);
});

test('ORWRITE(16): medium OR Data-Out; 0 blocks GOOD; ORPROTECT refused; range checked', async (t) => {
  const f = fixture();
  good(t, await f.run(cdb10(0x2a, 7, 2), { data: Buffer.alloc(2 * BS, 0x0f) }));
  good(t, await f.run(cdb16(0x8b, 7, 2, 0x08), { data: Buffer.alloc(2 * BS, 0x30) }));
  t.true((await f.run(cdb10(0x28, 7, 2))).dataIn!.equals(Buffer.alloc(2 * BS, 0x3f)));
  good(t, await f.run(cdb16(0x8b, 0, 0)));
  sense(t, await f.run(cdb16(0x8b, BLOCKS + 1, 0)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdb16(0x8b, BLOCKS - 1, 2), { data: Buffer.alloc(2 * BS) }), ILLEGAL, 0x21, 0);
  for (let p = 1; p < 8; p++) {
    const r = await f.run(cdb16(0x8b, 0, 1, p << 5), { data: Buffer.alloc(BS) });
    sense(t, r, ILLEGAL, 0x24, 0);
    t.is(fieldPointer(r)?.[1], 1);
  }
});

test('READ DEFECT DATA(10)/(12): empty lists in the format asked for, PLISTV/GLISTV as requested', async (t) => {
  const f = fixture();
  let r = await f.run([0x37, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 32, 0]);
  good(t, r);
  t.deepEqual([...r.dataIn!], [0, 0x1d, 0, 0]);
  r = await f.run([0xb7, 0x08 | 0x03, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
  good(t, r);
  t.deepEqual([...r.dataIn!], [0, 0x0b, 0, 0, 0, 0, 0, 0]);
  r = await f.run([0xb7, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0]);
  t.is(r.dataIn!.length, 3);
  r = await f.run([0x37, 0, 0x06, 0, 0, 0, 0, 0, 32, 0]); // vendor-specific format: not ours
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 2, 2]);
  sense(t, await f.run([0x37, 0, 0x20, 0, 0, 0, 0, 0, 32, 0]), ILLEGAL, 0x24, 0); // reserved bit
});

test('physical block: LBPPBE in READ CAPACITY(16) and the granularities in Block Limits agree', async (t) => {
  const store = new MemoryBackstore({ sizeBytes: BLOCKS * BS });
  Object.assign(store, { physicalBlockSize: 4096 });
  const lu = new LogicalUnit(store, testIdentity());
  const disp = new ScsiDispatcher(new Map([[0, lu]]));
  const run = (cdb: Buffer) =>
    disp.execute({
      lun: 0,
      cdb,
      expectedLength: 0,
      readFlag: true,
      writeFlag: false,
      dataOut: [],
      nexus: 'n',
    });
  const rc = Buffer.alloc(16);
  rc[0] = 0x9e;
  rc[1] = 0x10;
  rc[13] = 32;
  const cap = (await run(rc)).dataIn!;
  t.is(cap[13] & 0x0f, 3, 'LBPPBE: 8 logical blocks per physical block');
  t.is(cap.readUInt16BE(14) & 0x3fff, 0, 'LOWEST ALIGNED LBA');
  const bl = (await run(Buffer.from([0x12, 1, 0xb0, 0, 64, 0]))).dataIn!;
  t.is(bl.readUInt16BE(6), 8, 'OPTIMAL TRANSFER LENGTH GRANULARITY');
  t.is(bl.readUInt32BE(28), 8, 'OPTIMAL UNMAP GRANULARITY');
  t.is(bl.readUInt32BE(32), 0x80000000, 'UGAVALID, alignment 0');
});
