/** Configuration model: what an operator writes in the config file (JSON) or on the command line. */
import { envLogLevel, parseLogFormat, parseLogLevel, type Level, type LogFormat } from '../util/log';
import * as path from 'node:path';
import { controlSocketPath } from '../admin/protocol';
import {
  CHAP_SECRET_WARN_LENGTH,
  normalizeAuth,
  normalizeStore,
  type AuthConfig,
  type ChapAccount,
} from './auth';
import { iscsiNameProblem } from './names';
import { normalizeParams, type TargetParams } from './params';
import { normalizeTarget, type TargetConfig, type TargetDefaults } from './target';
import { asObject, checkKeys, ConfigError, fail, optInt, strList } from './validate';

export { ConfigError } from './validate';
export { normalizeLun, type LunConfig } from './lun';
export { CHAP_SECRET_WARN_LENGTH, normalizeAuth, type AuthConfig, type ChapAccount } from './auth';
export { iscsiNameProblem, validateCidr } from './names';
export type { TargetParams } from './params';
export type { AclConfig, TargetConfig } from './target';

export interface PortalConfig {
  host: string;
  port: number;
}

export interface Config {
  portals: PortalConfig[];
  /** Where relative LUN paths and the files of targets' `sizes` go (default: the config file's directory). */
  storageDir: string;
  /** Expands a target name that is not an iSCSI name into "<baseIqn>:<name>". */
  baseIqn?: string;
  /** Operational keys offered at login by default (discovery sessions, and targets that set none). */
  params: TargetParams;
  /** Worker threads; 0 = number of cores. */
  workers: number;
  targets: TargetConfig[];
  /** CHAP required for discovery sessions (separate from every target's); absent = none. */
  discoveryAuth?: AuthConfig;
  /**
   * The file's account store (`accounts`): CHAP accounts that targets' and discovery's `auth` name by user
   * (`"incoming": ["alice"]`), so that `nodetgt account` can add one once and bind it where it is needed.
   * References are resolved into `auth` by the normalizer: the rest of the target never looks here.
   */
  accounts?: ChapAccount[];
  /** Target Portal Group Tag announced at login and in SendTargets. */
  portalGroupTag: number;
  /** "host:port" of the Prometheus endpoint, or null for none. */
  metrics: PortalConfig | null;
  /** Log level (`logLevel`, --log-level; default NODETGT_LOG or info) and line format (`logFormat`, --log-format). */
  logLevel: Level;
  logFormat: LogFormat;
  /** Seconds of idle time before a NOP-In ping; 0 disables. */
  nopInInterval: number;
  /** Seconds to wait for the NOP-Out answer before dropping the connection. */
  nopInTimeout: number;
  /** CmdSN window granted per session (queue depth). */
  queueDepth: number;
  /** Where the provisioning records of the LUs (their identity) are kept. */
  stateDir: string;
  /** The control socket's path (`nodetgt show`, `session close`), or null for none. Default <stateDir>/control.sock. */
  controlSocket: string | null;
  /** Admission limits and timeouts that bound what one client can hold. */
  limits: LimitsConfig;
  /** Unsent bytes queued on a connection past which it stops reading and taking new commands. */
  sendHighWater: number;
  /** Seconds a blocked connection may make no send progress before it is dropped. */
  sendTimeout: number;
  /**
   * Bytes a worker's running commands may have queued to the backstores (write data, read data) past which it
   * stops reading sockets that deliver more; reading resumes at half of it.
   */
  backstoreHighWater: number;
  /**
   * Microseconds a worker may look for work before its event loop sleeps (adapted to the gaps it sees; 0: never
   * look, sleep at once). See native/idlepoll.cc.
   */
  idlePoll: number;
  /** Free receive-slab bytes a worker keeps for reuse (above it, released slabs go back to the allocator). */
  readPoolBytes: number;
  /** Seconds a CmdSN gap left by a rejected command may stay open before the connection is dropped. */
  rejectGapTimeout: number;
  /** Immediate and unsolicited data bytes a session may hold for commands not yet executing. */
  maxUnsolicitedBytes: number;
  /**
   * Seconds a graceful shutdown (SIGTERM) gives sessions to log out and commands to drain before the target
   * closes what is left; 0: close at once (the backstores are flushed either way).
   */
  shutdownTimeout: number;
}

