/**
 * WRITE ATOMIC(16) at the SCSI layer (src/scsi/atomic-write.ts) over the memory backstore with a journal
 * directory: what is written, the Block Limits ATOMIC fields, the refusals, and a journal that cannot be
 * written (the command fails and nothing is written in place).
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeJournal, laneJournalPath } from '../src/backstore/atomic-journal';
import { MemoryBackstore } from '../src/backstore/memory';
import { NullBackstore } from '../src/backstore/null';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import {
  ILLEGAL,
  cdb10,
  fieldPointer,
  fixture,
  good,
  pattern,
  sense,
  testIdentity,
  cdbAtomic,
} from './scsi-helpers';

const BS = 512;
/** More blocks than MAXIMUM ATOMIC TRANSFER LENGTH (2048), so that the limit is reached before the end. */
const BLOCKS = 4096;

/** A memory store reporting 4 KiB physical blocks, as a file on most file systems does. */
class PhysicalStore extends MemoryBackstore {
  readonly physicalBlockSize = 4096;
}

function journalDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-wa-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'atomic', 'serial');
}

function atomicFixture(t: { teardown(fn: () => void): void }, readOnly = false) {
  const dir = journalDir(t);
  const store = new PhysicalStore({ sizeBytes: BLOCKS * BS, readOnly });
  const lu = new LogicalUnit(store, testIdentity(), { atomicJournalDir: dir });
  const disp = new ScsiDispatcher(new Map([[0, lu]]));
  const run = (cdb: Buffer, data?: Buffer) =>
    disp.execute({
      lun: 0,
      cdb,
      expectedLength: data?.length ?? 0,
      readFlag: data === undefined,
      writeFlag: data !== undefined,
      dataOut: data ? [data.subarray(0, 1000), data.subarray(1000)] : [],
      nexus: 'iqn.initiator,isid=1,tpgt=1',
    });
  return { dir, store, lu, run };
}

test('writes the blocks, FUA or not, and leaves the lane journal idle; Block Limits reports the ATOMIC fields', async (t) => {
  const f = atomicFixture(t);
  const data = pattern(16 * BS, 4);
  good(t, await f.run(cdbAtomic(8, 16), data));
  good(t, await f.run(cdbAtomic(BLOCKS - 8, 8, 0x18), data.subarray(0, 8 * BS))); // DPO + FUA, last blocks
  t.true((await f.run(cdb10(0x28, 8, 16))).dataIn!.equals(data));
  t.true((await f.run(cdb10(0x28, BLOCKS - 8, 8))).dataIn!.equals(data.subarray(0, 8 * BS)));
  t.is(decodeJournal(fs.readFileSync(laneJournalPath(f.dir, f.lu.shared.lane))).kind, 'idle');
  good(t, await f.run(cdbAtomic(0, 0))); // no blocks: not an error
  const vpd = (await f.run(Buffer.from([0x12, 1, 0xb0, 0, 64, 0]))).dataIn!;
  t.is(vpd.readUInt16BE(2), 0x3c);
  t.is(vpd.readUInt32BE(44), 2048, 'MAXIMUM ATOMIC TRANSFER LENGTH: 1 MiB of 512-byte blocks');
  t.is(vpd.readUInt32BE(48), 8, 'ATOMIC ALIGNMENT: the physical block');
  t.is(vpd.readUInt32BE(52), 8, 'ATOMIC TRANSFER LENGTH GRANULARITY');
  t.is(vpd.readUInt32BE(56), 0, 'no atomic boundaries');
  t.is(vpd.readUInt32BE(60), 0);
  t.true(vpd.readUInt32BE(44) <= vpd.readUInt32BE(8), 'within MAXIMUM TRANSFER LENGTH');
});

test('refusals: beyond the end, over the maximum, misaligned, partial granule, ATOMIC BOUNDARY, WRPROTECT, short Data-Out, write protect', async (t) => {
  const f = atomicFixture(t);
  sense(t, await f.run(cdbAtomic(BLOCKS - 8, 16), pattern(16 * BS)), ILLEGAL, 0x21, 0);
  sense(t, await f.run(cdbAtomic(BLOCKS + 8, 0)), ILLEGAL, 0x21, 0);
  let r = await f.run(cdbAtomic(0, 2056), pattern(2056 * BS));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 12, 7]);
  r = await f.run(cdbAtomic(1, 8), pattern(8 * BS));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 2, 7]);
  r = await f.run(cdbAtomic(0, 1), pattern(BS));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r), [true, 12, 7]);
  r = await f.run(cdbAtomic(0, 8, 0, 0x100), pattern(8 * BS));
  sense(t, r, ILLEGAL, 0x24, 0);
  t.deepEqual(fieldPointer(r)?.slice(0, 2), [true, 10]);
  sense(t, await f.run(cdbAtomic(0, 8, 0x20), pattern(8 * BS)), ILLEGAL, 0x24, 0);
  sense(t, await f.run(cdbAtomic(0, 16), pattern(8 * BS)), ILLEGAL, 0x24, 0);
  t.true(
    (await f.run(cdb10(0x28, 0, BLOCKS))).dataIn!.equals(Buffer.alloc(BLOCKS * BS)),
    'nothing was written',
  );
  const ro = atomicFixture(t, true);
  sense(t, await ro.run(cdbAtomic(0, 8), pattern(8 * BS)), 0x07, 0x27, 0);
});

test('a journal that cannot be written: MEDIUM ERROR and nothing written in place', async (t) => {
  const f = atomicFixture(t);
  fs.mkdirSync(path.dirname(f.dir), { recursive: true });
  fs.writeFileSync(f.dir, 'not a directory'); // the journal's directory cannot be made
  const r = await f.run(cdbAtomic(0, 8), pattern(8 * BS));
  t.is(r.status, 2);
  t.is(r.sense![2] & 0x0f, 0x03);
  t.true((await f.run(cdb10(0x28, 0, 8))).dataIn!.equals(Buffer.alloc(8 * BS)));
});

test('offered only with a journal, or on the null backstore (which stores nothing)', async (t) => {
  const plain = fixture();
  sense(t, await plain.run(cdbAtomic(0, 1), { data: pattern(BS) }), ILLEGAL, 0x20, 0);
  const vpd = (await plain.run([0x12, 1, 0xb0, 0, 64, 0])).dataIn!;
  t.true(vpd.subarray(44, 64).equals(Buffer.alloc(20)));
  const nul = new LogicalUnit(new NullBackstore({ size: 1024 * BS }), testIdentity());
  t.is(nul.atomicWrites, 'trivial');
  const disp = new ScsiDispatcher(new Map([[0, nul]]));
  const r = await disp.execute({
    lun: 0,
    cdb: cdbAtomic(0, 4),
    expectedLength: 4 * BS,
    readFlag: false,
    writeFlag: true,
    dataOut: [pattern(4 * BS)],
    nexus: 'n',
  });
  t.is(r.status, 0);
});
