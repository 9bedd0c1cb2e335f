/**
 * The WRITE ATOMIC redo journal (src/backstore/atomic-journal.ts) on its own: record encoding, what counts as
 * torn, and recovery onto a backing file (applied once, replay idempotent, torn records leave the old data).
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  AtomicJournal,
  HEADER_BYTES,
  decodeJournal,
  encodeHeader,
  halfOf,
  laneJournalPath,
  recoverLuJournals,
} from '../src/backstore/atomic-journal';
import { pattern } from './scsi-helpers';

const BS = 512;
const BLOCKS = 64;

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-journal-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function record(seq: bigint, lba: number, data: Buffer): Buffer {
  return Buffer.concat([encodeHeader({ seq, lba, blocks: data.length / BS, blockSize: BS }, [data]), data]);
}

/** A backing file of BLOCKS blocks, each block filled with `fill`. */
function backing(
  dir: string,
  fill: number,
): { file: string; target: { backing: string; blockSize: number; numBlocks: number } } {
  const file = path.join(dir, 'disk.img');
  fs.writeFileSync(file, Buffer.alloc(BLOCKS * BS, fill));
  return { file, target: { backing: file, blockSize: BS, numBlocks: BLOCKS } };
}

test('a record decodes to what was encoded, over data split in slices; a zeroed header is idle', (t) => {
  const data = pattern(3 * BS, 7);
  const header = encodeHeader({ seq: 42n, lba: 9, blocks: 3, blockSize: BS }, [
    data.subarray(0, 100),
    data.subarray(100),
  ]);
  t.is(header.length, HEADER_BYTES);
  const d = decodeJournal(Buffer.concat([header, data, Buffer.alloc(1000, 0xee)])); // trailing bytes of an older, longer record
  if (d.kind !== 'complete') return t.fail(d.kind);
  t.deepEqual(d.record, { seq: 42n, lba: 9, blocks: 3, blockSize: BS });
  t.true(d.data.equals(data));
  t.is(decodeJournal(Buffer.concat([Buffer.alloc(HEADER_BYTES), data])).kind, 'idle');
  t.is(decodeJournal(Buffer.alloc(0)).kind, 'idle');
});

test('torn records: short header, short data, a flipped bit anywhere, a new header over an older record', (t) => {
  const data = pattern(2 * BS, 3);
  const full = record(5n, 0, data);
  const why = (b: Buffer) => {
    const d = decodeJournal(b);
    return d.kind === 'torn' ? d.why : d.kind;
  };
  t.is(why(full.subarray(0, 20)), 'short header');
  t.is(why(full.subarray(0, full.length - 1)), 'short data');
  for (const at of [3, 8, 17, 25, 33, 40, HEADER_BYTES, full.length - 1]) {
    const bad = Buffer.from(full);
    bad[at] ^= 0x10;
    t.not(decodeJournal(bad).kind, 'complete', `bit flipped at ${at}`);
  }
  // The header of a new record written, its data not yet: the older record's data fails the new CRC.
  const older = record(4n, 0, pattern(2 * BS, 9));
  const mixed = Buffer.concat([full.subarray(0, HEADER_BYTES), older.subarray(HEADER_BYTES)]);
  t.is(why(mixed), 'CRC mismatch');
});

test('recovery applies a complete record durably, clears it, and a second pass (replay) changes nothing', (t) => {
  const dir = tmp(t);
  const { file, target } = backing(dir, 0x11);
  const journals = path.join(dir, 'atomic');
  fs.mkdirSync(journals);
  const data = pattern(4 * BS, 5);
  fs.writeFileSync(laneJournalPath(journals, 3), record(77n, 10, data));
  const actions = recoverLuJournals(journals, target);
  t.is(actions.length, 1);
  t.is(actions[0].outcome, 'applied');
  t.deepEqual(actions[0].record, { seq: 77n, lba: 10, blocks: 4, blockSize: BS });
  const after = fs.readFileSync(file);
  t.true(after.subarray(10 * BS, 14 * BS).equals(data));
  t.true(after.subarray(0, 10 * BS).equals(Buffer.alloc(10 * BS, 0x11)), 'blocks before untouched');
  t.true(after.subarray(14 * BS).equals(Buffer.alloc((BLOCKS - 14) * BS, 0x11)), 'blocks after untouched');
  t.is(decodeJournal(fs.readFileSync(laneJournalPath(journals, 3))).kind, 'idle');
  t.deepEqual(recoverLuJournals(journals, target), []);
  t.true(fs.readFileSync(file).equals(after));
  // Replaying the same record again (a crash after the in-place write, before the clear) gives the same blocks.
  fs.writeFileSync(laneJournalPath(journals, 3), record(78n, 10, data));
  t.is(recoverLuJournals(journals, target)[0].outcome, 'applied');
  t.true(fs.readFileSync(file).equals(after));
});

