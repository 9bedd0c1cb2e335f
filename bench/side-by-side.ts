/**
 * nodetgt against tgtd, side by side, through the same initiator (qemu-img bench over libiscsi) on
 * the same backing files: a 1 GiB file on tmpfs, a 1 GiB file on disk (opened O_DIRECT by both
 * targets) and the null backstore. Each figure is run alternately on both targets, repeated, and
 * reported as medians of the valid runs with nodetgt/tgtd ratios and each target's CPU time per I/O.
 *
 *   npm run bench                       full: 3 repetitions of >= 3 s each (12-15 minutes)
 *   npm run bench -- --quick            1 repetition of >= 1 s each, no profile (3-4 minutes)
 *   npm run bench -- --only tmpfs|disk|null[,..]   --reps N   --secs S   --workers N
 *   npm run bench -- --no-fio --no-profile --keep (keep the backing files)
 *   npm run bench -- --max-others PCT   --allow-busy   --note TEXT
 *   npm run bench -- --rbd | --no-rbd   the Ceph RBD section (bench/lib/rbd.ts; default: on when Ceph is installed)
 *   npm run bench -- --no-digests | --digests-only (the CRC32C digest section, bench/lib/digests.ts)
 *   npm run bench -- --no-perf          no system profile (perf record of nodetgt, bench/lib/perf-profile.ts)
 *
 * Method (bench/lib/measure.ts has the details; the markdown repeats them):
 * - CPU per I/O is charged over the I/O phase only. qemu-img's stdout is line-buffered (stdbuf -oL)
 *   and the target's CPU is read the moment "Sending N requests" and "Run completed in S seconds"
 *   arrive: login, the closing flush (SYNCHRONIZE CACHE) and logout fall outside. We read CPU at the
 *   phase's edges rather than subtract a login-only baseline because a baseline is itself a noisy
 *   measurement, and the flush's cost depends on what was written.
 * - The CPU clock is the target process's own CPU clock via clock_gettime() (ns; all threads, exited
 *   ones included; bench/lib/cpuclock.ts), or, without perl, /proc/PID/stat in 10 ms ticks. The
 *   resolution relative to each run's CPU is computed; a run where it exceeds 2%, or where the CPU
 *   readings span a window more than 2% off qemu-img's own phase time, is flagged "coarse" (†).
 * - Every measured run lasts at least --secs (3 s full, 1 s quick): a short calibration run gives the
 *   rate, the count is sized for 1.6× that (1.3× from a measured run's rate), and a run that still
 *   ends early is resized and rerun. The count is also raised until the target's CPU is at least
 *   50× the clock's resolution (matters only for the /proc tick fallback).
 * - A run is invalid, left out of the medians and counted as such ("2/3" valid), when qemu-img timed
 *   out, exited non-zero or wrote to stderr, its phase lines are missing, the target died, less than
 *   90% of the bytes crossed loopback during the phase, or it stayed too short after two resizes.
 *   A figure with no valid run shows "no valid run", never a number.
 *
 * - Other load: each run's phase also reads /proc/stat; what the machine spent beyond the target's and
 *   qemu-img's own CPU is "others". A run where others exceed --max-others (15% of all cores) is
 *   retried twice after a pause, then refused (invalid, "machine busy"); --allow-busy keeps such runs
 *   instead, and the report says so at the top and marks their figures ‡.
 * - Latency: nodetgt serves /metrics on a loopback port; its latency histogram for the run's LU and
 *   operation is read before and after each measured qemu-img run (outside the phase), and the
 *   report gives percentiles of the differences.
 *
 * Cleanup: SIGINT, SIGTERM and SIGHUP stop the targets, remove the backing files and print the
 * partial report (exit 130). A SIGKILLed benchmark is cleaned up by bench/lib/guardian.ts, a small
 * detached process that watches this one. Everything listens on 127.0.0.1 only. Output: markdown on
 * stdout; bench/results/<YYYY-MM-DD>/ with report.md, SVG charts and results.json (bench/lib/results.ts);
 * and in /var/tmp/nodetgt-bench/ the markdown and JSON again, the targets' logs and the CPU profiles.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CpuClock } from './lib/cpuclock';
import { FIGURES, M1, fmtRate, unit, type Figure } from './lib/figures';
import { procRef, type GuardState } from './lib/guardian';
import { histDelta, LATENCY_METRIC, parseHistogram, scrape, type Hist } from './lib/latency';
import { runDigests, type DigestSection } from './lib/digests';
import { busyReason, COARSE_PCT, emptyRun, MAX_OTHERS_PCT, qemuBench, type RunOut } from './lib/measure';
import { summariseProfile, type ProfileSummary } from './lib/profile';
import { perfMarkdown, perfUsable, recordPerf, type PerfSummary } from './lib/perf-profile';
import { fmt, renderMarkdown, type ReportInput, type Sample } from './lib/report';
import { cephMissing, rbdSection, type RbdSection } from './lib/rbd';
import { resultsDir, writeResults } from './lib/results';
import {
  freePort,
  killGroup,
  liveChildren,
  machineInfo,
  median,
  onTrack,
  run,
  sleep,
  threadCpu,
  track,
} from './lib/sys';
import { Nodetgt, Tgtd, type Backing, type Kind, type Target } from './lib/targets';

// ---------------------------------------------------------------------------------------- options

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (flag('-h') || flag('--help')) {
  process.stdout.write(
    'usage: node dist/bench/side-by-side.js [--quick] [--only tmpfs|disk|null[,...]] [--reps N] [--secs S]\n' +
      '       [--workers N] [--no-fio] [--no-profile] [--profile] [--keep]\n' +
      '       [--max-others PCT] [--allow-busy] [--note TEXT] [--rbd | --no-rbd] [--no-digests] [--digests-only]\n',
  );
  process.exit(0);
}
const quick = flag('--quick');
const reps = Number(opt('--reps') ?? (quick ? 1 : 3));
/** Shortest measured I/O phase, seconds. */
const minSecs = Number(opt('--secs') ?? (quick ? 1 : 3));
const workers = Number(opt('--workers') ?? os.cpus().length);
const kinds = (opt('--only') ?? 'tmpfs,disk,null').split(',') as Kind[];
for (const k of kinds)
  if (!['tmpfs', 'disk', 'null'].includes(k)) {
    process.stderr.write(`--only: unknown backing '${k}' (tmpfs, disk, null)\n`);
    process.exit(2);
  }
