/**
 * Start `nodetgt serve --config FILE` as a child process (optionally under `prlimit --nofile=N:N`), for tests
 * that need the real process: its own descriptor limit, its stderr, its survival.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'nodetgt.js');

export interface ChildTarget {
  proc: ChildProcess;
  port: number;
  metricsPort: number;
  /** Everything the process wrote so far (stdout and stderr). */
  log(): string;
  alive(): boolean;
  /** Open descriptors of the process now. */
  openFds(): number;
  /** Prometheus values by metric name (e.g. nodetgt_cxn_refused_total). */
  metrics(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export async function startChildTarget(
  config: Record<string, unknown>,
  opts: { nofile?: number; env?: Record<string, string> } = {},
): Promise<ChildTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-child-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ portals: ['127.0.0.1:0'], metrics: '127.0.0.1:0', nopInInterval: 0, ...config }),
  );
  const argv = [process.execPath, BIN, 'serve', '--config', file];
  const [cmd, ...args] = opts.nofile ? ['prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, ...argv] : argv;
  const proc = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODETGT_LOG: 'info', ...(opts.env ?? {}) },
  });
  let out = '';
  const grab = (what: string) => new RegExp(`${what} listening address=\\S*:(\\d+)\\s`).exec(out);
  const [port, metricsPort] = await new Promise<[number, number]>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`nodetgt did not start within 20 s; output:\n${out}`));
    }, 20000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const p = grab('portal');
      const m = grab('metrics');
      if (p && m) {
        clearTimeout(timer);
        resolve([Number(p[1]), Number(m[1])]);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`nodetgt exited (code ${code}, signal ${signal}) before listening; output:\n${out}`));
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  return {
    proc,
    port,
    metricsPort,
    log: () => out,
    alive,
    openFds: () => fs.readdirSync(`/proc/${proc.pid}/fd`).length,
    metrics: () =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: metricsPort, path: '/metrics' }, (res) => {
            let body = '';
            res.on('data', (d: Buffer) => (body += d.toString()));
            res.on('end', () => {
              const values: Record<string, number> = {};
              for (const m of body.matchAll(/^(nodetgt_\w+) (\S+)$/gm)) values[m[1]] = Number(m[2]);
              resolve(values);
            });
          })
          .on('error', reject);
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          fs.rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (!alive()) return done();
        proc.once('exit', done);
        proc.kill('SIGKILL');
      }),
  };
}
