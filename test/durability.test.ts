/**
 * Durability: what the target acknowledged survives SIGKILL of the target.
 *
 * nodetgt runs as a child process on a file LUN (under /var/tmp: a disk filesystem, not tmpfs). QEMU's initiator
 * writes distinct patterns to several regions, once with FUA on every write (`qemu-io write -f`) and once as a
 * batch of concurrent writes without FUA followed by a flush (SYNCHRONIZE CACHE). Once qemu-io has reported every
 * write and the flush as done, the target gets SIGKILL, is started again on the same file and port, and every
 * acknowledged region is read back through iSCSI with `qemu-io read -P` (which fails on any mismatching byte)
 * and directly from the backing file. Regions never written must still read as zeros.
 *
 * What this does and does not prove: SIGKILL ends the process but not the kernel, and the page cache keeps
 * whatever the process had handed to the kernel, synced or not. So this test shows that nodetgt acknowledges a
 * write only after the data has been passed to the kernel (no acknowledgement from a user-space buffer or an
 * io_uring submission that had not completed), and that restart reopens the same data. It does NOT show that FUA
 * and SYNCHRONIZE CACHE reached stable storage (RWF_DSYNC / fdatasync): only a power cut or a VM crash between
 * acknowledgement and read-back would, and nothing here fakes one.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, runQemu } from './helpers/qemu';
import { startChildTarget, type ChildTarget } from './helpers/child-target';
import { diskWorkspace } from './helpers/disk-workspace';

const IQN = 'iqn.2026-11.io.nodetgt.test:durability';
const KiB = 1024;
const MiB = 1024 * KiB;
const LUN_SIZE = 64 * MiB;
/**
 * Bounds that only end a hang, generous for a loaded 2-core machine with disk traffic beside the test
 * (unloaded: the target starts in ~1 s, each qemu-io run takes a few seconds, the whole test ~20 s).
 */
const START_BOUND = 45_000;
const QEMU_BOUND = 90_000;

interface Region {
  pattern: number;
  offset: number;
  length: number;
}

/** Written with FUA, each write on its own (qemu-io `write -f`). */
const FUA_REGIONS: Region[] = [
  { pattern: 0x5a, offset: 0, length: 1 * MiB },
  { pattern: 0xa5, offset: 3 * MiB, length: 4 * KiB },
  { pattern: 0x3c, offset: 5 * MiB + 512, length: 3584 }, // one sector in, not 4 KiB aligned
  { pattern: 0xc3, offset: 8 * MiB, length: 8 * MiB }, // beyond FirstBurstLength: R2T-solicited data
];
/** Written without FUA, all in flight at once (qemu-io `aio_write`), then `aio_flush` and `flush`. */
const FLUSH_REGIONS: Region[] = [
  { pattern: 0x11, offset: 20 * MiB, length: 1 * MiB },
  { pattern: 0x22, offset: 22 * MiB, length: 64 * KiB },
  { pattern: 0x33, offset: 24 * MiB + 4 * KiB, length: 4 * KiB },
  { pattern: 0x44, offset: 32 * MiB, length: 8 * MiB },
  { pattern: 0x55, offset: 41 * MiB - 512, length: 512 },
];
/** Never written: must read back as zeros (nothing landed in the wrong place). */
const ZERO_REGIONS: Region[] = [
  { pattern: 0, offset: 1 * MiB, length: 2 * MiB },
  { pattern: 0, offset: 5 * MiB, length: 512 },
  { pattern: 0, offset: 16 * MiB, length: 4 * MiB },
  { pattern: 0, offset: 24 * MiB, length: 4 * KiB },
  { pattern: 0, offset: 41 * MiB, length: LUN_SIZE - 41 * MiB },
];

const hex = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;

/** Start `nodetgt serve` on the LUN file and the given port. */
function startChild(port: number, lunFile: string): Promise<ChildTarget> {
  return startChildTarget(
    [
      '--portal',
      `127.0.0.1:${port}`,
      '--target',
      IQN,
      '--lun',
      `${lunFile}:${LUN_SIZE}B`,
      '--workers',
      '2',
      '--state-dir',
      path.join(ws.dir, 'state'),
    ],
    { timeoutMs: START_BOUND },
  );
}