if (!(reps >= 1 && minSecs > 0 && workers >= 1)) {
  process.stderr.write('--reps, --secs and --workers must be positive\n');
  process.exit(2);
}
/** Only the digest section (bench/lib/digests.ts): no qemu-img matrix, fio or profile. */
const digestsOnly = flag('--digests-only');
const doFio = !flag('--no-fio') && !digestsOnly;
const doDigests = !flag('--no-digests');
const doProfile =
  !flag('--no-profile') && !digestsOnly && (!quick || flag('--profile')) && kinds.includes('tmpfs');
const doPerf = !flag('--no-perf') && !digestsOnly && !quick;
const keep = flag('--keep');
const doRbd = flag('--rbd') || (!flag('--no-rbd') && !digestsOnly && cephMissing().length === 0);
/** Other processes' share of the machine (%) above which a run counts as taken on a busy machine. */
const maxOthers = Number(opt('--max-others') ?? MAX_OTHERS_PCT);
const allowBusy = flag('--allow-busy');
const runNote = [
  quick ? `--quick: ${reps} repetition(s) of at least ${minSecs} s per figure.` : '',
  opt('--note') ?? '',
]
  .filter(Boolean)
  .join(' ');
if (!(maxOthers >= 0 && maxOthers <= 100)) {
  process.stderr.write('--max-others takes a percentage, 0 to 100\n');
  process.exit(2);
}

const REPO = path.resolve(__dirname, '../..');
const WORK = '/var/tmp/nodetgt-bench';
const SIZE = 1 << 30;
const STAMP = new Date().toISOString().replace(/[:.]/g, '-');
const TMPFS_FILE = `/dev/shm/nodetgt-bench-${process.pid}.img`;
const DISK_FILE = path.join(WORK, `disk-${process.pid}.img`);
const STATE_FILE = path.join(WORK, `running-${process.pid}.json`);
const NCPU = os.cpus().length;
/**
 * Calibration runs aim at CAL_SECS. Measured runs aim at a margin × minSecs: a wide one after a
 * calibration (a short run's rate is rough), a narrow one after a measured run, wider at each resize. They also aim at
 * enough target CPU that the clock's resolution is under COARSE_PCT of it (only the /proc tick
 * fallback needs that), up to MAX_STRETCH × minSecs.
 */
const CAL_SECS = 0.3;
const MARGIN_AFTER_CAL = 1.6;
const MARGIN = 1.3;
const MAX_STRETCH = 10;
/** Runs of a measured figure: the first, and two resizes when the phase ends before minSecs. */
const ATTEMPTS = 3;
/** A run taken on a busy machine is retried this often, after BUSY_PAUSE_MS, before it is refused. */
const BUSY_RETRIES = 2;
const BUSY_PAUSE_MS = 3000;
/** I/O counts never go below these, whatever the rate says. */
const minCount = (f: Figure, calibration: boolean) => (f.bs === M1 ? 16 : 200) * (calibration ? 1 : 5);

