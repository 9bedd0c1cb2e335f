/**
 * The control socket: a Unix socket (mode 0600, owned by the user running the target) on which
 * `nodetgt show sessions`, `nodetgt session close` and `nodetgt log-level` talk to a running target, in the
 * spirit of tgtadm.
 *
 * Two locks on the door: the file's mode keeps other users from connecting at all, and each connection's
 * peer credentials (SO_PEERCRED) are checked, so that a socket whose mode was loosened by hand still
 * serves only the target's own user (and root). A refusal is logged and counted (controlRefused).
 *
 * The portal thread knows no sessions: it asks every worker (an 'admin' task routed to each) and merges.
 * Configuration changes (`nodetgt target|lun|acl|account`) are src/portal/change.ts's.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { peerCredentials } from '../native';
import { changeLogLevel, log, logLevel, parseLogLevel } from '../util/log';
import { socketFd } from '../util/socket-fd';
import type {
  AccountInfo,
  AdminResult,
  AdminTask,
  ControlAnswer,
  ControlRequest,
  LunInfo,
  SessionInfo,
  ShowWhat,
  TargetInfo,
} from '../admin/protocol';
import type { AuthConfig, Config } from '../config/schema';
import type { EditContext } from '../config/edit';
import { changeHandler, type ChangeDeps } from './change';

export interface ControlDeps extends Omit<ChangeDeps, 'editContext'> {
  /** The running configuration (the portal's: reloads update it). */
  config(): Config;
  /** Run the task on every live worker; one answer per worker. */
  askWorkers(task: AdminTask): Promise<AdminResult[]>;
  count(what: 'controlRequests' | 'controlRefused'): void;
}

type Handlers = ControlDeps & { change: ReturnType<typeof changeHandler> };

const MAX_LINE = 64 * 1024;

/** Who may ask: the target's own user, and root. */
export function controlAllowed(peerUid: number, ownUid = process.getuid?.() ?? 0): boolean {
  return peerUid === ownUid || peerUid === 0;
}

export async function startControlServer(file: string, deps: ControlDeps): Promise<net.Server> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  await removeStale(file);
  const handlers: Handlers = {
    ...deps,
    change: changeHandler({ ...deps, editContext: (force) => editContext(deps, force) }),
  };
  const server = net.createServer((socket) => serve(socket, handlers));
  // The socket file is created with the process umask: make it 0600 from the start, not after a chmod.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(umask);
  }
  fs.chmodSync(file, 0o600);
  server.on('error', (e) => log.error('control socket error', { error: e.message }));
  return server;
}

/** A socket file left by a target that died: nobody answers on it. One that answers is another target's. */
async function removeStale(file: string): Promise<void> {
  if (!fs.existsSync(file)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(file);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live)
    throw new Error(`control socket ${file} is in use: another target runs with this state directory`);
  fs.unlinkSync(file);
}

function serve(socket: net.Socket, deps: Handlers): void {
  socket.on('error', () => undefined);
  const fd = socketFd(socket);
  let uid = -1;
  let pid = 0;
  try {
    if (fd >= 0) ({ uid, pid } = peerCredentials(fd));
  } catch {
    uid = -1;
  }
  if (!controlAllowed(uid)) {
    deps.count('controlRefused');
    log.warn('control socket: request refused, not the user running the target', { uid, pid });
    answer(socket, { ok: false, error: 'permission denied: only the user running the target may use it' });
    socket.end();
    return;
  }
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE) {
      answer(socket, { ok: false, error: 'request too long' });
      socket.destroy();
      return;
    }
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) void handle(line, deps).then((a) => answer(socket, a));
    }
  });
}