const ws = diskWorkspace('nodetgt-durability-');
const children = ws.children;

test('acknowledged FUA writes and flushed writes survive SIGKILL of the target', async (t) => {
  t.timeout(2 * START_BOUND + 3 * QEMU_BOUND + 30_000); // two starts, three qemu-io runs, the checks
  const lunFile = path.join(ws.dir, 'lun0.img');
  const port = await freePort();
  const url = `iscsi://127.0.0.1:${port}/${IQN}/0`;

  const first = await startChild(port, lunFile);
  children.push(first);
  const withLog = async <T>(what: string, p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      throw new Error(
        `${what}: ${(e as Error).message}\n  nodetgt output:\n${first.log()}${children.length > 1 ? children[1].log() : ''}`,
      );
    }
  };

  // 1. FUA writes, one after another: each is acknowledged before the next is sent.
  const fuaArgs = FUA_REGIONS.flatMap((r) => ['-c', `write -f -P ${hex(r.pattern)} ${r.offset} ${r.length}`]);
  const w1 = await withLog('FUA writes', runQemu('qemu-io', ['-f', 'raw', ...fuaArgs, url], QEMU_BOUND));
  // 2. Concurrent plain writes, wait for all of them, then SYNCHRONIZE CACHE.
  const aioArgs = FLUSH_REGIONS.flatMap((r) => [
    '-c',
    `aio_write -P ${hex(r.pattern)} ${r.offset} ${r.length}`,
  ]);
  const w2 = await withLog(
    'writes + flush',
    runQemu('qemu-io', ['-f', 'raw', ...aioArgs, '-c', 'aio_flush', '-c', 'flush', url], QEMU_BOUND),
  );
  for (const r of [...FUA_REGIONS, ...FLUSH_REGIONS]) {
    const line = `wrote ${r.length}/${r.length} bytes at offset ${r.offset}`;
    t.true(
      w1.stdout.includes(line) || w2.stdout.includes(line),
      `qemu-io acknowledged: ${line}\n${w1.stdout}${w2.stdout}`,
    );
  }

  // 3. SIGKILL: no shutdown path runs, no close(), no final fsync.
  const pid = first.proc.pid;
  await first.stop();
  t.is(first.proc.signalCode, 'SIGKILL', `nodetgt pid ${pid} died of SIGKILL`);

  // 4. Same file, same port, new process.
  const second = await startChild(port, lunFile);
  children.push(second);
  t.not(second.proc.pid, pid);
  t.is(
    fs.statSync(lunFile).size,
    LUN_SIZE,
    'the restart reopened the file instead of recreating it at another size',
  );

  // 5. Every acknowledged region through iSCSI: `read -P` makes qemu-io exit non-zero on any mismatch.
  const all = [...FUA_REGIONS, ...FLUSH_REGIONS, ...ZERO_REGIONS];
  const readArgs = all.flatMap((r) => ['-c', `read -P ${hex(r.pattern)} ${r.offset} ${r.length}`]);
  const rd = await withLog(
    'read back after restart',
    runQemu('qemu-io', ['-f', 'raw', ...readArgs, url], QEMU_BOUND),
  );
  t.false(rd.stdout.includes('Pattern verification failed'), rd.stdout);
  for (const r of all)
    t.true(rd.stdout.includes(`read ${r.length}/${r.length} bytes at offset ${r.offset}`), rd.stdout);

  // 6. And in the backing file itself, bypassing the target.
  const fd = fs.openSync(lunFile, 'r');
  try {
    for (const r of all) {
      const got = Buffer.alloc(r.length);
      t.is(fs.readSync(fd, got, 0, r.length, r.offset), r.length);
      const bad = got.findIndex((b) => b !== r.pattern);
      t.is(
        bad,
        -1,
        `backing file at ${r.offset}+${r.length}: byte ${r.offset + bad} is ${hex(got[bad] ?? 0)}, expected ${hex(r.pattern)}`,
      );
    }
  } finally {
    fs.closeSync(fd);
  }
  t.log(
    `writes ${w1.ms} ms (FUA) + ${w2.ms} ms (aio + flush), read back ${rd.ms} ms, pid ${pid} -> ${second.proc.pid}`,
  );
  await second.stop();
});
