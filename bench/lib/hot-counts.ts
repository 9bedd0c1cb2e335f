/**
 * Preloaded into a nodetgt under test (node -r dist/bench/lib/hot-counts.js): counts, per thread, the work on
 * the hot path that does not depend on how busy the machine is: promises created, performance.now() calls,
 * setImmediate calls, and garbage collections with their time. Each thread writes its totals every 500 ms to
 * $NODETGT_HOT_COUNTS/<pid>.<threadId>.json. Divided by the I/Os served they give per-I/O figures that a
 * bisect can compare exactly, where CPU time on a shared machine moves by tens of percent between runs.
 * The async hook costs time itself: never combine it with a CPU measurement.
 */
import { createHook } from 'node:async_hooks';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';

export interface HotCounts {
  promises: number;
  now: number;
  immediates: number;
  gcs: number;
  gcMs: number;
}

const dir = process.env.NODETGT_HOT_COUNTS;
if (dir) {
  const c: HotCounts = { promises: 0, now: 0, immediates: 0, gcs: 0, gcMs: 0 };
  createHook({
    init(_id, type) {
      if (type === 'PROMISE') c.promises++;
    },
  }).enable();
  const now = performance.now.bind(performance);
  performance.now = () => {
    c.now++;
    return now();
  };
  const setImm = global.setImmediate;
  global.setImmediate = Object.assign(
    (...a: Parameters<typeof setImmediate>) => {
      c.immediates++;
      return setImm(...a);
    },
    { __promisify__: setImm.__promisify__ },
  ) as typeof setImmediate;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      c.gcs++;
      c.gcMs += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const file = path.join(dir, `${process.pid}.${threadId}.json`);
  setInterval(() => fs.writeFileSync(file, JSON.stringify(c)), 500).unref();
}
