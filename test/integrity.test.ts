/**
 * Data integrity through a real initiator: 256 MiB of random data goes into a LUN with qemu-img convert
 * (QEMU's libiscsi initiator), comes back out with qemu-img convert, and must be byte-identical both on the way
 * back and in the LUN's backing file. Run with QEMU's own request size, with every request capped at 1 MiB and
 * at 4 KiB, and with two sessions writing two LUNs at once.
 *
 * How the request size is forced: `qemu-img convert` has no request-size option (it copies in 2 MiB chunks,
 * more if the target's optimal transfer length asks for it). Instead the LUN is opened through QEMU's blkdebug
 * filter with `max-transfer=N` (`--target-image-opts driver=blkdebug,max-transfer=N,image.driver=iscsi,...`):
 * QEMU's block layer then splits every read and write into N-byte fragments before they reach the iscsi
 * driver, so each SCSI READ/WRITE carries exactly N bytes (the copy is N-aligned). The test checks that on the
 * target's own counters: the number of SCSI commands executed during the write phase is the number of N-byte
 * writes plus the handful of discovery commands (INQUIRY, READ CAPACITY, ...) of the login.
 * `-W -m 16` (out-of-order writes, 16 coroutines) keeps 16 requests in flight so 65536 4 KiB writes take seconds.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { readCounters } from '../src/metrics/counters';
import { describeDifference, iscsiImageOpts, runQemu, sha256File, writeRandomFile } from './helpers/qemu';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
/** Commands besides the data transfers that a qemu-img session sends (login-time INQUIRYs, READ CAPACITY, ...). */
const SETUP_COMMANDS = 64;

/**
 * Time budgets scale with the data moved, so that they hold on a loaded 2-core machine (ava runs two test
 * files at once, and a benchmark may run beside them) and still end a hung transfer. Floors assumed under
 * load: ISCSI_FLOOR through the target in any request size (unloaded here: ~27 MB/s with 4 KiB requests, the
 * slowest case, ~130 MB/s with 2 MiB requests), LOCAL_FLOOR for local file work (CSPRNG fill, SHA-256).
 * FIXED_MS covers process and target start-up, logins and teardown. Each qemu-img run gets its own budget
 * (its timeout names the command), and each test the sum of its phases.
 */
const ISCSI_FLOOR = 4e6; // bytes per second
const LOCAL_FLOOR = 16e6; // bytes per second
const FIXED_MS = 30_000;
function budgetMs(o: { iscsi?: number; local?: number }): number {
  return FIXED_MS + Math.ceil(((o.iscsi ?? 0) / ISCSI_FLOOR + (o.local ?? 0) / LOCAL_FLOOR) * 1000);
}
/** One qemu-img run moving `bytes` through the target (shared with `sharing - 1` other runs at once). */
const qemuBudget = (bytes: number, sharing = 1) => budgetMs({ iscsi: bytes * sharing });

let work = '';
let srcA = '';
let srcB = '';
let hashA = '';
let hashB = '';

test.before(async (t) => {
  t.timeout(budgetMs({ local: 4 * SIZE })); // write two random files, hash them
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-integrity-'));
  srcA = path.join(work, 'src-a.raw');
  srcB = path.join(work, 'src-b.raw');
  writeRandomFile(srcA, SIZE);
  writeRandomFile(srcB, SIZE);
  [hashA, hashB] = await Promise.all([sha256File(srcA), sha256File(srcB)]);
  if (hashA === hashB) throw new Error('two random sources are identical');
});