// ---------------------------------------------------------------------------------------- state

const samples: Sample[] = [];
const events: string[] = [];
const ceilings: { what: string; value: string }[] = [];
const fioValue = new Map<string, number>();
let digests: DigestSection | undefined;
let profile: { note: string; threadNote: string; profiles: ProfileSummary[] } | undefined;
let perfSection: { markdown: string; json: unknown[] } | undefined;
let aborted = false;
let targets: Target[] = [];
const clock = new CpuClock();
let guardian: ChildProcess | undefined;
let rbd: RbdSection | undefined;

function note(msg: string): void {
  events.push(msg);
  process.stderr.write(`[bench] ${msg}\n`);
}
/** Something went wrong outside a single run's verdict: it goes into the report's Problems seen. */
const problems: string[] = [];
function problem(msg: string): void {
  problems.push(msg);
  note(msg);
}

// ---------------------------------------------------------------------------------------- cleanup

const ourFiles = () => (keep ? [] : [TMPFS_FILE, DISK_FILE]);
const isTarget = (c: ChildProcess) => targets.some((t) => t.child === c);

/** Tell the guardian what to clean up if we die without cleaning up ourselves. */
function saveState(): void {
  const bench = procRef(process.pid)!;
  // Every child: the targets, and qemu-img, which would retry its connection forever.
  const procs = [...liveChildren].flatMap((c) => (c.pid && c !== guardian ? (procRef(c.pid) ?? []) : []));
  const state: GuardState = { bench, procs, files: [...ourFiles(), ...targets.flatMap((t) => t.files())] };
  fs.writeFileSync(`${STATE_FILE}.tmp`, JSON.stringify(state));
  fs.renameSync(`${STATE_FILE}.tmp`, STATE_FILE);
}

function startGuardian(): void {
  saveState();
  onTrack.hook = saveState;
  guardian = spawn(process.execPath, [path.join(__dirname, 'lib/guardian.js'), STATE_FILE], {
    stdio: 'ignore',
    detached: true,
  });
  guardian.unref();
}

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of liveChildren) if (!isTarget(c)) killGroup(c);
    for (const t of targets) {
      const t0 = Date.now();
      await t.stop().catch((e: Error) => problem(`stopping ${t.name}: ${e.message}`));
      if (t.pid) note(`${t.name} stopped in ${Date.now() - t0} ms`);
    }
    for (const f of ourFiles()) fs.rmSync(f, { force: true });
    clock.close();
    fs.rmSync(STATE_FILE, { force: true }); // the guardian sees it gone and exits
  })();
  return cleaning;
}
process.on('exit', () => {
  for (const t of targets) t.killSync();
  for (const c of liveChildren) killGroup(c);
  for (const f of ourFiles()) fs.rmSync(f, { force: true });
  fs.rmSync(STATE_FILE, { force: true });
  guardian?.kill('SIGKILL');
});
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    if (++signals > 1) process.exit(130);
    aborted = true;
    note(`${sig}: stopping the targets (again to force)`);
    void cleanup()
      .then(() => report())
      .finally(() => process.exit(130));
  });

// ---------------------------------------------------------------------------------------- setup

/** Sparse first, then every block written once; yields between chunks so a signal is seen. */
async function fillFile(file: string): Promise<void> {
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, SIZE);
    for (let off = 0; off < SIZE && !aborted; off += chunk.length) {
      randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, off);
      await new Promise((r) => setImmediate(r));
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function backingsFor(list: Kind[]): Backing[] {
  return list.map((kind) =>
    kind === 'tmpfs'
      ? { kind, file: TMPFS_FILE, direct: false }
      : kind === 'disk'
        ? { kind, file: DISK_FILE, direct: true }
        : { kind, direct: false },
  );
}

