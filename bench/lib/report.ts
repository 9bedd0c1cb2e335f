/**
 * The side-by-side benchmark's markdown: context table, results table (medians of valid runs only),
 * a "what the numbers say" text generated from the same rows (so the prose cannot contradict the
 * table), the method, the invalid runs and their reasons, and the raw samples.
 */
import { COARSE_PCT, type RunOut } from './measure';
import { FIGURES, GROUPS, unit, type Figure } from './figures';
import { digestLines, type DigestSection } from './digests';
import { goalLines } from './goals';
import { type ProfileSummary } from './profile';
import { median } from './sys';
import { type Kind } from './targets';

export interface Sample extends RunOut {
  backing: Kind;
  figure: string;
  target: string;
  rep: number;
  /** qemu-img runs it took: a phase shorter than asked is resized and run again. */
  attempts: number;
}

export interface ReportInput {
  info: Record<string, string>;
  kinds: Kind[];
  reps: number;
  minSecs: number;
  workers: number;
  work: string;
  samples: Sample[];
  clock: { method: string; resolutionUs: number };
  fio: Map<string, number>;
  ceilings: { what: string; value: string }[];
  /** Things that went wrong outside single runs (target deaths, restarts, failed tools). */
  problems: string[];
  logs: { name: string; lines: string[] }[];
  profile?: { note: string; threadNote: string; profiles: ProfileSummary[] };
  aborted: boolean;
  /** --max-others and --allow-busy: runs over the limit are invalid, or kept and marked ‡. */
  busy: { maxOthersPct: number; allow: boolean };
  /** What kind of run this was (quick, on a shared machine...), said at the top. */
  note?: string;
  /** SVG charts beside report.md (file names relative to it). */
  charts?: { file: string; title: string }[];
  /** Latency percentiles of nodetgt per backing/figure id, µs, from its histograms. */
  latency?: Map<string, Record<string, number>>;
  /** Whole markdown sections appended at the end (the RBD section, bench/lib/rbd.ts). */
  sections?: string[];
  /** CRC32C digests on vs off through the project's own initiator (bench/lib/digests.ts). */
  digests?: DigestSection;
}

export const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '—');

export interface Side {
  runs: number;
  valid: Sample[];
  value: number;
  min: number;
  max: number;
  cpu: number;
  cpuMin: number;
  cpuMax: number;
  coarse: boolean;
  /** Valid runs kept although the machine was busy (--allow-busy). */
  busy: number;
}
export interface Row {
  kind: Kind;
  f: Figure;
  tgtd: Side;
  nodetgt: Side;
  /** nodetgt/tgtd, NaN unless both sides have a valid run. */
  ratio: number;
  cpuRatio: number;
}

function side(samples: Sample[], kind: Kind, f: Figure, target: string): Side {
  const all = samples.filter((s) => s.backing === kind && s.figure === f.id && s.target === target);
  const valid = all.filter((s) => !s.invalid);
  const v = valid.map((s) => s.value);
  const c = valid.map((s) => s.cpuUsPerIo);
  const lo = (xs: number[]) => (xs.length ? Math.min(...xs) : NaN);
  const hi = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);
  return {
    runs: all.length,
    valid,
    value: median(v),
    min: lo(v),
    max: hi(v),
    cpu: median(c),
    cpuMin: lo(c),
    cpuMax: hi(c),
    coarse: valid.some((s) => s.coarse),
    busy: valid.filter((s) => s.busy).length,
  };
}

export function rows(samples: Sample[], kinds: Kind[]): Row[] {
  const out: Row[] = [];
  for (const kind of kinds)
    for (const f of FIGURES) {
      if (!samples.some((s) => s.backing === kind && s.figure === f.id)) continue;
      const a = side(samples, kind, f, 'tgtd');
      const b = side(samples, kind, f, 'nodetgt');
      out.push({ kind, f, tgtd: a, nodetgt: b, ratio: b.value / a.value, cpuRatio: b.cpu / a.cpu });
    }
  return out;
}

// ------------------------------------------------------------------------------ what the numbers say

