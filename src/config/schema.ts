/** Configuration model: what an operator writes in the config file (JSON) or on the command line. */
import * as net from 'node:net';
import * as path from 'node:path';
import { parseSize } from '../util/size';
import { parseCidr } from '../portal/acl';
import { controlSocketPath } from '../admin/protocol';
import { normalizeHosts, type HostConfig } from './hosts';

export interface LunConfig {
  lun: number;
  /**
   * 'disk' (SBC direct-access block device) or 'cd' (MMC CD/DVD-ROM drive, tgt's "cd" device type): a cd LUN
   * serves an existing image file (an ISO), read-only, in 2048-byte blocks, with a medium that can be ejected.
   */
  type: 'disk' | 'cd';
  /** A disk whose medium can be ejected and loaded (INQUIRY RMB = 1); always true for a cd. */
  removable: boolean;
  /** 'file' (regular file or block device) or 'null' (reads zeros, discards writes: benchmarks). */
  backstore: 'file' | 'null';
  /** Backing file or block device (absolute after validation). Unused for 'null'. */
  path: string;
  /** Size in bytes when the file must be created (sparse), or the null backstore's size. */
  size?: number;
  readOnly: boolean;
  /** O_DIRECT: bypass the page cache. */
  direct: boolean;
  /** 512 or 4096 for a disk; always 2048 for a cd. */
  blockSize: 512 | 2048 | 4096;
  /** Unit serial number (VPD 80h) set by the operator; otherwise one is generated at provisioning. */
  serial?: string;
  /** NAA designator (VPD 83h) set by the operator, hex; otherwise one is generated at provisioning. */
  naa?: string;
  /** Index of this LU among all configured LUs (per-LU counters). */
  slot: number;
  /** The identity stored at provisioning (src/backstore/prepare.ts), filled in before workers start. */
  identity?: { serial: string; naa: string };
  /** The LU's APTPL file (src/scsi/pr-aptpl.ts), filled in at start-up before workers start. */
  prFile?: string;
  /** The LU's WRITE ATOMIC journal directory (src/backstore/atomic-journal.ts), filled in at start-up. */
  atomicJournalDir?: string;
  /** Why the LU is not served (its backing file disappeared), filled in at start-up; absent when served. */
  offline?: string;
}

export interface AclConfig {
  /** Initiator names allowed, in lower case (iSCSI names compare case-insensitively, RFC 3722); empty = any. */
  initiators: string[];
  /** Networks allowed (CIDR, IPv4 or IPv6); empty = any. */
  networks: string[];
}

/** A CHAP name and secret (RFC 7143 12.1.3). */
export interface ChapAccount {
  user: string;
  secret: string;
}

/** CHAP for a target or for discovery sessions. */
export interface AuthConfig {
  /** Accounts an initiator may prove (any one of them). */
  incoming: ChapAccount[];
  /** The target's own name and secret, for initiators that authenticate the target too (mutual CHAP). */
  outgoing?: ChapAccount;
}

export interface TargetConfig {
  name: string;
  alias?: string;
  luns: LunConfig[];
  acl: AclConfig;
  /** CHAP required to log in to this target; absent = no authentication. */
  auth?: AuthConfig;
  /** Per-initiator LUN masking and read-only mapping (src/config/hosts.ts); absent or empty = none. */
  hosts?: HostConfig[];
}

export interface PortalConfig {
  host: string;
  port: number;
}

export interface Config {
  portals: PortalConfig[];
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
  /** Seconds a CmdSN gap left by a rejected command may stay open before the connection is dropped. */
  rejectGapTimeout: number;
  /** Immediate and unsolicited data bytes a session may hold for commands not yet executing. */
  maxUnsolicitedBytes: number;
}

/** See normalizeLimits for the defaults and why. */
export interface LimitsConfig {
  /** Connections at once, logged in or not. */
  maxConnections: number;
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

/**
 * What the operator must fix. `where` is the setting's place in the config ("config.targets[0].luns[1]") and
 * `key` the setting in it, so that a config read from a file can be reported with the file's line.
 */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly where?: string,
    readonly key?: string,
  ) {
    super(message);
  }
}