async function pin(t: Target, on: boolean): Promise<void> {
  if (!t.alive) return;
  const r = await run('taskset', ['-a', '-p', '-c', on ? '0' : `0-${NCPU - 1}`, String(t.pid)], 5000);
  if (r.code !== 0) problem(`taskset ${t.name}: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------- one figure

/** Operations and target CPU µs per second last seen, per backing/figure/target: size the next run. */
const lastRate = new Map<string, { ops: number; cpu: number }>();

/** nodetgt's latency histogram for a backing's LU and a figure's operation, now; undefined for tgtd. */
async function latencyNow(t: Target, kind: Kind, f: Figure): Promise<Hist | undefined> {
  if (!(t instanceof Nodetgt) || !t.metricsPort) return undefined;
  const text = await scrape(t.metricsPort);
  const want = { target: t.iqn, lun: String(t.lunOf(kind)), op: f.write ? 'write' : 'read' };
  return text === undefined ? undefined : parseHistogram(text, LATENCY_METRIC, want);
}

async function sized(t: Target, kind: Kind, f: Figure, rate: number, secs: number, minS: number) {
  const count = Math.max(minCount(f, minS === 0), Math.ceil(rate * secs));
  const timeoutMs = Math.max(30_000, (5000 * count) / rate + 10_000);
  // Calibration runs (minS 0) are not reported: no histogram for them.
  const before = minS > 0 ? await latencyNow(t, kind, f) : undefined;
  const out = await qemuBench(clock, t, kind, f, count, timeoutMs, minS);
  if (before) out.hist = histDelta(before, await latencyNow(t, kind, f));
  return out;
}

/**
 * One repetition of a figure on a target: calibrate if its rate is not known yet, then a run sized
 * for a margin over minSecs, resized and rerun while its phase ends early.
 */
async function measure(t: Target, other: Target, kind: Kind, f: Figure): Promise<[RunOut, number]> {
  const key = `${kind}/${f.id}/${t.name}`;
  let rate = lastRate.get(key);
  let margin = MARGIN;
  if (rate === undefined) {
    const hint =
      lastRate.get(`${kind}/${f.id}/${other.name}`)?.ops ??
      lastRate.get(`${kind}/${f.id.replace(/-pin$/, '')}/${t.name}`)?.ops ??
      f.guess;
    const cal = await sized(t, kind, f, hint, CAL_SECS, 0);
    if (!Number.isFinite(cal.opsPerSec)) return [{ ...cal, invalid: `calibration: ${cal.invalid}` }, 1];
    rate = { ops: cal.opsPerSec, cpu: cal.cpuUs / cal.seconds };
    margin = MARGIN_AFTER_CAL;
  }
  let out: RunOut = emptyRun('', 0);
  let attempts = 0;
  while (attempts < ATTEMPTS) {
    attempts++;
    const cpuPerSec = rate.cpu > 0 ? rate.cpu : Infinity; // NaN (unknown) too
    const forCpu = (100 * clock.resolutionUs) / COARSE_PCT / cpuPerSec;
    const secs = Math.min(MAX_STRETCH * minSecs, Math.max(margin * minSecs, MARGIN * forCpu));
    out = await sized(t, kind, f, rate.ops, secs, minSecs);
    if (Number.isFinite(out.opsPerSec)) rate = { ops: out.opsPerSec, cpu: out.cpuUs / out.seconds };
    if (!out.short || aborted) break;
    margin = Math.max(margin * 1.25, MARGIN_AFTER_CAL); // the rate moves: aim wider each time
  }
  lastRate.set(key, rate);
  // Other load: wait and retry; refuse the run if the machine stays busy (unless --allow-busy).
  let busy = out.invalid ? undefined : busyReason(out, maxOthers);
  for (let i = 0; busy && !allowBusy && i < BUSY_RETRIES && !aborted; i++) {
    note(`${key}: ${busy}; retrying in ${BUSY_PAUSE_MS / 1000} s`);
    await sleep(BUSY_PAUSE_MS);
    out = await sized(t, kind, f, rate.ops, MARGIN * minSecs, minSecs);
    attempts++;
    busy = out.invalid ? undefined : busyReason(out, maxOthers);
  }
  if (busy) out = allowBusy ? { ...out, busy } : { ...out, busy, invalid: busy };
  return [out, attempts];
}

// ---------------------------------------------------------------------------------------- matrix

async function startTarget(t: Target, backings: Backing[]): Promise<void> {
  try {
    await t.start(backings);
    t.died = undefined;
    note(`${t.name} pid ${t.pid} on 127.0.0.1:${t.port}`);
  } catch (e) {
    t.died = `failed to start: ${(e as Error).message}`;
    problem(`${t.name} ${t.died}`);
  }
  saveState();
}

/** One unmeasured sequential read of the whole LU (see the report's note): the same for both targets. */
async function warmUp(t: Target, kind: Kind): Promise<void> {
  if (!t.alive || aborted) return;
  const f: Figure = {
    id: 'warm-up',
    label: 'warm-up read',
    write: false,
    bs: 64 * 1024,
    qd: 8,
    random: false,
    pinned: false,
    guess: 10_000,
  };
  const out = await qemuBench(clock, t, kind, f, SIZE / f.bs, 120_000, 0);
  note(
    `${t.name} ${kind}: warm-up read of the LU, ` +
      (out.invalid
        ? `failed: ${out.invalid}`
        : `${fmt(out.value)} ${unit(f)} in ${out.seconds.toFixed(1)} s`),
  );
}

async function runMatrix(): Promise<void> {
  const backings = backingsFor(kinds);
  fs.writeFileSync(path.join(WORK, `tgtd-${STAMP}.log`), '');
  fs.writeFileSync(path.join(WORK, `nodetgt-${STAMP}.log`), '');
  const tgtd = new Tgtd('iqn.2026-11.bench.tgtd:disk', path.join(WORK, `tgtd-${STAMP}.log`));
  const ntg = new Nodetgt(
    'iqn.2026-11.bench.nodetgt:disk',
    path.join(WORK, `nodetgt-${STAMP}.log`),
    REPO,
    WORK,
    workers,
  );
  targets = [tgtd, ntg];
  for (const t of targets) await startTarget(t, backings);
  const failures = new Map<string, number>();
  const reported = new Set<Target>();
  let order = 0;
  for (const b of backings) {
    for (const t of targets)
      if (t.died && !t.died.startsWith('failed to start') && !t.alive) {
        problem(`${t.name} died earlier (${t.died}); restarting it for ${b.kind}`);
        await t.stop();
        await startTarget(t, backings);
        if (!t.alive) t.died = `restart failed: ${t.died}`;
        reported.delete(t);
      }
    if (b.kind !== 'null') for (const t of targets) await warmUp(t, b.kind);
    for (const f of digestsOnly ? [] : FIGURES) {
      if (aborted) return;
      if (f.pinned) for (const t of targets) await pin(t, true);
      for (let rep = 0; rep < reps; rep++) {
        const pair = order++ % 2 ? [ntg, tgtd] : [tgtd, ntg];
        for (const t of pair) {
          if (aborted) return;
          const key = `${b.kind}/${f.id}/${t.name}`;
          const base = { backing: b.kind, figure: f.id, target: t.name, rep };
          if (!t.alive || (failures.get(`${b.kind}/${t.name}`) ?? 0) >= 3) {
            const why = !t.alive ? (t.died ?? 'not running') : 'skipped after 3 consecutive failures';
            if (!reported.has(t)) {
              reported.add(t);
              problem(`${t.name} ${why}: its runs are skipped (found before ${key} rep ${rep})`);
              for (const l of t.logTail(10)) problem(`  ${t.name} log: ${l}`);
            }
            samples.push({ ...emptyRun('', 0, `not run: ${why}`), ...base, attempts: 0 });
            continue;
          }
          const [out, attempts] = await measure(
            t,
            pair.find((x) => x !== t)!,
            b.kind,
            f,
          );
          if (aborted) return; // its qemu-img was killed by the signal handler: not a result
          samples.push({ ...out, ...base, attempts });
          if (out.invalid && !out.short && !out.busy) {
            await sleep(200);
            note(`${key} rep ${rep} invalid: ${out.invalid}\n    ${out.cmdline}`);
            for (const l of t.logTail(5)) problem(`  ${t.name} log: ${l}`);
          }
          const failed = !Number.isFinite(out.opsPerSec);
          failures.set(`${b.kind}/${t.name}`, failed ? (failures.get(`${b.kind}/${t.name}`) ?? 0) + 1 : 0);
          process.stderr.write(
            `[bench] ${b.kind.padEnd(5)} ${f.label.padEnd(25)} ${t.name.padEnd(7)} rep ${rep}: ` +
              `${fmt(out.value)} ${unit(f)}, ${fmt(out.cpuUsPerIo, 1)} us CPU/IO, ` +
              `qemu ${fmt(out.qemuUsPerIo, 1)} us/IO, kernel ${fmt(out.kernelPct)}%, others ${fmt(out.othersPct)}% ` +
              `(${out.count} in ${fmt(out.seconds, 2)} s${attempts > 1 ? `, ${attempts} runs` : ''})` +
              `${out.invalid ? ' INVALID' : ''}${out.busy ? ' BUSY' : ''}${out.coarse ? ` coarse: ${out.coarse}` : ''}\n`,
          );
        }
      }
      if (f.pinned) for (const t of targets) await pin(t, false);
    }
  }
}

// ---------------------------------------------------------------------------------------- ceilings

async function fioCeilings(): Promise<void> {
  if ((await run('fio', ['--version'], 5000)).code !== 0) {
    ceilings.push({ what: 'fio', value: 'not installed (apt-get install fio): ceilings skipped' });
    return;
  }
  const files: [Kind, string, boolean][] = [];
  if (kinds.includes('tmpfs')) files.push(['tmpfs', TMPFS_FILE, false]);
  if (kinds.includes('disk')) files.push(['disk', DISK_FILE, true]);
  for (const [kind, file, direct] of files)
    for (const f of FIGURES.filter((x) => !x.pinned)) {
      if (aborted) return;
      const rw = f.random ? (f.write ? 'randwrite' : 'randread') : f.write ? 'write' : 'read';
      const r = await run(
        'fio',
        [
          '--name=ceiling',
          `--filename=${file}`,
          `--size=${SIZE}`,
          '--ioengine=io_uring',
          `--direct=${direct ? 1 : 0}`,
          `--rw=${rw}`,
          `--bs=${f.bs}`,
          `--iodepth=${f.qd}`,
          `--runtime=${quick ? 1 : 2}`,
          '--time_based',
          '--norandommap',
          '--randrepeat=0',
          '--output-format=json',
        ],
        30_000,
      );
      let value = NaN;
      try {
        const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
          jobs: { read: { iops: number }; write: { iops: number } }[];
        };
        const io = f.write ? j.jobs[0]!.write : j.jobs[0]!.read;
        value = fmtRate(f, io.iops);
      } catch {
        problem(`fio ${kind} ${f.label} failed: ${r.stderr.trim().split('\n')[0]}`);
      }
      fioValue.set(`${kind}/${f.id}`, value);
    }
}

async function iperfCeiling(): Promise<void> {
  if ((await run('iperf3', ['--version'], 5000)).code !== 0) {
    ceilings.push({ what: 'iperf3 loopback', value: 'not installed: skipped' });
    return;
  }
  const port = await freePort();
  const srv = track(
    spawn('iperf3', ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)], { stdio: 'ignore', detached: true }),
  );
  await sleep(500);
  const r = await run(
    'iperf3',
    ['-c', '127.0.0.1', '-p', String(port), '-t', quick ? '1' : '3', '-J'],
    20_000,
  );
  killGroup(srv);
  try {
    const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
    ceilings.push({
      what: 'iperf3 loopback, 1 TCP stream',
      value: `${((j.end.sum_received.bits_per_second / 8) * 1e-6).toFixed(0)} MB/s`,
    });
  } catch {
    ceilings.push({ what: 'iperf3 loopback', value: `failed: ${r.stderr.trim().split('\n')[0]}` });
  }
}

// ---------------------------------------------------------------------------------------- profile

/** nodetgt's valid runs of a figure in the matrix: the profiled runs are sized from their rate. */
const nodetgtRuns = (kind: Kind, id: string) =>
  samples.filter((s) => s.backing === kind && s.figure === id && s.target === 'nodetgt' && !s.invalid);

async function profileRun(): Promise<void> {
  const dir = path.join(WORK, `prof-${STAMP}`);
  fs.mkdirSync(dir, { recursive: true });
  const log = path.join(WORK, `nodetgt-prof-${STAMP}.log`);
  const t = new Nodetgt('iqn.2026-11.bench.nodetgt:prof', log, REPO, WORK, workers, [
    '--cpu-prof',
    '--cpu-prof-dir',
    dir,
  ]);
  targets.push(t);
  const f = FIGURES.find((x) => x.id === 'rr-qd32')!;
  let note = '';
  let threadNote = '';
  try {
    await t.start(backingsFor(['tmpfs']));
    saveState();
    const valid = nodetgtRuns('tmpfs', f.id);
    const rate = valid.length ? median(valid.map((s) => s.opsPerSec)) : f.guess;
    const count = Math.round(rate * 5);
    await warmUp(t, 'tmpfs');
    const th0 = threadCpu(t.pid);
    const out = await qemuBench(clock, t, 'tmpfs', f, count, 60_000, 0);
    const th1 = threadCpu(t.pid);
    const perThread = [...th1]
      .map(([tid, v]) => ({ tid, comm: v.comm, us: v.us - (th0.get(tid)?.us ?? 0) }))
      .filter((x) => x.us > 0)
      .sort((a, b) => b.us - a.us);
    threadNote =
      'Per-thread CPU of the nodetgt process over the whole profiled run, login included ' +
      '(utime+stime from /proc/PID/task/*/stat, 10 ms ticks): ' +
      perThread.map((x) => `${x.comm}[${x.tid}] ${(x.us / 1000).toFixed(0)} ms`).join(', ') +
      `; phase ${fmt(out.seconds, 2)} s, qemu-img ${fmt(out.qemuUsPerIo, 1)} µs CPU/IO, ` +
      `machine ${fmt(out.machineBusyPct)}% busy.`;
    note = out.invalid
      ? `profiled run invalid: ${out.invalid}\n`
      : `Profiled run (tmpfs, ${f.label}, ${count} I/Os, under --cpu-prof): ` +
        `${fmt(out.value)} IOPS, ${fmt(out.cpuUsPerIo, 1)} µs CPU/IO. The profiles cover the process's ` +
        'whole life: the warm-up read of the LU before the run (see above) is in them.\n';
  } catch (e) {
    note += `profiled nodetgt failed: ${(e as Error).message}\n`;
  }
  await t.stop();
  targets = targets.filter((x) => x !== t);
  saveState();
  const files = fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'));
  if (!files.length) note += `no .cpuprofile written in ${dir}\n`;
  const profiles = files
    .map((x) => summariseProfile(path.join(dir, x), REPO))
    .sort((a, b) => b.busyMs - a.busyMs);
  profile = { note: `${note}Profiles: ${dir}\n`, threadNote, profiles };
}

