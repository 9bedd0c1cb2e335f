/**
 * A target of the config: its name (a short name is expanded with the global `baseIqn`), LUNs (listed, or
 * made from a list of sizes), ACL, CHAP, and the per-target operational keys, keepalive and limits that
 * override the global ones.
 */
import { normalizeAlua, sharedNaa, type AluaConfig } from './alua';
import { normalizeAuth, type AuthConfig, type ChapAccount } from './auth';
import { normalizeHosts, parsePattern, type HostConfig } from './hosts';
import { lunsFromSizes, normalizeLun, type LunConfig } from './lun';
import { iscsiNameProblem, validateCidr } from './names';
import { normalizeParams, type TargetParams } from './params';
import { asObject, checkKeys, fail, optBool, optInt, strList } from './validate';

export interface AclConfig {
  /** Initiator names allowed, in lower case (iSCSI names compare case-insensitively, RFC 3722); empty = any. */
  initiators: string[];
  /** Networks allowed (CIDR, IPv4 or IPv6); empty = any. */
  networks: string[];
}

export interface TargetConfig {
  name: string;
  /**
   * Not in the file: the target's row in the session and connection counts shared by every worker
   * (src/worker/session-limits.ts), its place in the file at start-up; a target added live gets a free row.
   */
  slot: number;
  alias?: string;
  luns: LunConfig[];
  acl: AclConfig;
  /** CHAP required to log in to this target; absent = no authentication. */
  auth?: AuthConfig;
  /** Operational keys offered at login: the global `params` with this target's over them. */
  params: TargetParams;
  /** Seconds of idle time before a NOP-In ping on this target's connections (the global value unless set). */
  nopInInterval: number;
  /** Seconds to wait for the NOP-Out answer (the global value unless set). */
  nopInTimeout: number;
  /** Sessions at once on this target (all initiators); absent = only the global limit. */
  maxSessions?: number;
  /** Connections at once on this target, over all its sessions; absent = only the global limit. */
  maxConnections?: number;
  /** Per-initiator LUN masking and read-only mapping (src/config/hosts.ts); absent or empty = none. */
  hosts?: HostConfig[];
  /** Several gateways serve this target: this one's target port group and every group's state (src/config/alua.ts). */
  alua?: AluaConfig;
}

/** What every target inherits from the top level. */
export interface TargetDefaults {
  /** Relative LUN paths and the files of `sizes` resolve under it. */
  storageDir: string;
  /** Expands a name that is not an iSCSI name ("disk1") into "<baseIqn>:disk1". */
  baseIqn?: string;
  params: TargetParams;
  nopInInterval: number;
  nopInTimeout: number;
  /** The top-level `accounts` store, which a target's `auth` may name accounts from. */
  accounts: readonly ChapAccount[];
}

const TARGET_KEYS = [
  'name',
  'alias',
  'luns',
  'sizes',
  'readOnly',
  'acl',
  'auth',
  'params',
  'nopInInterval',
  'nopInTimeout',
  'maxSessions',
  'maxConnections',
  'hosts',
  'alua',
];

const NAME_TYPE_RE = /^(iqn|eui|naa)\./i;

/** The target's full name and the stem of its `sizes` files (the short name, or the IQN's part after ':'). */
function targetName(raw: unknown, where: string, d: TargetDefaults): { name: string; stem: string } {
  if (typeof raw !== 'string' || raw === '') fail(where, `'name' must be an iSCSI name (a string)`);
  let name = raw;
  if (!NAME_TYPE_RE.test(raw)) {
    if (d.baseIqn === undefined)
      fail(where, `'name' '${raw}' is not an iSCSI name; set 'baseIqn' to expand it to <baseIqn>:${raw}`);
    name = `${d.baseIqn}:${raw}`;
  }
  const problem = iscsiNameProblem(name);
  if (problem !== null) fail(where, `'name': ${problem}`);
  const colon = name.lastIndexOf(':');
  return { name: name.toLowerCase(), stem: name === raw ? name.slice(colon + 1) : raw };
}

