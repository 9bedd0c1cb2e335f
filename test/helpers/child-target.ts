/**
 * `nodetgt serve` as a child process: the real target process, for tests that need its own descriptor limit, its
 * stderr, its survival, or that restart, kill or starve it. It imports no test runner, so that the benches
 * (bench/jumbo.ts) can start a target with it too; a test file's disk workspace is ./disk-workspace.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

export const BIN = path.resolve(__dirname, '../../../bin/nodetgt.js');

export interface ChildTarget {
  proc: ChildProcess;
  /** The port of the first portal, as the target reported it (so `--portal 127.0.0.1:0` works). */
  port: number;
  /** The Prometheus endpoint's port, 0 when it has none. */
  metricsPort: number;
  /** Everything the process printed so far (stdout and stderr). */
  log(): string;
  alive(): boolean;
  /** Open descriptors of the process now. */
  openFds(): number;
  /** Prometheus values by metric name, for series without labels (e.g. nodetgt_cxn_refused_total). */
  metrics(): Promise<Record<string, number>>;
  /** SIGKILL, or the given signal, and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface ChildTargetOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Run under `prlimit --nofile=N:N`. */
  nofile?: number;
  /** A command the target runs under, e.g. ['ip', 'netns', 'exec', 'ns1'] (after prlimit, if any). */
  prefix?: string[];
  /** How long to wait for 'portal listening'. Default 30 s (a loaded machine starts workers slowly). */
  timeoutMs?: number;
}

/** Start `nodetgt serve ARGS` and resolve once its portal listens; reject with its output if it dies or stalls. */
export function startChildTarget(args: string[], opts: ChildTargetOptions = {}): Promise<ChildTarget> {
  return spawnTarget(args, opts, () => undefined);
}

/**
 * Start `nodetgt serve --config FILE` on this configuration (portal and metrics on free loopback ports, no
 * NOP-In pings unless it says otherwise); the file lives in a temporary directory removed by stop().
 */
export function startChildTargetWithConfig(
  config: Record<string, unknown>,
  opts: ChildTargetOptions = {},
): Promise<ChildTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-child-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ portals: ['127.0.0.1:0'], metrics: '127.0.0.1:0', nopInInterval: 0, ...config }),
  );
  return spawnTarget(['--config', file], opts, () => fs.rmSync(dir, { recursive: true, force: true }));
}

function spawnTarget(args: string[], opts: ChildTargetOptions, cleanup: () => void): Promise<ChildTarget> {
  const argv = [...(opts.prefix ?? []), process.execPath, BIN, 'serve', ...args];
  const [cmd, ...rest] = opts.nofile ? ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, ...argv] : argv;
  const proc = spawn(cmd, rest, {
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODETGT_LOG: 'info', ...(opts.env ?? {}) },
  });
  let out = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (alive()) proc.kill(signal);
    await exited;
    cleanup();
  };
  const grab = (what: string) => new RegExp(`${what} listening address=\\S*?:(\\d+)\\s`).exec(out);
  const metrics = (port: number) => (): Promise<Record<string, number>> =>
    new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => {
            const values: Record<string, number> = {};
            for (const m of body.matchAll(/^(nodetgt_\w+) (\S+)$/gm)) values[m[1]] = Number(m[2]);
            resolve(values);
          });
        })
        .on('error', reject);
    });
  const timeoutMs = opts.timeoutMs ?? 30000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      cleanup();
      reject(new Error(`nodetgt did not report 'portal listening' within ${timeoutMs} ms; output:\n${out}`));
    }, timeoutMs);
    let listening = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      const p = listening ? null : grab('portal');
      if (p) {
        // The metrics endpoint, when there is one, reports before the portal does.
        listening = true;
        clearTimeout(timer);
        const m = grab('metrics');
        const metricsPort = m ? Number(m[1]) : 0;
        resolve({
          proc,
          port: Number(p[1]),
          metricsPort,
          log: () => out,
          alive,
          openFds: () => fs.readdirSync(`/proc/${proc.pid}/fd`).length,
          metrics: metrics(metricsPort),
          stop,
        });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!listening) {
        cleanup();
        reject(
          new Error(`nodetgt exited (code ${code}, signal ${signal}) before listening; output:\n${out}`),
        );
      }
    });
  });
}
