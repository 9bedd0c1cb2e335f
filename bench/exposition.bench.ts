// Micro-benchmark: one /metrics render in this process (no HTTP, no sockets), with 0 and 1,000 sessions open in
// the shared slots (idle, then 1, 10 and all 1,000 of them counting between renders), 4 LUs with traffic in their latency histograms and 2 worker rows. It prints CPU time per render
// (this thread's), wall time and the size, so a change to src/metrics/exposition.ts can be weighed without the
// noise of a real target and an initiator on a busy machine. bench/metrics-cost.ts measures the real thing.
// Run: npx tsc -p tsconfig.json && node --expose-gc --max-semi-space-size=64 dist/bench/exposition.bench.js
//      [--renders 200] [--openmetrics] [--cold] [--dump FILE]
// (--cold: also each render with the CPU caches emptied first, as a scrape each second finds them).
// (without the two V8 flags it does not measure the bytes allocated per render).
// (--dump writes the last exposition, with 1,000 sessions, to FILE).

import * as fs from 'node:fs';

import { normalizeConfig } from '../src/config/schema';
import { claimRow, createCounterShared } from '../src/metrics/counters';
import { Exposition, OPENMETRICS_TYPE } from '../src/metrics/exposition';
import { LuStats, allocateLuStats } from '../src/metrics/lu-stats';
import { claimSessionStats } from '../src/metrics/session-stats';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

const TARGET = 'iqn.2026-11.io.nodetgt.bench:exposition';
const config = normalizeConfig({
  portals: ['127.0.0.1:3260'],
  targets: [
    {
      name: TARGET,
      luns: [0, 1, 2, 3].map((lun) => ({ lun, backstore: 'null', size: '1G' })),
    },
  ],
});
const counters = createCounterShared();
const rows = [claimRow(counters, 101), claimRow(counters, 102)];
const lus = config.targets[0]!.luns.map(() => ({ stats: allocateLuStats() }));
// Traffic in every LU's histograms from both workers: spread over the buckets as a real run would.
for (const [w, row] of rows.entries())
  for (const lu of lus) {
    const s = new LuStats(lu.stats, row.row);
    for (let i = 0; i < 2000; i++)
      s.command(
        i % 3 === 0 ? 0x2a : 0x28,
        0,
        undefined,
        4096,
        0,
        performance.now() - ((i % 40) * 0.05 + 0.02) * (w + 1),
      );
  }
const exposition = new Exposition({ counters, config: () => config, lus, inFlight: () => 0 });
const accept = process.argv.includes('--openmetrics') ? OPENMETRICS_TYPE : undefined;
const cold = process.argv.includes('--cold');
const COLD = new Uint8Array(cold ? 64 << 20 : 0);

async function measure(label: string, renders: number, between = () => {}): Promise<void> {
  for (let i = 0; i < 5; i++) await exposition.renderParts(accept); // warm-up
  let size = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < renders; i++) {
    between();
    size = (await exposition.renderParts(accept)).length;
  }
  const wall = (performance.now() - t0) / renders;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / renders / 1000;
  console.log(
    `${label}: ${cpu.toFixed(2)} ms CPU, ${wall.toFixed(2)} ms wall per render; ${size} bytes; ${await allocated(between)}`,
  );
  if (cold) {
    // Each render after 64 MiB of other memory was written: the caches hold nothing of the exposition, as
    // in a target whose workers and initiator run between two scrapes a second apart.
    const times: number[] = [];
    for (let i = 0; i < Math.min(renders, 40); i++) {
      between();
      COLD.fill(i);
      const t = performance.now();
      await exposition.renderParts(accept);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    console.log(`${label}, cold caches: ${times[times.length >> 1].toFixed(2)} ms wall per render (median)`);
  }
}

/**
 * Bytes allocated on the V8 heap per render: the heap's growth over renders with no garbage collection between
 * them. Needs `node --expose-gc --max-semi-space-size=64` (a young generation large enough for a few renders).
 */
async function allocated(between: () => void): Promise<string> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return 'allocation: run with --expose-gc --max-semi-space-size=64';
  let gcs = 0;
  const obs = new PerformanceObserver((l) => (gcs += l.getEntries().length));
  obs.observe({ entryTypes: ['gc'] });
  const k = 5;
  let best = Infinity;
  for (let attempt = 0; attempt < 5; attempt++) {
    gc();
    // The forced collection's entry is delivered later: let it arrive before counting.
    await new Promise((r) => setTimeout(r, 20));
    gcs = 0;
    const h0 = process.memoryUsage().heapUsed;
    for (let i = 0; i < k; i++) {
      between();
      await exposition.renderParts(accept);
    }
    const h1 = process.memoryUsage().heapUsed;
    await new Promise((r) => setTimeout(r, 20));
    if (gcs === 0) best = Math.min(best, (h1 - h0) / k);
  }
  obs.disconnect();
  return best === Infinity
    ? 'allocation: a GC ran in every attempt'
    : `${(best / 1024).toFixed(0)} KiB allocated per render`;
}

async function main(): Promise<void> {
  const renders = arg('renders', 200);
  await measure('0 sessions', renders);
  const open = [];
  for (let i = 0; i < 1000; i++) {
    const s = claimSessionStats(
      counters.sessions,
      {
        target: TARGET,
        initiator: `iqn.2026-11.io.nodetgt.bench:host${i % 50}`,
        isid: (0x400000000000 + i).toString(16),
      },
      config.targets[0]!.slot,
    )!;
    s.setConnections(1);
    for (let k = 0; k < i; k++) s.rx(4096);
    open.push(s);
  }
  await measure('1000 sessions', Math.max(1, Math.floor(renders / 4)));
  // Sessions doing I/O between scrapes: their lines (and the metrics that hold them) are written again.
  for (const active of [1, 10, 1000]) {
    const busy = open.slice(0, active);
    await measure(`1000 sessions, ${active} active`, Math.max(1, Math.floor(renders / 4)), () => {
      for (const s of busy) {
        s.rx(4096);
        s.tx(4096);
      }
    });
  }
  const dump = process.argv.indexOf('--dump');
  if (dump > 0) fs.writeFileSync(process.argv[dump + 1]!, (await exposition.render(accept)).body);
  for (const s of open) s.release();
}

void main();