function answer(socket: net.Socket, a: ControlAnswer): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(a)}\n`);
}

async function handle(line: string, deps: Handlers): Promise<ControlAnswer> {
  let req: ControlRequest;
  try {
    req = JSON.parse(line) as ControlRequest;
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  deps.count('controlRequests');
  try {
    if (req.op === 'show' && req.what !== 'sessions') return show(req.what, deps);
    if (req.op === 'show' && req.what === 'sessions') {
      const results = await deps.askWorkers({ kind: 'admin', op: 'sessions' });
      const sessions: SessionInfo[] = results.flatMap((r) => r.sessions ?? []);
      sessions.sort((a, b) => a.target.localeCompare(b.target) || a.tsih - b.tsih || a.cid - b.cid);
      return { ok: true, sessions };
    }
    if (req.op === 'session-close' && Number.isInteger(req.tsih) && req.tsih > 0 && req.tsih < 65536) {
      const results = await deps.askWorkers({ kind: 'admin', op: 'session-close', tsih: req.tsih });
      const closed = results.reduce((n, r) => n + (r.closed ?? 0), 0);
      return closed ? { ok: true, closed } : { ok: false, error: `no session with TSIH ${req.tsih}` };
    }
    if (req.op === 'change') return await deps.change(req);
    if (req.op === 'log-level') return logLevelRequest(req.level);
    // Echoed for the operator's sake, but never a secret a malformed change may carry.
    const echo = JSON.stringify(req, (k, v: unknown) => (k === 'secret' ? '(hidden)' : v));
    return { ok: false, error: `unknown request ${echo.slice(0, 200)}` };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/**
 * The log level lives in shared memory every worker reads (src/util/log.ts): setting it here is the change for
 * the portal and every worker, present and future, with no message to any of them.
 */
function logLevelRequest(level: string | undefined): ControlAnswer {
  const now = logLevel();
  if (level === undefined) return { ok: true, logLevel: { was: now, now } };
  const to = parseLogLevel(level, 'the log level');
  return { ok: true, logLevel: { was: changeLogLevel(to, 'control socket'), now: to } };
}

/** targets, luns, accounts: from the running configuration, with what the workers report (sizes, sessions). */
async function show(what: Exclude<ShowWhat, 'sessions'>, deps: ControlDeps): Promise<ControlAnswer> {
  const config = deps.config();
  if (what === 'accounts') {
    const accounts: AccountInfo[] = [];
    const add = (scope: string, auth?: AuthConfig) => {
      for (const a of auth?.incoming ?? []) accounts.push({ scope, user: a.user, direction: 'incoming' });
      if (auth?.outgoing) accounts.push({ scope, user: auth.outgoing.user, direction: 'outgoing' });
    };
    add('(discovery)', config.discoveryAuth);
    for (const t of config.targets) add(t.name, t.auth);
    for (const a of config.accounts ?? [])
      if (!accounts.some((x) => x.user === a.user))
        accounts.push({ scope: '(unbound)', user: a.user, direction: 'stored' });
    return { ok: true, accounts };
  }
  if (what === 'targets') {
    const sessions = (await deps.askWorkers({ kind: 'admin', op: 'sessions' })).flatMap(
      (r) => r.sessions ?? [],
    );
    const targets: TargetInfo[] = config.targets.map((t) => ({
      name: t.name,
      ...(t.alias !== undefined ? { alias: t.alias } : {}),
      luns: t.luns.length,
      sessions: new Set(sessions.filter((s) => s.target === t.name).map((s) => s.tsih)).size,
      aclInitiators: t.acl.initiators,
      aclNetworks: t.acl.networks,
      auth: !t.auth ? 'none' : t.auth.outgoing ? 'mutual chap' : 'chap',
      ...(t.alua
        ? {
            alua: t.alua.groups
              .map((g) => `${g.id}:${g.state}${g.id === t.alua!.localGroup ? '*' : ''}`)
              .join(' '),
          }
        : {}),
    }));
    return { ok: true, targets };
  }
  // Every worker serves every LU: the first answer is enough; a LU no worker reports is offline.
  const reported = (await deps.askWorkers({ kind: 'admin', op: 'luns' }))[0]?.luns ?? [];
  const luns: LunInfo[] = [];
  for (const t of config.targets)
    for (const l of t.luns) {
      const backing =
        l.backstore === 'null'
          ? 'null'
          : l.backstore === 'rbd'
            ? `rbd:${l.rbd!.pool}/${l.rbd!.namespace ? `${l.rbd!.namespace}/` : ''}${l.rbd!.image}`
            : l.path;
      const r = reported.find((x) => x.target === t.name && x.lun === l.lun);
      if (r) luns.push({ ...r, backing });
      else
        luns.push({
          target: t.name,
          lun: l.lun,
          type: l.type,
          backing,
          sizeBytes: 0,
          blockSize: l.blockSize,
          readOnly: l.readOnly,
          thin: false,
          removable: l.removable,
          serial: l.identity?.serial ?? '',
          naa: l.identity?.naa ?? '',
          offline: l.offline ?? 'not served (see the log)',
        });
    }
  return { ok: true, luns };
}

/** Sessions per target and LU sizes now, for the edits that must not cut them off unasked. */
async function editContext(deps: ControlDeps, force: boolean): Promise<EditContext> {
  const [sessions, luns] = await Promise.all([
    deps.askWorkers({ kind: 'admin', op: 'sessions' }),
    deps.askWorkers({ kind: 'admin', op: 'luns' }),
  ]);
  const tsihs = new Map<string, Set<number>>();
  for (const s of sessions.flatMap((r) => r.sessions ?? []))
    if (s.target) tsihs.set(s.target, (tsihs.get(s.target) ?? new Set()).add(s.tsih));
  const sizes = luns[0]?.luns ?? [];
  return {
    sessions: (target) => tsihs.get(target)?.size ?? 0,
    lunBytes: (target, lun) => sizes.find((l) => l.target === target && l.lun === lun)?.sizeBytes,
    force,
  };
}