/** See normalizeLimits for the defaults and why. */
export interface LimitsConfig {
  /** Connections at once, logged in or not. */
  maxConnections: number;
  /** Normal sessions at once over all targets (discovery sessions are not counted: they are brief). */
  maxSessions: number;
  /** Connections that have not finished logging in, from all addresses. */
  maxPendingLogins: number;
  /** Connections that have not finished logging in, from one source address. */
  maxPendingLoginsPerAddress: number;
  /** Seconds from accept to the end of the login phase. */
  loginTimeout: number;
  /** Seconds a PDU may stay partly received before the connection is dropped. */
  partialPduTimeout: number;
  /** Descriptors kept free: a connection accepted into the last ones (by RLIMIT_NOFILE) is closed. */
  fdHeadroom: number;
  /** Authentication failures from one address within authFailureWindow after which its logins are refused. */
  authFailuresPerAddress: number;
  /** Seconds over which authentication failures are counted. */
  authFailureWindow: number;
  /** Seconds an address's logins are refused once it reached authFailuresPerAddress. */
  authBlockTime: number;
}

const MIB = 1024 * 1024;

/** LUs over all targets (the per-LU counters have a row for each). */
export const MAX_LUS = 4096;
/** Most targets one configuration may hold (rows of the shared session counts). */
export const MAX_TARGETS = 1024;