const range = (xs: number[]) => {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo.toFixed(2) === hi.toFixed(2) ? `${lo.toFixed(2)}×` : `${lo.toFixed(2)}–${hi.toFixed(2)}×`;
};
/** Within ±5% counts as on par: smaller differences are under the run-to-run noise of a shared VM. */
const PAR = 0.05;
function verdict(xs: number[], above: string, below: string, par: string): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  if (lo > 1 + PAR) return above;
  if (hi < 1 - PAR) return below;
  if (lo >= 1 - PAR && hi <= 1 + PAR) return par;
  return 'mixed';
}
/** "ahead on tmpfs, null; mixed on disk" from verdict per backing. */
function byVerdict(per: [Kind, string][]): string {
  const groups = new Map<string, Kind[]>();
  for (const [k, v] of per) groups.set(v, [...(groups.get(v) ?? []), k]);
  return [...groups].map(([v, ks]) => `${v} on ${ks.join(', ')}`).join('; ');
}

export function whatTheNumbersSay(rs: Row[], kinds: Kind[]): string[] {
  const L: string[] = [];
  for (const g of GROUPS) {
    const tput: string[] = [];
    const cpu: string[] = [];
    const tv: [Kind, string][] = [];
    const cv: [Kind, string][] = [];
    const missing: string[] = [];
    for (const k of kinds) {
      const mine = rs.filter((r) => r.kind === k && g.ids.includes(r.f.id));
      if (!mine.length) continue;
      const both = mine.filter((r) => Number.isFinite(r.ratio));
      for (const r of mine) if (!Number.isFinite(r.ratio)) missing.push(`${k} ${r.f.label}`);
      const ratios = both.map((r) => r.ratio);
      const cpus = both.map((r) => r.cpuRatio).filter(Number.isFinite);
      if (ratios.length) {
        tput.push(`${k} ${range(ratios)}`);
        tv.push([k, verdict(ratios, 'nodetgt ahead', 'tgtd ahead', 'on par')]);
      }
      if (cpus.length) {
        cpu.push(`${k} ${range(cpus)}`);
        cv.push([k, verdict(cpus, 'nodetgt uses more', 'nodetgt uses less', 'about the same')]);
      }
    }
    if (!tput.length && !missing.length) continue;
    let line = `- **${g.name}**: `;
    line += tput.length
      ? `throughput nodetgt/tgtd ${tput.join(', ')} (${byVerdict(tv)}); ` +
        `CPU per I/O nodetgt/tgtd ${cpu.join(', ')} (${byVerdict(cv)}).`
      : 'no figure with a valid run on both targets.';
    if (missing.length) line += ` No valid pair for: ${missing.join(', ')}.`;
    L.push(line);
  }
  return L;
}

/** Spread of repeated runs and the machine's other load: how far the figures can be trusted. */
function noiseLines(rs: Row[], samples: Sample[], reps: number): string[] {
  const L: string[] = [];
  const spreads = rs
    .flatMap((r) => [r.tgtd, r.nodetgt])
    .filter((s) => s.valid.length >= 2)
    .map((s) => {
      const v = s.valid.map((x) => x.value);
      return (Math.max(...v) - Math.min(...v)) / median(v);
    });
  if (spreads.length)
    L.push(
      `Repetitions of one figure on one target spread (max−min)/median by ${fmt(100 * median(spreads))}% ` +
        `at the median and ${fmt(100 * Math.max(...spreads))}% at worst: ratios closer to 1 than that ` +
        `are not a difference.`,
    );
  else
    L.push(
      `${reps} repetition per figure: each ratio is one sample, with no measure of its noise; ` +
        `read it as an indication, not a result.`,
    );
  const others = samples.filter((s) => !s.invalid).map((s) => s.othersPct);
  if (others.length)
    L.push(
      `Other processes used ${fmt(median(others))}% of the machine (all cores) at the median during ` +
        `the measured phases, ${fmt(Math.max(...others))}% at most.`,
    );
  return L;
}

