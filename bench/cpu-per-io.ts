/**
 * Target CPU per I/O of one or more nodetgt builds, side by side: the repeatable measurement for
 * bisecting a CPU regression and for showing a fix.
 *
 *   node dist/bench/cpu-per-io.js [--reps N] [--secs S] [--figures rr-qd32,rw-qd32,sr-qd16]
 *                                  [--workers N] [--size MiB] [--pin] [--cpu-prof DIR] [--counts DIR]
 *                                  [--dir DIR [--direct]] label=/path/to/checkout ...
 *
 * Each build (a checkout with dist/ and the addon built; this checkout when none is named) serves the
 * same tmpfs file. Every build's target runs for the whole session, idle while another is measured,
 * and the runs alternate: repetition r runs each figure on build 1, 2, ..., n (the order reversed on
 * odd repetitions), so a slow spell on the shared machine falls on all builds alike. Printed per build
 * and figure: the median target CPU µs per I/O (qemu-img bench over libiscsi; the I/O phase only,
 * read with the process CPU clock, as bench/lib/measure.ts does), min and max, the median rate.
 * Invalid runs (failed, short, data not on loopback) are listed and left out; busy-machine runs are
 * kept (this machine is shared) but the other load is printed with each run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CpuClock } from './lib/cpuclock';
import { FIGURES, type Figure } from './lib/figures';
import { qemuBench, type RunOut } from './lib/measure';
import { type HotCounts } from './lib/hot-counts';
import { summariseProfile } from './lib/profile';
import { Nodetgt } from './lib/targets';
import { median, liveChildren, killGroup, run } from './lib/sys';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
/** --dir DIR [--direct]: the file on a real file system (opened O_DIRECT with --direct, as the bench's disk LUN). */
const dirOpt = opt('--dir');
const directAt = argv.indexOf('--direct');
const direct = directAt >= 0;
if (direct) argv.splice(directAt, 1);
const KIND = dirOpt !== undefined ? 'disk' : 'tmpfs';
const reps = Number(opt('--reps') ?? 3);
const secs = Number(opt('--secs') ?? 2);
const workers = Number(opt('--workers') ?? os.cpus().length);
const sizeMiB = Number(opt('--size') ?? 256);
/** Write V8 CPU profiles of every build's threads under this directory (one subdirectory per build). */
const profDir = opt('--cpu-prof');
/**
 * Pin each target (every thread) and qemu-img to CPU 0: the two then take turns on one CPU, so each pass of the
 * target's event loop handles a full batch whatever else the machine runs. Without it, on a busy shared machine
 * the batch sizes (and with them the CPU per I/O) follow the other load.
 */
const pin = argv.includes('--pin') ? (argv.splice(argv.indexOf('--pin'), 1), true) : false;
/** Count promises, performance.now() calls, setImmediate calls and GCs per I/O (bench/lib/hot-counts.ts). */
const countsDir = opt('--counts');
const figureIds = (opt('--figures') ?? 'rr-qd32,rw-qd32,sr-qd16').split(',');
const figures = figureIds.map((id) => {
  const f = FIGURES.find((x) => x.id === id);
  if (!f) throw new Error(`unknown figure ${id} (${FIGURES.map((x) => x.id).join(', ')})`);
  return { ...f, pinned: pin };
});
const builds = (argv.length ? argv : [`this=${path.resolve(__dirname, '../..')}`]).map((a) => {
  const i = a.indexOf('=');
  const [label, repo] = i > 0 ? [a.slice(0, i), a.slice(i + 1)] : [path.basename(a), a];
  if (!fs.existsSync(path.join(repo, 'dist/src/cli/main.js'))) throw new Error(`${repo}: not built (dist/)`);
  return { label, repo: path.resolve(repo) };
});
if (!(reps >= 1 && secs > 0 && workers >= 1 && sizeMiB >= 16 && (sizeMiB & (sizeMiB - 1)) === 0))
  throw new Error(
    '--reps, --secs, --workers positive; --size a power of two >= 16 (the random walk needs it)',
  );

const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-cpu-'));
const FILE = path.join(dirOpt ?? '/dev/shm', `nodetgt-cpu-${process.pid}.img`);
const targets: Nodetgt[] = [];

function fill(): void {
  const fd = fs.openSync(FILE, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let off = 0; off < sizeMiB << 20; off += chunk.length) {
    for (let i = 0; i < chunk.length; i += 4) chunk.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
    fs.writeSync(fd, chunk, 0, chunk.length, off);
  }
  fs.closeSync(fd);
}

function cleanup(): void {
  for (const t of targets) t.killSync();
  for (const c of liveChildren) killGroup(c);
  fs.rmSync(FILE, { force: true });
  fs.rmSync(WORK, { recursive: true, force: true });
}

/** I/O count for about `secs` seconds at a rate seen before (a first guess from the figure table). */
const countFor = (f: Figure, rate: number | undefined): number =>
  Math.max(200, Math.round((rate ?? f.guess * 1.5) * secs));

