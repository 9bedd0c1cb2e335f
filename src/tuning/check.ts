/**
 * What a tuning check reports (`nodetgt tune`, the nodetgt_tuning_check gauge) and where it reads the host
 * from. Everything the checks read goes through a Probe, so tests can hand them a made-up /sys and /proc.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'unknown';

export interface TuningCheck {
  /** What is checked, e.g. 'interface.mtu', 'host.tcp_rmem', 'connection.mss'. */
  check: string;
  /** What it is checked on: an interface, a connection (initiator and peer), or 'host'. */
  subject: string;
  status: CheckStatus;
  /** What was measured, in words ('9000', 'snd_mss 1448, pmtu 9000'); '' when nothing could be. */
  value: string;
  /** What a SAN node on 10GbE should have. */
  expected: string;
  /** The command that fixes it (absent when nothing needs fixing or no command can). */
  fix?: string;
  /** Why the status is unknown, or what the value means. */
  reason?: string;
}

/** The gauge's value per status: a Prometheus alert can test `> 0` for trouble and `< 0` for blind spots. */
export const STATUS_VALUE: Record<CheckStatus, number> = { ok: 0, warn: 1, fail: 2, unknown: -1 };

export function unknown(check: string, subject: string, reason: string, expected = ''): TuningCheck {
  return { check, subject, status: 'unknown', value: '', expected, reason };
}

/** Reads of the host, rooted so tests can point them at a directory of their own. */
export interface Probe {
  /** The text of a file under /sys or /proc, trimmed; rejects with a message naming the file. */
  read(file: string): Promise<string>;
  /** Entry names of a directory; rejects with a message naming it. */
  list(dir: string): Promise<string[]>;
  /** Runs a command; null when it is not installed. */
  run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string } | null>;
  /** Addresses per interface, as os.networkInterfaces() gives them. */
  addresses(): NodeJS.Dict<os.NetworkInterfaceInfo[]>;
  cpuCount(): number;
}

function describe(file: string, e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return `cannot read ${file}: ${err.code ?? err.message}`;
}

/** The real host (root '/'), or a copy of its /sys and /proc under `root`. */
export function hostProbe(root = '/'): Probe {
  const at = (p: string) => path.join(root, p);
  return {
    read: (file) =>
      fs.readFile(at(file), 'utf8').then(
        (t) => t.trim(),
        (e: unknown) => Promise.reject(new Error(describe(file, e))),
      ),
    list: (dir) => fs.readdir(at(dir)).catch((e: unknown) => Promise.reject(new Error(describe(dir, e)))),
    run: (cmd, args) =>
      new Promise((resolve) => {
        execFile(cmd, args, { timeout: 5000 }, (e, stdout, stderr) => {
          const err = e as (NodeJS.ErrnoException & { code?: number | string }) | null;
          if (err?.code === 'ENOENT') return resolve(null);
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
        });
      }),
    addresses: () => os.networkInterfaces(),
    cpuCount: () => os.availableParallelism(),
  };
}

/** A read that yields its error message instead of throwing: each check turns it into 'unknown'. */
export async function tryRead(probe: Probe, file: string): Promise<{ text: string } | { error: string }> {
  try {
    return { text: await probe.read(file) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** 'fail' beats 'warn' beats 'unknown' beats 'ok' (for a summary). */
export function worst(checks: readonly TuningCheck[]): CheckStatus {
  const rank: CheckStatus[] = ['ok', 'unknown', 'warn', 'fail'];
  return checks.reduce<CheckStatus>(
    (w, c) => (rank.indexOf(c.status) > rank.indexOf(w) ? c.status : w),
    'ok',
  );
}
