/** Access control by initiator name and by network (CIDR), as a target's ACL in the config lists them. */
import * as net from 'node:net';
import type { AclConfig } from '../config/schema';

function v4ToInt(a: string): number {
  return a.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

function v6ToBigInt(a: string): bigint {
  let s = a;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const n = v4ToInt(v4[1]);
    s = s.slice(0, -v4[1].length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const parts = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return parts.reduce((acc, p) => (acc << 16n) | BigInt(parseInt(p || '0', 16)), 0n);
}

/** True when `address` lies in `cidr` (IPv4-mapped IPv6 addresses match IPv4 networks). */
export function inNetwork(address: string, cidr: string): boolean {
  const [base, lenText] = cidr.split('/');
  let addr = address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped && net.isIP(base) === 4) addr = mapped[1];
  const fam = net.isIP(base);
  if (fam !== net.isIP(addr)) return false;
  if (fam === 4) {
    const len = lenText === undefined ? 32 : Number(lenText);
    const mask = len === 0 ? 0 : (~0 << (32 - len)) >>> 0;
    return (v4ToInt(addr) & mask) >>> 0 === (v4ToInt(base) & mask) >>> 0;
  }
  const len = BigInt(lenText === undefined ? 128 : Number(lenText));
  const mask = len === 0n ? 0n : ((1n << 128n) - 1n) ^ ((1n << (128n - len)) - 1n);
  return (v6ToBigInt(addr) & mask) === (v6ToBigInt(base) & mask);
}

/** Whether the initiator (by name and address) may see and log in to a target with this ACL. */
export function aclAllows(acl: AclConfig, initiatorName: string, address: string): boolean {
  if (acl.initiators.length && !acl.initiators.includes(initiatorName.toLowerCase())) return false;
  if (acl.networks.length && !acl.networks.some((n) => inNetwork(address, n))) return false;
  return true;
}
