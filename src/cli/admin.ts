/**
 * `nodetgt show sessions|targets|luns|accounts`, `nodetgt session close TSIH` and `nodetgt log-level [LEVEL]`: the
 * CLI side of the control socket
 * (src/portal/control.ts). The socket is found from --socket, else from --config (its controlSocket, or its
 * state directory's), else from --state-dir, else ./.nodetgt/control.sock.
 */
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeConfig } from '../config/schema';
import {
  controlSocketPath,
  type ControlAnswer,
  type ControlRequest,
  type SessionInfo,
  type ShowWhat,
} from '../admin/protocol';

const SHOW: readonly ShowWhat[] = ['sessions', 'targets', 'luns', 'accounts'];

export const ADMIN_USAGE = `       nodetgt show sessions|targets|luns|accounts [--json] [--socket PATH | --config FILE | --state-dir DIR]
       nodetgt session close TSIH [--socket PATH | --config FILE | --state-dir DIR]
       nodetgt log-level [error|warn|info|debug] [--socket PATH | --config FILE | --state-dir DIR]`;

interface AdminArgs {
  words: string[];
  json: boolean;
  socket: string;
}

function parseAdminArgs(argv: string[]): AdminArgs {
  const words: string[] = [];
  let json = false;
  let socket: string | undefined;
  let config: string | undefined;
  let stateDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') json = true;
    else if (a === '--socket') socket = value();
    else if (a === '--config') config = value();
    else if (a === '--state-dir') stateDir = value();
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else words.push(a);
  }
  return { words, json, socket: resolveSocket({ socket, config, stateDir }) };
}

/** The control socket: --socket, else the config file's, else the state directory's (default .nodetgt). */
export function resolveSocket(o: { socket?: string; config?: string; stateDir?: string }): string {
  if (o.socket) return o.socket;
  if (o.config) {
    const file = path.resolve(o.config);
    const c = normalizeConfig(JSON.parse(fs.readFileSync(file, 'utf8')), path.dirname(file));
    if (!c.controlSocket) throw new Error(`${file} has no control socket (controlSocket: false)`);
    return c.controlSocket;
  }
  return path.resolve(controlSocketPath(o.stateDir ?? '.nodetgt'));
}

/** How long the CLI waits for an answer; NODETGT_CONTROL_TIMEOUT_MS shortens it for tests. */
const ANSWER_TIMEOUT_MS = Number(process.env.NODETGT_CONTROL_TIMEOUT_MS ?? 15_000);

export function request(socket: string, req: ControlRequest): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    c.setEncoding('utf8');
    // A target whose workers do not answer (stuck, overloaded) must not hang the operator's shell.
    c.setTimeout(ANSWER_TIMEOUT_MS, () => {
      c.destroy();
      reject(new Error(`${socket}: no answer within ${ANSWER_TIMEOUT_MS / 1000} s`));
    });
    c.once('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      c.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as ControlAnswer);
      } catch {
        reject(new Error('the target answered something that is not JSON'));
      }
    });
    c.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EACCES')
        reject(new Error(`${socket}: permission denied (only the user running the target may use it)`));
      else if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')
        reject(new Error(`${socket}: no target is running there (${e.code})`));
      else reject(new Error(`${socket}: ${e.message}`));
    });
    c.once('close', () => reject(new Error(`${socket}: the target closed the connection without an answer`)));
  });
}

/** Columns padded to their widest cell, two spaces apart. */
export function table(head: string[], lines: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...lines.map(fmt)].join('\n') + '\n';
}

function sessionTable(rows: readonly SessionInfo[]): string {
  const head = ['TARGET', 'TSIH', 'ISID', 'INITIATOR', 'CID', 'PEER', 'STATE', 'DIGESTS', 'MRDSL I/T'];
  head.push('MAXBURST', 'WORKER', 'AGE', 'BYTES IN', 'BYTES OUT', 'MSS/PMTU');
  const lines = rows.map((r) => [
    r.target || '(discovery)',
    String(r.tsih),
    r.isid,
    r.initiator,
    String(r.cid),
    r.peer,
    r.state,
    `${r.headerDigest === 'CRC32C' ? 'H' : '-'}${r.dataDigest === 'CRC32C' ? 'D' : '-'}`,
    `${r.maxRecvDataSegmentLength.initiator}/${r.maxRecvDataSegmentLength.target}`,
    String(r.maxBurstLength),
    `t${r.worker}`,
    `${r.ageSeconds}s`,
    String(r.bytesIn),
    String(r.bytesOut),
    r.tcp ? `${r.tcp.sndMss}/${r.tcp.pmtu}` : '-',
  ]);
  return table(head, lines);
}

