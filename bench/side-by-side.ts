/**
 * nodetgt against tgtd, side by side, through the same initiator (qemu-img bench over libiscsi) on
 * the same backing files: a 1 GiB file on tmpfs, a 1 GiB file on disk (opened O_DIRECT by both
 * targets) and the null backstore. Each figure is run alternately on both targets, repeated, and
 * reported as medians with nodetgt/tgtd ratios and each target's own CPU time per I/O.
 *
 *   npm run bench                       full run (3 repetitions, ~2.5 s per run, ~9 minutes)
 *   npm run bench -- --quick            1 repetition, ~1 s per run, no profile
 *   npm run bench -- --only tmpfs|disk|null[,..]   --reps N   --secs S   --workers N
 *   npm run bench -- --no-fio --no-profile --keep (keep the backing files)
 *
 * Everything listens on 127.0.0.1 only. Output: markdown on stdout, and in /var/tmp/nodetgt-bench/
 * the same markdown, a JSON file with every sample, the targets' logs and the CPU profiles.
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { summariseProfile, type ProfileSummary } from './lib/profile';
import {
  cpuMicros,
  freePort,
  killGroup,
  liveChildren,
  loopbackTxBytes,
  machineInfo,
  machineJiffies,
  median,
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
      '       [--workers N] [--no-fio] [--no-profile] [--keep]\n',
  );
  process.exit(0);
}
const quick = flag('--quick');
const reps = Number(opt('--reps') ?? (quick ? 1 : 3));
const secs = Number(opt('--secs') ?? (quick ? 1 : 2.5));
const workers = Number(opt('--workers') ?? os.cpus().length);
const kinds = (opt('--only') ?? 'tmpfs,disk,null').split(',') as Kind[];
for (const k of kinds)
  if (!['tmpfs', 'disk', 'null'].includes(k)) {
    process.stderr.write(`--only: unknown backing '${k}' (tmpfs, disk, null)\n`);
    process.exit(2);
  }
const doFio = !flag('--no-fio');
const doProfile = !flag('--no-profile') && (!quick || flag('--profile')) && kinds.includes('tmpfs');
const keep = flag('--keep');

const REPO = path.resolve(__dirname, '../..');
const WORK = '/var/tmp/nodetgt-bench';
const SIZE = 1 << 30;
const STAMP = new Date().toISOString().replace(/[:.]/g, '-');
const TMPFS_FILE = `/dev/shm/nodetgt-bench-${process.pid}.img`;
const DISK_FILE = path.join(WORK, 'disk.img');
const NCPU = os.cpus().length;

// ---------------------------------------------------------------------------------------- figures

interface Figure {
  id: string;
  label: string;
  write: boolean;
  bs: number;
  qd: number;
  random: boolean;
  pinned: boolean;
  /** First guess at operations per second, to size the first run. */
  guess: number;
}
const K4 = 4096;
const M1 = 1 << 20;
const FIGURES: Figure[] = [
  {
    id: 'rr-qd1',
    label: '4K rand read QD1',
    write: false,
    bs: K4,
    qd: 1,
    random: true,
    pinned: false,
    guess: 4000,
  },
  {
    id: 'rw-qd1',
    label: '4K rand write QD1',
    write: true,
    bs: K4,
    qd: 1,
    random: true,
    pinned: false,
    guess: 4000,
  },
  {
    id: 'rr-qd32',
    label: '4K rand read QD32',
    write: false,
    bs: K4,
    qd: 32,
    random: true,
    pinned: false,
    guess: 25000,
  },
  {
    id: 'rw-qd32',
    label: '4K rand write QD32',
    write: true,
    bs: K4,
    qd: 32,
    random: true,
    pinned: false,
    guess: 25000,
  },
  {
    id: 'sr-qd16',
    label: '1M seq read QD16',
    write: false,
    bs: M1,
    qd: 16,
    random: false,
    pinned: false,
    guess: 600,
  },
  {
    id: 'sw-qd16',
    label: '1M seq write QD16',
    write: true,
    bs: M1,
    qd: 16,
    random: false,
    pinned: false,
    guess: 500,
  },
  {
    id: 'rr-qd1-pin',
    label: '4K rand read QD1 pinned',
    write: false,
    bs: K4,
    qd: 1,
    random: true,
    pinned: true,
    guess: 10000,
  },
  {
    id: 'rw-qd1-pin',
    label: '4K rand write QD1 pinned',
    write: true,
    bs: K4,
    qd: 1,
    random: true,
    pinned: true,
    guess: 10000,
  },
];
// qemu-img bench has no random mode. It walks offset += step modulo the image size; with a step of
// an odd number of 4 KiB blocks over a power-of-two size (1 GiB, or 1 TiB for tgtd's null LUN)
// the walk visits every block once before repeating. 162013 ~ 0.618 * 2^18 spreads it well.
const RANDOM_STEP = 162013 * K4;