/** LUs over all targets (the per-LU counters have a row for each). */
export const MAX_LUS = 4096;

const IQN_RE = /^iqn\.(\d{4})-(\d{2})\.[a-z0-9][a-z0-9.-]*(:\S+)?$/i;
const EUI_NAA_RE = /^(eui\.[0-9a-f]{16}|naa\.([0-9a-f]{16}|[0-9a-f]{32}))$/i;

/**
 * Why `name` is not an iSCSI name (RFC 3720 3.2.6.3: iqn.YYYY-MM.reversed.domain[:anything], eui. + 16 hex
 * digits, naa. + 16 or 32 hex digits), or null when it is one.
 */
export function iscsiNameProblem(name: string): string | null {
  const m = IQN_RE.exec(name);
  if (m) {
    const month = Number(m[2]);
    if (month < 1 || month > 12)
      return `'${name}' has month ${m[2]} in its date (iqn.YYYY-MM, MM from 01 to 12)`;
    return null;
  }
  if (EUI_NAA_RE.test(name)) return null;
  return `'${name}' is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui.<16 hex> or naa.<16 or 32 hex>)`;
}

export function parsePortal(text: string, defaultPort = 3260): PortalConfig {
  const m = /^\[([0-9a-f:.]+)\](?::(\d+))?$/i.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m)
    throw new ConfigError(`invalid portal '${text}' (expected HOST:PORT, e.g. 0.0.0.0:3260 or [::1]:3260)`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid port in '${text}'`);
  return { host: m[1], port };
}

function fail(where: string, msg: string): never {
  // Messages about one setting start with its quoted name: that is the key a file line is looked up for.
  throw new ConfigError(`${where}: ${msg}`, where, /^'(\w+)'/.exec(msg)?.[1]);
}

function asObject(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'expected an object');
  return v as Record<string, unknown>;
}

function checkKeys(o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(where, `unknown setting '${k}'`);
}

function optInt(
  o: Record<string, unknown>,
  key: string,
  def: number,
  min: number,
  max: number,
  where: string,
): number {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    fail(where, `'${key}' must be an integer from ${min} to ${max}`);
  return v;
}

function optBool(o: Record<string, unknown>, key: string, where: string): boolean {
  const v = o[key];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') fail(where, `'${key}' must be true or false`);
  return v;
}

function strList(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) fail(where, 'expected a list of strings');
  return v as string[];
}

/** The config accepts exactly the networks the ACL matcher understands (parseCidr). */
export function validateCidr(text: string): void {
  if (parseCidr(text)) return;
  const m = /^([0-9a-f.:]+)\/\d+$/i.exec(text);
  if (m && net.isIP(m[1]) !== 0) throw new ConfigError(`invalid prefix length in '${text}'`);
  throw new ConfigError(`invalid network '${text}'`);
}

const SERIAL_RE = /^[\x21-\x7e]{1,20}$/;
// NAA 3h (locally assigned) and 5h (IEEE registered): 8 bytes; 6h (IEEE registered extended): 16 bytes.
const NAA_RE = /^([35][0-9a-f]{15}|6[0-9a-f]{31})$/i;

export function normalizeLun(raw: unknown, where: string, baseDir: string, slot = 0): LunConfig {
  const o = asObject(raw, where);
  checkKeys(
    o,
    [
      'lun',
      'type',
      'removable',
      'backstore',
      'path',
      'size',
      'readOnly',
      'direct',
      'blockSize',
      'serial',
      'naa',
    ],
    where,
  );
  const type = o.type ?? 'disk';
  if (type !== 'disk' && type !== 'cd') fail(where, "'type' must be 'disk' or 'cd'");
  if (type === 'cd') return normalizeCdLun(o, where, baseDir, slot);
  if (o.serial !== undefined && (typeof o.serial !== 'string' || !SERIAL_RE.test(o.serial)))
    fail(where, "'serial' must be 1 to 20 printable ASCII characters without spaces");
  if (o.naa !== undefined && (typeof o.naa !== 'string' || !NAA_RE.test(o.naa)))
    fail(where, "'naa' must be 16 hex digits starting with 3 or 5, or 32 starting with 6");
  const lun = optInt(o, 'lun', -1, 0, 16383, where);
  if (lun < 0) fail(where, "'lun' is required");
  const backstore = o.backstore ?? 'file';
  if (backstore !== 'file' && backstore !== 'null') fail(where, "'backstore' must be 'file' or 'null'");
  let size: number | undefined;
  if (o.size !== undefined) {
    if (typeof o.size === 'number') {
      if (!Number.isSafeInteger(o.size) || o.size <= 0)
        fail(where, "'size' must be above 0 (a number is bytes; or a string like '1G')");
      size = o.size;
    } else if (typeof o.size === 'string') {
      try {
        size = parseSize(o.size);
      } catch (e) {
        fail(where, `'size': ${(e as Error).message}`);
      }
    } else fail(where, "'size' must be a number of bytes or a string like '1G'");
  }
  const blockSize = optInt(o, 'blockSize', 512, 512, 4096, where);
  if (blockSize !== 512 && blockSize !== 4096) fail(where, "'blockSize' must be 512 or 4096");
  if (size !== undefined && size % blockSize !== 0)
    fail(where, `'size' must be a multiple of the block size ${blockSize}`);
  let p = '';
  if (backstore === 'file') {
    if (typeof o.path !== 'string' || o.path === '') fail(where, "'path' is required for a file backstore");
    p = path.resolve(baseDir, o.path);
  } else if (size === undefined) fail(where, "'size' is required for a null backstore");
  return {
    lun,
    type: 'disk',
    removable: optBool(o, 'removable', where),
    backstore,
    path: p,
    size,
    readOnly: optBool(o, 'readOnly', where),
    direct: optBool(o, 'direct', where),
    blockSize,
    serial: o.serial as string | undefined,
    naa: (o.naa as string | undefined)?.toLowerCase(),
    slot,
  };
}

/** The CD/DVD image block size (MMC: 2048-byte user data per sector). */
const CD_BLOCK_SIZE = 2048;

/**
 * A cd LUN: an existing image, never created (so no size), always read-only and removable, 2048-byte blocks.
 * Settings that would contradict that are refused rather than silently changed, except readOnly, which a cd
 * LUN is whatever the file says.
 */
function normalizeCdLun(o: Record<string, unknown>, where: string, baseDir: string, slot: number): LunConfig {
  const lun = optInt(o, 'lun', -1, 0, 16383, where);
  if (lun < 0) fail(where, "'lun' is required");
  if (o.backstore !== undefined && o.backstore !== 'file')
    fail(where, "a cd LUN's 'backstore' must be 'file'");
  if (o.size !== undefined) fail(where, "a cd LUN serves an existing image as it is: 'size' is not allowed");
  if (o.blockSize !== undefined && o.blockSize !== CD_BLOCK_SIZE)
    fail(where, `a cd LUN's 'blockSize' is ${CD_BLOCK_SIZE}`);
  if (o.removable !== undefined && o.removable !== true) fail(where, "a cd LUN is always 'removable'");
  if (typeof o.path !== 'string' || o.path === '')
    fail(where, "'path' (the ISO image) is required for a cd LUN");
  optBool(o, 'readOnly', where); // checked for its type; a cd is read-only either way
  return {
    lun,
    type: 'cd',
    removable: true,
    backstore: 'file',
    path: path.resolve(baseDir, o.path),
    readOnly: true,
    direct: optBool(o, 'direct', where),
    blockSize: CD_BLOCK_SIZE,
    serial: o.serial as string | undefined,
    naa: (o.naa as string | undefined)?.toLowerCase(),
    slot,
  };
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
      'nopInInterval',
      'nopInTimeout',
      'queueDepth',
      'stateDir',
      'controlSocket',
      'limits',
      'sendHighWater',
      'sendTimeout',
      'rejectGapTimeout',
      'maxUnsolicitedBytes',
      'discoveryAuth',
      'accounts',
    ],
    'config',
  );
  const store = normalizeStore(o.accounts);
  if (o.stateDir !== undefined && (typeof o.stateDir !== 'string' || o.stateDir === ''))
    fail('config', "'stateDir' must be a directory path");
  if (
    o.controlSocket !== undefined &&
    o.controlSocket !== false &&
    (typeof o.controlSocket !== 'string' || o.controlSocket === '')
  )
    fail('config', "'controlSocket' must be a socket path, or false for none");
  let slots = 0;
  const portals = strList(o.portals ?? ['0.0.0.0:3260'], 'config.portals').map((p) => parsePortal(p));
  if (portals.length === 0) fail('config.portals', 'at least one portal is required');
  if (!Array.isArray(o.targets) || o.targets.length === 0)
    fail('config.targets', 'at least one target is required');
  const names = new Set<string>();
  const files = new Map<string, { target: string; lun: number }>();
  const targets = o.targets.map((t, i): TargetConfig => {
    const where = `config.targets[${i}]`;
    const to = asObject(t, where);
    checkKeys(to, ['name', 'alias', 'luns', 'acl', 'auth', 'hosts'], where);
    if (typeof to.name !== 'string') fail(where, `'name' must be an iSCSI name (a string)`);
    const nameProblem = iscsiNameProblem(to.name);
    if (nameProblem !== null) fail(where, `'name': ${nameProblem}`);
    const name = to.name.toLowerCase();
    if (names.has(name)) fail(where, `duplicate target name ${name}`);
    names.add(name);
    if (to.alias !== undefined && typeof to.alias !== 'string') fail(where, "'alias' must be a string");
    if (!Array.isArray(to.luns)) fail(where, "'luns' must be a list");
    const luns = to.luns.map((l, j) => normalizeLun(l, `${where}.luns[${j}]`, baseDir, slots++));
    const seen = new Set<number>();
    luns.forEach((l, j) => {
      if (seen.has(l.lun)) fail(where, `duplicate LUN ${l.lun}`);
      seen.add(l.lun);
      if (l.backstore !== 'file') return;
      // Two LUs on one file would each cache, journal and reserve it as their own: silent corruption.
      const other = files.get(l.path);
      if (other !== undefined)
        fail(`${where}.luns[${j}]`, `'path' ${l.path} is already LUN ${other.lun} of ${other.target}`);
      files.set(l.path, { target: name, lun: l.lun });
    });
    const acl = to.acl === undefined ? {} : asObject(to.acl, `${where}.acl`);
    checkKeys(acl, ['initiators', 'networks'], `${where}.acl`);
    const networks = strList(acl.networks, `${where}.acl.networks`);
    networks.forEach((n, k) => {
      try {
        validateCidr(n);
      } catch (e) {
        fail(`${where}.acl.networks[${k}]`, (e as Error).message);
      }
    });
    const initiators = strList(acl.initiators, `${where}.acl.initiators`);
    initiators.forEach((n, k) => {
      const problem = iscsiNameProblem(n);
      if (problem !== null) fail(`${where}.acl.initiators[${k}]`, problem);
    });
    return {
      name,
      alias: to.alias as string | undefined,
      ...(to.auth === undefined ? {} : { auth: normalizeAuth(to.auth, `${where}.auth`, store) }),
      luns,
      acl: { initiators: initiators.map((s) => s.toLowerCase()), networks },
      ...targetHosts(to.hosts, where, luns),
    };
  });
  if (slots > MAX_LUS) fail('config.targets', `at most ${MAX_LUS} LUs in all, not ${slots}`);
  return {
    portals,
    workers: optInt(o, 'workers', 0, 0, 256, 'config'),
    targets,
    portalGroupTag: optInt(o, 'portalGroupTag', 1, 1, 65535, 'config'),
    metrics: normalizeMetrics(o.metrics),
    nopInInterval: optInt(o, 'nopInInterval', 10, 0, 3600, 'config'),
    nopInTimeout: optInt(o, 'nopInTimeout', 30, 1, 3600, 'config'),
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
    rejectGapTimeout: optInt(o, 'rejectGapTimeout', 5, 1, 3600, 'config'),
    maxUnsolicitedBytes: optInt(o, 'maxUnsolicitedBytes', 64 * MIB, 64 * 1024, 4096 * MIB, 'config'),
    ...(o.discoveryAuth === undefined
      ? {}
      : { discoveryAuth: normalizeAuth(o.discoveryAuth, 'config.discoveryAuth', store) }),
    ...(o.accounts === undefined ? {} : { accounts: store }),
  };
}

