/** `nodetgt serve` as a child process: the real target process, for tests that restart, kill or starve it. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

export const BIN = path.resolve(__dirname, '../../../bin/nodetgt.js');

export interface ChildTarget {
  proc: ChildProcess;
  /** The port of the first portal, as the target reported it (so `--portal 127.0.0.1:0` works). */
  port: number;
  /** Everything the process printed so far (stdout and stderr). */
  log(): string;
  /** SIGKILL, or the given signal, and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface ChildTargetOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** A command the target runs under, e.g. ['prlimit', '--nofile=256:256']. */
  wrapper?: string[];
  /** How long to wait for 'portal listening'. Default 30 s (a loaded machine starts workers slowly). */
  timeoutMs?: number;
}

/** Start `nodetgt serve ARGS` and resolve once its portal listens; reject with its output if it dies or stalls. */
export function startChildTarget(args: string[], opts: ChildTargetOptions = {}): Promise<ChildTarget> {
  const argv = [process.execPath, BIN, 'serve', ...args];
  const [cmd, ...rest] = opts.wrapper ? [...opts.wrapper, ...argv] : argv;
  const proc = spawn(cmd, rest, {
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODETGT_LOG: 'info', ...opts.env },
  });
  let out = '';
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  const timeoutMs = opts.timeoutMs ?? 30000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`nodetgt did not report 'portal listening' within ${timeoutMs} ms; output:\n${out}`));
    }, timeoutMs);
    let listening = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = listening ? null : /portal listening address=\S*?:(\d+)\b/.exec(out);
      if (m) {
        listening = true;
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]), log: () => out, stop });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!listening)
        reject(
          new Error(`nodetgt exited (code ${code}, signal ${signal}) before listening; output:\n${out}`),
        );
    });
  });
}
