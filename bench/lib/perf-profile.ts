/**
 * Where a target's CPU goes, kernel included: `perf record -g` on the nodetgt process during a qemu-img run
 * of one figure, the samples sorted into what they were doing. V8's --cpu-prof (the profile section) sees only
 * JavaScript and calls out of it; on this kind of machine half of a 4 KiB command's CPU is in the kernel
 * (system calls, sleeping and waking up), which only a system profiler shows.
 *
 * nodetgt runs with --perf-basic-prof so that JIT frames have names. Each sample is put in the first class
 * that fits, looking at its whole call chain:
 *   - sleeping and waking up: the chain passes through the scheduler (__schedule), in whatever system call;
 *   - a system call, by name: for writev on loopback this includes the receiver's TCP input, which the
 *     sender's thread runs; a sample on libc's stub of a system call (its entry or return) counts for it;
 *   - other kernel work: page faults, softirqs and interrupts outside a system call;
 *   - user space, by the leaf frame: JavaScript (JIT code), V8 builtins and inline caches, garbage collection,
 *     other node/V8/libuv C++, libc (memcpy and the system-call stubs), the nodetgt addon.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { run } from './sys';

export interface PerfFrame {
  sym: string;
  dso: string;
}

export interface PerfSample {
  tid: number;
  /** Leaf first. */
  frames: PerfFrame[];
}

/** Parse `perf script -F tid,ip,sym,dso` output (with call chains): one block per sample. */
export function parsePerfScript(text: string): PerfSample[] {
  const out: PerfSample[] = [];
  let cur: PerfSample | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      cur = undefined;
      continue;
    }
    // A sample's header is its tid, right-aligned (so it may start with spaces); its frames start with a tab.
    if (!line.startsWith('\t')) {
      const tid = parseInt(line.trim().split(/\s+/)[0]!, 10);
      cur = { tid: Number.isFinite(tid) ? tid : 0, frames: [] };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    // "\t    ffffffff8225fd19 pvm_irq_enable ([kernel.kallsyms])"; the symbol may contain spaces and parens.
    const m = /^\s*[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)\s*$/.exec(line);
    if (m) cur.frames.push({ sym: m[1]!, dso: m[2]! });
  }
  return out;
}

export const SLEEP_WAKE = 'sleeping and waking up (scheduler)';

const KERNEL = (f: PerfFrame) => f.dso === '[kernel.kallsyms]' || f.dso.startsWith('[kernel');

const LIBC = (f: PerfFrame) => /\/libc[.-]|libc\.so/.test(f.dso);
/** __GI___libc_write -> write, epoll_pwait -> epoll_pwait, pthread_cond_signal@@GLIBC_2.3.2 -> pthread_cond_signal */
const stubName = (sym: string) =>
  sym
    .replace(/@.*$/, '')
    .replace(/^(?:__GI_)?_*(?:libc_)?/, '')
    .replace(/64$/, '');
const SYSCALL_STUBS = new Set([
  'read',
  'readv',
  'write',
  'writev',
  'recvmsg',
  'sendmsg',
  'recvfrom',
  'sendto',
  'poll',
  'ppoll',
  'epoll_wait',
  'epoll_pwait',
  'epoll_ctl',
  'sched_yield',
  'io_uring_enter',
  'futex',
  'pread',
  'pwrite',
  'preadv2',
  'pwritev2',
  'mincore',
  'madvise',
  'mmap',
  'munmap',
  'getpid',
  'close',
  'ioctl',
  'fcntl',
  'setsockopt',
  'getsockopt',
  'fdatasync',
  'fsync',
  'fallocate',
  'lseek',
  'clock_nanosleep',
  'nanosleep',
]);

/** The class of one sample (see the file's comment). */
export function classify(frames: PerfFrame[]): string {
  if (!frames.length) return 'unknown';
  if (frames.some((f) => KERNEL(f) && (f.sym === '__schedule' || f.sym.startsWith('finish_task_switch'))))
    return SLEEP_WAKE;
  // The kernel inlines most __x64_sys_<name> frames away: the name is the libc stub's, the first user-space
  // frame after the kernel's entry point (__GI___libc_write, __GI___writev, epoll_pwait, read).
  const entry = frames.findIndex((f) => KERNEL(f) && f.sym.startsWith('entry_SYSCALL'));
  if (entry >= 0) {
    const stub = frames[entry + 1];
    const named = frames
      .slice(0, entry)
      .map((f) => /^(?:__x64_sys|__se_sys|__do_sys)_(\w+)$/.exec(f.sym)?.[1])
      .find((x) => x !== undefined);
    const call = (stub ? stubName(stub.sym) : named) || named || '?';
    return `system call ${/futex|lll_lock|pthread_cond|pthread_mutex/.test(call) ? 'futex' : call}`;
  }
  const leaf = frames[0]!;
  // A sample on a libc system-call stub is the call's entry or return (on a paravirtualized guest, where the
  // hypervisor's return path is long, many samples land there): it belongs to the call.
  if (LIBC(leaf)) {
    const call = stubName(leaf.sym);
    if (SYSCALL_STUBS.has(call)) return `system call ${call}`;
  }
  if (KERNEL(leaf)) {
    if (frames.some((f) => /page_fault|^handle_mm_fault$/.test(f.sym))) return 'kernel: page faults';
    if (frames.some((f) => /softirq|napi_poll/.test(f.sym))) return 'kernel: softirqs (network)';
    return 'kernel: other (interrupts, timers)';
  }
  if (leaf.sym.startsWith('JS:') || /perf-\d+\.map$/.test(leaf.dso) || leaf.dso.startsWith('[JIT]'))
    return 'JavaScript (JIT code)';
  if (/nodetgt_native\.node$/.test(leaf.dso)) return 'nodetgt addon (native)';
  if (LIBC(leaf) || leaf.dso === '[vdso]') return 'libc, vdso (memcpy, clock_gettime)';
  if (/Scavenge|MarkCompact|Heap::|GCTracer|Sweeper|ConcurrentMarking|MinorMC/.test(leaf.sym))
    return 'garbage collection';
  if (leaf.sym.startsWith('Builtins_')) return 'V8 builtins and inline caches';
  if (/\/node$|libnode/.test(leaf.dso)) return 'node, V8, libuv (C++)';
  return `other: ${leaf.dso}`;
}

