import test from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  ENXIO,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  IOV_MAX,
  Ring,
  dup,
  lseekData,
  lseekHole,
} from '../src/native';

const nativeModule = path.join(__dirname, '..', 'src', 'native', 'index.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-uring-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
/** How long a child process may take before it counts as hung: generous, for a loaded machine. */
const CHILD_BOUND = 60_000;

let fileNo = 0;
function openTemp(size = 0): { fd: number; file: string } {
  const file = path.join(tmp, `f${fileNo++}`);
  const fd = fs.openSync(file, 'w+');
  if (size > 0) fs.ftruncateSync(fd, size);
  return { fd, file };
}

function randInt(lo: number, hi: number): number {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

/** Cut `total` bytes into 1..5 buffers of random lengths. */
function pieces(total: number): Buffer[] {
  const count = Math.min(total, randInt(1, 5));
  const cuts = new Set<number>();
  while (cuts.size < count - 1) cuts.add(randInt(1, total - 1));
  const bounds = [0, ...[...cuts].sort((a, b) => a - b), total];
  return bounds.slice(1).map((end, i) => Buffer.alloc(end - bounds[i]));
}

test.serial('many vectored writes then reads in flight at once, byte for byte', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  const ops = Array.from({ length: 48 }, (_, i) => {
    const size = i === 0 ? 512 : i === 1 ? 1 << 20 : randInt(512, 1 << 20);
    return { offset: i * (2 << 20) + randInt(0, 1 << 20), data: randomBytes(size) };
  });
  const before = ring.stats();
  const written = await Promise.all(
    ops.map(({ offset, data }) => {
      const bufs = pieces(data.length);
      let at = 0;
      for (const b of bufs) at += data.copy(b, 0, at, at + b.length);
      return ring.writevAsync(fd, bufs, offset);
    }),
  );
  const mid = ring.stats();
  t.deepEqual(
    written,
    ops.map((o) => o.data.length),
  );
  t.true(
    mid.submitCalls - before.submitCalls < ops.length,
    `batched submits (${mid.submitCalls - before.submitCalls})`,
  );

  const reads = ops.map(({ offset, data }) => ({ offset, data, bufs: pieces(data.length) }));
  const got = await Promise.all(reads.map((r) => ring.readvAsync(fd, r.bufs, r.offset)));
  t.deepEqual(
    got,
    ops.map((o) => o.data.length),
  );
  for (const r of reads) t.true(Buffer.concat(r.bufs).equals(r.data), `data at ${r.offset}`);
  // Cross-check through the ordinary fs path.
  const probe = Buffer.alloc(ops[5].data.length);
  fs.readSync(fd, probe, 0, probe.length, ops[5].offset);
  t.true(probe.equals(ops[5].data));
  fs.closeSync(fd);
  t.is(ring.inflight, 0);
  t.false(ring.stats().refed, 'an idle ring does not keep the loop alive');
});

test.serial('callback API: single buffers, FUA writes, results in bytes', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  const data = randomBytes(8192);
  const res = await new Promise<number>((resolve) => ring.write(fd, data, 4096, true, resolve));
  t.is(res, 8192);
  const back = Buffer.alloc(8192);
  t.is(await new Promise<number>((resolve) => ring.read(fd, back, 4096, resolve)), 8192);
  t.true(back.equals(data));
  fs.closeSync(fd);
});

test.serial('short file: reads stop at end of file', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  fs.writeSync(fd, Buffer.alloc(1000, 7), 0, 1000, 0);
  const a = Buffer.alloc(600);
  const b = Buffer.alloc(600);
  t.is(await ring.readvAsync(fd, [a, b], 500), 500);
  t.true(a.subarray(0, 500).equals(Buffer.alloc(500, 7)));
  t.is(await ring.readvAsync(fd, [Buffer.alloc(10)], 1000), 0);
  t.is(await ring.readvAsync(fd, [Buffer.alloc(10)], 5000), 0);
  t.is(await ring.readvAsync(fd, [], 0), 0, 'no buffers: nothing to do');
  fs.closeSync(fd);
});

test.serial('fdatasync and fsync complete', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  await ring.writevAsync(fd, [randomBytes(65536)], 0);
  await t.notThrowsAsync(ring.fdatasyncAsync(fd));
  t.is(await new Promise<number>((resolve) => ring.fsync(fd, resolve)), 0);
  fs.closeSync(fd);
});

test.serial('punch hole: reads return zeros and the allocated blocks drop', async (t) => {
  const ring = Ring.forThisThread();
  const { fd, file } = openTemp();
  const data = randomBytes(4 << 20);
  t.is(await ring.writevAsync(fd, [data], 0), data.length);
  await ring.fdatasyncAsync(fd);
  const before = fs.statSync(file).blocks;
  await ring.fallocateAsync(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 2 << 20);
  const after = fs.statSync(file);
  t.is(after.size, data.length, 'KEEP_SIZE');
  t.true(before - after.blocks >= (2 << 20) / 512 - 16, `blocks ${before} -> ${after.blocks}`);
  const back = Buffer.alloc(data.length);
  await ring.readvAsync(fd, [back], 0);
  t.true(back.subarray(1 << 20, 3 << 20).equals(Buffer.alloc(2 << 20)));
  t.true(back.subarray(0, 1 << 20).equals(data.subarray(0, 1 << 20)));
  t.true(back.subarray(3 << 20).equals(data.subarray(3 << 20)));
  fs.closeSync(fd);
});

