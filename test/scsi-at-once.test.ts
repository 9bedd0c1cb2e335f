/**
 * Commands that finish at once. ScsiDispatcher.execute gives the result itself, not a promise, when the command
 * needed no wait: a READ or WRITE the backstore did on the spot (Backstore.readNow / writeNow: a copy through
 * the mapping of a tmpfs file, or the page cache), and a refusal found before any I/O. A backstore without those
 * methods, or a read that must wait for the device, gives a promise as before. Both carry the same answers.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openFileBackstore } from '../src/backstore/file';
import { MemoryBackstore } from '../src/backstore/memory';
import { NullBackstore } from '../src/backstore/null';
import type { Backstore } from '../src/backstore/types';
import { ScsiDispatcher } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import type { ScsiResult } from '../src/scsi/types';
import { cdb10, testIdentity } from './scsi-helpers';

const SIZE = 8 << 20;
const shm = fs.mkdtempSync('/dev/shm/nodetgt-at-once-');
const disk = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-at-once-'));
test.after.always(() => {
  fs.rmSync(shm, { recursive: true, force: true });
  fs.rmSync(disk, { recursive: true, force: true });
});

function dispatcher(store: Backstore): ScsiDispatcher {
  return new ScsiDispatcher(new Map([[0, new LogicalUnit(store, testIdentity(undefined, 0))]]));
}

function exec(d: ScsiDispatcher, cdb: Buffer, data?: Buffer): ScsiResult | Promise<ScsiResult> {
  return d.execute({
    lun: 0,
    cdb,
    expectedLength: data?.length ?? 4096,
    readFlag: !data,
    writeFlag: !!data,
    dataOut: data ? [data] : [],
    nexus: 'n',
  });
}

test('a tmpfs file LU: WRITE and READ are answered at once, with the bytes; a refusal too', async (t) => {
  // The first 2 MiB written (a chunk with no hole: reads of it go through the mapping), the rest a hole.
  const file = path.join(shm, 'lu.img');
  fs.writeFileSync(file, randomBytes(2 << 20));
  fs.truncateSync(file, SIZE);
  const store = await openFileBackstore({ path: file, size: SIZE, blockSize: 512 });
  try {
    const d = dispatcher(store);
    const data = randomBytes(4096);
    const w = exec(d, cdb10(0x2a, 64, 8), data);
    t.false(w instanceof Promise, 'WRITE(10) answered at once');
    t.is((w as ScsiResult).status, 0);
    const r = exec(d, cdb10(0x28, 64, 8));
    t.false(r instanceof Promise, 'READ(10) answered at once');
    t.is((r as ScsiResult).status, 0);
    t.true((r as ScsiResult).dataIn!.equals(data));
    d.releaseDataIn((r as ScsiResult).dataIn!);
    const past = exec(d, cdb10(0x28, SIZE / 512, 1));
    t.false(past instanceof Promise, 'an LBA out of range is refused at once');
    t.is((past as ScsiResult).status, 0x02);
    t.deepEqual([...(past as ScsiResult).sense!.subarray(12, 14)], [0x21, 0x00], 'LBA OUT OF RANGE');
    t.is(store.mappedWrites, 1, 'the write went through the mapping');
    t.is(store.mappedReads, 1, 'and so did the read');
    // In the hole: preadv2 on the spot (a read through the mapping would allocate the hole's pages).
    const hole = exec(d, cdb10(0x28, (4 << 20) / 512, 8));
    t.false(hole instanceof Promise, 'READ(10) of a hole answered at once');
    t.true((hole as ScsiResult).dataIn!.equals(Buffer.alloc(4096)));
    t.is(store.mappedReads, 1);
  } finally {
    await store.close();
  }
});

test('a file on disk: a READ from the page cache is answered at once', async (t) => {
  const store = await openFileBackstore({ path: path.join(disk, 'lu.img'), size: SIZE, blockSize: 512 });
  try {
    const d = dispatcher(store);
    const data = randomBytes(4096);
    const w = exec(d, cdb10(0x2a, 8, 8), data);
    t.is((await w).status, 0);
    const r = exec(d, cdb10(0x28, 8, 8));
    // Just written, so in the page cache: preadv2 takes it on the spot.
    t.false(r instanceof Promise, 'READ(10) of cached data answered at once');
    t.true((await r).dataIn!.equals(data));
  } finally {
    await store.close();
  }
});

test('backstores without readNow/writeNow answer through a promise, with the same bytes', async (t) => {
  const d = dispatcher(new MemoryBackstore({ sizeBytes: SIZE }));
  const data = randomBytes(4096);
  const w = exec(d, cdb10(0x2a, 1, 8), data);
  t.true(w instanceof Promise);
  t.is((await w).status, 0);
  const r = exec(d, cdb10(0x28, 1, 8));
  t.true(r instanceof Promise);
  t.true((await r).dataIn!.equals(data));
  // The null backstore has them: zeros, at once.
  const n = exec(dispatcher(new NullBackstore({ size: SIZE })), cdb10(0x28, 1, 8));
  t.false(n instanceof Promise);
  t.true((n as ScsiResult).dataIn!.equals(Buffer.alloc(4096)));
});
