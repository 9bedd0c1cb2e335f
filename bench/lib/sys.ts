/**
 * Small process and system helpers for the side-by-side benchmark: run a command with a timeout,
 * find a free loopback port, read a process's CPU time, describe the machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/** Children we started and have not seen exit; killed on the way out no matter what. */
export const liveChildren = new Set<ChildProcess>();

/** SIGKILL a child's whole process group (children are spawned detached: group id = pid). */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/** Called after each child is tracked (the benchmark keeps its guardian's list current with it). */
export const onTrack: { hook?: () => void } = {};

export function track(child: ChildProcess): ChildProcess {
  liveChildren.add(child);
  onTrack.hook?.();
  child.once('exit', () => liveChildren.delete(child));
  return child;
}

/** Run a command to completion (own process group, so a terminal Ctrl-C reaches only us). */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    child.on('error', (e) => {
      stderr += String(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
    });
  });
}

export function runSync(
  cmd: string,
  args: string[],
  timeoutMs = 10_000,
): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Connect and close; the local port of a successful probe, or 0. */
export function probe(port: number): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      const local = s.localPort ?? 0;
      s.destroy();
      resolve(local || 1);
    });
    s.once('error', () => resolve(0));
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Clock ticks per second of /proc/PID/stat and /proc/stat (USER_HZ). */
export const CLK_TCK = Number(runSync('getconf', ['CLK_TCK']).out.trim()) || 100;

/** utime+stime of the whole process (all its threads, live and exited), in microseconds. */
export function cpuMicros(pid: number): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

/** One value per thread of a process, parsed from its file /proc/PID/task/TID/<file>; threads that end meanwhile are left out. */
function perThread<T>(pid: number, file: string, parse: (text: string) => T): Map<number, T> {
  const out = new Map<number, T>();
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      out.set(Number(tid), parse(fs.readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'utf8')));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/** utime+stime per thread of a process, in microseconds, with the thread names. */
export function threadCpu(pid: number): Map<number, { comm: string; us: number }> {
  return perThread(pid, 'stat', (text) => {
    const comm = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { comm, us: ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK };
  });
}

/** Run time per thread of a process in µs, from the scheduler's clock (schedstat, ns; stat counts ticks). */
export function threadRunTime(pid: number): Map<number, number> {
  return perThread(pid, 'schedstat', (text) => Number(text.split(' ')[0]) / 1000);
}

/** Whole-machine [busy, total] jiffies from /proc/stat (busy excludes idle and iowait). */
export function machineJiffies(): [number, number] {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return [total - f[3]! - f[4]!, total];
}

const PF_KTHREAD = 0x00200000;

/**
 * CPU jiffies (user + system) that kernel threads have used so far: writeback workers, ksoftirqd and the
 * like. Much of it is the kernel working for the I/O under test (the page cache flushed to an O_DIRECT-less
 * disk file, softirqs of our own loopback traffic), so it is not another process's load. A kernel thread
 * that starts and exits within a phase is missed (its time stays with the others).
 */
export function kernelThreadJiffies(): number {
  let sum = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      sum += kernelJiffiesOf(fs.readFileSync(`/proc/${name}/stat`, 'utf8'));
    } catch {
      /* process gone */
    }
  }
  return sum;
}

/** utime + stime of one /proc/PID/stat line if it is a kernel thread's (PF_KTHREAD), else 0. */
export function kernelJiffiesOf(stat: string): number {
  // After "pid (comm) ": [0] state ... [6] flags ... [11] utime, [12] stime (proc(5) fields 3, 9, 14, 15);
  // comm may hold spaces and parentheses, so the fields start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[6]) & PF_KTHREAD ? Number(f[11]) + Number(f[12]) : 0;
}

/** Bytes sent on the loopback interface so far (all traffic on lo, ours and anyone else's). */
export function loopbackTxBytes(): number {
  const line = fs
    .readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith('lo:'));
  if (!line) return NaN;
  // "lo: rx_bytes rx_packets ... (8 rx fields) tx_bytes ..."
  return Number(line.trim().slice(3).trim().split(/\s+/)[8]);
}

/** Local TCP listening addresses of a process, from `ss`. */
export function listeningAddresses(pid: number): string[] {
  const r = runSync('ss', ['-Hltnp']);
  return r.out
    .split('\n')
    .filter((l) => l.includes(`pid=${pid},`))
    .map((l) => l.trim().split(/\s+/)[3] ?? '');
}

/** The machine and every tool's version; `repo` (nodetgt's checkout) adds nodetgt's version and commit. */
export function machineInfo(repo?: string): Record<string, string> {
  const cpu = os.cpus();
  const first = (cmd: string, args: string[]) => runSync(cmd, args).out.split('\n')[0]?.trim() ?? '?';
  let nodetgt = '?';
  if (repo) {
    const pkg = JSON.parse(fs.readFileSync(`${repo}/package.json`, 'utf8')) as { version: string };
    const git = runSync('git', ['-C', repo, 'describe', '--always', '--dirty']);
    nodetgt = `${pkg.version}${git.code === 0 ? ` (${git.out.trim()})` : ''}`;
  }
  return {
    date: new Date().toISOString(),
    kernel: `${os.type()} ${os.release()}`,
    cpu: cpu[0]?.model ?? '?',
    cores: String(cpu.length),
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    nodetgt,
    tgtd: first('tgtd', ['--version']),
    qemu: first('qemu-img', ['--version']),
    fio: first('fio', ['--version']),
  };
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A process's start time (field 22 of /proc/PID/stat): with the pid, names one process for good. */
export function procStart(pid: number): string | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