test.after.always(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function totals(tt: TestTarget): Record<string, number> {
  return readCounters(tt.target.counters).total as Record<string, number>;
}

/** Compare `file` with the source it should equal: SHA-256 first, byte-by-byte diagnosis on a mismatch. */
async function assertSame(
  t: ExecutionContext,
  file: string,
  src: string,
  srcHash: string,
  what: string,
): Promise<void> {
  const h = await sha256File(file);
  if (h === srcHash) {
    t.pass(`${what}: sha256 ${h.slice(0, 16)}... matches`);
    return;
  }
  t.fail(
    `${what} is not byte-identical to the source: ${describeDifference(src, file) ?? 'hashes differ (?)'}`,
  );
}

interface Transfer {
  lun: number;
  src: string;
  srcHash: string;
  /** undefined: QEMU's default request size, and the plain iscsi:// URL form of the commands */
  maxTransfer?: number;
  initiatorName?: string;
}

function writeArgs(tt: TestTarget, x: Transfer): string[] {
  if (x.maxTransfer === undefined && x.initiatorName === undefined)
    return ['convert', '-n', '-f', 'raw', '-O', 'raw', x.src, tt.url(x.lun)];
  const opts = iscsiImageOpts({
    port: tt.port,
    target: TEST_TARGET,
    lun: x.lun,
    initiatorName: x.initiatorName,
    maxTransfer: x.maxTransfer,
  });
  return ['convert', '-n', '-W', '-m', '16', '-f', 'raw', '--target-image-opts', x.src, opts];
}

function readArgs(tt: TestTarget, x: Transfer, back: string): string[] {
  if (x.maxTransfer === undefined && x.initiatorName === undefined)
    return ['convert', '-f', 'raw', '-O', 'raw', tt.url(x.lun), back];
  const opts = iscsiImageOpts({
    port: tt.port,
    target: TEST_TARGET,
    lun: x.lun,
    initiatorName: x.initiatorName,
    maxTransfer: x.maxTransfer,
  });
  return ['convert', '-m', '16', '--image-opts', opts, '-O', 'raw', back];
}

async function roundTrip(t: ExecutionContext, maxTransfer: number | undefined): Promise<void> {
  // write, read back, hash the copy and the backing file
  t.timeout(2 * qemuBudget(SIZE) + budgetMs({ local: 2 * SIZE }));
  const tt = await startTestTarget({ workers: 2, luns: [{ lun: 0, path: 'lun0.img', size: SIZE }] });
  const back = path.join(work, `back-${maxTransfer ?? 'default'}.raw`);
  try {
    const x: Transfer = { lun: 0, src: srcA, srcHash: hashA, maxTransfer };
    const c0 = totals(tt);
    const w = await runQemu('qemu-img', writeArgs(tt, x), qemuBudget(SIZE));
    const c1 = totals(tt);
    const r = await runQemu('qemu-img', readArgs(tt, x, back), qemuBudget(SIZE));
    const c2 = totals(tt);
    const wCmds = c1.scsiCommands - c0.scsiCommands;
    const rCmds = c2.scsiCommands - c1.scsiCommands;
    t.log(
      `requests ${maxTransfer === undefined ? 'qemu default' : `${maxTransfer} B`}: write ${w.ms} ms (${wCmds} SCSI commands), ` +
        `read ${r.ms} ms (${rCmds} SCSI commands)`,
    );
    if (r.stderr.trim()) t.log(`qemu-img (read) stderr, first line: ${r.stderr.trim().split('\n')[0]}`);

    t.is(c1.scsiWriteBytes - c0.scsiWriteBytes, SIZE, 'bytes written by the initiator');
    t.true(c2.scsiReadBytes - c1.scsiReadBytes >= SIZE, 'bytes read by the initiator');
    if (maxTransfer !== undefined) {
      const n = SIZE / maxTransfer;
      // Every write is at most maxTransfer (blkdebug splits), and there are at least SIZE/maxTransfer of them:
      // so they are all exactly maxTransfer bytes.
      t.true(
        wCmds >= n && wCmds <= n + SETUP_COMMANDS,
        `write phase: ${wCmds} SCSI commands for ${n} writes of ${maxTransfer} B`,
      );
      // The read side also sends GET LBA STATUS queries (the LUN reports LBPME), hence the looser upper bound.
      t.true(
        rCmds >= n && rCmds <= 2 * n + SETUP_COMMANDS,
        `read phase: ${rCmds} SCSI commands for ${n} reads of ${maxTransfer} B`,
      );
    }

    await assertSame(t, back, srcA, hashA, 'image read back through iSCSI');
    await assertSame(t, path.join(tt.dir, 'lun0.img'), srcA, hashA, "LUN's backing file");
  } finally {
    fs.rmSync(back, { force: true });
    await tt.close();
  }
}

test.serial(
  '256 MiB random image into a LUN and back, QEMU default requests (2 MiB), plain iscsi:// URLs',
  (t) => roundTrip(t, undefined),
);

test.serial('256 MiB random image into a LUN and back, 1 MiB requests', (t) => roundTrip(t, MiB));

test.serial('256 MiB random image into a LUN and back, 4 KiB requests', (t) => roundTrip(t, 4096));

test.serial(
  'two sessions write two LUNs at once (2 MiB and 4 KiB requests), both read back intact',
  async (t) => {
    // two writers at once, two readers at once (each sharing the machine with the other), four hashes
    t.timeout(2 * qemuBudget(SIZE, 2) + budgetMs({ local: 4 * SIZE }));
    const tt = await startTestTarget({
      workers: 2,
      luns: [
        { lun: 0, path: 'lun0.img', size: SIZE },
        { lun: 1, path: 'lun1.img', size: SIZE },
      ],
    });
    const xs: Transfer[] = [
      // distinct initiator names: two sessions for certain (QEMU's default name is the same in every process)
      { lun: 0, src: srcA, srcHash: hashA, initiatorName: 'iqn.2026-11.io.nodetgt.test:integrity-a' },
      {
        lun: 1,
        src: srcB,
        srcHash: hashB,
        initiatorName: 'iqn.2026-11.io.nodetgt.test:integrity-b',
        maxTransfer: 4096,
      },
    ];
    const backs = xs.map((x) => path.join(work, `back-lun${x.lun}.raw`));
    let peakSessions = 0;
    const poll = setInterval(() => (peakSessions = Math.max(peakSessions, totals(tt).ssnActive)), 5);
    try {
      const c0 = totals(tt);
      const t0 = Date.now();
      const ws = await Promise.all(xs.map((x) => runQemu('qemu-img', writeArgs(tt, x), qemuBudget(SIZE, 2))));
      const t1 = Date.now();
      const rs = await Promise.all(
        xs.map((x, i) => runQemu('qemu-img', readArgs(tt, x, backs[i]), qemuBudget(SIZE, 2))),
      );
      const t2 = Date.now();
      clearInterval(poll);
      const c1 = totals(tt);
      t.log(
        `concurrent writes ${t1 - t0} ms (${ws.map((w) => w.ms).join(' / ')}), concurrent reads ${t2 - t1} ms ` +
          `(${rs.map((r) => r.ms).join(' / ')}), peak sessions ${peakSessions}`,
      );
      t.is(c1.scsiWriteBytes - c0.scsiWriteBytes, 2 * SIZE, 'bytes written by the two initiators');
      t.is(c1.tgtLoginAccepts - c0.tgtLoginAccepts, 4, 'one login per qemu-img process');
      t.true(peakSessions >= 2, `the two sessions were open at the same time (peak ${peakSessions})`);
      for (const [i, x] of xs.entries()) {
        await assertSame(t, backs[i], x.src, x.srcHash, `LUN ${x.lun} read back through iSCSI`);
        await assertSame(
          t,
          path.join(tt.dir, `lun${x.lun}.img`),
          x.src,
          x.srcHash,
          `LUN ${x.lun} backing file`,
        );
      }
    } finally {
      clearInterval(poll);
      for (const b of backs) fs.rmSync(b, { force: true });
      await tt.close();
    }
  },
);
