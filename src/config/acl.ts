/** Access control by initiator name and by network (CIDR), as a target's ACL in the config lists them. */
import * as net from 'node:net';
import type { AclConfig } from './schema';

/** An address or a network as a number: IPv4 in 32 bits, IPv6 in 128. */
interface Address {
  family: 4 | 6;
  bits: bigint;
}

export interface Cidr extends Address {
  /** Leading bits that must match: 0..32 for IPv4, 0..128 for IPv6. */
  prefix: number;
}

function v4Bits(a: string): bigint {
  return a.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}

/** An IPv6 address net.isIP() accepted: `::` anywhere, optional dotted-quad tail. */
function v6Bits(a: string): bigint {
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = v4Bits(v4[1]);
    s = s.slice(0, -v4[1].length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const parts = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return parts.reduce((acc, p) => (acc << 16n) | BigInt(parseInt(p, 16)), 0n);
}

/** A textual IPv4 or IPv6 address (an IPv6 zone index is ignored), or null if it is neither. */
function parseAddress(text: string): Address | null {
  const a = text.replace(/%[^%]*$/, '');
  const fam = net.isIP(a);
  if (fam === 4) return { family: 4, bits: v4Bits(a) };
  if (fam === 6) return { family: 6, bits: v6Bits(a) };
  return null;
}

/**
 * `address[/prefix]` (no prefix: one address), or null when malformed or the prefix is too long for the
 * family. The config accepts exactly these (validateCidr); the matcher treats anything else as no match.
 */
export function parseCidr(text: string): Cidr | null {
  const m = /^([0-9a-f.:]+)(?:\/(\d+))?$/i.exec(text);
  if (!m) return null;
  const a = parseAddress(m[1]);
  if (!a) return null;
  const max = a.family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  return { ...a, prefix };
}

/**
 * True when `address` lies in `cidr`. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, in any spelling, as a
 * dual-stack listener reports IPv4 clients) match IPv4 networks; otherwise the families do not mix.
 * A malformed network or address never matches.
 */
export function inNetwork(address: string, cidr: string): boolean {
  const c = parseCidr(cidr);
  let a = parseAddress(address);
  if (!c || !a) return false;
  if (c.family === 4 && a.family === 6 && a.bits >> 32n === 0xffffn)
    a = { family: 4, bits: a.bits & 0xffffffffn };
  if (a.family !== c.family) return false;
  const hostBits = BigInt((c.family === 4 ? 32 : 128) - c.prefix);
  return a.bits >> hostBits === c.bits >> hostBits;
}

/**
 * Whether the initiator (by name and address) may see and log in to a target with this ACL. Names compare
 * case-insensitively (RFC 3722 folds case): the config holds them in lower case, the login's name is folded.
 */
/**
 * An `acl.initiators` entry (lower case, validated by the config) against a name: a whole name matches exactly
 * (any case), an entry ending in '*' matches the names starting with what comes before it, one ending in ':'
 * the names starting with it.
 */
function initiatorAllowed(entry: string, name: string): boolean {
  const lower = name.toLowerCase();
  if (entry.endsWith('*')) return lower.startsWith(entry.slice(0, -1));
  if (entry.endsWith(':')) return lower.startsWith(entry);
  return lower === entry;
}

export function aclAllows(acl: AclConfig, initiatorName: string, address: string): boolean {
  if (acl.initiators.length && !acl.initiators.some((p) => initiatorAllowed(p, initiatorName))) return false;
  if (acl.networks.length && !acl.networks.some((n) => inNetwork(address, n))) return false;
  return true;
}