function normalizeAcl(raw: unknown, where: string): AclConfig {
  const acl = raw === undefined ? {} : asObject(raw, where);
  checkKeys(acl, ['initiators', 'networks'], where);
  const networks = strList(acl.networks, `${where}.networks`);
  networks.forEach((n, k) => {
    try {
      validateCidr(n);
    } catch (e) {
      fail(`${where}.networks[${k}]`, (e as Error).message);
    }
  });
  // An entry is a whole name, or a prefix ending in '*' or ':' (as a host mapping's `initiator`).
  const initiators = strList(acl.initiators, `${where}.initiators`);
  initiators.forEach((n, k) =>
    parsePattern(n, `${where}.initiators[${k}]`, { fail, nameProblem: iscsiNameProblem }),
  );
  return { initiators: initiators.map((s) => s.toLowerCase()), networks };
}

/** One `targets[]` entry, in row `slot` of the session counts; its LUs take the LU slots from `firstSlot` on. */
export function normalizeTarget(
  raw: unknown,
  where: string,
  d: TargetDefaults,
  firstSlot: number,
  slot: number,
): TargetConfig {
  const to = asObject(raw, where);
  checkKeys(to, TARGET_KEYS, where);
  const { name, stem } = targetName(to.name, where, d);
  if (to.alias !== undefined && typeof to.alias !== 'string') fail(where, "'alias' must be a string");
  let luns: LunConfig[];
  if (to.sizes !== undefined) {
    if (to.luns !== undefined) fail(where, "'sizes' and 'luns' are two ways to list LUNs: use one");
    luns = lunsFromSizes(to.sizes, stem, optBool(to, 'readOnly', where), where, d.storageDir, firstSlot);
  } else {
    if (to.readOnly !== undefined)
      fail(where, "'readOnly' of a target applies to its 'sizes'; set it per LUN");
    if (!Array.isArray(to.luns)) fail(where, "'luns' must be a list");
    luns = to.luns.map((l, j) => normalizeLun(l, `${where}.luns[${j}]`, d.storageDir, firstSlot + j));
  }
  const seen = new Set<number>();
  for (const l of luns) {
    if (seen.has(l.lun)) fail(where, `duplicate LUN ${l.lun}`);
    seen.add(l.lun);
  }
  const nopInInterval = optInt(to, 'nopInInterval', d.nopInInterval, 0, 3600, where);
  const nopInTimeout = optInt(to, 'nopInTimeout', d.nopInTimeout, 1, 3600, where);
  const maxSessions = optInt(to, 'maxSessions', 0, 1, 1 << 20, where);
  const maxConnections = optInt(to, 'maxConnections', 0, 1, 1 << 20, where);
  const alua = normalizeAlua(to.alua, `${where}.alua`);
  if (alua) sharedIdentities(name, luns, where);
  return {
    name,
    slot,
    alias: to.alias as string | undefined,
    ...(to.auth === undefined ? {} : { auth: normalizeAuth(to.auth, `${where}.auth`, d.accounts) }),
    luns,
    acl: normalizeAcl(to.acl, `${where}.acl`),
    params: normalizeParams(to.params, `${where}.params`, d.params),
    nopInInterval,
    nopInTimeout,
    ...(maxSessions > 0 ? { maxSessions } : {}),
    ...(maxConnections > 0 ? { maxConnections } : {}),
    ...targetHosts(to.hosts, where, luns),
    ...(alua ? { alua } : {}),
  };
}

/**
 * Every gateway of an ALUA target must report the same identity for a LU (a host's multipath groups paths by
 * it), and gateways do not share a state directory: the operator's serial, and an NAA derived from it.
 */
function sharedIdentities(name: string, luns: LunConfig[], where: string): void {
  luns.forEach((l, j) => {
    if (l.serial === undefined)
      fail(
        `${where}.luns[${j}]`,
        "'serial' is required on a target with 'alua': the same on every gateway, so that hosts see one device",
      );
    l.naa ??= sharedNaa(name, l.serial);
  });
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
