/**
 * One measured run: `qemu-img bench` against one target, with the target's CPU read at the edges of
 * the I/O phase, and the checks that decide whether the run counts.
 *
 * The I/O phase: qemu-img logs in (opening the image), prints "Sending N requests...", issues them,
 * prints "Run completed in S seconds." and only then flushes (SYNCHRONIZE CACHE on close) and logs
 * out. Its stdout is made line-buffered (stdbuf -oL) so each line reaches us when it is printed, and
 * the target's CPU clock, qemu-img's CPU clock, the loopback byte counter and the machine's busy
 * time are read the moment each of the two lines arrives. CPU per I/O = target CPU between the two
 * readings / I/O count, so login, flush and logout are not charged to the rate, which is qemu-img's
 * own count / S. The target CPU over the whole qemu-img run is kept too (wholeCpuUs), to show how
 * much login, flush and logout cost.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { type CpuClock, type ClockReading } from './cpuclock';
import { type Hist } from './latency';
import { fmtRate, RANDOM_STEP, type Figure } from './figures';
import { CLK_TCK, killGroup, loopbackTxBytes, kernelThreadJiffies, machineJiffies, track } from './sys';
import { type Kind, type Target } from './targets';

export interface RunOut {
  cmdline: string;
  count: number;
  /** The I/O phase as qemu-img timed it ("Run completed in S seconds"). */
  seconds: number;
  /** IOPS for 4K, MB/s for 1M; NaN when the run failed before measuring anything. */
  value: number;
  opsPerSec: number;
  /** Target CPU (all threads) over the I/O phase, µs. */
  cpuUs: number;
  cpuUsPerIo: number;
  /** The initiator's own CPU per I/O over the I/O phase. */
  qemuUsPerIo: number;
  /** Target CPU from qemu-img's start to its exit (login + phase + flush + logout), µs. */
  wholeCpuUs: number;
  /** Time between our two readings, s (longer than `seconds` by qemu-img's buffer set-up, idle time). */
  windowSeconds: number;
  /** How far into the phase the start reading came (≤ 0: before it began), ms. */
  startLagMs: number;
  /** How long after the "Run completed" line arrived the end reading came, ms. */
  endLagMs: number;
  /** Bytes counted on lo during the phase (both directions' segments; others' traffic adds). */
  loBytes: number;
  /** Whole machine, all cores: share of time not idle during the phase. */
  machineBusyPct: number;
  /** Kernel threads (writeback, ksoftirqd, ...), share of all cores during the phase: mostly work for this I/O. */
  kernelPct: number;
  /** The same as machineBusyPct, less the target's, qemu-img's and kernel threads' CPU: what everything else used. */
  othersPct: number;
  /** Why the run does not count; undefined for a valid run. */
  invalid?: string;
  /** Invalid only because the phase was shorter than asked: rerun it with a bigger count. */
  short?: boolean;
  /** Valid, but the CPU figure is not precise to 2%: why. */
  coarse?: string;
  /** Other processes used more of the machine than --max-others during the phase: by how much. */
  busy?: string;
  /** nodetgt's latency histogram (the LU and operation of this run) over the whole qemu-img run. */
  hist?: Hist;
}

/** Limits that make a CPU figure "coarse": resolution, or a reading window off the I/O phase. */
export const COARSE_PCT = 2;

/**
 * Default --max-others: the share of the whole machine (all cores) that processes other than the
 * target and qemu-img may use during a phase before the run counts as taken on a busy machine. 15% is
 * under a third of one core on a 2-core box; the loopback's softirq work for our own I/O lands in it
 * too, so it cannot be near 0.
 */
export const MAX_OTHERS_PCT = 15;

/** Why a measured run counts as taken on a busy machine, or undefined. */
export function busyReason(out: Pick<RunOut, 'othersPct'>, maxOthersPct: number): string | undefined {
  return out.othersPct > maxOthersPct
    ? `machine busy: other processes used ${out.othersPct.toFixed(0)}% of it (limit ${maxOthersPct}%)`
    : undefined;
}