// ---------------------------------------------------------------------------------------- system profile

/** The figures whose kernel-and-user split the report shows: the goals still open, and a read beside them. */
const PERF_FIGURES: { kind: Kind; id: string }[] = [
  { kind: 'tmpfs', id: 'rw-qd32' },
  { kind: 'tmpfs', id: 'rr-qd32' },
  { kind: 'null', id: 'rr-qd1' },
  { kind: 'null', id: 'rw-qd1' },
];
const PERF_SECS = 3;

async function perfRun(): Promise<void> {
  const L = ["### Where nodetgt's CPU goes, kernel included (perf)", ''];
  const json: unknown[] = [];
  const why = await perfUsable();
  const list = PERF_FIGURES.filter((x) => kinds.includes(x.kind));
  if (why || !list.length) {
    L.push(`Skipped: ${why ?? 'none of its backings in this run'}.`);
    perfSection = { markdown: L.join('\n'), json };
    return;
  }
  L.push(
    `\`perf record -F 999 -g\` on the nodetgt process (node --perf-basic-prof, ${workers} workers) for ` +
      `${PERF_SECS} s inside a qemu-img run of each figure, the run started 1 s before and sized for ` +
      `${PERF_SECS + 3} s at the rate measured above. Each sample is put in the first class that fits its ` +
      'call chain: the scheduler (sleeping and waking up) in any system call; a system call by name (writev ' +
      "on loopback includes the receiver's TCP input, which the sender runs); other kernel work; then user " +
      "space by the leaf function. µs per I/O = share × the run's CPU µs per I/O (perf itself slows the " +
      'run: its rate and CPU are given).',
    '',
  );
  const log = path.join(WORK, `nodetgt-perf-${STAMP}.log`);
  const t = new Nodetgt('iqn.2026-11.bench.nodetgt:perf', log, REPO, WORK, workers, ['--perf-basic-prof']);
  targets.push(t);
  try {
    await t.start(backingsFor([...new Set(list.map((x) => x.kind))]));
    saveState();
    for (const { kind, id } of list) {
      if (aborted || !t.alive) break;
      const f = FIGURES.find((x) => x.id === id)!;
      await warmUp(t, kind);
      const valid = nodetgtRuns(kind, id);
      const rate = valid.length ? median(valid.map((s) => s.opsPerSec)) : f.guess;
      const count = Math.max(minCount(f, false), Math.round(rate * (PERF_SECS + 3)));
      const running = qemuBench(clock, t, kind, f, count, 120_000, 0);
      await new Promise((r) => setTimeout(r, 1000));
      let summary: PerfSummary | undefined;
      let err = '';
      try {
        summary = await recordPerf(t.pid, PERF_SECS, path.join(WORK, `perf-${STAMP}-${kind}-${id}.data`));
      } catch (e) {
        err = (e as Error).message;
      }
      const out = await running;
      L.push(`#### ${kind}, ${f.label}`, '');
      if (!summary || out.invalid) {
        L.push(`No profile: ${err || out.invalid}.`, '');
        continue;
      }
      const tgt = valid.length ? median(valid.map((s) => s.cpuUsPerIo)) : undefined;
      L.push(
        `Under perf: ${fmt(out.value)} ${unit(f)}, nodetgt ${fmt(out.cpuUsPerIo, 1)} µs CPU/IO ` +
          `(${tgt !== undefined ? `${fmt(tgt, 1)} without perf, ` : ''}qemu-img ${fmt(out.qemuUsPerIo, 1)}); ` +
          `${summary.samples} samples, ${(100 * summary.busiestThreadShare).toFixed(0)}% of them on one thread ` +
          '(the worker serving the connection).',
        '',
        ...perfMarkdown(summary, out.cpuUsPerIo),
        '',
      );
      json.push({ kind, figure: id, value: out.value, cpuUsPerIo: out.cpuUsPerIo, summary });
    }
  } catch (e) {
    L.push(`perf run failed: ${(e as Error).message}`);
  }
  await t.stop();
  targets = targets.filter((x) => x !== t);
  saveState();
  fs.rmSync(`/tmp/perf-${t.pid}.map`, { force: true });
  perfSection = { markdown: L.join('\n'), json };
}