async function main(): Promise<void> {
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  fill();
  const clock = await new CpuClock().open();
  for (const [i, b] of builds.entries()) {
    const prof = profDir ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(profDir, b.label)] : [];
    if (countsDir) {
      process.env.NODETGT_HOT_COUNTS = path.resolve(countsDir, b.label);
      fs.mkdirSync(process.env.NODETGT_HOT_COUNTS, { recursive: true });
      prof.push('-r', path.join(__dirname, 'lib/hot-counts.js'));
    }
    const log = path.join(WORK, `nodetgt-${i}.log`);
    const t = new Nodetgt(`iqn.2026-11.bench.cpu:b${i}`, log, b.repo, WORK, workers, prof);
    targets.push(t);
    await t.start([{ kind: KIND, file: FILE, direct }]);
    if (pin && (await run('taskset', ['-a', '-p', '-c', '0', String(t.pid)], 5000)).code !== 0)
      throw new Error(`taskset could not pin ${b.label}`);
  }
  process.stdout.write(
    `clock: ${clock.method}; ${builds.length} build(s), ${reps} rep(s), ~${secs} s per run\n`,
  );
  const results = new Map<string, RunOut[]>();
  const rate = new Map<string, number>();
  /** I/Os each build served over the whole session (warm-ups included): what a profile's time divides by. */
  const ios = builds.map(() => 0);
  for (const f of figures) {
    // One unmeasured warm-up run per build: page cache, JIT, the first slabs.
    for (const [i, t] of targets.entries()) {
      const out = await qemuBench(clock, t, KIND, f, countFor(f, undefined) >> 2, 60_000, 0);
      ios[i] += out.count;
      if (!out.invalid) rate.set(f.id, Math.max(rate.get(f.id) ?? 0, out.opsPerSec));
    }
    for (let r = 0; r < reps; r++) {
      const order = builds.map((_, i) => i);
      if (r % 2) order.reverse();
      for (const i of order) {
        const t = targets[i]!;
        const out = await qemuBench(clock, t, KIND, f, countFor(f, rate.get(f.id)), 120_000, 0);
        ios[i] += out.count;
        const key = `${f.id}\t${i}`;
        results.set(key, [...(results.get(key) ?? []), out]);
        const what = out.invalid
          ? `INVALID ${out.invalid}`
          : `${out.cpuUsPerIo.toFixed(2)} µs/IO ${out.opsPerSec.toFixed(0)} IO/s others ${out.othersPct.toFixed(0)}%`;
        process.stdout.write(`  ${f.id} rep ${r} ${builds[i]!.label}: ${what}\n`);
        if (!t.alive) throw new Error(`${builds[i]!.label}: target died (${t.died}); log ${t.logFile}`);
      }
    }
  }
  process.stdout.write('\nfigure\tbuild\tCPU µs/IO median [min-max]\tIO/s median\tvalid runs\n');
  for (const f of figures)
    for (const [i, b] of builds.entries()) {
      const ok = (results.get(`${f.id}\t${i}`) ?? []).filter((o) => !o.invalid);
      const cpu = ok.map((o) => o.cpuUsPerIo);
      const line = ok.length
        ? `${median(cpu).toFixed(2)} [${Math.min(...cpu).toFixed(2)}-${Math.max(...cpu).toFixed(2)}]\t` +
          `${median(ok.map((o) => o.opsPerSec)).toFixed(0)}`
        : 'no valid run\t-';
      process.stdout.write(`${f.id}\t${b.label}\t${line}\t${ok.length}\n`);
    }
  clock.close();
  if (countsDir) {
    await new Promise((r) => setTimeout(r, 700)); // every thread has written its totals since the last run
    process.stdout.write('\nbuild\tthread\tper I/O: promises\tperformance.now\tsetImmediate\tGCs\tGC µs\n');
    for (const [i, b] of builds.entries()) {
      const dir = path.resolve(countsDir, b.label);
      for (const f of fs.readdirSync(dir)) {
        const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as HotCounts;
        const n = ios[i]!;
        const cols = [c.promises / n, c.now / n, c.immediates / n, c.gcs / n, (1000 * c.gcMs) / n];
        process.stdout.write(`${b.label}\t${f}\t${cols.map((x) => x.toFixed(3)).join('\t')}\n`);
      }
    }
  }
  for (const t of targets) await t.stop();
  if (profDir)
    for (const b of builds) {
      const dir = path.resolve(profDir, b.label);
      for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
        const p = summariseProfile(path.join(dir, f), b.repo, 60);
        if (p.busyMs < 100) continue;
        const perIo = (ms: number) => ((ms * 1000) / ios[builds.indexOf(b)]!).toFixed(3);
        process.stdout.write(
          `\n${b.label} ${p.thread}: ${p.busyMs.toFixed(0)} ms busy of ${p.wallMs.toFixed(0)}, ` +
            `${perIo(p.busyMs)} µs per I/O (${ios[builds.indexOf(b)]} I/Os)\n`,
        );
        for (const x of p.top)
          process.stdout.write(`  ${x.pctBusy.toFixed(1)}%\t${perIo(x.ms)} µs/IO\t${x.fn}\t${x.where}\n`);
      }
    }
}

main()
  .catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  })
  .finally(cleanup);
