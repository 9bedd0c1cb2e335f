/**
 * What CRC32C digests cost, on both targets in the same run: the project's own initiator
 * (bench/lib/driver.ts) with HeaderDigest and DataDigest both CRC32C, and the same initiator with both
 * None as the baseline, alternating on/off and tgtd/nodetgt, repeated; medians. QEMU (libiscsi) asks
 * for header digests only, so its figure (header-digest=crc32c vs none, 4K read QD32) is given beside.
 *
 * Figures: 4K random read/write at QD32 and 1 MiB sequential read/write at QD8. Per run: IOPS or MB/s,
 * the target's CPU µs per I/O (its process CPU clock, read after login and before logout), and the
 * driver's own CPU µs per I/O (so one can see whether it, not the target, was the limit). The ratio
 * on ÷ off is given for the rate, and as off ÷ on for the target's CPU per I/O (1.00: digests free).
 *
 * Other load, as in the main matrix: each measured run reads /proc/stat; what the machine spent beyond the
 * target's CPU, the initiator's (this process, where the driver runs, or qemu-img) and kernel threads' is
 * "others". A run where others exceed the limit (--max-others) is retried twice after a pause, then refused:
 * left out of the medians and listed, unless --allow-busy keeps it.
 */
import { type CpuClock } from './cpuclock';
import { BenchDriver, type JobResult } from './driver';
import { K4, M1, RANDOM_STEP, type Figure } from './figures';
import { busyReason, loadBetween, loadMark, MAX_OTHERS_PCT, qemuBench } from './measure';
import { median } from './sys';
import { Nodetgt, Tgtd, type Kind, type Target } from './targets';

export interface DigestFigure {
  id: string;
  label: string;
  write: boolean;
  bs: number;
  qd: number;
}

export const DIGEST_FIGURES: DigestFigure[] = [
  { id: 'rr-qd32', label: '4K rand read QD32', write: false, bs: K4, qd: 32 },
  { id: 'rw-qd32', label: '4K rand write QD32', write: true, bs: K4, qd: 32 },
  { id: 'sr-qd8', label: '1M seq read QD8', write: false, bs: M1, qd: 8 },
  { id: 'sw-qd8', label: '1M seq write QD8', write: true, bs: M1, qd: 8 },
];

export interface DigestSample {
  target: string;
  figure: string;
  /** 'on': HeaderDigest and DataDigest CRC32C; 'off': both None. 'qemu-hd'/'qemu-none': qemu-img. */
  mode: 'on' | 'off' | 'qemu-hd' | 'qemu-none';
  rep: number;
  /** IOPS (4K) or MB/s (1M); NaN when the run failed. */
  value: number;
  targetCpuUsPerIo: number;
  /** The initiator's CPU per I/O (the driver, or qemu-img). */
  initiatorCpuUsPerIo: number;
  seconds: number;
  /** What processes other than the target, the initiator and kernel threads used of the machine, %. */
  othersPct?: number;
  error?: string;
}

export interface DigestSection {
  kind: Kind;
  reps: number;
  secs: number;
  samples: DigestSample[];
  problems: string[];
}

export interface DigestOptions {
  clock: CpuClock;
  /** Running targets to measure (tgtd's digest keys are opened here); others are ignored. */
  targets: Target[];
  kind: Kind;
  reps: number;
  secs: number;
  log: (msg: string) => void;
  aborted: () => boolean;
  /** Also measure qemu-img with header-digest=crc32c vs none (4K read QD32). */
  qemu?: boolean;
  /** Refuse a run where other processes used more than this % of the machine (default MAX_OTHERS_PCT). */
  maxOthersPct?: number;
  /** Keep such runs instead (flagged in the log). */
  allowBusy?: boolean;
  /** The pause before a retry, ms (default 3000). */
  busyPauseMs?: number;
}

/** Retries of a run refused for other load, and the pause before each. */
const BUSY_RETRIES = 2;
const BUSY_PAUSE_MS = 3000;

/** Unmeasured I/O on each connection before its measured run. */
const WARMUP_SECS = 0.5;