export interface PerfSummary {
  samples: number;
  /** Samples of the busiest thread (the worker serving the connection) over all samples. */
  busiestThreadShare: number;
  classes: { name: string; samples: number; share: number }[];
  /** Self samples per leaf symbol, the largest first. */
  leaves: { sym: string; dso: string; samples: number; share: number }[];
}

export function summarisePerf(samples: PerfSample[], topN = 15): PerfSummary {
  const n = samples.length;
  const byClass = new Map<string, number>();
  const byLeaf = new Map<string, { sym: string; dso: string; samples: number }>();
  const byTid = new Map<number, number>();
  for (const s of samples) {
    const c = classify(s.frames);
    byClass.set(c, (byClass.get(c) ?? 0) + 1);
    byTid.set(s.tid, (byTid.get(s.tid) ?? 0) + 1);
    const leaf = s.frames[0];
    if (!leaf) continue;
    const dso = leaf.dso.replace(/^.*\//, '').replace(/^perf-\d+\.map$/, 'JIT');
    const key = `${leaf.sym}\u0000${dso}`;
    const e = byLeaf.get(key) ?? { sym: leaf.sym, dso, samples: 0 };
    e.samples++;
    byLeaf.set(key, e);
  }
  const share = (k: number) => (n ? k / n : 0);
  return {
    samples: n,
    busiestThreadShare: share(Math.max(0, ...byTid.values())),
    classes: [...byClass]
      .map(([name, k]) => ({ name, samples: k, share: share(k) }))
      .sort((a, b) => b.samples - a.samples),
    leaves: [...byLeaf.values()]
      .sort((a, b) => b.samples - a.samples)
      .slice(0, topN)
      .map((e) => ({ ...e, share: share(e.samples) })),
  };
}

/** Whether `perf record` can be used here: installed, and allowed to watch another process. */
export async function perfUsable(): Promise<string | undefined> {
  const v = await run('perf', ['--version'], 10_000).catch(() => undefined);
  if (!v || v.code !== 0) return 'perf not installed (apt-get install linux-perf)';
  const paranoid = Number(fs.readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8').trim());
  if (process.getuid?.() !== 0 && paranoid > 1)
    return `perf_event_paranoid is ${paranoid} and the bench is not root: cannot watch another process`;
  return undefined;
}

/**
 * Record `pid` with call chains for `secs` seconds starting now, and summarise. The data file is removed;
 * the JIT map file (/tmp/perf-PID.map) is the caller's to remove once the process has exited.
 */
export async function recordPerf(pid: number, secs: number, dataFile: string): Promise<PerfSummary> {
  const rec = await run(
    'perf',
    ['record', '-q', '-F', '999', '-g', '-p', String(pid), '-o', dataFile, '--', 'sleep', String(secs)],
    (secs + 30) * 1000,
  );
  if (rec.code !== 0 || !fs.existsSync(dataFile))
    throw new Error(`perf record: ${rec.stderr.trim().split('\n').slice(-1)[0] ?? rec.code}`);
  try {
    const text = await new Promise<string>((resolve, reject) => {
      const p = spawn('perf', ['script', '-i', dataFile, '-F', 'tid,ip,sym,dso'], {
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const chunks: Buffer[] = [];
      p.stdout.on('data', (b: Buffer) => chunks.push(b));
      p.on('error', reject);
      p.on('close', (code) =>
        code === 0
          ? resolve(Buffer.concat(chunks).toString('utf8'))
          : reject(new Error(`perf script: ${code}`)),
      );
    });
    return summarisePerf(parsePerfScript(text));
  } finally {
    fs.rmSync(dataFile, { force: true });
  }
}

/** A markdown table of a summary: the classes with their share and µs per I/O, then the top leaf symbols. */
export function perfMarkdown(s: PerfSummary, cpuUsPerIo: number): string[] {
  const pct = (x: number) => (100 * x).toFixed(1);
  const L = ['| where the samples were | % of samples | µs per I/O |', '|---|--:|--:|'];
  for (const c of s.classes) L.push(`| ${c.name} | ${pct(c.share)} | ${(c.share * cpuUsPerIo).toFixed(2)} |`);
  L.push('', '| leaf function (self) | in | % of samples |', '|---|---|--:|');
  for (const l of s.leaves) L.push(`| ${l.sym.replace(/\|/g, '\\|')} | ${l.dso} | ${pct(l.share)} |`);
  return L;
}