/** A target's `hosts` (src/config/hosts.ts), reported like every other setting; left out when none. */
function targetHosts(raw: unknown, where: string, luns: LunConfig[]): { hosts?: HostConfig[] } {
  const check = { fail, nameProblem: iscsiNameProblem };
  const hosts = normalizeHosts(
    raw,
    where,
    luns.map((l) => l.lun),
    check,
  );
  return hosts.length ? { hosts } : {};
}

/** Secrets shorter than this draw a warning: the Windows initiator requires 12 to 16 characters. */
export const CHAP_SECRET_WARN_LENGTH = 12;

/** Messages never quote a secret: only where it is and what is wrong with it. */
function normalizeAccount(raw: unknown, where: string): ChapAccount {
  const o = asObject(raw, where);
  checkKeys(o, ['user', 'secret'], where);
  if (typeof o.user !== 'string' || o.user === '') fail(where, "'user' must be a non-empty string");
  if (typeof o.secret !== 'string') fail(where, "'secret' must be a string");
  if (o.secret === '') fail(where, "'secret' must not be empty (an empty CHAP secret authenticates anyone)");
  return { user: o.user, secret: o.secret };
}

/** The top-level `accounts` store: a list of { user, secret }, each user once. */
function normalizeStore(raw: unknown): ChapAccount[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail('config', "'accounts' must be a list of { user, secret }");
  const store = raw.map((a, i) => normalizeAccount(a, `config.accounts[${i}]`));
  const users = new Set<string>();
  store.forEach((a, i) => {
    if (users.has(a.user)) fail(`config.accounts[${i}]`, `duplicate account '${a.user}'`);
    users.add(a.user);
  });
  return store;
}