/** A run with nothing measured yet (NaN everywhere): the start of every RunOut. */
export function emptyRun(cmdline: string, count: number, invalid?: string): RunOut {
  return {
    cmdline,
    count,
    seconds: 0,
    value: NaN,
    opsPerSec: NaN,
    cpuUs: NaN,
    cpuUsPerIo: NaN,
    qemuUsPerIo: NaN,
    wholeCpuUs: NaN,
    windowSeconds: NaN,
    startLagMs: NaN,
    endLagMs: NaN,
    loBytes: NaN,
    machineBusyPct: NaN,
    kernelPct: NaN,
    othersPct: NaN,
    invalid,
  };
}

/** The machine's load counters at one moment: /proc/stat's busy and total jiffies, and kernel threads'. */
export interface LoadMark {
  jiffies: [number, number];
  /** kernelThreadJiffies() at the reading. */
  kthreads: number;
}

export const loadMark = (): LoadMark => ({ jiffies: machineJiffies(), kthreads: kernelThreadJiffies() });

/**
 * Between two marks, % of the machine (all cores): busy; kernel threads; and others, what the rest used beyond
 * `measuredUs`, the CPU of the processes under test (target and initiator). Kernel threads only: irq and softirq
 * time is also charged to the task it interrupted (the target's own CPU clock counts it), so taking /proc/stat's
 * irq and softirq columns out too would count it twice.
 */
export function loadBetween(a: LoadMark, b: LoadMark, measuredUs: number) {
  const busyUs = ((b.jiffies[0] - a.jiffies[0]) * 1e6) / CLK_TCK;
  const totalUs = Math.max(1, ((b.jiffies[1] - a.jiffies[1]) * 1e6) / CLK_TCK);
  const kernelUs = ((b.kthreads - a.kthreads) * 1e6) / CLK_TCK;
  return {
    machineBusyPct: (100 * busyUs) / totalUs,
    kernelPct: (100 * kernelUs) / totalUs,
    othersPct: (100 * (busyUs - measuredUs - kernelUs)) / totalUs,
  };
}

interface Mark extends ClockReading, LoadMark {
  /** When the line arrived here (CLOCK_MONOTONIC, s). */
  arrived: number;
  /** qemu-img's main thread's CPU, µs. */
  qemu: number;
  lo: number;
}

/**
 * CPU time of a process's main thread, µs, from /proc/PID/schedstat (ns): read synchronously, so
 * it comes before qemu-img can exit after its last line. Its main thread does all the I/O work
 * (libiscsi runs in qemu's main loop).
 */
function mainThreadCpu(pid: number): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
  } catch {
    return NaN;
  }
}

/**
 * A run is INVALID (left out of the medians) when: qemu-img timed out, exited non-zero or by a
 * signal, or wrote anything to stderr; its stdout lacks the "Sending" or the "Run completed" line;
 * the target died (or its CPU clock could not be read); less than 90% of the I/O's bytes crossed
 * loopback during the phase (the initiator skipped transfers, e.g. reads of blocks it believes
 * unmapped); the phase lasted less than minSecs (the caller resizes and reruns).
 */
