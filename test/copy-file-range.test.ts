/**
 * The addon's copyFileRange (native/copy.cc): whole and partial ranges, offsets past 4 GiB, errors as Errors
 * with a code, the end of the source file, holes kept as holes (sparse), and FileBackstore.copyFrom.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openFileBackstore } from '../src/backstore/file';
import { copyFileRange, lseekData, ENXIO } from '../src/native';
import { pattern } from './scsi-helpers';

/** A scratch directory removed when the test ends. */
function tmp(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-cfr-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('copies a range in the kernel, at offsets past 4 GiB, leaving the rest alone', async (t) => {
  const dir = tmp(t);
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  const big = 6 * 1024 ** 3;
  const data = pattern(3 * 1024 * 1024 + 512, 3);
  const fa = fs.openSync(a, 'w+');
  const fb = fs.openSync(b, 'w+');
  fs.ftruncateSync(fa, big);
  fs.ftruncateSync(fb, big);
  fs.writeSync(fa, data, 0, data.length, 5 * 1024 ** 3);
  const r = await copyFileRange(fa, 5 * 1024 ** 3, fb, 4 * 1024 ** 3 + 4096, data.length, {
    noFallback: true,
  });
  t.deepEqual(r, { bytes: data.length, fellBack: false });
  const back = Buffer.alloc(data.length + 1024);
  fs.readSync(fb, back, 0, back.length, 4 * 1024 ** 3 + 4096 - 512);
  t.true(back.subarray(0, 512).equals(Buffer.alloc(512)));
  t.true(back.subarray(512, 512 + data.length).equals(data));
  t.true(back.subarray(512 + data.length).equals(Buffer.alloc(512)));
  // Short only where the source ends.
  const end = await copyFileRange(fa, big - 1024, fb, 0, 4096);
  t.is(end.bytes, 1024);
  fs.closeSync(fa);
  fs.closeSync(fb);
});

test('errors reject with a code; bad arguments throw', async (t) => {
  const dir = tmp(t);
  const fa = fs.openSync(path.join(dir, 'a'), 'w+');
  fs.ftruncateSync(fa, 8192);
  const ro = fs.openSync(path.join(dir, 'a'), 'r');
  const e = await t.throwsAsync(copyFileRange(fa, 0, 987654, 0, 512));
  t.is((e as NodeJS.ErrnoException).code, 'EBADF');
  const w = await t.throwsAsync(copyFileRange(fa, 0, ro, 4096, 512, { noFallback: true }));
  t.is((w as NodeJS.ErrnoException).code, 'EBADF');
  // Overlap within one file: the kernel refuses (callers copy through memory).
  const o = await t.throwsAsync(copyFileRange(fa, 0, fa, 256, 1024, { noFallback: true }));
  t.is((o as NodeJS.ErrnoException).code, 'EINVAL');
  t.throws(() => void copyFileRange(fa, -1, fa, 0, 1), { instanceOf: RangeError });
  fs.closeSync(fa);
  fs.closeSync(ro);
});

test('sparse: holes of the source are punched in the destination, data is copied', async (t) => {
  const dir = tmp(t);
  const MiB = 1024 * 1024;
  const fa = fs.openSync(path.join(dir, 'a'), 'w+');
  const fb = fs.openSync(path.join(dir, 'b'), 'w+');
  fs.ftruncateSync(fa, 8 * MiB);
  fs.writeSync(fa, pattern(MiB, 9), 0, MiB, 6 * MiB);
  fs.writeSync(fb, Buffer.alloc(8 * MiB, 0xaa), 0, 8 * MiB, 0); // fully allocated, not zero
  const r = await copyFileRange(fa, 0, fb, 0, 8 * MiB, { sparse: true });
  t.is(r.bytes, 8 * MiB);
  t.is(lseekData(fb, 0), 6 * MiB, 'the first 6 MiB are a hole now');
  const back = Buffer.alloc(8 * MiB);
  fs.readSync(fb, back, 0, back.length, 0);
  t.true(back.subarray(0, 6 * MiB).equals(Buffer.alloc(6 * MiB)));
  t.true(back.subarray(6 * MiB, 7 * MiB).equals(pattern(MiB, 9)));
  t.true(back.subarray(7 * MiB).equals(Buffer.alloc(MiB)));
  t.not(lseekData(fb, 7 * MiB), 7 * MiB, 'the tail is a hole too');
  t.true(lseekData(fb, 7 * MiB) === ENXIO || lseekData(fb, 7 * MiB) >= 8 * MiB);
  fs.closeSync(fa);
  fs.closeSync(fb);
});

test('FileBackstore.copyFrom between files, with O_DIRECT too, and within one file when ranges overlap', async (t) => {
  const dir = tmp(t);
  for (const direct of [false, true]) {
    const a = await openFileBackstore({
      path: path.join(dir, `a${direct}`),
      size: 4 * 1024 * 1024,
      direct,
    });
    const b = await openFileBackstore({
      path: path.join(dir, `b${direct}`),
      size: 4 * 1024 * 1024,
      direct,
    });
    const data = pattern(64 * 1024, 5);
    await a.write(8192, [data], false);
    await b.copyFrom(a, 8192, 512 * 3, data.length);
    const back = Buffer.alloc(data.length);
    await b.read(512 * 3, back);
    t.true(back.equals(data), `direct=${direct}`);
    await a.copyFrom(a, 8192, 8192 + 4096, data.length); // overlapping, forward
    await a.read(8192 + 4096, back);
    t.true(back.equals(data), `overlap direct=${direct}`);
    await t.throwsAsync(b.copyFrom(a, 4 * 1024 * 1024 - 512, 0, 1024), { instanceOf: RangeError });
    await a.close();
    await b.close();
  }
});
