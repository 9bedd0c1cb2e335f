/**
 * The side-by-side benchmark's charts: vega-lite specs built from the report's rows, compiled to
 * vega and rendered to SVG headless in Node (vega's View with renderer 'none' and toSVG(): no
 * browser, no canvas; text widths are estimated, which is fine for axis labels).
 *
 * Bars are medians of the valid runs, the thin rule on each bar spans the min and the max, so a
 * reader sees at a glance how far the repetitions were apart.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One figure on one target: medians with min/max of the valid runs. */
export interface ChartPoint {
  backing: string;
  test: string;
  target: string;
  /** 'IOPS' or 'MB/s'. */
  unit: string;
  median: number;
  min: number;
  max: number;
  cpu: number;
  cpuMin: number;
  cpuMax: number;
}

/** A latency percentile of one figure from nodetgt's histograms, µs. */
export interface LatencyPoint {
  backing: string;
  test: string;
  percentile: string;
  us: number;
}

export interface Chart {
  /** File name inside the results directory. */
  file: string;
  title: string;
  spec: TopLevelSpec;
}

const HEIGHT = 150;
/** The same colour for a target in every chart. */
const TARGET_COLOURS: Record<string, string> = { tgtd: '#9e9e9e', istgt: '#e0a040', nodetgt: '#2b6cb0' };
const OTHER_COLOURS = ['#6a9f58', '#c05050', '#8060b0'];
/** x and colour by target, in a fixed order, with only the targets that have data in the legend. */
function byTarget(points: { target: string }[]) {
  const present = new Set(points.map((p) => p.target));
  const known = Object.keys(TARGET_COLOURS).filter((t) => present.has(t));
  const domain = [...known, ...[...present].filter((t) => !(t in TARGET_COLOURS))];
  const range = domain.map((t, i) => TARGET_COLOURS[t] ?? OTHER_COLOURS[i % OTHER_COLOURS.length]!);
  return { field: 'target', sort: domain, scale: { domain, range } };
}
export const PERCENTILES = ['p50', 'p90', 'p99', 'p99.9'];

/**
 * Bars per target (x) in a grid of one column per test and one row per backing, each cell with its own
 * y scale: tests differ by orders of magnitude (QD1 against QD32), and what a reader compares is the
 * targets within one test. `y`, `lo`, `hi` name the fields of the bar and of the min–max rule.
 */
function barsWithRange(
  title: string,
  values: object[],
  order: string[],
  y: { field: string; lo: string; hi: string; title: string },
  x: { field: string; sort: string[]; scale?: object },
): TopLevelSpec {
  const xEnc = {
    field: x.field,
    type: 'nominal' as const,
    sort: x.sort,
    title: null,
    axis: { labels: false, ticks: false },
  };
  return {
    title,
    data: { values },
    facet: {
      row: { field: 'backing', type: 'nominal', title: null },
      column: {
        field: 'test',
        type: 'nominal',
        sort: order,
        title: null,
        header: { labelAngle: 0, labelLimit: 0, labelExpr: "split(datum.value, ' ')" },
      },
    },
    spec: {
      width: { step: 24 },
      height: HEIGHT,
      layer: [
        {
          mark: { type: 'bar', tooltip: true },
          encoding: {
            x: xEnc,
            y: { field: y.field, type: 'quantitative', title: y.title, scale: { zero: true } },
            color: { field: x.field, type: 'nominal', sort: x.sort, scale: x.scale, title: null },
          },
        },
        {
          mark: { type: 'rule', color: '#222' },
          encoding: { x: xEnc, y: { field: y.lo, type: 'quantitative' }, y2: { field: y.hi } },
        },
      ],
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'sans-serif', header: { labelFontSize: 10 } },
  } as TopLevelSpec;
}

const finite = (...xs: number[]) => xs.every(Number.isFinite);

/** The charts for a report: throughput per unit, CPU per I/O, and latency percentiles when there are any. */
export function buildCharts(points: ChartPoint[], latency: LatencyPoint[]): Chart[] {
  const order = [...new Set(points.map((p) => p.test))];
  const out: Chart[] = [];
  for (const [unit, file] of [
    ['IOPS', 'iops.svg'],
    ['MB/s', 'throughput.svg'],
  ] as const) {
    const values = points.filter((p) => p.unit === unit && finite(p.median, p.min, p.max));
    if (!values.length) continue;
    const title = `${unit === 'IOPS' ? '4 KiB IOPS' : '1 MiB throughput, MB/s'} per test and target (median; rule: min–max)`;
    out.push({
      file,
      title,
      spec: barsWithRange(
        title,
        values,
        order,
        { field: 'median', lo: 'min', hi: 'max', title: unit },
        byTarget(values),
      ),
    });
  }
  const cpu = points.filter((p) => finite(p.cpu, p.cpuMin, p.cpuMax));
  if (cpu.length) {
    const title = 'Target CPU µs per I/O (median; rule: min–max; lower is better)';
    out.push({
      file: 'cpu-per-io.svg',
      title,
      spec: barsWithRange(
        title,
        cpu,
        order,
        { field: 'cpu', lo: 'cpuMin', hi: 'cpuMax', title: 'CPU µs per I/O' },
        byTarget(cpu),
      ),
    });
  }
  const lat = latency.filter((p) => Number.isFinite(p.us) && p.us > 0);
  if (lat.length) {
    const title = 'nodetgt command latency, arrival to status, from its histograms (µs)';
    const values = lat.map((p) => ({ ...p, lo: p.us, hi: p.us }));
    out.push({
      file: 'latency.svg',
      title,
      spec: barsWithRange(
        title,
        values,
        order,
        { field: 'us', lo: 'lo', hi: 'hi', title: 'µs' },
        { field: 'percentile', sort: PERCENTILES, scale: { scheme: 'blues' } },
      ),
    });
  }
  return out;
}

/** vega-lite -> vega -> SVG text, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