/** The top of the report: how many runs the machine's other load refused, or let through. */
function busyLines(samples: Sample[], busy: ReportInput['busy']): string[] {
  const measured = samples.filter((s) => Number.isFinite(s.othersPct));
  const over = measured.filter((s) => s.busy);
  const limit = `more than ${busy.maxOthersPct}% of the machine (--max-others)`;
  if (!over.length) return [`No measured run saw other processes use ${limit}.`];
  if (busy.allow)
    return [
      `**Reported anyway (--allow-busy): in ${over.length} of ${measured.length} measured runs other ` +
        `processes used ${limit}; those runs are in the medians, marked ‡. Read the figures as noisy.**`,
    ];
  return [
    `${over.length} of ${measured.length} measured runs were taken while other processes used ${limit}: ` +
      'they were retried, and those still busy are refused (Invalid runs); a figure with none left shows ' +
      '"no valid run".',
  ];
}

/** nodetgt's latency percentiles per figure, from its own histograms. */
function latencyLines(rs: Row[], latency: ReportInput['latency']): string[] {
  if (!latency?.size) return [];
  const ps = [...new Set([...latency.values()].flatMap((x) => Object.keys(x)))];
  const L = [
    '### nodetgt latency, from its histograms',
    '',
    "Command arrival to status, µs, from the difference of nodetgt_lu_latency_seconds over each valid run's " +
      'qemu-img process (the read or write series of the LU), summed over the runs of a figure. Interpolated ' +
      'inside buckets (bounds 5, 10, 25, 50, 100, 250, 500 µs, 1 ms, ...), so as coarse as they are.',
    '',
    `| backing | test | ${ps.join(' | ')} |`,
    `|---|---|${ps.map(() => '--:').join('|')}|`,
  ];
  for (const x of rs) {
    const p = latency.get(`${x.kind}/${x.f.id}`);
    if (p) L.push(`| ${x.kind} | ${x.f.label} | ${ps.map((k) => fmt(p[k] ?? NaN)).join(' | ')} |`);
  }
  return [...L, ''];
}

// ---------------------------------------------------------------------------------------- markdown