const isIops = (bs: number) => bs === K4;
const rate = (f: { bs: number }, r: JobResult) => (isIops(f.bs) ? r.ops : (r.ops * f.bs) / 1e6) / r.seconds;

async function driverRun(
  o: DigestOptions,
  t: Target,
  f: DigestFigure,
  digests: boolean,
  rep: number,
): Promise<DigestSample> {
  const base = { target: t.name, figure: f.id, mode: digests ? 'on' : 'off', rep } as const;
  let d: BenchDriver | undefined;
  try {
    d = await BenchDriver.connect({
      host: '127.0.0.1',
      port: t.port,
      targetName: t.iqn,
      lun: t.lunOf(o.kind)!,
      digests,
    });
    const job = { write: f.write, bs: f.bs, qd: f.qd, secs: o.secs, step: isIops(f.bs) ? RANDOM_STEP : f.bs };
    // Unmeasured first: both JITs (driver and target) must be warm, or the first runs measure V8's tiering.
    await d.run({ ...job, secs: WARMUP_SECS });
    const l0 = loadMark();
    const c0 = await o.clock.read([t.pid]);
    const r = await d.run(job);
    const c1 = await o.clock.read([t.pid]);
    const l1 = loadMark();
    const cpu = (c1.cpu[0] ?? NaN) - (c0.cpu[0] ?? NaN);
    return {
      ...base,
      value: rate(f, r),
      targetCpuUsPerIo: cpu / r.ops,
      initiatorCpuUsPerIo: r.driverCpuUs / r.ops,
      seconds: r.seconds,
      // The driver runs in this process: its CPU is this process's over the run.
      othersPct: loadBetween(l0, l1, cpu + r.driverCpuUs).othersPct,
    };
  } catch (e) {
    return {
      ...base,
      value: NaN,
      targetCpuUsPerIo: NaN,
      initiatorCpuUsPerIo: NaN,
      seconds: 0,
      error: (e as Error).message,
    };
  } finally {
    await d?.close().catch(() => undefined);
  }
}

/** qemu-img bench 4K read QD32, header digest on or off (QEMU's driver has no data digest). */
async function qemuRun(
  o: DigestOptions,
  t: Target,
  hd: boolean,
  rep: number,
  count: number,
): Promise<DigestSample> {
  const lun = t.lunOf(o.kind)!;
  const opts =
    `driver=iscsi,transport=tcp,portal=127.0.0.1:${t.port},target=${t.iqn},lun=${lun},` +
    `header-digest=${hd ? 'crc32c' : 'none'}`;
  const f: Figure = {
    id: 'rr-qd32',
    label: '4K rand read QD32',
    write: false,
    bs: K4,
    qd: 32,
    random: true,
    pinned: false,
    guess: 25000,
  };
  const out = await qemuBench(o.clock, t, o.kind, f, count, 60_000, 0, ['--image-opts', opts]);
  return {
    target: t.name,
    figure: 'rr-qd32',
    mode: hd ? 'qemu-hd' : 'qemu-none',
    rep,
    value: out.invalid ? NaN : out.value,
    targetCpuUsPerIo: out.cpuUsPerIo,
    initiatorCpuUsPerIo: out.qemuUsPerIo,
    seconds: out.seconds,
    othersPct: out.othersPct,
    error: out.invalid,
  };
}

/**
 * One measured run, retried after a pause while other load is over the limit; refused (error "machine busy")
 * when it still is, unless allowBusy.
 */