/** An account written inline ({ user, secret }) or named by user from the `accounts` store ("alice"). */
function accountOrReference(raw: unknown, where: string, store: readonly ChapAccount[]): ChapAccount {
  if (typeof raw !== 'string') return normalizeAccount(raw, where);
  // The store's own object: shortSecrets tells a reference from an inline account by identity.
  const a = store.find((x) => x.user === raw);
  if (!a) fail(where, `no account '${raw}' in the top-level 'accounts'`);
  return a;
}

/**
 * A target's `auth` or the top-level `discoveryAuth`: { incoming: [account, ...], outgoing? }, each account
 * { user, secret } inline or a user name from the `accounts` store.
 */
export function normalizeAuth(raw: unknown, where: string, store: readonly ChapAccount[] = []): AuthConfig {
  const o = asObject(raw, where);
  checkKeys(o, ['incoming', 'outgoing'], where);
  if (!Array.isArray(o.incoming) || o.incoming.length === 0)
    fail(where, "'incoming' must be a non-empty list of { user, secret } or account names");
  const incoming = o.incoming.map((a, i) => accountOrReference(a, `${where}.incoming[${i}]`, store));
  const users = new Set<string>();
  for (const a of incoming) {
    if (users.has(a.user)) fail(where, `duplicate incoming user '${a.user}'`);
    users.add(a.user);
  }
  if (o.outgoing === undefined) return { incoming };
  return { incoming, outgoing: accountOrReference(o.outgoing, `${where}.outgoing`, store) };
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
 * - 1024 connections: each costs one descriptor and a 4 MiB read slab; far above what a SAN node serves
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