export function renderMarkdown(r: ReportInput): string {
  const { info, samples } = r;
  const rs = rows(samples, r.kinds);
  const L: string[] = [];
  L.push(`## nodetgt vs tgtd, side by side (${info.date})`, '');
  if (r.aborted) L.push('**Interrupted: partial results.**', '');
  if (r.note) L.push(`**${r.note}**`, '');
  L.push(...busyLines(samples, r.busy), '');
  L.push('| | |', '|---|---|');
  L.push(`| date | ${info.date} |`);
  L.push(`| machine | ${info.cpu}, ${info.cores} cores, ${info.memory} |`);
  L.push(`| kernel | ${info.kernel} |`);
  L.push(`| node (bench and nodetgt) | ${info.node} |`);
  L.push(`| nodetgt | ${info.nodetgt} |`);
  L.push(`| tgtd | ${info.tgtd} |`);
  L.push(`| qemu-img | ${info.qemu} |`);
  L.push(`| fio | ${info.fio || 'not installed'} |`, '');

  const haveFio = r.fio.size > 0;
  L.push(
    '| backing | test | unit | tgtd | nodetgt | nodetgt/tgtd | tgtd CPU µs/IO | nodetgt CPU µs/IO | ' +
      `CPU nodetgt/tgtd | valid runs tgtd, nodetgt | others % max |${haveFio ? ' fio io_uring |' : ''}`,
  );
  L.push(`|---|---|---|--:|--:|--:|--:|--:|--:|:-:|--:|${haveFio ? '--:|' : ''}`);
  const spread = (m: number, lo: number, hi: number, d: number) =>
    lo === hi ? fmt(m, d) : `${fmt(m, d)} (${fmt(lo, d)}–${fmt(hi, d)})`;
  const val = (s: Side) =>
    s.valid.length ? `${spread(s.value, s.min, s.max, 0)}${s.busy ? ' ‡' : ''}` : 'no valid run';
  const cpu = (s: Side) =>
    s.valid.length ? `${spread(s.cpu, s.cpuMin, s.cpuMax, 1)}${s.coarse ? ' †' : ''}` : '—';
  const others = (x: Row) => {
    const o = [...x.tgtd.valid, ...x.nodetgt.valid].map((s) => s.othersPct);
    return o.length ? fmt(Math.max(...o)) : '—';
  };
  for (const x of rs) {
    const fv = r.fio.get(`${x.kind}/${x.f.id}`);
    L.push(
      `| ${x.kind} | ${x.f.label} | ${unit(x.f)} | ${val(x.tgtd)} | ${val(x.nodetgt)} | ${fmt(x.ratio, 2)} | ` +
        `${cpu(x.tgtd)} | ${cpu(x.nodetgt)} | ${fmt(x.cpuRatio, 2)} | ` +
        `${x.tgtd.valid.length}/${x.tgtd.runs}, ${x.nodetgt.valid.length}/${x.nodetgt.runs} | ${others(x)} |` +
        (haveFio ? ` ${fv === undefined ? '' : fmt(fv)} |` : ''),
    );
  }
  L.push('');
  L.push(
    'Medians of the valid runs, (min–max) when they differ. "others % max": the most that processes ' +
      'other than the target, qemu-img and kernel threads used of the machine (all cores, /proc/stat less ' +
      'their own CPU; kernel threads are left out because their work, page-cache writeback and softirqs, is mostly for the I/O under test) ' +
      'during a valid run of the row. Before the first figure of a backing, each target reads the whole ' +
      'LU once (64 KiB sequential, QD8, not measured), so that every run finds a server in its steady state: ' +
      "the page cache, nodetgt's mapping of a tmpfs LU (on this paravirtualized machine a page of a mapping " +
      'costs a hidden fault at its first touches), both JITs.',
    '',
  );
  if (rs.some((x) => x.tgtd.busy || x.nodetgt.busy))
    L.push(`‡ at least one run in the median was taken on a busy machine (kept by --allow-busy).`, '');
  if (rs.some((x) => x.tgtd.coarse || x.nodetgt.coarse))
    L.push(`† CPU not precise to ${COARSE_PCT}% in at least one run (see Raw samples).`, '');
  if (r.ceilings.length) L.push(...r.ceilings.map((c) => `- ${c.what}: ${c.value}`), '');
  L.push(...latencyLines(rs, r.latency));
  if (r.digests) L.push(...digestLines(r.digests));
  if (r.charts?.length) {
    L.push('### Charts', '');
    for (const c of r.charts) L.push(`![${c.title}](${c.file})`, '');
  }

  L.push('### What the numbers say', '');
  L.push(
    "Generated from the table above: ratios are nodetgt/tgtd, the min–max over the group's figures " +
      `(read and write); "ahead"/"less" means every figure of the group is more than ${PAR * 100}% apart.`,
    '',
  );
  L.push(...whatTheNumbersSay(rs, r.kinds), '');
  const valid = samples.filter((s) => !s.invalid).length;
  L.push(`${valid} of ${samples.length} runs valid. ${noiseLines(rs, samples, r.reps).join(' ')}`, '');
  L.push(...goalLines(rs, r.digests));

  L.push('### Method', '');
  const resolutions = samples
    .filter((s) => !s.invalid && s.cpuUs > 0)
    .map((s) => ({ s, pct: (100 * r.clock.resolutionUs) / s.cpuUs }))
    .sort((a, b) => b.pct - a.pct);
  const worst = resolutions[0];
  L.push(
    `- Initiator: \`qemu-img bench -f raw -t none\` over iscsi:// on 127.0.0.1 (libiscsi, no digests). ` +
      `nodetgt --workers ${r.workers}; tgtd with its defaults (rdwr backstore). Backing: 1 GiB file on ` +
      `/dev/shm (buffered) and on ${r.work} (O_DIRECT on both targets), each written once in full with ` +
      `random data; null = nodetgt null:1G, tgtd --bstype null. 4K random = odd 4 KiB stride over the ` +
      `power-of-two LUN. "pinned": target (all threads) and qemu-img on CPU 0 (taskset).`,
    `- ${r.reps} repetition(s) per figure and target, targets alternated; each run lasts at least ` +
      `${r.minSecs} s: a short calibration run per figure and target gives the rate, the count is sized ` +
      `for 1.6× that (1.3× from a measured run's rate), and a run that still ends early is resized ` +
      `(wider each time) and run again. Medians of valid runs only.`,
    `- CPU per I/O is charged over the I/O phase only: qemu-img's stdout is line-buffered and the ` +
      `target's CPU is read when "Sending N requests" and "Run completed" arrive, so login, the ` +
      `closing flush and logout are not in it (their cost is in Raw samples). A run is flagged † when the readings came more than ` +
      `${COARSE_PCT}% of the phase late, or the resolution is over ${COARSE_PCT}% of its CPU. CPU clock: ` +
      `${r.clock.method}; resolution ${r.clock.resolutionUs} µs, ` +
      (worst
        ? `at most ${worst.pct < 0.01 ? 'under 0.01' : worst.pct.toFixed(2)}% of a run's measured CPU (${worst.s.backing} ${worst.s.figure} ${worst.s.target}).`
        : 'no valid run to compare it with.'),
    `- A run is invalid (left out of the medians, counted in "valid runs") when qemu-img timed out, exited ` +
      `non-zero or wrote to stderr; the "Sending"/"Run completed" lines are missing; the target died; ` +
      `less than 90% of the I/O's bytes crossed loopback during the phase (the initiator skipped ` +
      `transfers); or the phase was shorter than ${r.minSecs} s after two resizes.`,
    '',
  );

  const bad = samples.filter((s) => s.invalid);
  if (bad.length) {
    L.push('### Invalid runs', '', '```');
    for (const s of bad) L.push(`${s.backing} ${s.figure} ${s.target} rep ${s.rep}: ${s.invalid}`);
    L.push('```', '');
  }
  if (r.problems.length) L.push('### Problems seen', '', '```', ...r.problems, '```', '');
  for (const l of r.logs)
    if (l.lines.length)
      L.push(
        `### ${l.name} log (warnings and errors, last ${l.lines.length})`,
        '',
        '```',
        ...l.lines,
        '```',
        '',
      );

  L.push(
    '<details><summary>Raw samples</summary>',
    '',
    'value (IOPS or MB/s); target CPU µs/IO; qemu-img CPU µs/IO; target CPU for login+flush+logout ms; ' +
      'phase s; other load % of the machine; flags: X invalid, † coarse CPU, ‡ busy machine, ×N runs it took',
    '',
    '```',
  );
  for (const k of r.kinds)
    for (const f of FIGURES)
      for (const tn of ['tgtd', 'nodetgt']) {
        const ss = samples.filter((s) => s.backing === k && s.figure === f.id && s.target === tn);
        if (!ss.length) continue;
        const one = (s: Sample) =>
          `${fmt(s.value)};${fmt(s.cpuUsPerIo, 1)};${fmt(s.qemuUsPerIo, 1)};` +
          `${fmt((s.wholeCpuUs - s.cpuUs) / 1000, 1)};${fmt(s.seconds, 2)};${fmt(s.othersPct)}%` +
          `${s.invalid ? ' X' : ''}${s.coarse ? ' †' : ''}${s.busy ? ' ‡' : ''}${s.attempts > 1 ? ` ×${s.attempts}` : ''}`;
        L.push(`${k.padEnd(5)} ${f.id.padEnd(10)} ${tn.padEnd(7)} ${ss.map(one).join('  ')}`);
      }
  L.push('```', '', '</details>', '');

  if (r.profile) {
    L.push('### nodetgt CPU profile, 4K random read QD32 (tmpfs)', '', r.profile.note.trim(), '');
    L.push(r.profile.threadNote, '');
    for (const p of r.profile.profiles) {
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
  for (const sec of r.sections ?? []) L.push(sec.trimEnd(), '');
  return L.join('\n');
}
