/**
 * Summarise V8 .cpuprofile files (node --cpu-prof writes one per thread: main and each worker):
 * self time per function, largest first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/**
 * Samples that are not CPU: V8's idle marker, and piscina's idle loop, which blocks in Atomics.wait
 * (the sampler still attributes that time to the JS function).
 */
const WAITING = new Set(['(idle)', 'atomicsWaitLoop']);

export interface ProfileSummary {
  file: string;
  thread: string;
  wallMs: number;
  /** Sampled time not spent idle or blocked in Atomics.wait. */
  busyMs: number;
  top: { fn: string; where: string; ms: number; pctBusy: number }[];
}

function shortUrl(url: string, repo: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  return u.startsWith(repo) ? path.relative(repo, u) : u;
}

export function summariseProfile(file: string, repo: string, topN = 12): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let busy = 0;
  // timeDeltas[i] is the time before sample i; charge it to the sample that follows, the usual way.
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    if (!n) continue;
    const dt = p.timeDeltas[i + 1] ?? 0;
    const cf = n.callFrame;
    const fn = cf.functionName || '(anonymous)';
    if (!WAITING.has(fn)) busy += dt;
    const where = cf.url ? `${shortUrl(cf.url, repo)}:${cf.lineNumber + 1}` : '';
    const key = `${fn}@${where}`;
    const e = self.get(key) ?? { fn, where, us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const top = [...self.values()]
    .filter((e) => !WAITING.has(e.fn))
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ fn: e.fn, where: e.where, ms: e.us / 1000, pctBusy: busy ? (100 * e.us) / busy : 0 }));
  // File names are CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile; thread 0 is the main thread.
  const parts = path.basename(file).split('.');
  const tid = parts.length >= 6 ? parts[parts.length - 3] : '?';
  return {
    file,
    thread: tid === '0' ? 'main' : `worker ${tid}`,
    wallMs: (p.endTime - p.startTime) / 1000,
    busyMs: busy / 1000,
    top,
  };
}