const isIops = (f: Figure) => f.bs === K4;
const fmtRate = (f: Figure, opsPerSec: number) => (isIops(f) ? opsPerSec : (opsPerSec * f.bs) / 1e6);

// ---------------------------------------------------------------------------------------- state

interface Sample {
  backing: Kind;
  figure: string;
  target: string;
  rep: number;
  count: number;
  seconds: number;
  /** IOPS for 4K, MB/s (10^6) for 1M. */
  value: number;
  cpuUsPerIo: number;
  /** The initiator's (qemu-img's) own CPU per I/O. */
  qemuUsPerIo?: number;
  /** Whole machine, all cores: share of time not idle during the run. */
  machineBusyPct?: number;
  error?: string;
  warn?: string;
}
const samples: Sample[] = [];
const events: string[] = [];
const ceilings: { what: string; value: string }[] = [];
let profiles: ProfileSummary[] = [];
let profileNote = '';
let threadNote = '';
let aborted = false;
let targets: Target[] = [];

function note(msg: string): void {
  events.push(msg);
  process.stderr.write(`[bench] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------- cleanup

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of liveChildren)
      if (c.spawnargs[0] !== 'tgtd' && !c.spawnargs.includes('serve')) killGroup(c);
    for (const t of targets) await t.stop().catch((e: Error) => note(`stopping ${t.name}: ${e.message}`));
    if (!keep) for (const f of [TMPFS_FILE, DISK_FILE]) fs.rmSync(f, { force: true });
  })();
  return cleaning;
}
process.on('exit', () => {
  for (const t of targets) t.killSync();
  for (const c of liveChildren) killGroup(c);
  if (!keep) fs.rmSync(TMPFS_FILE, { force: true });
});
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    if (++signals > 1) process.exit(130);
    aborted = true;
    note(`${sig}: stopping the targets (again to force)`);
    for (const c of liveChildren)
      if (c.spawnargs[0] !== 'tgtd' && !c.spawnargs.includes('serve')) killGroup(c);
    void cleanup().then(() => {
      report();
      process.exit(130);
    });
  });

// ---------------------------------------------------------------------------------------- setup

function fillFile(file: string): void {
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, SIZE); // sparse first, then every block written once
    for (let off = 0; off < SIZE; off += chunk.length) {
      randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, off);
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

// ---------------------------------------------------------------------------------------- one run

interface RunOut {
  opsPerSec: number;
  seconds: number;
  cpuUsPerIo: number;
  qemuUsPerIo?: number;
  machineBusyPct?: number;
  error?: string;
  warn?: string;
}

async function qemuBench(
  t: Target,
  kind: Kind,
  f: Figure,
  count: number,
  timeoutMs: number,
): Promise<RunOut> {
  const args = [
    'bench',
    '-f',
    'raw',
    '-t',
    'none',
    '-s',
    String(f.bs),
    '-d',
    String(f.qd),
    '-c',
    String(count),
  ];
  if (f.write) args.push('-w');
  args.push('-S', String(f.random ? RANDOM_STEP : f.bs), t.url(kind));
  const cmdline = `${f.pinned ? 'taskset -c 0 ' : ''}qemu-img ${args.join(' ')}`;
  // bash's `times` gives the initiator's own CPU time (children's user and system).
  const script = `${cmdline}; rc=$?; echo @@TIMES; times; exit $rc`;
  const cpu0 = cpuMicros(t.pid);
  const m0 = machineJiffies();
  const lo0 = loopbackTxBytes();
  const r = await run('bash', ['-c', script], timeoutMs);
  const lo1 = loopbackTxBytes();
  const cpu1 = cpuMicros(t.pid);
  const m1 = machineJiffies();
  const m = /Run completed in ([\d.]+) seconds/.exec(r.stdout);
  const tm = /@@TIMES\n.*\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s/.exec(r.stdout);
  const qemuUs = tm ? (Number(tm[1]) * 60 + Number(tm[2]) + Number(tm[3]) * 60 + Number(tm[4])) * 1e6 : NaN;
  if (r.timedOut)
    return { opsPerSec: 0, seconds: 0, cpuUsPerIo: 0, error: `timed out after ${timeoutMs} ms: ${cmdline}` };
  if (r.code !== 0 || !m)
    return {
      opsPerSec: 0,
      seconds: 0,
      cpuUsPerIo: 0,
      error: `exit ${r.code ?? r.signal}: ${cmdline}\n    ${(r.stderr.trim() || r.stdout.trim()).split('\n').slice(0, 6).join('\n    ')}`,
    };
  const seconds = Number(m[1]);
  // The run completed, but qemu-img complained on the way (e.g. a refused command): keep the
  // figure and report the complaint.
  const stderr = r.stderr.trim().split('\n').filter(Boolean);
  let warn = stderr.length
    ? `${cmdline}\n    ${stderr.length} stderr line(s), first: ${stderr.slice(0, 3).join('\n    ')}`
    : undefined;
  // The data must cross loopback. Other traffic only adds to the counter, so too little means the
  // initiator skipped transfers (qemu reads nothing for blocks GET LBA STATUS calls unmapped when
  // the LUN reports LBPRZ): the figure is then not a measure of the target.
  const moved = lo1 - lo0;
  if (moved < 0.9 * count * f.bs)
    warn =
      `${warn ? warn + '\n    ' : `${cmdline}\n    `}only ${(moved / 1e6).toFixed(0)} MB crossed loopback ` +
      `for ${((count * f.bs) / 1e6).toFixed(0)} MB of I/O: the initiator skipped data transfers; figure invalid`;
  return {
    warn,
    opsPerSec: count / seconds,
    seconds,
    cpuUsPerIo: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / count : NaN,
    qemuUsPerIo: qemuUs / count,
    machineBusyPct: (100 * (m1[0] - m0[0])) / Math.max(1, m1[1] - m0[1]),
  };
}

async function pin(t: Target, on: boolean): Promise<void> {
  if (!t.alive) return;
  const r = await run('taskset', ['-a', '-p', '-c', on ? '0' : `0-${NCPU - 1}`, String(t.pid)], 5000);
  if (r.code !== 0) note(`taskset ${t.name}: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------- matrix

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
  for (const t of targets) {
    try {
      await t.start(backings);
      note(`${t.name} pid ${t.pid} on 127.0.0.1:${t.port}`);
    } catch (e) {
      t.died = `failed to start: ${(e as Error).message}`;
      note(`${t.name} ${t.died}`);
    }
  }
  const lastRate = new Map<string, number>();
  const failures = new Map<string, number>();
  const reported = new Set<Target>();
  let order = 0;
  for (const b of backings) {
    for (const t of targets)
      if (t.died && !t.died.startsWith('failed to start') && !t.alive) {
        note(`${t.name} died earlier (${t.died}); restarting it for ${b.kind}`);
        try {
          await t.stop();
          await t.start(backings);
          t.died = undefined;
          reported.delete(t);
        } catch (e) {
          t.died = `restart failed: ${(e as Error).message}`;
          note(`${t.name} ${t.died}`);
        }
      }
    for (const f of FIGURES) {
      if (aborted) return;
      if (f.pinned) for (const t of targets) await pin(t, true);
      for (let rep = 0; rep < reps; rep++) {
        const pair = order++ % 2 ? [ntg, tgtd] : [tgtd, ntg];
        for (const t of pair) {
          if (aborted) return;
          const key = `${b.kind}/${f.id}/${t.name}`;
          const base: Omit<Sample, 'count' | 'seconds' | 'value' | 'cpuUsPerIo'> = {
            backing: b.kind,
            figure: f.id,
            target: t.name,
            rep,
          };
          if (!t.alive || (failures.get(`${b.kind}/${t.name}`) ?? 0) >= 3) {
            const why = !t.alive ? (t.died ?? 'not running') : 'skipped after 3 consecutive failures';
            if (!reported.has(t)) {
              reported.add(t);
              note(`${t.name} ${why}: its runs are skipped (found before ${key} rep ${rep})`);
              for (const l of t.logTail(10)) note(`  ${t.name} log: ${l}`);
            }
            samples.push({ ...base, count: 0, seconds: 0, value: NaN, cpuUsPerIo: NaN, error: why });
            continue;
          }
          // Size the run from what is known: this target's last run of this figure, else the other
          // target's, else this target's unpinned twin, else a cautious guess.
          const other = pair.find((x) => x !== t)!.name;
          const twin = f.id.replace(/-pin$/, '');
          const rate =
            lastRate.get(key) ??
            lastRate.get(`${b.kind}/${f.id}/${other}`) ??
            lastRate.get(`${b.kind}/${twin}/${t.name}`) ??
            f.guess * 0.25;
          const count = Math.max(f.bs === M1 ? 64 : 500, Math.round(rate * secs));
          const expectMs = (count / rate) * 1000;
          const out = await qemuBench(t, b.kind, f, count, Math.max(30_000, 10 * expectMs));
          if (out.error) {
            await sleep(200);
            const why = t.alive ? out.error : `${out.error}\n    target ${t.died ?? 'gone'}`;
            note(`${key} rep ${rep}: ${why}`);
            for (const l of t.logTail(10)) note(`  ${t.name} log: ${l}`);
            failures.set(`${b.kind}/${t.name}`, (failures.get(`${b.kind}/${t.name}`) ?? 0) + 1);
            samples.push({ ...base, count, seconds: 0, value: NaN, cpuUsPerIo: NaN, error: why });
            continue;
          }
          if (out.warn) {
            note(`${key} rep ${rep}: completed, but: ${out.warn}`);
            for (const l of t.logTail(5)) note(`  ${t.name} log: ${l}`);
          }
          failures.set(`${b.kind}/${t.name}`, 0);
          lastRate.set(key, out.opsPerSec);
          samples.push({
            ...base,
            count,
            seconds: out.seconds,
            value: fmtRate(f, out.opsPerSec),
            cpuUsPerIo: out.cpuUsPerIo,
            qemuUsPerIo: out.qemuUsPerIo,
            machineBusyPct: out.machineBusyPct,
            warn: out.warn,
          });
          process.stderr.write(
            `[bench] ${b.kind.padEnd(5)} ${f.label.padEnd(25)} ${t.name.padEnd(7)} rep ${rep}: ` +
              `${fmtRate(f, out.opsPerSec).toFixed(0)} ${isIops(f) ? 'IOPS' : 'MB/s'}, ` +
              `${out.cpuUsPerIo.toFixed(1)} us CPU/IO, qemu ${out.qemuUsPerIo?.toFixed(1)} us/IO, ` +
              `machine ${out.machineBusyPct?.toFixed(0)}% busy (${count} in ${out.seconds.toFixed(2)} s)\n`,
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
        note(`fio ${kind} ${f.label} failed: ${r.stderr.trim().split('\n')[0]}`);
      }
      fioValue.set(`${kind}/${f.id}`, value);
    }
}
const fioValue = new Map<string, number>();

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
  try {
    await t.start(backingsFor(['tmpfs']));
    const rates = samples.filter(
      (s) => s.backing === 'tmpfs' && s.figure === f.id && s.target === 'nodetgt' && !s.error,
    );
    const rate = rates.length ? median(rates.map((s) => s.value)) : f.guess;
    const count = Math.round(rate * 5);
    const th0 = threadCpu(t.pid);
    const out = await qemuBench(t, 'tmpfs', f, count, 60_000);
    const th1 = threadCpu(t.pid);
    const perThread = [...th1]
      .map(([tid, v]) => ({ tid, comm: v.comm, us: v.us - (th0.get(tid)?.us ?? 0) }))
      .filter((x) => x.us > 0)
      .sort((a, b) => b.us - a.us);
    threadNote =
      'Per-thread CPU of the nodetgt process over the profiled run (utime+stime from /proc/PID/task/*/stat): ' +
      perThread.map((x) => `${x.comm}[${x.tid}] ${(x.us / 1000).toFixed(0)} ms`).join(', ') +
      (out.seconds
        ? `; run took ${(out.seconds * 1000).toFixed(0)} ms wall, qemu-img ${fmt(out.qemuUsPerIo ?? NaN, 1)} µs CPU/IO, machine ${fmt(out.machineBusyPct ?? NaN)}% busy.`
        : '.');
    if (out.error) profileNote += `profiled run failed: ${out.error}\n`;
    else
      profileNote +=
        `Profiled run (tmpfs, ${f.label}, ${count} I/Os, under --cpu-prof): ` +
        `${out.opsPerSec.toFixed(0)} IOPS, ${out.cpuUsPerIo.toFixed(1)} us CPU/IO.\n`;
  } catch (e) {
    profileNote += `profiled nodetgt failed: ${(e as Error).message}\n`;
  }
  await t.stop();
  targets = targets.filter((x) => x !== t);
  const files = fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'));
  if (!files.length) profileNote += `no .cpuprofile written in ${dir}\n`;
  profiles = files.map((x) => summariseProfile(path.join(dir, x), REPO)).sort((a, b) => b.busyMs - a.busyMs);
  profileNote += `Profiles: ${dir}\n`;
}

// ---------------------------------------------------------------------------------------- report

const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '—');

function report(): string {
  const info = machineInfo();
  const L: string[] = [];
  L.push(`## nodetgt vs tgtd, side by side (${info.date})`, '');
  L.push(
    `Machine: ${info.cpu}, ${info.cores} cores, ${info.memory}; ${info.kernel}; node ${info.node}; ` +
      `tgtd ${info.tgtd}; ${info.qemu}; ${info.fio}.`,
  );
  L.push(
    `Initiator: \`qemu-img bench -f raw -t none\` over iscsi:// on 127.0.0.1 (libiscsi, no digests). ` +
      `nodetgt --workers ${workers}; tgtd default (rdwr backstore, 1.0.85 defaults). ` +
      `Backing: 1 GiB file on /dev/shm (buffered) and on ${WORK} (ext4 on /dev/vda, O_DIRECT on both targets), ` +
      `each created sparse then written once in full with random data; null = nodetgt null:1G, tgtd --bstype null. ` +
      `Random = odd 4 KiB stride (${RANDOM_STEP} B) over the power-of-two LUN. ` +
      `${reps} repetition(s) per figure, ~${secs} s each, targets alternated; medians shown. ` +
      `CPU = the target process's utime+stime (all threads) over the run / I/O count. ` +
      `"pinned": target (all threads) and qemu-img on CPU 0 (taskset).`,
  );
  L.push('');
  L.push(
    '| backing | test | unit | tgtd | nodetgt | nodetgt/tgtd | tgtd CPU µs/IO | nodetgt CPU µs/IO | CPU nodetgt/tgtd | fio io_uring |',
  );
  L.push('|---|---|---|--:|--:|--:|--:|--:|--:|--:|');
  for (const k of kinds)
    for (const f of FIGURES) {
      const pick = (tn: string) =>
        samples.filter((s) => s.backing === k && s.figure === f.id && s.target === tn && !s.error);
      const a = pick('tgtd');
      const b = pick('nodetgt');
      if (!samples.some((s) => s.backing === k && s.figure === f.id)) continue;
      const va = median(a.map((s) => s.value));
      const vb = median(b.map((s) => s.value));
      const ca = median(a.map((s) => s.cpuUsPerIo));
      const cb = median(b.map((s) => s.cpuUsPerIo));
      const fv = fioValue.get(`${k}/${f.id}`);
      const flag = (ss: Sample[]) => (ss.some((s) => s.warn) ? ' (!)' : '');
      L.push(
        `| ${k} | ${f.label} | ${isIops(f) ? 'IOPS' : 'MB/s'} | ${fmt(va)}${flag(a)} | ${fmt(vb)}${flag(b)} | ${fmt(vb / va, 2)} | ` +
          `${fmt(ca, 1)} | ${fmt(cb, 1)} | ${fmt(cb / ca, 2)} | ${fv === undefined ? '' : fmt(fv)} |`,
      );
    }
  L.push(
    '(!) = qemu-img printed errors or the data did not cross loopback in at least one repetition: see Problems seen.',
    '',
  );
  if (ceilings.length) L.push(...ceilings.map((c) => `- ${c.what}: ${c.value}`), '');
  L.push(
    '<details><summary>raw samples: value (IOPS or MB/s); target CPU µs/IO; qemu-img CPU µs/IO; machine busy % (2 cores = 100%)</summary>',
    '',
    '```',
  );
  for (const k of kinds)
    for (const f of FIGURES)
      for (const tn of ['tgtd', 'nodetgt']) {
        const ss = samples.filter((s) => s.backing === k && s.figure === f.id && s.target === tn);
        if (!ss.length) continue;
        L.push(
          `${k.padEnd(5)} ${f.id.padEnd(10)} ${tn.padEnd(7)} ` +
            ss
              .map((s) =>
                s.error
                  ? 'ERR'
                  : `${s.value.toFixed(0)};${s.cpuUsPerIo.toFixed(1)};${fmt(s.qemuUsPerIo ?? NaN, 1)};` +
                    `${fmt(s.machineBusyPct ?? NaN)}%${s.warn ? '(!)' : ''}`,
              )
              .join('  '),
        );
      }
  L.push(
    '```',
    '(!) = completed, but qemu-img printed errors or the data did not cross loopback (see Problems seen)',
    '</details>',
    '',
  );
  if (events.some((e) => /fail|error|died|timed out|exit|completed, but/i.test(e))) {
    L.push(
      '### Problems seen',
      '',
      '```',
      ...events.filter((e) => /fail|error|died|timed out|exit|completed, but|log:/i.test(e)),
      '```',
      '',
    );
  }
  for (const t of targets) {
    const w = t.logTail(15);
    if (w.length)
      L.push(`### ${t.name} log (warnings and errors, last ${w.length})`, '', '```', ...w, '```', '');
  }
  if (profileNote || profiles.length) {
    L.push(
      '### nodetgt CPU profile, 4K random read QD32 (tmpfs)',
      '',
      profileNote.trim(),
      '',
      threadNote,
      '',
    );
    for (const p of profiles) {
      if (p.busyMs < 50) continue;
      L.push(
        `${p.thread}: ${p.busyMs.toFixed(0)} ms on CPU (sampled) of ${p.wallMs.toFixed(0)} ms profiled`,
        '',
      );
      L.push('| self ms | % of busy | function | where |', '|--:|--:|---|---|');
      for (const e of p.top)
        L.push(`| ${e.ms.toFixed(0)} | ${e.pctBusy.toFixed(1)} | ${e.fn} | ${e.where} |`);
      L.push('');
    }
  }
  const md = L.join('\n');
  process.stdout.write(md + '\n');
  fs.writeFileSync(path.join(WORK, `results-${STAMP}.md`), md + '\n');
  fs.writeFileSync(
    path.join(WORK, `results-${STAMP}.json`),
    JSON.stringify(
      {
        info,
        reps,
        secs,
        workers,
        kinds,
        samples,
        fio: Object.fromEntries(fioValue),
        ceilings,
        events,
        profiles,
      },
      null,
      1,
    ),
  );
  process.stderr.write(`[bench] results in ${WORK}/results-${STAMP}.{md,json}\n`);
  return md;
}

// ---------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const t0 = Date.now();
  fs.mkdirSync(WORK, { recursive: true });
  for (const tool of ['tgtd', 'tgtadm', 'qemu-img', 'taskset', 'ss'])
    if ((await run('sh', ['-c', `command -v ${tool}`], 5000)).code !== 0)
      throw new Error(
        `${tool} not found (apt-get install tgt qemu-utils qemu-block-extra util-linux iproute2)`,
      );
  if (!fs.existsSync(path.join(REPO, 'dist/src/cli/main.js')))
    throw new Error('nodetgt is not built (npx tsc)');
  if (kinds.includes('tmpfs')) {
    note(`writing ${TMPFS_FILE} (1 GiB random)`);
    fillFile(TMPFS_FILE);
  }
  if (kinds.includes('disk')) {
    note(`writing ${DISK_FILE} (1 GiB random)`);
    fillFile(DISK_FILE);
  }
  if (doFio) {
    await iperfCeiling();
    await fioCeilings();
    // fio wrote over the files; that is fine (random data either way, all blocks allocated).
  }
  await runMatrix();
  for (const t of [...targets]) await t.stop();
  if (doProfile && !aborted) await profileRun();
  note(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!aborted) report();
}

main()
  .catch((e: Error) => {
    note(`fatal: ${e.stack ?? e.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
