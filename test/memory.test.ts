/**
 * Bounded memory on the receive path (issue 12, Memory), against nodetgt as a child process with one worker
 * (its RSS read from /proc, its slab gauges from /metrics):
 * - connections that open, write concurrently and close, round after round, reuse receive slabs: the slab
 *   bytes stay within what the live connections use plus the pool cap, RSS stops growing, and every byte
 *   written reads back intact;
 * - a writer faster than a slow backstore (every write held 400 ms by the test hook) makes the worker stop
 *   reading its socket past backstoreHighWater: the queue stays near the mark instead of the CmdSN window's
 *   worth, and the connection is not dropped: every write completes;
 * - a client that never reads the Data-In of its large READs makes the target stop reading that socket (its
 *   own sends then back up in the client's kernel buffers) while another session goes on;
 * - a write still in the backstore when its connection drops keeps its slab: another connection's traffic,
 *   recycling slabs meanwhile, does not change what the write puts on the medium.
 */
import test from 'ava';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { TEST_TARGET } from './helpers/target';
import { cdb10 as rw10 } from './scsi-helpers';

const MiB = 1024 * 1024;
const BS = 512;

let dir = '';
const children: ChildTarget[] = [];

test.before(() => {
  dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'nodetgt-mem-'));
});

test.after.always(async () => {
  for (const c of children) await c.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function startChild(
  name: string,
  extra: Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<ChildTarget> {
  const child = await startChildTargetWithConfig(
    {
      workers: 1,
      targets: [{ name: TEST_TARGET, luns: [{ lun: 0, path: path.join(dir, `${name}.img`), size: '256M' }] }],
      ...extra,
    },
    { env: { NODETGT_LOG: 'info', ...env } },
  );
  children.push(child);
  return child;
}

function status(c: ChildTarget): { rss: number; hwm: number } {
  const s = fs.readFileSync(`/proc/${c.proc.pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

async function session(c: ChildTarget, over: Record<string, string> = {}): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(c.port);
  const keys = defaultOperationalKeys().map(([k, v]): [string, string] => [k, over[k] ?? v]);
  const r = await ini.login({ targetName: TEST_TARGET, keys });
  if (r.status !== 0) throw new Error(`login failed: 0x${r.status.toString(16)}`);
  return ini;
}

test.serial('connections that come and go reuse slabs; concurrent writes read back intact', async (t) => {
  const cap = 4 * MiB;
  const c = await startChild('churn', {
    readPoolBytes: cap,
    limits: { maxPendingLogins: 64, maxPendingLoginsPerAddress: 64 },
  });
  const sizes = [4096, 65536, 262144, 1048576];
  const rounds = 8;
  const perRound = 24;
  const rss: number[] = [];
  const slabBytes: number[] = [];
  let lbaNext = 0;
  for (let round = 0; round < rounds; round++) {
    const inis = await Promise.all(Array.from({ length: perRound }, () => session(c)));
    // Each connection writes 6 extents of mixed sizes, all at once, then reads each back.
    const extents: Array<{ ini: TestInitiator; lba: number; data: Buffer }> = [];
    for (const ini of inis)
      for (let k = 0; k < 6; k++) {
        const size = sizes[(round + k) % sizes.length]!;
        extents.push({ ini, lba: lbaNext % (200 * 2048), data: crypto.randomBytes(size) });
        lbaNext += size / BS;
      }
    const writes = await Promise.all(
      extents.map((e) =>
        e.ini.scsi(rw10(0x2a, e.lba, e.data.length / BS), { edtl: e.data.length, write: true, data: e.data }),
      ),
    );
    t.true(
      writes.every((w) => w.status === 0),
      `round ${round}: every write GOOD`,
    );
    const reads = await Promise.all(
      extents.map((e) =>
        e.ini.scsi(rw10(0x28, e.lba, e.data.length / BS), { edtl: e.data.length, read: true }),
      ),
    );
    const bad = reads.filter((r, i) => !r.data.equals(extents[i]!.data)).length;
    t.is(bad, 0, `round ${round}: ${bad} extents read back different`);
    const m = await c.metrics();
    t.true(
      m.nodetgt_read_slab_pooled_bytes! <= cap,
      `pooled ${m.nodetgt_read_slab_pooled_bytes} within the cap`,
    );
    for (const ini of inis) ini.close();
    // Closed connections give their slabs back: what is left is the pool (up to the cap). A worker counts a
    // connection gone when it closes, and frees its receive slabs a turn later (after the socket's handle has
    // closed, and once no command holds a view): wait for both, up to 10 s; a leak stays over the cap.
    const end = Date.now() + 10000;
    let after = await c.metrics();
    while ((after.nodetgt_cxn_active! > 0 || after.nodetgt_read_slab_bytes! > cap) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      after = await c.metrics();
    }
    slabBytes.push(after.nodetgt_read_slab_bytes!);
    rss.push(status(c).rss);
    t.true(
      after.nodetgt_read_slab_bytes! <= cap,
      `round ${round}: slab bytes ${after.nodetgt_read_slab_bytes} after every connection closed, cap ${cap}`,
    );
  }
  t.log(`slab bytes after each round: ${slabBytes.map((b) => (b / MiB).toFixed(1)).join(' ')} MiB`);
  t.log(`RSS after each round: ${rss.map((r) => r.toFixed(0)).join(' ')} MiB`);
  // The slab gauges above are the exact check. RSS also holds the Data-In buffer pool (up to 32 free buffers
  // per size class) and whatever the GC has not collected yet: a loose bound, against a leak of slabs (each
  // round moves 24 x 6 extents of up to 1 MiB through large 4 MiB slabs: ~100 MiB of them per round).
  const peak = status(c).hwm;
  t.true(peak < 400, `peak RSS ${peak.toFixed(0)} MiB`);
  await c.stop();
});

test.serial('a writer faster than a slow backstore is held back, not dropped', async (t) => {
  const highWater = 2 * MiB;
  const c = await startChild(
    'slow',
    { backstoreHighWater: highWater, queueDepth: 128 },
    { NODETGT_TEST_HOOKS: '1', NODETGT_TEST_SLOW_WRITE: 'all:400' },
  );
  const ini = await session(c, { MaxRecvDataSegmentLength: '262144' });
  const before = status(c).rss;
  let peakQueued = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const m = await c.metrics();
      peakQueued = Math.max(peakQueued, m.nodetgt_backstore_queued_bytes ?? 0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  // 256 writes of 256 KiB, 120 outstanding at a time (inside the 128-command window): 30 MiB could be
  // queued at once without backpressure; each write waits 400 ms in the backstore.
  const total = 256;
  const size = 256 * 1024;
  const payloads: Buffer[] = [];
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const data = crypto.randomBytes(size);
      payloads[i] = data;
      const r = await ini.scsi(rw10(0x2a, (i * size) / BS, size / BS), {
        edtl: size,
        write: true,
        data,
        immediate: size,
        timeoutMs: 120000,
      });
      if (r.status !== 0) failed++;
    }
  };
  await Promise.all(Array.from({ length: 120 }, worker));
  sampling = false;
  await sampler;
  const m = await c.metrics();
  const after = status(c);
  t.log(
    `peak queued ${(peakQueued / MiB).toFixed(1)} MiB (high water ${highWater / MiB} MiB), ` +
      `read stops ${m.nodetgt_read_stops_backstore_total}, RSS ${before.toFixed(0)} -> peak ${after.hwm.toFixed(0)} MiB`,
  );
  t.is(failed, 0, 'every write GOOD');
  t.false(ini.closed, 'the connection stayed');
  t.true(m.nodetgt_read_stops_backstore_total! > 0, 'the worker stopped reading the socket');
  // Without backpressure ~30 MiB would queue; with it, the mark plus what was already read when it was passed.
  t.true(peakQueued < highWater + 6 * MiB, `peak queued ${peakQueued}`);
  t.true(peakQueued > 0, 'the sampler saw the queue');
  // Spot-check the data.
  for (const i of [0, 77, total - 1]) {
    const r = await ini.scsi(rw10(0x28, (i * size) / BS, size / BS), { edtl: size, read: true });
    t.true(r.data.equals(payloads[i]!), `write ${i} reads back intact`);
  }
  ini.close();
  await c.stop();
});

test.serial('a client that never reads its Data-In: the target stops reading it, others go on', async (t) => {
  const c = await startChild('hog', { sendHighWater: 1 * MiB, sendTimeout: 60 });
  const healthy = await session(c);
  const hog = await session(c, { MaxRecvDataSegmentLength: '262144' });
  hog.socket.pause(); // reads nothing from now on
  // READs of 1 MiB, 120 of them, sent by hand (no waiting for status: none will be read).
  let sent = 0;
  const send = () => {
    hog
      .start(rw10(0x28, (sent % 200) * 2048, 2048), { edtl: MiB, read: true, timeoutMs: 600000 })
      .done.catch(() => undefined);
    sent++;
  };
  for (let i = 0; i < 120; i++) send();
  await new Promise((r) => setTimeout(r, 1500));
  // The target stopped reading: what the hog sends now stays in the sockets' buffers, then in the client's own
  // queue. 32 MiB of WRITEs with immediate data is more than the kernel buffers of a loopback pair hold.
  const before = hog.socket.bytesWritten - hog.socket.writableLength;
  const filler = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 512; i++)
    hog
      .start(rw10(0x2a, 300000 + i * 128, 128), {
        edtl: 64 * 1024,
        write: true,
        data: filler,
        timeoutMs: 600000,
      })
      .done.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 1500));
  const queuedAtClient = hog.socket.writableLength;
  const accepted = hog.socket.bytesWritten - hog.socket.writableLength - before;
  t.log(
    `hog: 32 MiB more sent; the kernel took ${(accepted / MiB).toFixed(2)} MiB, ${(queuedAtClient / MiB).toFixed(2)} MiB wait in the client`,
  );
  t.true(queuedAtClient > 0, 'the target does not read: the client cannot hand everything to its kernel');
  // Meanwhile another session is served.
  for (let i = 0; i < 20; i++) {
    const r = await healthy.scsi(rw10(0x28, i * 8, 8), { edtl: 4096, read: true, timeoutMs: 5000 });
    t.is(r.status, 0);
  }
  const { rss } = status(c);
  t.true(rss < 400, `target RSS ${rss.toFixed(0)} MiB`);
  hog.close();
  healthy.close();
  await c.stop();
});

test.serial('a write in flight when its connection drops keeps its slab until it is done', async (t) => {
  const lba = 1000;
  // The one write at this offset waits 1.5 s before it is submitted: it is "in the backstore" all that time.
  const c = await startChild(
    'inflight',
    { readPoolBytes: 256 * 1024 },
    { NODETGT_TEST_HOOKS: '1', NODETGT_TEST_SLOW_WRITE: `${lba * BS}:1500` },
  );
  const a = await session(c);
  const b = await session(c);
  const mine = crypto.randomBytes(4096);
  a.start(rw10(0x2a, lba, 8), { edtl: 4096, write: true, data: mine }).done.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 200));
  a.close(); // the task is aborted with its connection; its write is still to come
  // Meanwhile b writes 4 KiB blocks of 0xbb at QD8, enough to go through many small slabs.
  const other = Buffer.alloc(4096, 0xbb);
  let n = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() - started < 2500) {
        const r = await b.scsi(rw10(0x2a, 4096 + (n++ % 2048) * 8, 8), {
          edtl: 4096,
          write: true,
          data: other,
        });
        t.is(r.status, 0);
      }
    }),
  );
  const m = await c.metrics();
  t.log(
    `b wrote ${n} blocks; slabs reused while the write waited: pooled ${m.nodetgt_read_slab_pooled_bytes}`,
  );
  const back = await b.scsi(rw10(0x28, lba, 8), { edtl: 4096, read: true });
  t.true(back.data.equals(mine), "the dropped connection's write landed with its own bytes");
  b.close();
  await c.stop();
});