test('recovery discards a torn record and leaves the old data; every lane file is scanned, only the one asked for on a worker death', (t) => {
  const dir = tmp(t);
  const { file, target } = backing(dir, 0x22);
  const journals = path.join(dir, 'atomic');
  fs.mkdirSync(journals);
  const full = record(1n, 0, pattern(8 * BS, 1));
  fs.writeFileSync(laneJournalPath(journals, 1), full.subarray(0, HEADER_BYTES + 3 * BS)); // torn: half the data
  fs.writeFileSync(laneJournalPath(journals, 2), record(2n, 20, pattern(BS, 2)));
  fs.writeFileSync(laneJournalPath(journals, 4), record(3n, 30, pattern(BS, 3)));
  const one = recoverLuJournals(journals, target, 2);
  t.deepEqual(
    one.map((a) => [path.basename(a.file), a.outcome]),
    [['lane-2.journal', 'applied']],
  );
  const all = recoverLuJournals(journals, target);
  t.deepEqual(all.map((a) => [path.basename(a.file), a.outcome, a.why]).sort(), [
    ['lane-1.journal', 'discarded', 'short data'],
    ['lane-4.journal', 'applied', undefined],
  ]);
  const after = fs.readFileSync(file);
  t.true(after.subarray(0, 8 * BS).equals(Buffer.alloc(8 * BS, 0x22)), 'torn record: old data whole');
  t.true(after.subarray(20 * BS, 21 * BS).equals(pattern(BS, 2)));
  t.true(after.subarray(30 * BS, 31 * BS).equals(pattern(BS, 3)));
  t.deepEqual(recoverLuJournals(journals, target), []);
});

test('a complete record that does not fit the LU is refused (not applied, kept)', (t) => {
  const dir = tmp(t);
  const { file, target } = backing(dir, 0x33);
  const journals = path.join(dir, 'atomic');
  fs.mkdirSync(journals);
  fs.writeFileSync(laneJournalPath(journals, 1), record(1n, BLOCKS - 1, pattern(2 * BS, 1)));
  t.throws(() => recoverLuJournals(journals, target), { message: /does not fit this LU/ });
  t.true(fs.readFileSync(file).equals(Buffer.alloc(BLOCKS * BS, 0x33)));
  t.is(decodeJournal(fs.readFileSync(laneJournalPath(journals, 1))).kind, 'complete');
});

test('AtomicJournal: append leaves a complete record, invalidate an idle one; halfOf cuts across slices', async (t) => {
  const dir = tmp(t);
  const j = new AtomicJournal(laneJournalPath(path.join(dir, 'a', 'b'), 1)); // directories made on first use
  const data = [pattern(BS, 1), pattern(2 * BS, 2)];
  const seq = await j.append(5, 3, BS, data);
  const d = decodeJournal(fs.readFileSync(j.file));
  if (d.kind !== 'complete') return t.fail(d.kind);
  t.deepEqual(d.record, { seq, lba: 5, blocks: 3, blockSize: BS });
  t.true(d.data.equals(Buffer.concat(data)));
  t.true((await j.append(6, 1, BS, [data[0]])) > seq, 'sequence numbers increase');
  await j.invalidate();
  t.is(decodeJournal(fs.readFileSync(j.file)).kind, 'idle');
  await j.close();
  t.deepEqual(
    halfOf(data).map((b) => b.length),
    [BS, BS / 2],
  );
});