export async function qemuBench(
  clock: CpuClock,
  t: Target,
  kind: Kind,
  f: Figure,
  count: number,
  timeoutMs: number,
  minSecs: number,
  /** Instead of `-f raw URL`: e.g. ['--image-opts', 'driver=iscsi,...,header-digest=crc32c']. */
  image?: string[],
): Promise<RunOut> {
  const args = [
    'bench',
    ...(image ? [] : ['-f', 'raw']),
    '-t',
    'none',
    '-s',
    String(f.bs),
    '-d',
    String(f.qd),
  ];
  args.push('-c', String(count), ...(f.write ? ['-w'] : []));
  args.push('-S', String(f.random ? RANDOM_STEP : f.bs), ...(image ?? [t.url(kind)]));
  const cmd = [...(f.pinned ? ['taskset', '-c', '0'] : []), 'stdbuf', '-oL', 'qemu-img', ...args];
  const cmdline = cmd.join(' ');
  const out = emptyRun(cmdline, count);

  const before = await clock.read([t.pid]);
  // taskset and stdbuf exec: the child's pid is qemu-img's.
  const child = track(spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
  const qpid = child.pid ?? 0;
  const mark = async (): Promise<Mark> => {
    const arrived = Number(process.hrtime.bigint()) / 1e9;
    const qemu = mainThreadCpu(qpid);
    const lo = loopbackTxBytes();
    const load = loadMark();
    return { ...(await clock.read([t.pid])), arrived, qemu, lo, ...load };
  };
  let stdout = '';
  let stderr = '';
  let start: Promise<Mark> | undefined;
  let end: Promise<Mark> | undefined;
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    start ??= stdout.includes('Sending ') ? mark() : undefined;
    end ??= stdout.includes('Run completed in ') ? mark() : undefined;
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, timeoutMs);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on('error', (e) => (stderr += String(e)));
    child.on('close', (c, s) => resolve([c, s]));
  });
  clearTimeout(timer);
  const after = await clock.read([t.pid]);
  const s = start && (await start);
  const e = end && (await end);

  const invalid = (why: string) => ({ ...out, invalid: why });
  const firstLines = (text: string) => text.trim().split('\n').slice(0, 4).join(' | ');
  if (timedOut) return invalid(`timed out after ${(timeoutMs / 1000).toFixed(0)} s`);
  if (code !== 0) return invalid(`qemu-img exited with ${code ?? signal}: ${firstLines(stderr || stdout)}`);
  const [cpuAfter, cpuEnd, cpuStart] = [after.cpu[0], e?.cpu[0], s?.cpu[0]];
  if (!t.alive || cpuAfter === undefined || (e && cpuEnd === undefined))
    return invalid(`target died or its CPU could not be read (${t.died ?? 'still running'})`);
  if (stderr.trim()) return invalid(`qemu-img wrote to stderr: ${firstLines(stderr)}`);
  const m = /Run completed in ([\d.]+) seconds/.exec(stdout);
  if (!s || !e || !m || cpuStart === undefined || cpuEnd === undefined)
    return invalid('no "Sending" or "Run completed" line');

  const seconds = Number(m[1]);
  const cpuUs = cpuEnd - cpuStart;
  const qemuUs = e.qemu - s.qemu;
  Object.assign(out, {
    seconds,
    opsPerSec: count / seconds,
    value: fmtRate(f, count / seconds),
    cpuUs,
    cpuUsPerIo: cpuUs / count,
    qemuUsPerIo: qemuUs / count,
    wholeCpuUs: cpuAfter - (before.cpu[0] ?? NaN),
    windowSeconds: e.mono - s.mono,
    startLagMs: 1000 * (s.mono - (e.arrived - seconds)),
    endLagMs: 1000 * (e.mono - e.arrived),
    loBytes: e.lo - s.lo,
    ...loadBetween(s, e, cpuUs + qemuUs),
  });

  const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;
  if (out.loBytes < 0.9 * count * f.bs)
    return invalid(
      `the data did not cross loopback: ${mb(out.loBytes)} on lo during the phase for ${mb(count * f.bs)} of I/O`,
    );
  if (seconds < minSecs)
    return { ...invalid(`phase of ${seconds.toFixed(2)} s, shorter than ${minSecs} s`), short: true };
  const why: string[] = [];
  const resPct = (100 * clock.resolutionUs) / cpuUs;
  if (resPct > COARSE_PCT) why.push(`CPU resolution is ${resPct.toFixed(1)}% of the CPU measured`);
  // Before the phase the target is idle, so an early start reading costs nothing; a late one misses
  // part of the phase, a late end reading may take in the flush and logout.
  const lagPct = (100 * (Math.max(0, out.startLagMs) + out.endLagMs)) / (1000 * seconds);
  if (lagPct > COARSE_PCT)
    why.push(
      `CPU readings ${out.startLagMs.toFixed(0)} ms into the phase and ${out.endLagMs.toFixed(0)} ms after it`,
    );
  return why.length ? { ...out, coarse: why.join('; ') } : out;
}
