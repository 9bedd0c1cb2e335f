/**
 * The benchmark's report writer on fixture samples: report.md (medians with min–max, the busy-machine
 * policy, latency from histograms), the SVG charts (well-formed XML, one bar per series with its
 * value), and the pieces under it: histogram parsing and percentiles, the busy verdict.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildCharts, renderSvg } from '../bench/lib/charts';
import { FIGURES } from '../bench/lib/figures';
import { histDelta, LATENCY_METRIC, parseHistogram, quantile, type Hist } from '../bench/lib/latency';
import { busyReason, emptyRun, MAX_OTHERS_PCT } from '../bench/lib/measure';
import { type ReportInput, type Sample } from '../bench/lib/report';
import { chartData, latencyPercentiles, resultsDir, writeResults } from '../bench/lib/results';
import { rows } from '../bench/lib/report';
import { goalLines, goals } from '../bench/lib/goals';
import { type Kind } from '../bench/lib/targets';
import { kernelJiffiesOf, kernelThreadJiffies } from '../bench/lib/sys';

const BOUNDS = [25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3];

function sample(
  figure: string,
  target: string,
  rep: number,
  value: number,
  cpu: number,
  extra: Partial<Sample> = {},
) {
  const s: Sample = {
    ...emptyRun('qemu-img bench ...', 1000),
    backing: 'tmpfs',
    figure,
    target,
    rep,
    attempts: 1,
    seconds: 1,
    value,
    opsPerSec: value,
    cpuUs: cpu * 1000,
    cpuUsPerIo: cpu,
    qemuUsPerIo: 5,
    wholeCpuUs: cpu * 1000 + 2000,
    othersPct: 3,
    machineBusyPct: 60,
    ...extra,
  };
  return s;
}

/** A histogram with `n` commands per bucket given (cumulative over BOUNDS and +Inf). */
const hist = (perBucket: number[]): Hist => {
  let c = 0;
  return { bounds: BOUNDS, cumulative: perBucket.map((n) => (c += n)) };
};

/** The fixture: 4K read QD32 on both targets, three reps each; 1M read QD16 with one busy run kept. */
function fixture(allowBusy: boolean): ReportInput {
  const samples: Sample[] = [
    sample('rr-qd32', 'tgtd', 0, 25000, 40),
    sample('rr-qd32', 'nodetgt', 0, 70000, 14, { hist: hist([0, 0, 100, 300, 100, 0, 0]) }),
    sample('rr-qd32', 'nodetgt', 1, 72000, 13, { hist: hist([0, 0, 100, 300, 100, 0, 0]) }),
    sample('rr-qd32', 'tgtd', 1, 26000, 39),
    sample('rr-qd32', 'tgtd', 2, 24000, 41),
    sample('rr-qd32', 'nodetgt', 2, 66000, 15, { hist: hist([0, 0, 100, 300, 100, 0, 0]) }),
    sample('sr-qd16', 'tgtd', 0, 370, 900),
    sample('sr-qd16', 'nodetgt', 0, 2800, 300, { othersPct: 40, busy: 'machine busy: 40%' }),
  ];
  return {
    info: {
      date: '2026-11-30T10:00:00.000Z',
      cpu: 'Fixture CPU',
      cores: '2',
      memory: '4 GiB',
      kernel: 'Linux 6.1',
    },
    kinds: ['tmpfs'] as Kind[],
    reps: 3,
    minSecs: 1,
    workers: 2,
    work: '/var/tmp/x',
    samples,
    clock: { method: 'fixture', resolutionUs: 1 },
    fio: new Map(),
    ceilings: [],
    problems: [],
    logs: [],
    aborted: false,
    busy: { maxOthersPct: MAX_OTHERS_PCT, allow: allowBusy },
    note: 'Quick run on a shared machine.',
  };
}

/** A small XML well-formedness check: tags balance, attributes are quoted, no stray '<' or '&'. */
function xmlProblem(xml: string): string | undefined {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
  let i = 0;
  for (;;) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt < 0 ? undefined : lt);
    if (/&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i.test(text)) return `bare & near ${i}`;
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    if (!m) return `malformed tag at ${lt}: ${xml.slice(lt, lt + 40)}`;
    if (m[1]) {
      if (stack.pop() !== m[2]) return `</${m[2]}> closes nothing open at ${lt}`;
    } else if (!m[4]) stack.push(m[2]!);
    i = tag.lastIndex;
  }
  return stack.length ? `<${stack[stack.length - 1]}> never closed` : undefined;
}

test('the XML check itself rejects what is not well-formed', (t) => {
  t.is(xmlProblem('<svg><g><path d="M0"/></g></svg>'), undefined);
  t.truthy(xmlProblem('<svg><g></svg>'));
  t.truthy(xmlProblem('<svg><g a=1></g></svg>'));
  t.truthy(xmlProblem('<svg>a & b</svg>'));
  t.truthy(xmlProblem('<svg><g>'));
});