const list = (xs: readonly string[]) => (xs.length ? xs.join(',') : 'any');

function answerTable(what: ShowWhat, a: Extract<ControlAnswer, { ok: true }>): string {
  if (what === 'sessions') return sessionTable(a.sessions ?? []);
  if (what === 'targets')
    return table(
      ['TARGET', 'ALIAS', 'LUNS', 'SESSIONS', 'ACL INITIATORS', 'ACL NETWORKS', 'AUTH', 'ALUA'],
      (a.targets ?? []).map((t) => [
        t.name,
        t.alias ?? '',
        String(t.luns),
        String(t.sessions),
        list(t.aclInitiators),
        list(t.aclNetworks),
        t.auth,
        t.alua ?? '-',
      ]),
    );
  if (what === 'luns')
    return table(
      ['TARGET', 'LUN', 'TYPE', 'SIZE', 'BLOCK', 'MODE', 'THIN', 'SERIAL', 'NAA', 'BACKING', 'STATE'],
      (a.luns ?? []).map((l) => [
        l.target,
        String(l.lun),
        l.type + (l.removable && l.type !== 'cd' ? ' (removable)' : ''),
        String(l.sizeBytes),
        String(l.blockSize),
        l.readOnly ? 'ro' : 'rw',
        l.thin ? 'yes' : 'no',
        l.serial,
        l.naa,
        l.backing,
        l.offline ? `offline: ${l.offline}` : 'online',
      ]),
    );
  return table(
    ['SCOPE', 'DIRECTION', 'USER'],
    (a.accounts ?? []).map((x) => [x.scope, x.direction, x.user]),
  );
}

/** Runs `show ...` / `session ...` / `log-level ...`; resolves to the exit status. */
export async function adminCommand(cmd: 'show' | 'session' | 'log-level', argv: string[]): Promise<number> {
  let args: AdminArgs;
  try {
    args = parseAdminArgs(argv);
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\nusage:\n${ADMIN_USAGE}\n`);
    return 2;
  }
  let req: ControlRequest;
  const what = args.words[0] as ShowWhat;
  if (cmd === 'show' && SHOW.includes(what) && args.words.length === 1) req = { op: 'show', what };
  else if (
    cmd === 'session' &&
    args.words[0] === 'close' &&
    /^\d+$/.test(args.words[1] ?? '') &&
    args.words.length === 2
  )
    req = { op: 'session-close', tsih: Number(args.words[1]) };
  else if (cmd === 'log-level' && args.words.length <= 1)
    req = args.words.length ? { op: 'log-level', level: args.words[0] } : { op: 'log-level' };
  else {
    process.stderr.write(
      `nodetgt: ${[cmd, ...args.words].join(' ')}: not a command\nusage:\n${ADMIN_USAGE}\n`,
    );
    return 2;
  }
  try {
    const a = await request(args.socket, req);
    if (!a.ok) {
      process.stderr.write(`nodetgt: ${a.error}\n`);
      return 1;
    }
    if (req.op === 'show') {
      const rows = a[req.what] ?? [];
      process.stdout.write(args.json ? `${JSON.stringify(rows, null, 1)}\n` : answerTable(req.what, a));
    } else if (req.op === 'log-level') {
      const l = a.logLevel;
      process.stdout.write(
        l && l.was !== l.now ? `log level ${l.was} -> ${l.now}\n` : `log level ${l?.now}\n`,
      );
    } else if (req.op === 'session-close') process.stdout.write(`closed session ${req.tsih}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n`);
    return 1;
  }
}
