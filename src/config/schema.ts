/** Configuration model: what an operator writes in the config file (JSON) or on the command line. */
import * as net from 'node:net';
import * as path from 'node:path';
import { parseSize } from '../util/size';
import { parseCidr } from '../portal/acl';

export interface LunConfig {
  lun: number;
  /** 'file' (regular file or block device) or 'null' (reads zeros, discards writes: benchmarks). */
  backstore: 'file' | 'null';
  /** Backing file or block device (absolute after validation). Unused for 'null'. */
  path: string;
  /** Size in bytes when the file must be created (sparse), or the null backstore's size. */
  size?: number;
  readOnly: boolean;
  /** O_DIRECT: bypass the page cache. */
  direct: boolean;
  blockSize: 512 | 4096;
}

export interface AclConfig {
  /** Initiator names allowed, in lower case (iSCSI names compare case-insensitively, RFC 3722); empty = any. */
  initiators: string[];
  /** Networks allowed (CIDR, IPv4 or IPv6); empty = any. */
  networks: string[];
}

export interface TargetConfig {
  name: string;
  alias?: string;
  luns: LunConfig[];
  acl: AclConfig;
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
}

export class ConfigError extends Error {}

const IQN_RE = /^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:[^\s]+)?|eui\.[0-9a-f]{16}|naa\.[0-9a-f]{16,32})$/i;

export function parsePortal(text: string, defaultPort = 3260): PortalConfig {
  const m = /^\[([0-9a-f:.]+)\](?::(\d+))?$/i.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m)
    throw new ConfigError(`invalid portal '${text}' (expected HOST:PORT, e.g. 0.0.0.0:3260 or [::1]:3260)`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`invalid port in '${text}'`);
  return { host: m[1], port };
}

function fail(where: string, msg: string): never {
  throw new ConfigError(`${where}: ${msg}`);
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

export function normalizeLun(raw: unknown, where: string, baseDir: string): LunConfig {
  const o = asObject(raw, where);
  checkKeys(o, ['lun', 'backstore', 'path', 'size', 'readOnly', 'direct', 'blockSize'], where);
  const lun = optInt(o, 'lun', -1, 0, 16383, where);
  if (lun < 0) fail(where, "'lun' is required");
  const backstore = o.backstore ?? 'file';
  if (backstore !== 'file' && backstore !== 'null') fail(where, "'backstore' must be 'file' or 'null'");
  let size: number | undefined;
  if (o.size !== undefined) {
    if (typeof o.size === 'number') size = o.size;
    else if (typeof o.size === 'string') {
      try {
        size = parseSize(o.size);
      } catch (e) {
        fail(where, (e as Error).message);
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
    backstore,
    path: p,
    size,
    readOnly: optBool(o, 'readOnly', where),
    direct: optBool(o, 'direct', where),
    blockSize,
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
    ],
    'config',
  );
  const portals = strList(o.portals ?? ['0.0.0.0:3260'], 'config.portals').map((p) => parsePortal(p));
  if (portals.length === 0) fail('config.portals', 'at least one portal is required');
  if (!Array.isArray(o.targets) || o.targets.length === 0)
    fail('config.targets', 'at least one target is required');
  const names = new Set<string>();
  const targets = o.targets.map((t, i): TargetConfig => {
    const where = `config.targets[${i}]`;
    const to = asObject(t, where);
    checkKeys(to, ['name', 'alias', 'luns', 'acl'], where);
    if (typeof to.name !== 'string' || !IQN_RE.test(to.name))
      fail(where, `'name' must be an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui.* or naa.*)`);
    const name = to.name.toLowerCase();
    if (names.has(name)) fail(where, `duplicate target name ${name}`);
    names.add(name);
    if (to.alias !== undefined && typeof to.alias !== 'string') fail(where, "'alias' must be a string");
    if (!Array.isArray(to.luns)) fail(where, "'luns' must be a list");
    const luns = to.luns.map((l, j) => normalizeLun(l, `${where}.luns[${j}]`, baseDir));
    const seen = new Set<number>();
    for (const l of luns) {
      if (seen.has(l.lun)) fail(where, `duplicate LUN ${l.lun}`);
      seen.add(l.lun);
    }
    const acl = to.acl === undefined ? {} : asObject(to.acl, `${where}.acl`);
    checkKeys(acl, ['initiators', 'networks'], `${where}.acl`);
    const networks = strList(acl.networks, `${where}.acl.networks`);
    networks.forEach(validateCidr);
    return {
      name,
      alias: to.alias as string | undefined,
      luns,
      acl: {
        initiators: strList(acl.initiators, `${where}.acl.initiators`).map((s) => s.toLowerCase()),
        networks,
      },
    };
  });
  return {
    portals,
    workers: optInt(o, 'workers', 0, 0, 256, 'config'),
    targets,
    portalGroupTag: optInt(o, 'portalGroupTag', 1, 1, 65535, 'config'),
    metrics: o.metrics === undefined || o.metrics === null ? null : parsePortal(String(o.metrics), 9470),
    nopInInterval: optInt(o, 'nopInInterval', 10, 0, 3600, 'config'),
    nopInTimeout: optInt(o, 'nopInTimeout', 30, 1, 3600, 'config'),
    queueDepth: optInt(o, 'queueDepth', 128, 1, 4096, 'config'),
  };
}

export const DEFAULT_TARGET_NAME = 'iqn.2026-11.io.nodetgt:default';

/** The embedded default of `npm start`: one target, one 1 GiB sparse LUN under ./data, portal 0.0.0.0:3260. */
export function defaultConfigObject(): Record<string, unknown> {
  return {
    portals: ['0.0.0.0:3260'],
    targets: [{ name: DEFAULT_TARGET_NAME, luns: [{ lun: 0, path: 'data/lun0.img', size: '1G' }] }],
  };
}