test('writeResults: report.md with medians, min–max, ratios, busy marks and charts; well-formed SVGs with every series', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-report-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const input = fixture(true);
  const dir = resultsDir(root, input.info.date!);
  t.is(dir, path.join(root, 'bench', 'results', '2026-11-30'));
  const file = await writeResults(dir, input, { samples: input.samples });
  const md = fs.readFileSync(file, 'utf8');

  // Medians with their spread, the ratio to tgtd, CPU per I/O.
  t.regex(
    md,
    /\| tmpfs \| 4K rand read QD32 \| IOPS \| 25000 \(24000–26000\) \| 70000 \(66000–72000\) \| 2\.80 \| 40\.0 \(39\.0–41\.0\) \| 14\.0 \(13\.0–15\.0\) \| 0\.35 \|/,
  );
  t.regex(md, /\| 370 \| 2800 ‡ \| 7\.57 \|/, 'the busy run is kept and marked');
  t.regex(md, /Reported anyway \(--allow-busy\): in 1 of 8 measured runs/);
  t.true(md.includes('**Quick run on a shared machine.**'));
  t.true(md.includes('| 40 |'), 'the others % max of the 1M row');
  // Latency from the histograms: 3 × 500 commands; p50 = rank 750, 450 of 900 into 100–250 µs.
  t.regex(md, /\| tmpfs \| 4K rand read QD32 \| 175 \| 375 \| 488 \| 499 \|/);

  const svgs = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.svg'))
    .sort();
  t.deepEqual(svgs, ['cpu-per-io.svg', 'iops.svg', 'latency.svg', 'throughput.svg']);
  for (const f of svgs) {
    t.true(md.includes(`](${f})`), `report.md embeds ${f}`);
    const svg = fs.readFileSync(path.join(dir, f), 'utf8');
    t.true(svg.startsWith('<svg'), f);
    t.is(xmlProblem(svg), undefined, f);
  }
  // Every series is a bar with its value: vega labels each bar "target: X; <field>: value".
  const bars = (f: string) =>
    [...fs.readFileSync(path.join(dir, f), 'utf8').matchAll(/aria-label="target: (\w+); [^:"]+: ([\d.]+)"/g)]
      .map((m) => `${m[1]} ${m[2]}`)
      .sort();
  t.deepEqual(bars('iops.svg'), ['nodetgt 70000', 'tgtd 25000']);
  t.deepEqual(bars('throughput.svg'), ['nodetgt 2800', 'tgtd 370']);
  t.deepEqual(bars('cpu-per-io.svg'), ['nodetgt 14', 'nodetgt 300', 'tgtd 40', 'tgtd 900']);
  const latency = fs.readFileSync(path.join(dir, 'latency.svg'), 'utf8');
  for (const p of ['p50', 'p90', 'p99', 'p99.9']) t.true(latency.includes(`percentile: ${p};`), p);
});

test('without --allow-busy a busy run is refused: no figure from it, and the report says why', async (t) => {
  const input = fixture(false);
  const busy = input.samples.find((s) => s.busy)!;
  busy.invalid = busy.busy;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-report-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const md = fs.readFileSync(await writeResults(root, input, {}), 'utf8');
  t.regex(md, /\| 370 \| no valid run \|/);
  t.regex(md, /1 of 8 measured runs were taken while other processes used more than 15%/);
  t.regex(md, /sr-qd16 nodetgt rep 0: machine busy/);
  t.false(md.includes('Reported anyway'));
});

test('busyReason: over the limit only', (t) => {
  const s = sample('rr-qd1', 'tgtd', 0, 1, 1, { othersPct: 16 });
  t.regex(busyReason(s, 15) ?? '', /other processes used 16% of it \(limit 15%\)/);
  t.is(busyReason({ ...s, othersPct: 15 }, 15), undefined);
  t.is(busyReason({ ...s, othersPct: NaN }, 15), undefined);
});

