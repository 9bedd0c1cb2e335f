/**
 * What `npm run bench` leaves behind: bench/results/<YYYY-MM-DD>/ with report.md, the SVG charts it
 * embeds, and results.json with every sample. The charts and the table come from the same rows, so a
 * chart cannot disagree with the table.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildCharts, PERCENTILES, renderSvg, type ChartPoint, type LatencyPoint } from './charts';
import { unit } from './figures';
import { histSum, quantile, type Hist } from './latency';
import { renderMarkdown, rows, type ReportInput, type Row, type Side } from './report';

const QUANTILES: Record<string, number> = { p50: 0.5, p90: 0.9, p99: 0.99, 'p99.9': 0.999 };

/** nodetgt's percentiles (µs) per backing/figure id, from the histograms of its valid runs. */
export function latencyPercentiles(rs: Row[]): Map<string, Record<string, number>> {
  const out = new Map<string, Record<string, number>>();
  for (const r of rs) {
    const h = histSum(r.nodetgt.valid.map((s) => s.hist).filter((x): x is Hist => !!x));
    if (!h || !(h.cumulative[h.cumulative.length - 1]! > 0)) continue;
    out.set(
      `${r.kind}/${r.f.id}`,
      Object.fromEntries(PERCENTILES.map((p) => [p, 1e6 * quantile(h, QUANTILES[p]!)])),
    );
  }
  return out;
}

/** The chart data: one point per row and target with a valid run. */
export function chartData(rs: Row[], latency: Map<string, Record<string, number>>) {
  const points: ChartPoint[] = [];
  const lat: LatencyPoint[] = [];
  for (const r of rs) {
    for (const [target, s] of [
      ['tgtd', r.tgtd],
      ['nodetgt', r.nodetgt],
    ] as [string, Side][])
      if (s.valid.length)
        points.push({
          backing: r.kind,
          test: r.f.label,
          target,
          unit: unit(r.f),
          median: s.value,
          min: s.min,
          max: s.max,
          cpu: s.cpu,
          cpuMin: s.cpuMin,
          cpuMax: s.cpuMax,
        });
    const p = latency.get(`${r.kind}/${r.f.id}`);
    if (p)
      for (const [percentile, us] of Object.entries(p))
        lat.push({ backing: r.kind, test: r.f.label, percentile, us });
  }
  return { points, lat };
}

/** The date directory of a report: bench/results/2026-11-30 (UTC, from the report's date). */
export function resultsDir(root: string, isoDate: string): string {
  return path.join(root, 'bench', 'results', isoDate.slice(0, 10));
}

/**
 * Write report.md, the charts and results.json into `dir` (made if needed; a report of the same day
 * is replaced). Returns the report's path. A chart that fails to render is named in the report.
 */
export async function writeResults(dir: string, input: ReportInput, json: object): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const rs = rows(input.samples, input.kinds);
  const latency = latencyPercentiles(rs);
  const { points, lat } = chartData(rs, latency);
  const charts: { file: string; title: string }[] = [];
  const problems = [...input.problems];
  for (const c of buildCharts(points, lat)) {
    try {
      fs.writeFileSync(path.join(dir, c.file), await renderSvg(c.spec));
      charts.push({ file: c.file, title: c.title });
    } catch (e) {
      problems.push(`chart ${c.file} failed: ${(e as Error).message}`);
    }
  }
  const md = renderMarkdown({ ...input, problems, charts, latency });
  const report = path.join(dir, 'report.md');
  fs.writeFileSync(report, md + '\n');
  fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify(json, null, 1));
  return report;
}