test.serial('errors come back as -errno / rejected Errors with a code, and the ring goes on', async (t) => {
  const ring = Ring.forThisThread();
  const closed = dup(1); // a descriptor number that is surely free once closed
  fs.closeSync(closed);
  const err = await t.throwsAsync(ring.readvAsync(closed, [Buffer.alloc(16)], 0));
  t.is((err as NodeJS.ErrnoException).code, 'EBADF');
  t.is((err as NodeJS.ErrnoException).errno, -9);
  t.is(await new Promise<number>((resolve) => ring.write(-1, Buffer.alloc(1), 0, false, resolve)), -9);
  const ro = openTemp(4096);
  const rofd = fs.openSync(ro.file, 'r');
  await t.throwsAsync(ring.writevAsync(rofd, [Buffer.alloc(512)], 0), { code: 'EBADF' });
  await t.throwsAsync(ring.fallocateAsync(ro.fd, 0x7fff, 0, 4096), { code: 'ENOTSUP' });
  t.throws(() => ring.readv(ro.fd, [Buffer.alloc(1)], -1, () => undefined), { instanceOf: RangeError });
  t.throws(() => ring.readv(ro.fd, [Buffer.alloc(1)], 2 ** 53, () => undefined), { instanceOf: RangeError });
  t.throws(() => ring.readv(ro.fd, ['x' as unknown as Buffer], 0, () => undefined), {
    instanceOf: TypeError,
  });
  t.is(ring.inflight, 0, 'a refused op leaves no slot behind');
  t.is(await ring.readvAsync(ro.fd, [Buffer.alloc(16)], 0), 16, 'still working');
  fs.closeSync(rofd);
  fs.closeSync(ro.fd);
});

test.serial('large offsets pass through intact', async (t) => {
  const ring = Ring.forThisThread();
  const { fd, file } = openTemp();
  const offset = 2 ** 42 + 4096; // 4 TiB, sparse
  const data = randomBytes(512);
  t.is(await ring.writevAsync(fd, [data], offset), 512);
  t.is(fs.statSync(file).size, offset + 512);
  const back = Buffer.alloc(512);
  t.is(await ring.readvAsync(fd, [back], offset), 512);
  t.true(back.equals(data));
  t.is(await ring.readvAsync(fd, [back], 2 ** 53 - 4096), 0, 'beyond end of file');
  fs.closeSync(fd);
});

test.serial('more than IOV_MAX buffers are split and summed', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  const n = IOV_MAX * 2 + 500;
  const bufs = Array.from({ length: n }, () => randomBytes(512));
  t.is(await ring.writevAsync(fd, bufs, 512), n * 512);
  const back = Array.from({ length: n }, () => Buffer.alloc(512));
  t.is(await ring.readvAsync(fd, back, 512), n * 512);
  t.true(Buffer.concat(back).equals(Buffer.concat(bufs)));
  // Reading past the end: the total stops at end of file, as one preadv would.
  const tail = Array.from({ length: n }, () => Buffer.alloc(512));
  t.is(await ring.readvAsync(fd, tail, 512 * (IOV_MAX + 1)), (n - IOV_MAX) * 512);
  fs.closeSync(fd);
});

test.serial('more ops in one turn than the submission queue holds', async (t) => {
  const ring = Ring.forThisThread();
  const { fd } = openTemp();
  const count = ring.stats().sqEntries * 3 + 7;
  const res = await Promise.all(
    Array.from({ length: count }, (_, i) => ring.writevAsync(fd, [Buffer.alloc(512, i)], i * 512)),
  );
  t.true(res.every((r) => r === 512));
  t.is((await Promise.all(Array.from({ length: count }, () => ring.nopAsync()))).length, count);
  const back = Buffer.alloc(512);
  await ring.readvAsync(fd, [back], 300 * 512);
  t.true(back.equals(Buffer.alloc(512, 300 & 0xff)));
  fs.closeSync(fd);
});

test.serial(
  'an exception in a callback surfaces as uncaught and the rest of the batch still completes',
  (t) => {
    const script = `
    const { Ring } = require(${JSON.stringify(nativeModule)});
    const ring = Ring.forThisThread();
    let seen = 0;
    process.on('uncaughtException', (e) => { console.log('uncaught ' + e.message); });
    ring.nop(() => { seen++; throw new Error('boom'); });
    ring.nop(() => { seen++; });
    // At exit, not after a fixed delay: ops in flight keep the loop alive, however slow the machine.
    process.on('exit', () => console.log('seen ' + seen + ' inflight ' + ring.inflight));
  `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: CHILD_BOUND });
    t.is(r.error, undefined, String(r.error));
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /uncaught boom/);
    t.regex(r.stdout, /seen 2 inflight 0/);
  },
);