// ---------------------------------------------------------------------------------------- report

async function report(): Promise<void> {
  const info = machineInfo(REPO);
  const input: ReportInput = {
    info,
    kinds,
    reps,
    minSecs,
    workers,
    work: WORK,
    samples,
    clock,
    fio: fioValue,
    ceilings,
    problems,
    logs: targets.map((t) => ({ name: t.name, lines: t.logTail(15) })),
    profile,
    digests,
    aborted,
    busy: { maxOthersPct: maxOthers, allow: allowBusy },
    note: runNote || undefined,
    sections: [perfSection?.markdown, rbd?.markdown].filter((x): x is string => !!x),
  };
  const json = {
    info,
    reps,
    minSecs,
    workers,
    kinds,
    clock,
    busy: input.busy,
    note: runNote,
    samples,
    fio: Object.fromEntries(fioValue),
    ceilings,
    events,
    profiles: profile?.profiles ?? [],
    perf: perfSection?.json,
    rbd: rbd?.json,
    digests,
  };
  fs.writeFileSync(path.join(WORK, `results-${STAMP}.json`), JSON.stringify(json, null, 1));
  let md = renderMarkdown(input);
  try {
    const file = await writeResults(resultsDir(REPO, info.date!), input, json);
    md = fs.readFileSync(file, 'utf8').trimEnd();
    process.stderr.write(`[bench] report: ${file}\n`);
  } catch (e) {
    problem(`writing bench/results failed: ${(e as Error).message}`);
    md = renderMarkdown({ ...input, problems });
  }
  process.stdout.write(md + '\n');
  fs.writeFileSync(path.join(WORK, `results-${STAMP}.md`), md + '\n');
  process.stderr.write(`[bench] results in ${WORK}/results-${STAMP}.{md,json}\n`);
}

