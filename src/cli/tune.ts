/**
 * `nodetgt tune`: host and path checks for a SAN node on 10GbE (src/tuning/), the live connections' MSS asked
 * of the running target over the control socket. Exit 0 when no check failed, 1 when one did, 2 for a usage
 * error. Warnings and unknowns never fail it: they are advice, or things this host cannot tell.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parsePortal } from '../config/schema';
import type { SessionInfo } from '../admin/protocol';
import { hostProbe, unknown, type TuningCheck } from '../tuning/check';
import { exitCode, runTuning } from '../tuning/run';
import { request, resolveSocket, table } from './admin';

export const TUNE_USAGE = `       nodetgt tune [--json] [--interface IF]... [--portal HOST[:PORT]]... [--socket PATH | --config FILE | --state-dir DIR]`;

interface TuneArgs {
  json: boolean;
  interfaces: string[];
  portals: string[];
  socket?: string;
  config?: string;
  stateDir?: string;
}

function parseTuneArgs(argv: string[]): TuneArgs {
  const out: TuneArgs = { json: false, interfaces: [], portals: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') out.json = true;
    else if (a === '--interface') out.interfaces.push(value());
    else if (a === '--portal') out.portals.push(parsePortal(value()).host);
    else if (a === '--socket') out.socket = value();
    else if (a === '--config') out.config = value();
    else if (a === '--state-dir') out.stateDir = value();
    else throw new Error(`unknown option '${a}'`);
  }
  return out;
}

/** The portals' hosts: --portal, else the config file's, else the default wildcard. */
function portalHosts(args: TuneArgs, notes: TuningCheck[]): string[] {
  if (args.portals.length) return args.portals;
  if (args.config) {
    try {
      const raw = JSON.parse(fs.readFileSync(path.resolve(args.config), 'utf8')) as { portals?: unknown };
      if (Array.isArray(raw.portals)) return raw.portals.map((p) => parsePortal(String(p)).host);
    } catch (e) {
      notes.push(unknown('config', args.config, `${(e as Error).message}; checking every interface`));
    }
  }
  return ['0.0.0.0'];
}

async function liveSessions(args: TuneArgs): Promise<SessionInfo[] | { error: string }> {
  let socket: string;
  try {
    socket = resolveSocket(args);
  } catch (e) {
    return { error: `no control socket: ${(e as Error).message}` };
  }
  try {
    const a = await request(socket, { op: 'show', what: 'sessions' });
    return a.ok ? (a.sessions ?? []) : { error: `the target refused: ${a.error}` };
  } catch (e) {
    const m = (e as Error).message;
    return { error: /no target is running/.test(m) ? `no target running (${m})` : m };
  }
}

/** A row per check, its reason (unless ok) and fix under it, and a count per status. */
export function renderTable(checks: readonly TuningCheck[]): string {
  const head = ['STATUS', 'CHECK', 'SUBJECT', 'VALUE', 'EXPECTED'];
  const rows = table(
    head,
    checks.map((c) => [c.status.toUpperCase(), c.check, c.subject, c.value || '-', c.expected || '-']),
  ).split('\n');
  const out = [rows[0]];
  checks.forEach((c, i) => {
    out.push(rows[i + 1]);
    if (c.reason && c.status !== 'ok') out.push(`    why: ${c.reason}`);
    if (c.fix) out.push(`    fix: ${c.fix}`);
  });
  const count = (s: TuningCheck['status']) => checks.filter((c) => c.status === s).length;
  out.push(
    '',
    `${count('ok')} ok, ${count('warn')} warn, ${count('fail')} fail, ${count('unknown')} unknown`,
  );
  return out.join('\n') + '\n';
}

export async function tuneCommand(argv: string[]): Promise<number> {
  let args: TuneArgs;
  try {
    args = parseTuneArgs(argv);
  } catch (e) {
    process.stderr.write(`nodetgt tune: ${(e as Error).message}\nusage:\n${TUNE_USAGE}\n`);
    return 2;
  }
  const notes: TuningCheck[] = [];
  const hosts = portalHosts(args, notes);
  const report = await runTuning({
    probe: hostProbe(),
    portalHosts: hosts,
    interfaces: args.interfaces,
    sessions: await liveSessions(args),
  });
  const checks = [...notes, ...report.checks];
  const code = exitCode(checks);
  if (args.json) process.stdout.write(JSON.stringify({ exitCode: code, checks }, null, 2) + '\n');
  else process.stdout.write(renderTable(checks));
  return code;
}