test('parseHistogram picks the LU and operation, sums duplicate series; histDelta and quantile', (t) => {
  const line = (lun: string, op: string, le: string, v: number) =>
    `${LATENCY_METRIC}_bucket{target="iqn.x",lun="${lun}",op="${op}",le="${le}"} ${v}`;
  const text = [
    `# TYPE ${LATENCY_METRIC} histogram`,
    line('0', 'read', '0.0001', 10),
    line('0', 'read', '0.001', 30),
    line('0', 'read', '+Inf', 40),
    line('0', 'write', '+Inf', 99),
    line('1', 'read', '+Inf', 77),
    `${LATENCY_METRIC}_sum{target="iqn.x",lun="0",op="read"} 0.01`,
  ].join('\n');
  const h = parseHistogram(text, LATENCY_METRIC, { lun: '0', op: 'read' })!;
  t.deepEqual(h, { bounds: [0.0001, 0.001], cumulative: [10, 30, 40] });
  t.is(parseHistogram(text, LATENCY_METRIC, { lun: '2', op: 'read' }), undefined);
  const d = histDelta({ bounds: [0.0001, 0.001], cumulative: [5, 5, 5] }, h)!;
  t.deepEqual(d.cumulative, [5, 25, 35]);
  // rank 17.5 of 35: 12.5 into the 20 commands of the 100 µs–1 ms bucket -> 100 + 0.625 * 900 µs.
  t.is(Math.round(quantile(d, 0.5) * 1e6), 663);
  t.is(quantile(d, 0.99), 0.001, 'in +Inf: the highest finite bound');
  t.true(Number.isNaN(quantile({ bounds: [1], cumulative: [0, 0] }, 0.5)));
});

test('chart data and charts leave out what has no valid run', async (t) => {
  const input = fixture(false);
  for (const s of input.samples) if (s.figure === 'sr-qd16') s.invalid = 'qemu-img exited with 1';
  const rs = rows(input.samples, input.kinds);
  const { points, lat } = chartData(rs, latencyPercentiles(rs));
  t.deepEqual(
    points.map((p) => p.test),
    ['4K rand read QD32', '4K rand read QD32'],
  );
  t.is(lat.length, 4);
  const charts = buildCharts(points, lat);
  t.deepEqual(
    charts.map((c) => c.file),
    ['iops.svg', 'cpu-per-io.svg', 'latency.svg'],
  );
  t.true(
    (await renderSvg(charts[0]!.spec)).includes(
      FIGURES.find((f) => f.id === 'rr-qd32')!.label.split(' ')[0]!,
    ),
  );
});

test('kernel threads are told apart by PF_KTHREAD in /proc/PID/stat, whatever their name holds', (t) => {
  // flags 0x04208040 has PF_KTHREAD (0x00200000); 0x00400100 (a user process) has not.
  const kthread = '97 (kworker/u8:3-events (unbound)) I 2 0 0 0 -1 69238848 0 0 0 0 7 5 0 0 20 0 1 0 412 0 0';
  const user = '4242 (node (worker)) S 1 4242 4242 0 -1 4194560 900 0 0 0 350 120 0 0 20 0 11 0 5000 0 0';
  t.is(kernelJiffiesOf(kthread), 12);
  t.is(kernelJiffiesOf(user), 0);
  const now = kernelThreadJiffies();
  t.true(Number.isFinite(now) && now >= 0);
});

test('the goals of issue 12 are judged from the same rows as the table', (t) => {
  const samples: Sample[] = [
    sample('rr-qd32', 'tgtd', 0, 25_000, 40),
    sample('rr-qd32', 'nodetgt', 0, 80_000, 8.4),
    sample('rw-qd32', 'tgtd', 0, 25_000, 40),
    sample('rw-qd32', 'nodetgt', 0, 70_000, 12.7),
    sample('rr-qd1', 'tgtd', 0, 10_000, 50),
    sample('rr-qd1', 'nodetgt', 0, 13_000, 30),
    sample('sw-qd16', 'tgtd', 0, 200, 5000),
    sample('sw-qd16', 'nodetgt', 0, 399, 500),
  ];
  const gs = goals(rows(samples, ['tmpfs']));
  const find = (goal: string, where: string) =>
    gs.find((g) => g.goal.startsWith(goal) && g.where.endsWith(where));
  t.is(find('4K QD32: ≤', 'read QD32')!.met, true); // 8.4 µs
  t.is(find('4K QD32: ≤', 'write QD32')!.met, false); // 12.7 µs
  t.is(find('4K QD32: ≥', 'read QD32')!.met, true); // 3.2×
  t.is(find('4K QD32: ≥', 'write QD32')!.measured, '2.80×');
  t.is(find('4K QD32: ≥', 'write QD32')!.met, false);
  t.is(find('4K QD1', 'read QD1')!.met, true); // exactly 1.30×
  t.is(find('1 MiB write', 'write QD16')!.met, false); // 1.995×
  // no digest section: no digest goal; a figure not run is not judged
  t.false(gs.some((g) => g.goal.includes('digest')));
  t.false(gs.some((g) => g.where.includes('pinned')));
  const md = goalLines(rows(samples, ['tmpfs'])).join('\n');
  t.regex(md, /3 of 6 judged figures meet their goal/);
  t.regex(md, /\| 12\.7 µs \| \*\*not met\*\* \|/);
});