function workerRoundTrip(file: string): Promise<{ ok: boolean; impl: string }> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const fs = require('node:fs');
    const { Ring } = require(workerData.mod);
    (async () => {
      const ring = Ring.forThisThread();
      const fd = fs.openSync(workerData.file, 'w+');
      const data = require('node:crypto').randomBytes(256 * 1024);
      const writes = [];
      for (let i = 0; i < 16; i++) writes.push(ring.writevAsync(fd, [data.subarray(i * 16384, (i + 1) * 16384)], i * 16384));
      await Promise.all(writes);
      await ring.fdatasyncAsync(fd);
      const back = Buffer.alloc(data.length);
      await ring.readvAsync(fd, [back.subarray(0, 1000), back.subarray(1000)], 0);
      fs.closeSync(fd);
      parentPort.postMessage({ ok: back.equals(data), impl: typeof ring.stats().sqEntries });
    })().catch((e) => parentPort.postMessage({ ok: false, impl: String(e) }));
  `;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { mod: nativeModule, file } });
    let msg: { ok: boolean; impl: string } | undefined;
    w.on('message', (m) => (msg = m));
    w.on('error', reject);
    // The worker exits on its own once idle: an idle ring must not keep its loop alive.
    w.on('exit', (code) => (code === 0 && msg ? resolve(msg) : reject(new Error(`worker exit ${code}`))));
  });
}

test.serial('a ring per worker thread: two workers at once, each exiting by itself when idle', async (t) => {
  const main = Ring.forThisThread();
  const [a, b] = await Promise.all([
    workerRoundTrip(path.join(tmp, 'wa')),
    workerRoundTrip(path.join(tmp, 'wb')),
  ]);
  t.deepEqual(a, { ok: true, impl: 'number' });
  t.deepEqual(b, { ok: true, impl: 'number' });
  t.is(await main.nopAsync(), 0, 'main thread ring unaffected');
});

test.serial('terminating a worker with ops in flight does not disturb the process', async (t) => {
  const code = `
    const { parentPort } = require('node:worker_threads');
    const fs = require('node:fs');
    const { Ring } = require(${JSON.stringify(nativeModule)});
    const ring = Ring.forThisThread();
    const fd = fs.openSync(${JSON.stringify(path.join(tmp, 'wt'))}, 'w+');
    const buf = Buffer.alloc(1 << 20, 1);
    const loop = () => ring.write(fd, buf, 0, false, loop);
    for (let i = 0; i < 8; i++) loop();
    parentPort.postMessage('busy');
  `;
  const w = new Worker(code, { eval: true });
  await new Promise((resolve) => w.once('message', resolve));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.is(await w.terminate(), 1);
  t.is(await Ring.forThisThread().nopAsync(), 0);
});

test.serial('a process with an idle ring exits by itself, also after closing and reopening', (t) => {
  const script = `
    const { Ring } = require(${JSON.stringify(nativeModule)});
    const fs = require('node:fs');
    (async () => {
      let ring = Ring.forThisThread();
      const fd = fs.openSync(${JSON.stringify(path.join(tmp, 'exit'))}, 'w+');
      await ring.writevAsync(fd, [Buffer.alloc(4096, 1)], 0);
      await ring.close();
      ring = Ring.forThisThread();
      const b = Buffer.alloc(4096);
      await ring.readvAsync(fd, [b], 0);
      console.log('read ' + b[4095]);
      ring.nop(() => console.log('last op done'));
    })();
  `;
  // No speed claim: the bound only tells "exits by itself" from "hangs", and is generous for a loaded machine.
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: CHILD_BOUND });
  t.is(r.error, undefined, `the process did not exit by itself within ${CHILD_BOUND} ms: ${String(r.error)}`);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /read 1\nlast op done/);
});

test('lseekData / lseekHole walk a sparse file; -ENXIO past the data or the end; -errno otherwise', (t) => {
  const { fd } = openTemp(1 << 20);
  try {
    t.is(lseekData(fd, 0), ENXIO, 'all hole: no data');
    t.is(lseekHole(fd, 0), 0);
    fs.writeSync(fd, Buffer.alloc(8192, 1), 0, 8192, 65536);
    t.is(lseekData(fd, 0), 65536);
    t.is(lseekData(fd, 65536 + 100), 65536 + 100, 'inside data: the offset itself');
    t.is(lseekHole(fd, 65536), 65536 + 8192);
    t.is(lseekData(fd, 65536 + 8192), ENXIO);
    t.is(lseekHole(fd, (1 << 20) - 1), (1 << 20) - 1);
    t.is(lseekHole(fd, 1 << 20), ENXIO, 'at the end of file');
    t.is(lseekData(fd, 2 ** 40), ENXIO, 'offsets past 4 GiB pass through');
    t.is(lseekData(-1, 0), -9, 'EBADF as -errno, not a throw');
    t.throws(() => lseekData(fd, -1), { instanceOf: RangeError });
  } finally {
    fs.closeSync(fd);
  }
});
