/**
 * Event-loop health per thread: each thread (the portal, every worker) samples its own loop once a second and
 * writes the figures to its counter row's slots here; the portal reads them at scrape time. A starved worker
 * loop drops sessions (DESIGN.md "Fairness"), so this is what tells an operator which worker it is.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { idlePollStats } from '../native';
import { getHeapStatistics } from 'node:v8';

export const RUNTIME_FIELDS = [
  'utilization',
  'lagP50',
  'lagP99',
  'lagMax',
  'heapUsed',
  // native/idlepoll.cc, since the thread started (zeros where idlePoll is 0)
  'idlePollCaught',
  'idlePollMissed',
  'idlePollSeconds',
  'idlePollShared',
] as const;
export type RuntimeField = (typeof RUNTIME_FIELDS)[number];
const NF = RUNTIME_FIELDS.length;

/** One row per counter row (src/metrics/counters.ts MAX_ROWS). */
export function allocateRuntimeShared(rows: number): SharedArrayBuffer {
  return new SharedArrayBuffer(rows * NF * 8);
}

/** Sample this thread's loop every `intervalMs` into `row`; returns a stop function. The timer never keeps the thread alive. */
export function sampleEventLoop(sab: SharedArrayBuffer, row: number, intervalMs = 1000): () => void {
  const v = new Float64Array(sab, row * NF * 8, NF);
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    v[0] = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    // The histogram is in nanoseconds; the resolution (10 ms) is part of every sample, so it is taken out.
    const ns = (x: number) => Math.max(0, x - 10e6) / 1e9;
    v[1] = ns(h.percentile(50));
    v[2] = ns(h.percentile(99));
    v[3] = ns(h.max);
    v[4] = getHeapStatistics().used_heap_size; // this thread's isolate only
    const p = idlePollStats();
    v[5] = p.caught;
    v[6] = p.missed;
    v[7] = p.lookMs / 1000;
    v[8] = p.shared;
    h.reset();
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    h.disable();
  };
}