export async function gated(
  o: Pick<DigestOptions, 'maxOthersPct' | 'allowBusy' | 'busyPauseMs' | 'log' | 'aborted'>,
  once: () => Promise<DigestSample>,
): Promise<DigestSample> {
  const limit = o.maxOthersPct ?? MAX_OTHERS_PCT;
  for (let attempt = 0; ; attempt++) {
    const s = await once();
    const why =
      s.error || s.othersPct === undefined ? undefined : busyReason({ othersPct: s.othersPct }, limit);
    if (!why || o.allowBusy) return s;
    if (attempt >= BUSY_RETRIES || o.aborted()) return { ...s, error: why };
    const pause = o.busyPauseMs ?? BUSY_PAUSE_MS;
    o.log(`digests ${s.target} ${s.figure} ${s.mode}: ${why}; retrying in ${pause / 1000} s`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

/** Measure every figure on every target, digests on and off alternately. */
export async function runDigests(o: DigestOptions): Promise<DigestSection> {
  const sec: DigestSection = { kind: o.kind, reps: o.reps, secs: o.secs, samples: [], problems: [] };
  const targets = o.targets.filter((t) => (t instanceof Tgtd || t instanceof Nodetgt) && t.alive);
  for (const t of targets)
    if (t instanceof Tgtd) {
      // tgtd answers None unless the target offers CRC32C (PEERS.md).
      await t.setParam('HeaderDigest', 'CRC32C,None');
      await t.setParam('DataDigest', 'CRC32C,None');
    }
  // One unmeasured pass over every figure and mode warms the code paths of both sides.
  for (const t of targets)
    for (const f of DIGEST_FIGURES)
      for (const on of [false, true])
        if (!o.aborted()) await driverRun({ ...o, secs: WARMUP_SECS }, t, f, on, -1);
  let order = 0;
  const record = (s: DigestSample) => {
    sec.samples.push(s);
    if (s.error) sec.problems.push(`${s.target} ${s.figure} ${s.mode} rep ${s.rep}: ${s.error}`);
    o.log(
      `digests ${s.figure.padEnd(8)} ${s.target.padEnd(7)} ${s.mode.padEnd(9)} rep ${s.rep}: ` +
        `${s.value.toFixed(0)} ${isIops(DIGEST_FIGURES.find((x) => x.id === s.figure)!.bs) ? 'IOPS' : 'MB/s'}, ` +
        `target ${s.targetCpuUsPerIo.toFixed(1)} us CPU/IO, initiator ${s.initiatorCpuUsPerIo.toFixed(1)} us CPU/IO, ` +
        `others ${s.othersPct === undefined ? '?' : s.othersPct.toFixed(0)}%` +
        `${s.error ? ` ERROR ${s.error}` : ''}`,
    );
  };
  for (const f of DIGEST_FIGURES)
    for (let rep = 0; rep < o.reps; rep++) {
      const tOrder = order % 2 ? [...targets].reverse() : targets;
      const modes = (order >> 1) % 2 ? [true, false] : [false, true];
      order++;
      for (const t of tOrder)
        for (const on of modes) {
          if (o.aborted()) return sec;
          record(await gated(o, () => driverRun(o, t, f, on, rep)));
        }
    }
  if (o.qemu)
    for (let rep = 0; rep < o.reps; rep++)
      for (const t of rep % 2 ? [...targets].reverse() : targets) {
        // Size for about secs from the driver's own 4K read figure (off), with a floor.
        const base = median(
          sec.samples
            .filter((s) => s.target === t.name && s.figure === 'rr-qd32' && s.mode === 'off')
            .map((s) => s.value),
        );
        const count = Math.max(2000, Math.round((Number.isFinite(base) ? base : 20000) * o.secs));
        for (const hd of rep % 2 ? [true, false] : [false, true]) {
          if (o.aborted()) return sec;
          record(await gated(o, () => qemuRun(o, t, hd, rep, count)));
        }
      }
  return sec;
}

// ---------------------------------------------------------------------------------------- report

const f0 = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '—');

export interface Agg {
  n: number;
  value: number;
  min: number;
  max: number;
  cpu: number;
  ini: number;
}

function agg(ss: DigestSample[]): Agg {
  const ok = ss.filter((s) => !s.error && Number.isFinite(s.value));
  const v = ok.map((s) => s.value);
  return {
    n: ok.length,
    value: median(v),
    min: v.length ? Math.min(...v) : NaN,
    max: v.length ? Math.max(...v) : NaN,
    cpu: median(ok.map((s) => s.targetCpuUsPerIo)),
    ini: median(ok.map((s) => s.initiatorCpuUsPerIo)),
  };
}

/** The median of one target's runs of one figure in one mode (value NaN when none is valid). */
export function digestAgg(
  sec: DigestSection,
  target: string,
  figure: string,
  mode: DigestSample['mode'],
): Agg {
  return agg(sec.samples.filter((s) => s.target === target && s.figure === figure && s.mode === mode));
}

/** The most other load seen in the counted (valid) runs, or — when none was measured. */
function othersMax(ss: DigestSample[]): string {
  const o = ss.filter((x) => !x.error && x.othersPct !== undefined).map((x) => x.othersPct!);
  return o.length ? Math.max(...o).toFixed(0) : '—';
}

/** The report's digest section (markdown lines). */
export function digestLines(sec: DigestSection): string[] {
  const L: string[] = [];
  L.push(`### CRC32C digests: on ÷ off, through the project's own initiator (${sec.kind})`, '');
  L.push(
    'HeaderDigest and DataDigest both CRC32C ("on") against both None ("off"), the same initiator ' +
      "(bench/lib/driver.ts, on the project's PDU codec and native CRC32C) for both, alternating on/off and " +
      `the targets, ${sec.reps} repetition(s) of ${sec.secs} s; medians (min–max). "rate on/off" ÷: the ` +
      'goal is ≥ 0.97 for nodetgt. "CPU off/on": target CPU µs/IO with digests off ÷ on (1.00: digests ' +
      'cost the target nothing). "driver µs/IO": the initiator\'s own CPU per I/O, to show it is not the limit. ' +
      '"others % max": the most that processes other than the target, the initiator and kernel threads used of ' +
      'the machine during a counted run; a run over --max-others is retried twice, then left out (listed below).',
    '',
  );
  L.push(
    '| test | target | off | on | rate on/off | CPU µs/IO off | CPU µs/IO on | CPU off/on | driver µs/IO off, on | valid off, on | others % max |',
    '|---|---|--:|--:|--:|--:|--:|--:|--:|:-:|--:|',
  );
  const targets = [...new Set(sec.samples.map((s) => s.target))];
  const spread = (a: Agg) => (a.min === a.max ? f0(a.value) : `${f0(a.value)} (${f0(a.min)}–${f0(a.max)})`);
  for (const f of DIGEST_FIGURES)
    for (const tn of targets) {
      const pick = (m: DigestSample['mode']) =>
        sec.samples.filter((s) => s.target === tn && s.figure === f.id && s.mode === m);
      const off = pick('off');
      const on = pick('on');
      if (!off.length && !on.length) continue;
      const a = agg(off);
      const b = agg(on);
      L.push(
        `| ${f.label} ${isIops(f.bs) ? 'IOPS' : 'MB/s'} | ${tn} | ${spread(a)} | ${spread(b)} | ${f0(b.value / a.value, 3)} | ` +
          `${f0(a.cpu, 1)} | ${f0(b.cpu, 1)} | ${f0(a.cpu / b.cpu, 3)} | ${f0(a.ini, 1)}, ${f0(b.ini, 1)} | ` +
          `${a.n}/${off.length}, ${b.n}/${on.length} | ${othersMax([...off, ...on])} |`,
      );
    }
  const q = sec.samples.filter((s) => s.mode.startsWith('qemu'));
  if (q.length) {
    L.push(
      '',
      'QEMU (qemu-img bench, libiscsi) asks for header digests only: 4K rand read QD32, header-digest=crc32c vs none.',
      '',
    );
    L.push(
      '| target | none IOPS | crc32c IOPS | on/off | CPU µs/IO none | CPU µs/IO crc32c | CPU off/on | others % max |',
      '|---|--:|--:|--:|--:|--:|--:|--:|',
    );
    for (const tn of targets) {
      const a = agg(q.filter((s) => s.target === tn && s.mode === 'qemu-none'));
      const b = agg(q.filter((s) => s.target === tn && s.mode === 'qemu-hd'));
      L.push(
        `| ${tn} | ${spread(a)} | ${spread(b)} | ${f0(b.value / a.value, 3)} | ${f0(a.cpu, 1)} | ${f0(b.cpu, 1)} | ${f0(a.cpu / b.cpu, 3)} | ` +
          `${othersMax(q.filter((s) => s.target === tn))} |`,
      );
    }
  }
  if (sec.problems.length)
    L.push(
      '',
      'Digest runs left out (failed, or refused on a busy machine):',
      '',
      '```',
      ...sec.problems,
      '```',
    );
  L.push('');
  return L;
}