// ---------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const t0 = Date.now();
  fs.mkdirSync(WORK, { recursive: true });
  for (const tool of ['tgtd', 'tgtadm', 'qemu-img', 'taskset', 'stdbuf', 'ss'])
    if ((await run('sh', ['-c', `command -v ${tool}`], 5000)).code !== 0)
      throw new Error(
        `${tool} not found (apt-get install tgt qemu-utils qemu-block-extra util-linux coreutils iproute2)`,
      );
  if (!fs.existsSync(path.join(REPO, 'dist/src/cli/main.js')))
    throw new Error('nodetgt is not built (npx tsc)');
  startGuardian();
  await clock.open();
  note(`CPU clock: ${clock.method}`);
  if (kinds.includes('tmpfs')) {
    note(`writing ${TMPFS_FILE} (1 GiB random)`);
    await fillFile(TMPFS_FILE);
  }
  if (kinds.includes('disk') && !aborted) {
    note(`writing ${DISK_FILE} (1 GiB random)`);
    await fillFile(DISK_FILE);
  }
  if (doFio && !aborted) {
    await iperfCeiling();
    await fioCeilings();
    // fio wrote over the files; that is fine (random data either way, all blocks allocated).
  }
  if (!aborted) await runMatrix();
  if (doDigests && !aborted)
    digests = await runDigests({
      clock,
      targets,
      kind: kinds.includes('tmpfs') ? 'tmpfs' : kinds[0]!,
      reps,
      secs: minSecs,
      log: note,
      aborted: () => aborted,
      qemu: true,
      maxOthersPct: maxOthers,
      allowBusy,
    });
  if (aborted) return; // the signal handler cleans up and reports
  for (const t of [...targets]) await t.stop();
  if (doProfile && !aborted) await profileRun();
  if (doPerf && !aborted) await perfRun();
  if (doRbd && !aborted)
    rbd = await rbdSection({
      repo: REPO,
      work: WORK,
      workers,
      clock,
      reps,
      secs: minSecs,
      note,
      aborted: () => aborted,
    });
  note(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!aborted) await report();
}

main()
  .catch((e: Error) => {
    problem(`fatal: ${e.stack ?? e.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