export function parsePortal(text: string, defaultPort = 3260): PortalConfig {
  const m = /^\[([0-9a-f:.]+)\](?::(\d+))?$/i.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m)
    throw new ConfigError(`invalid portal '${text}' (expected HOST:PORT, e.g. 0.0.0.0:3260 or [::1]:3260)`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid port in '${text}'`);
  return { host: m[1], port };
}

export function normalizeConfig(raw: unknown, baseDir = process.cwd()): Config {
  const o = asObject(raw, 'config');
  checkKeys(
    o,
    [
      'portals',
      'workers',
      'targets',
      'portalGroupTag',
      'metrics',
      'logLevel',
      'logFormat',
      'nopInInterval',
      'nopInTimeout',
      'queueDepth',
      'stateDir',
      'controlSocket',
      'limits',
      'sendHighWater',
      'sendTimeout',
      'backstoreHighWater',
      'idlePoll',
      'readPoolBytes',
      'rejectGapTimeout',
      'maxUnsolicitedBytes',
      'shutdownTimeout',
      'discoveryAuth',
      'accounts',
      'storageDir',
      'baseIqn',
      'params',
    ],
    'config',
  );
  if (o.stateDir !== undefined && (typeof o.stateDir !== 'string' || o.stateDir === ''))
    fail('config', "'stateDir' must be a directory path");
  if (
    o.controlSocket !== undefined &&
    o.controlSocket !== false &&
    (typeof o.controlSocket !== 'string' || o.controlSocket === '')
  )
    fail('config', "'controlSocket' must be a socket path, or false for none");
  const portals = strList(o.portals ?? ['0.0.0.0:3260'], 'config.portals').map((p) => parsePortal(p));
  if (portals.length === 0) fail('config.portals', 'at least one portal is required');
  if (!Array.isArray(o.targets) || o.targets.length === 0)
    fail('config.targets', 'at least one target is required');
  const store = normalizeStore(o.accounts);
  const defaults = targetDefaults(o, baseDir, store);
  let slots = 0;
  const targets = o.targets.map((t, i): TargetConfig => {
    const target = normalizeTarget(t, `config.targets[${i}]`, defaults, slots, i);
    slots += target.luns.length;
    return target;
  });
  checkUnique(targets);
  if (slots > MAX_LUS) fail('config.targets', `at most ${MAX_LUS} LUs in all, not ${slots}`);
  if (targets.length > MAX_TARGETS)
    fail('config.targets', `at most ${MAX_TARGETS} targets, not ${targets.length}`);
  return {
    portals,
    workers: optInt(o, 'workers', 0, 0, 256, 'config'),
    targets,
    portalGroupTag: optInt(o, 'portalGroupTag', 1, 1, 65535, 'config'),
    metrics: normalizeMetrics(o.metrics),
    logLevel: logOption(() =>
      o.logLevel === undefined ? envLogLevel() : parseLogLevel(o.logLevel, "'logLevel'"),
    ),
    logFormat: logOption(() =>
      o.logFormat === undefined ? 'text' : parseLogFormat(o.logFormat, "'logFormat'"),
    ),
    nopInInterval: defaults.nopInInterval,
    nopInTimeout: defaults.nopInTimeout,
    storageDir: defaults.storageDir,
    ...(defaults.baseIqn === undefined ? {} : { baseIqn: defaults.baseIqn }),
    params: defaults.params,
    queueDepth: optInt(o, 'queueDepth', 128, 1, 4096, 'config'),
    stateDir: path.resolve(baseDir, (o.stateDir as string | undefined) ?? '.nodetgt'),
    controlSocket:
      o.controlSocket === false
        ? null
        : path.resolve(
            baseDir,
            (o.controlSocket as string | undefined) ??
              controlSocketPath((o.stateDir as string | undefined) ?? '.nodetgt'),
          ),
    limits: normalizeLimits(o.limits),
    sendHighWater: optInt(o, 'sendHighWater', 4 * MIB, 64 * 1024, 1024 * MIB, 'config'),
    sendTimeout: optInt(o, 'sendTimeout', 30, 1, 3600, 'config'),
    backstoreHighWater: optInt(o, 'backstoreHighWater', 64 * MIB, 64 * 1024, 4096 * MIB, 'config'),
    idlePoll: optInt(o, 'idlePoll', 200, 0, 1000, 'config'),
    readPoolBytes: optInt(o, 'readPoolBytes', 32 * MIB, 0, 4096 * MIB, 'config'),
    rejectGapTimeout: optInt(o, 'rejectGapTimeout', 5, 1, 3600, 'config'),
    maxUnsolicitedBytes: optInt(o, 'maxUnsolicitedBytes', 64 * MIB, 64 * 1024, 4096 * MIB, 'config'),
    // At most 3600: the initiator is told it in the Async Message's 16-bit Parameter3.
    shutdownTimeout: optInt(o, 'shutdownTimeout', 10, 0, 3600, 'config'),
    ...(o.discoveryAuth === undefined
      ? {}
      : { discoveryAuth: normalizeAuth(o.discoveryAuth, 'config.discoveryAuth', store) }),
    ...(o.accounts === undefined ? {} : { accounts: store }),
  };
}

/** What every target inherits: where its files go, how a short name expands, its keys and keepalive. */
function targetDefaults(
  o: Record<string, unknown>,
  baseDir: string,
  accounts: readonly ChapAccount[],
): TargetDefaults {
  if (o.storageDir !== undefined && (typeof o.storageDir !== 'string' || o.storageDir === ''))
    fail('config', "'storageDir' must be a directory path");
  let baseIqn: string | undefined;
  if (o.baseIqn !== undefined) {
    // The base is the part before ':' of an IQN: a target name is appended after a ':'.
    if (typeof o.baseIqn !== 'string' || !/^iqn\./i.test(o.baseIqn) || o.baseIqn.includes(':'))
      fail('config', "'baseIqn' must be an IQN without a ':' part, e.g. iqn.2002-08.com.example");
    const problem = iscsiNameProblem(o.baseIqn);
    if (problem !== null) fail('config', `'baseIqn': ${problem}`);
    baseIqn = o.baseIqn.toLowerCase();
  }
  return {
    storageDir: path.resolve(baseDir, (o.storageDir as string | undefined) ?? '.'),
    baseIqn,
    params: normalizeParams(o.params, 'config.params'),
    nopInInterval: optInt(o, 'nopInInterval', 10, 0, 3600, 'config'),
    nopInTimeout: optInt(o, 'nopInTimeout', 30, 1, 3600, 'config'),
    accounts,
  };
}

/**
 * Names and identities that must be unique over all targets: two LUs on one file would each cache, journal and
 * reserve it as their own (silent corruption); two with one serial or NAA designator look like one device to
 * a host's multipath layer, which would then mix their blocks.
 */
function checkUnique(targets: TargetConfig[]): void {
  const names = new Set<string>();
  const seen = new Map<string, { target: string; lun: number }>();
  const claim = (key: string, where: string, what: string, t: TargetConfig, lun: number): void => {
    const other = seen.get(key);
    if (other !== undefined) fail(where, `${what} is already LUN ${other.lun} of ${other.target}`);
    seen.set(key, { target: t.name, lun });
  };
  targets.forEach((t, i) => {
    const where = `config.targets[${i}]`;
    if (names.has(t.name)) fail(where, `duplicate target name ${t.name}`);
    names.add(t.name);
    t.luns.forEach((l, j) => {
      const at = `${where}.luns[${j}]`;
      if (l.backstore === 'file') claim(`path:${l.path}`, at, `'path' ${l.path}`, t, l.lun);
      if (l.rbd !== undefined) {
        const spec = `${l.rbd.pool}/${l.rbd.namespace ? `${l.rbd.namespace}/` : ''}${l.rbd.image}`;
        claim(`rbd:${l.rbd.cephConf ?? ''}:${spec}`, at, `rbd image ${spec}`, t, l.lun);
      }
      if (l.serial !== undefined) claim(`serial:${l.serial}`, at, `'serial' ${l.serial}`, t, l.lun);
      if (l.naa !== undefined) claim(`naa:${l.naa}`, at, `'naa' ${l.naa}`, t, l.lun);
    });
  });
}

/** Where a CHAP secret is short enough to warn about (never the secret itself); a stored account once. */
export function shortSecrets(config: Config): string[] {
  const out: string[] = [];
  const stored = new Set<ChapAccount>(config.accounts ?? []);
  const short = (a: ChapAccount) => !stored.has(a) && a.secret.length < CHAP_SECRET_WARN_LENGTH;
  config.accounts?.forEach((a, i) => {
    if (a.secret.length < CHAP_SECRET_WARN_LENGTH) out.push(`config.accounts[${i}] (user '${a.user}')`);
  });
  const check = (auth: AuthConfig | undefined, where: string): void => {
    if (!auth) return;
    auth.incoming.forEach((a, i) => {
      if (short(a)) out.push(`${where}.incoming[${i}] (user '${a.user}')`);
    });
    if (auth.outgoing && short(auth.outgoing)) out.push(`${where}.outgoing (user '${auth.outgoing.user}')`);
  };
  config.targets.forEach((t, i) => check(t.auth, `config.targets[${i}].auth`));
  check(config.discoveryAuth, 'config.discoveryAuth');
  return out;
}

/** "HOST:PORT" only: a bare number reads as a port to some and as a host to others, so it is refused. */
function logOption<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    return fail('config', (e as Error).message);
  }
}

function normalizeMetrics(v: unknown): PortalConfig | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string')
    fail(
      'config',
      `'metrics' must be a string "HOST:PORT" (e.g. "127.0.0.1:${String(v)}"), or null for none`,
    );
  try {
    return parsePortal(v, 9470);
  } catch (e) {
    fail('config', `'metrics': ${(e as Error).message}`);
  }
}

/**
 * Defaults:
 * - 1024 connections: each costs one descriptor and a 64 KiB read slab (4 MiB while it moves bulk data); far
 *   above what a SAN node serves
 *   (a few sessions per host, a few paths each), far below the descriptor limit Node raises itself to.
 * - 64 pending logins: a real login takes milliseconds, so 64 at once covers every host of a rack logging
 *   in together after a target restart (the rest retry); idle connections can hold only 64 descriptors.
 * - 8 per address: a host with 4 paths to 2 targets logs in 8 connections at once; one address cannot
 *   take the whole pending budget.
 * - 15 s login: open-iscsi gives up on a login after 15 s itself.
 * - 30 s partial PDU: the largest PDU (16 MiB) at 10 Mbit/s takes 13 s; a slower sender is not honest.
 * - 32 descriptors of headroom: what a replacement worker (event loop, io_uring ring, LUN files), a metrics
 *   scrape and the log need, so that running out of descriptors stays a refusal and never a failure.
 * - 10 authentication failures a minute from one address, then a minute of refusals: a person mistyping a
 *   secret, or initiators behind one NAT retrying, stay under it; guessing a secret becomes hopeless.
 */
function normalizeLimits(raw: unknown): LimitsConfig {
  const where = 'config.limits';
  const o = raw === undefined ? {} : asObject(raw, where);
  checkKeys(
    o,
    [
      'maxConnections',
      'maxSessions',
      'maxPendingLogins',
      'maxPendingLoginsPerAddress',
      'loginTimeout',
      'partialPduTimeout',
      'fdHeadroom',
      'authFailuresPerAddress',
      'authFailureWindow',
      'authBlockTime',
    ],
    where,
  );
  const maxConnections = optInt(o, 'maxConnections', 1024, 1, 1 << 20, where);
  const maxPendingLogins = optInt(o, 'maxPendingLogins', Math.min(64, maxConnections), 1, 1 << 20, where);
  return {
    maxConnections,
    // A session holds at least one connection, so maxConnections bounds it already unless set lower.
    maxSessions: optInt(o, 'maxSessions', maxConnections, 1, 1 << 20, where),
    maxPendingLogins,
    maxPendingLoginsPerAddress: optInt(
      o,
      'maxPendingLoginsPerAddress',
      Math.min(8, maxPendingLogins),
      1,
      1 << 20,
      where,
    ),
    loginTimeout: optInt(o, 'loginTimeout', 15, 1, 3600, where),
    partialPduTimeout: optInt(o, 'partialPduTimeout', 30, 1, 3600, where),
    fdHeadroom: optInt(o, 'fdHeadroom', 32, 0, 1 << 20, where),
    authFailuresPerAddress: optInt(o, 'authFailuresPerAddress', 10, 1, 1 << 20, where),
    authFailureWindow: optInt(o, 'authFailureWindow', 60, 1, 86400, where),
    authBlockTime: optInt(o, 'authBlockTime', 60, 1, 86400, where),
  };
}

export const DEFAULT_TARGET_NAME = 'iqn.2026-11.io.nodetgt:default';

/** Initiators the embedded default lets in: this host only, until a config file sets an ACL or CHAP. */
export const LOOPBACK_NETWORKS = ['127.0.0.0/8', '::1/128'];

/**
 * The embedded default of `npm start`: one target, one 1 GiB sparse LUN under ./data, portal 0.0.0.0:3260, open
 * to loopback initiators only (a writable disk on every interface must not be anyone's by default).
 */
export function defaultConfigObject(): Record<string, unknown> {
  return {
    portals: ['0.0.0.0:3260'],
    targets: [
      {
        name: DEFAULT_TARGET_NAME,
        luns: [{ lun: 0, path: 'data/lun0.img', size: '1G' }],
        acl: { networks: LOOPBACK_NETWORKS },
      },
    ],
  };
}
