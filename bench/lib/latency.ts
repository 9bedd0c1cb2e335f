/**
 * Latency percentiles of a benchmark run from nodetgt's own histograms: the Prometheus text of its
 * /metrics endpoint (nodetgt_lu_latency_seconds, command arrival to status, per LU and operation) is
 * read before and after a qemu-img run, and the difference of the two is that run's distribution.
 *
 * Percentiles are interpolated linearly inside a bucket, as Prometheus' histogram_quantile() does, so
 * they are only as fine as the buckets (5 µs, 10, 25, 50, 100, 250, 500 µs, 1 ms, ...): the report says so.
 */
import * as http from 'node:http';

export const LATENCY_METRIC = 'nodetgt_lu_latency_seconds';

/** One histogram: finite upper bounds (s, ascending) and cumulative counts, the last one for +Inf. */
export interface Hist {
  bounds: number[];
  cumulative: number[];
}

/** Labels of one exposition line: `name{a="x",b="y"} value` -> {a: 'x', b: 'y'}. */
function labelsOf(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

/**
 * The histogram of `metric` whose labels include all of `want` (e.g. {lun: '0', op: 'read'}), summed
 * over every series that matches (one LU shows once per target it is in). Undefined when absent.
 */
export function parseHistogram(
  exposition: string,
  metric: string,
  want: Record<string, string>,
): Hist | undefined {
  const byLe = new Map<number, number>();
  const prefix = `${metric}_bucket{`;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const close = line.lastIndexOf('}');
    const labels = labelsOf(line.slice(prefix.length, close));
    if (!Object.entries(want).every(([k, v]) => labels[k] === v) || labels.le === undefined) continue;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    const value = Number(
      line
        .slice(close + 1)
        .trim()
        .split(/\s+/)[0],
    );
    byLe.set(le, (byLe.get(le) ?? 0) + value);
  }
  if (!byLe.has(Infinity)) return undefined;
  const les = [...byLe.keys()].sort((a, b) => a - b);
  return { bounds: les.filter(Number.isFinite), cumulative: les.map((le) => byLe.get(le)!) };
}

/** after − before, bucket by bucket (the same layout); undefined when either is missing or they differ. */
export function histDelta(before: Hist | undefined, after: Hist | undefined): Hist | undefined {
  if (!before || !after || before.bounds.join() !== after.bounds.join()) return undefined;
  return { bounds: after.bounds, cumulative: after.cumulative.map((c, i) => c - before.cumulative[i]!) };
}

/** The sum of histograms of one layout (several runs of one figure). */
export function histSum(hs: Hist[]): Hist | undefined {
  if (!hs.length || hs.some((h) => h.bounds.join() !== hs[0]!.bounds.join())) return undefined;
  return {
    bounds: hs[0]!.bounds,
    cumulative: hs[0]!.cumulative.map((_, i) => hs.reduce((a, h) => a + h.cumulative[i]!, 0)),
  };
}

/**
 * The q-quantile (0 < q < 1) in seconds: linear inside the bucket it falls in, the first bucket
 * starting at 0; in the +Inf bucket it is the highest finite bound (all that is known). NaN when empty.
 */
export function quantile(h: Hist, q: number): number {
  const total = h.cumulative[h.cumulative.length - 1] ?? 0;
  if (!(total > 0)) return NaN;
  const rank = q * total;
  for (let i = 0; i < h.cumulative.length; i++) {
    if (h.cumulative[i]! < rank) continue;
    if (i >= h.bounds.length) return h.bounds[h.bounds.length - 1] ?? NaN;
    const lo = i === 0 ? 0 : h.bounds[i - 1]!;
    const below = i === 0 ? 0 : h.cumulative[i - 1]!;
    const inBucket = h.cumulative[i]! - below;
    return lo + (h.bounds[i]! - lo) * (inBucket > 0 ? (rank - below) / inBucket : 1);
  }
  return NaN;
}

/** GET http://127.0.0.1:port/metrics; undefined on any failure (the latency chart is then left out). */
export function scrape(port: number, timeoutMs = 5000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}
