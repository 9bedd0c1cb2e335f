/**
 * The ACL matcher on its own: inNetwork (IPv4, IPv6, IPv4-mapped IPv6) and aclAllows (initiator names and
 * networks). Every allowing case has its denying twin just outside, so a matcher that says yes to everything
 * (or no to everything) fails here.
 */
import test from 'ava';
import * as net from 'node:net';
import { aclAllows, inNetwork, parseCidr } from '../src/config/acl';
import { ConfigError, normalizeConfig, validateCidr, type AclConfig } from '../src/config/schema';
import { rng } from './helpers/rng';

/** [address, network, expected]: a table row, shown in the assertion message when it fails. */
type Row = [string, string, boolean];

function checkRows(t: import('ava').ExecutionContext, rows: Row[]): void {
  for (const [address, cidr, want] of rows)
    t.is(inNetwork(address, cidr), want, `inNetwork(${address}, ${cidr}) should be ${want}`);
}

// ---------------------------------------------------------------------------
// IPv4

test('IPv4 /0 holds every IPv4 address (and no IPv6 one)', (t) => {
  checkRows(t, [
    ['0.0.0.0', '0.0.0.0/0', true],
    ['127.0.0.1', '0.0.0.0/0', true],
    ['255.255.255.255', '0.0.0.0/0', true],
    // The base of a /0 does not matter.
    ['1.2.3.4', '203.0.113.9/0', true],
    ['::1', '0.0.0.0/0', false],
    ['2001:db8::1', '0.0.0.0/0', false],
  ]);
});

test('IPv4 /8: first and last address in, the neighbours on either side out', (t) => {
  checkRows(t, [
    ['10.0.0.0', '10.0.0.0/8', true],
    ['10.255.255.255', '10.0.0.0/8', true],
    ['10.17.34.51', '10.0.0.0/8', true],
    ['9.255.255.255', '10.0.0.0/8', false],
    ['11.0.0.0', '10.0.0.0/8', false],
    ['127.0.0.1', '127.0.0.0/8', true],
    ['128.0.0.1', '127.0.0.0/8', false],
  ]);
});

test('IPv4 /24: first and last address in, the neighbours on either side out', (t) => {
  checkRows(t, [
    ['192.0.2.0', '192.0.2.0/24', true],
    ['192.0.2.255', '192.0.2.0/24', true],
    ['192.0.2.128', '192.0.2.0/24', true],
    ['192.0.1.255', '192.0.2.0/24', false],
    ['192.0.3.0', '192.0.2.0/24', false],
    // A base with host bits set means the same network.
    ['192.0.2.0', '192.0.2.77/24', true],
    ['192.0.2.255', '192.0.2.77/24', true],
    ['192.0.3.0', '192.0.2.77/24', false],
    // Same last octet, other network: the comparison is not on the low bits.
    ['198.51.100.1', '192.0.2.1/24', false],
  ]);
});

test('IPv4 /32 and a bare address are exactly one address', (t) => {
  checkRows(t, [
    ['192.0.2.7', '192.0.2.7/32', true],
    ['192.0.2.6', '192.0.2.7/32', false],
    ['192.0.2.8', '192.0.2.7/32', false],
    ['192.0.2.7', '192.0.2.7', true],
    ['192.0.2.6', '192.0.2.7', false],
    ['192.0.2.8', '192.0.2.7', false],
    ['7.2.0.192', '192.0.2.7', false], // byte order
    ['255.255.255.255', '255.255.255.255', true],
    ['255.255.255.254', '255.255.255.255', false],
    ['0.0.0.0', '0.0.0.0/32', true],
    ['0.0.0.1', '0.0.0.0/32', false],
  ]);
});

test('IPv4 prefixes that are not a multiple of 8, and the sign bit', (t) => {
  checkRows(t, [
    // /1: the top bit decides (a signed 32-bit mask would get this wrong).
    ['128.0.0.0', '128.0.0.0/1', true],
    ['255.255.255.255', '128.0.0.0/1', true],
    ['127.255.255.255', '128.0.0.0/1', false],
    ['0.0.0.0', '0.0.0.0/1', true],
    ['127.255.255.255', '0.0.0.0/1', true],
    ['128.0.0.0', '0.0.0.0/1', false],
    // /25: two halves of a /24.
    ['192.0.2.127', '192.0.2.0/25', true],
    ['192.0.2.128', '192.0.2.0/25', false],
    ['192.0.2.128', '192.0.2.128/25', true],
    ['192.0.2.127', '192.0.2.128/25', false],
    // /31: two addresses.
    ['192.0.2.6', '192.0.2.6/31', true],
    ['192.0.2.7', '192.0.2.6/31', true],
    ['192.0.2.5', '192.0.2.6/31', false],
    ['192.0.2.8', '192.0.2.6/31', false],
    // /12 inside the second octet.
    ['172.16.0.0', '172.16.0.0/12', true],
    ['172.31.255.255', '172.16.0.0/12', true],
    ['172.15.255.255', '172.16.0.0/12', false],
    ['172.32.0.0', '172.16.0.0/12', false],
  ]);
});

// ---------------------------------------------------------------------------
// IPv6

test('IPv6 :: compression anywhere means the same address', (t) => {
  // One address written seven ways, each against each (as /128).
  const same = [
    '2001:db8:0:0:1:0:0:1',
    '2001:0db8:0000:0000:0001:0000:0000:0001',
    '2001:db8::1:0:0:1',
    '2001:db8:0:0:1::1',
    '2001:DB8::1:0:0:1',
    '2001:db8:0::1:0:0:1',
    '2001:db8:0:0:1:0::1',
  ];
  for (const a of same) for (const b of same) t.true(inNetwork(a, `${b}/128`), `${a} = ${b}`);
  checkRows(t, [
    // Leading, trailing and whole-address compression.
    ['::1', '0:0:0:0:0:0:0:1/128', true],
    ['::1', '::/128', false],
    ['::', '0:0:0:0:0:0:0:0', true],
    ['::', '::1', false],
    ['2001:db8::', '2001:db8:0:0:0:0:0:0/128', true],
    ['2001:db8::', '2001:db8::1/128', false],
    ['1::8', '1:0:0:0:0:0:0:8', true],
    ['1::8', '1:0:0:0:0:0:8:0', false], // the compressed run is not at the end
    ['1::8', '0:1:0:0:0:0:0:8', false], // nor at the start
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', true], // :: standing for a single group
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8', true],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:9', false],
    // Dotted-quad tail in a non-mapped address is just the low 32 bits.
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201', true],
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:202', false],
  ]);
});

test('IPv6 /0, /32, /64, /128: first and last address in, neighbours out', (t) => {
  checkRows(t, [
    ['::', '::/0', true],
    ['::1', '::/0', true],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::/0', true],
    ['2001:db8::1', '2001:db8:1::/0', true],
    ['127.0.0.1', '::/0', false], // families do not mix
    ['2001:db8::', '2001:db8::/32', true],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::/32', true],
    ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8::/32', false],
    ['2001:db9::', '2001:db8::/32', false],
    ['2001:db8:1:2::', '2001:db8:1:2::/64', true],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64', true],
    ['2001:db8:1:2:0:0:0:1', '2001:db8:1:2:dead:beef:0:1/64', true],
    ['2001:db8:1:1:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64', false],
    ['2001:db8:1:3::', '2001:db8:1:2::/64', false],
    ['2001:db8:1:2::', '2001:db8:1:2::/64', true],
    ['::1', '::1/128', true],
    ['::2', '::1/128', false],
    ['::', '::1/128', false],
    ['::1', '::1', true],
    ['1::', '::1', false], // byte order / group order
    ['fe80::1', 'fe80::/10', true],
    ['febf:ffff::1', 'fe80::/10', true],
    ['fec0::1', 'fe80::/10', false],
    ['fe7f:ffff::1', 'fe80::/10', false],
    // /127 and /65, /1: prefixes that split a group.
    ['2001:db8::2', '2001:db8::3/127', true],
    ['2001:db8::4', '2001:db8::3/127', false],
    ['2001:db8:0:0:7fff::', '2001:db8::/65', true],
    ['2001:db8:0:0:8000::', '2001:db8::/65', false],
    ['8000::', '8000::/1', true],
    ['7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '8000::/1', false],
  ]);
});

test('IPv6 link-local address with a zone index matches on its address', (t) => {
  checkRows(t, [
    ['fe80::1%eth0', 'fe80::/64', true],
    ['fe80::1%eth0', 'fe80::1/128', true],
    ['fe80::1%eth0', '2001:db8::/32', false],
  ]);
});

// ---------------------------------------------------------------------------
// IPv4-mapped IPv6 and families

test('IPv4-mapped IPv6 addresses (a dual-stack listener) match IPv4 networks', (t) => {
  checkRows(t, [
    ['::ffff:127.0.0.1', '127.0.0.0/8', true],
    ['::ffff:192.0.2.1', '192.0.2.0/24', true],
    ['::ffff:192.0.2.255', '192.0.2.0/24', true],
    ['::ffff:192.0.3.0', '192.0.2.0/24', false],
    ['::ffff:192.0.1.255', '192.0.2.0/24', false],
    ['::FFFF:192.0.2.1', '192.0.2.0/24', true],
    ['::ffff:192.0.2.7', '192.0.2.7', true],
    ['::ffff:192.0.2.8', '192.0.2.7', false],
    ['::ffff:1.2.3.4', '0.0.0.0/0', true],
    // Other spellings of the same mapped address.
    ['::ffff:c000:201', '192.0.2.0/24', true],
    ['::ffff:c000:301', '192.0.2.0/24', false],
    ['0:0:0:0:0:ffff:192.0.2.1', '192.0.2.0/24', true],
    ['0000:0000:0000:0000:0000:ffff:c000:0201', '192.0.2.1/32', true],
    // A mapped address is still an IPv6 address for IPv6 networks.
    ['::ffff:192.0.2.1', '::ffff:192.0.2.0/120', true],
    ['::ffff:192.0.3.1', '::ffff:192.0.2.0/120', false],
    ['::ffff:192.0.2.1', '::ffff:0:0/96', true],
    ['::ffff:192.0.2.1', '::/0', true],
    ['::ffff:192.0.2.1', '2001:db8::/32', false],
  ]);
});

test('otherwise IPv4 and IPv6 do not mix', (t) => {
  checkRows(t, [
    ['127.0.0.1', '::1/128', false],
    ['127.0.0.1', '::/0', false],
    ['127.0.0.1', '::ffff:127.0.0.1/128', false], // an IPv4 client only matches IPv4 networks
    ['::1', '0.0.0.0/0', false],
    ['::1', '127.0.0.0/8', false],
    ['2001:db8::1', '0.0.0.0/0', false],
    // Not IPv4-mapped: IPv4-compatible (deprecated), NAT64, and ffff in the wrong group.
    ['::192.0.2.1', '192.0.2.0/24', false],
    ['64:ff9b::192.0.2.1', '192.0.2.0/24', false],
    ['::ffff:0:192.0.2.1', '192.0.2.0/24', false],
    ['1::ffff:192.0.2.1', '192.0.2.0/24', false],
  ]);
});

// ---------------------------------------------------------------------------
// Malformed input: never a match, never a throw (fail closed)

test('a malformed network or prefix never matches (fail closed), never throws', (t) => {
  const bad = [
    '10.0.0.0/33', // prefix too long for IPv4: must not wrap around to /1
    '10.0.0.0/', // empty prefix: must not read as /0
    '10.0.0.0/-1',
    '10.0.0.0/8/30',
    '10.0.0.0/1e1',
    '10.0.0.0/0x8',
    '10.0.0.0/8 ',
    ' 10.0.0.0/8',
    '10.0.0.0/abc',
    '10.0.0.0/7.5',
    '10.0.0/8',
    '10.0.0.256/8',
    '::/129', // prefix too long for IPv6: must not match everything
    '1::/200',
    '2001:db8::/32x',
    '2001:db8:::/32',
    'fe80::%eth0/64',
    'example.com/24',
    '/0',
    '',
  ];
  for (const cidr of bad) {
    for (const address of ['10.1.2.3', '1.2.3.4', '200.1.2.3', '::1', '2001:db8::1', '::ffff:10.1.2.3']) {
      let r: boolean | string;
      try {
        r = inNetwork(address, cidr);
      } catch (e) {
        r = `threw ${(e as Error).message}`;
      }
      t.is(r, false, `inNetwork(${address}, '${cidr}')`);
    }
    t.is(parseCidr(cidr), null, `parseCidr('${cidr}')`);
  }
});

test('an unknown or malformed client address never matches', (t) => {
  for (const address of ['', 'localhost', '10.0.0', '1.2.3.4.5', ':::1', 'x']) {
    for (const cidr of ['0.0.0.0/0', '::/0', '10.0.0.0/8']) {
      let r: boolean | string;
      try {
        r = inNetwork(address, cidr);
      } catch (e) {
        r = `threw ${(e as Error).message}`;
      }
      t.is(r, false, `inNetwork('${address}', ${cidr})`);
    }
  }
});

test('config validation accepts exactly the networks the matcher understands', (t) => {
  const good = [
    '10.0.0.0/8',
    '10.0.0.0',
    '0.0.0.0/0',
    '192.0.2.7/32',
    '::/0',
    '::1',
    '2001:db8::/32',
    '::1/128',
  ];
  const bad = ['10.0.0.0/33', '10.0.0.0/', '::/129', '2001:db8::/32x', 'example.com/24', '10.0.0.0/-1', ''];
  for (const c of good) {
    t.notThrows(() => validateCidr(c), c);
    t.not(parseCidr(c), null, c);
  }
  for (const c of bad) {
    t.throws(() => validateCidr(c), { instanceOf: ConfigError }, c);
    t.is(parseCidr(c), null, c);
  }
  t.throws(() => validateCidr('10.0.0.0/33'), { message: /invalid prefix length/ });
  t.throws(() => validateCidr('::/129'), { message: /invalid prefix length/ });
  t.throws(() => validateCidr('example.com/24'), { message: /invalid network/ });
});

// ---------------------------------------------------------------------------
// Against an independent matcher: Node's net.BlockList, on random addresses near the prefix boundary

/** An IPv6 address as text, in a randomly chosen spelling: full, zero-padded, :: anywhere legal, upper case. */
function formatV6(groups: number[], r: () => number): string {
  let g = groups.map((x) => x.toString(16));
  if (r() < 0.2) g = groups.map((x) => x.toString(16).padStart(4, '0'));
  let text = g.join(':');
  // Compress one run of zero groups (any run, any length >= 1: all are legal spellings).
  const runs: Array<[number, number]> = [];
  for (let i = 0; i < 8; i++) {
    if (groups[i] !== 0) continue;
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    for (let a = i; a < j; a++) for (let b = a + 1; b <= j; b++) runs.push([a, b]);
    i = j;
  }
  if (runs.length && r() < 0.8) {
    const [a, b] = runs[Math.floor(r() * runs.length)]!;
    text = `${g.slice(0, a).join(':')}::${g.slice(b).join(':')}`;
  }
  if (r() < 0.2) text = text.toUpperCase();
  return text;
}

test('random IPv4 and IPv6 networks agree with net.BlockList near the prefix boundary', (t) => {
  const r = rng(7143);
  let matched = 0;
  const N = 3000;
  for (let i = 0; i < N; i++) {
    const v6 = r() < 0.5;
    const width = v6 ? 128 : 32;
    const prefix = Math.floor(r() * (width + 1));
    // A random address, and a base equal to it except one flipped bit just inside or just outside the prefix.
    let addr = 0n;
    for (let b = 0; b < width; b += 16)
      addr = (addr << 16n) | BigInt(r() < 0.35 ? 0 : Math.floor(r() * 65536));
    const flip = Math.max(0, Math.min(width - 1, prefix - 1 + Math.floor(r() * 3) - 1 + (r() < 0.5 ? 0 : 1)));
    const base = addr ^ (1n << BigInt(width - 1 - flip));
    const expected = flip >= prefix;
    const text = (x: bigint) =>
      v6
        ? formatV6(
            Array.from({ length: 8 }, (_, k) => Number((x >> BigInt(112 - 16 * k)) & 0xffffn)),
            r,
          )
        : [24, 16, 8, 0].map((s) => Number((x >> BigInt(s)) & 0xffn)).join('.');
    const a = text(addr);
    const c = `${text(base)}/${prefix}`;
    const bl = new net.BlockList();
    bl.addSubnet(text(base), prefix, v6 ? 'ipv6' : 'ipv4');
    const oracle = bl.check(a, v6 ? 'ipv6' : 'ipv4');
    if (oracle !== expected) t.fail(`test generator disagrees with BlockList on ${a} in ${c}`);
    const got = inNetwork(a, c);
    if (got !== expected) t.is(got, expected, `inNetwork(${a}, ${c})`);
    if (expected) matched++;
  }
  t.true(matched > N / 4 && matched < (3 * N) / 4, `both outcomes exercised (${matched} of ${N} inside)`);
});

// ---------------------------------------------------------------------------
// aclAllows

const NAME_A = 'iqn.2026-11.com.example:host-a';
const NAME_B = 'iqn.2026-11.com.example:host-b';

/** An ACL the way a target gets it: through the config file's normalisation. */
function aclFromConfig(acl: Record<string, unknown>): AclConfig {
  return normalizeConfig({ targets: [{ name: 'iqn.2026-11.com.example:t', luns: [], acl }] }).targets[0]!.acl;
}

test('an empty ACL allows any initiator from anywhere', (t) => {
  const acl = aclFromConfig({});
  t.deepEqual(acl, { initiators: [], networks: [] });
  t.true(aclAllows(acl, NAME_A, '127.0.0.1'));
  t.true(aclAllows(acl, NAME_B, '2001:db8::1'));
  t.true(aclAllows(acl, 'eui.0123456789abcdef', ''));
});

test('initiator list: only the names listed, from any address', (t) => {
  const acl = aclFromConfig({ initiators: [NAME_A, 'eui.0123456789ABCDEF'] });
  t.true(aclAllows(acl, NAME_A, '127.0.0.1'));
  t.true(aclAllows(acl, NAME_A, '2001:db8::1'));
  t.true(aclAllows(acl, 'eui.0123456789abcdef', '127.0.0.1'));
  t.false(aclAllows(acl, NAME_B, '127.0.0.1'));
  t.false(aclAllows(acl, `${NAME_A}x`, '127.0.0.1'), 'no prefix match');
  t.false(aclAllows(acl, NAME_A.slice(0, -1), '127.0.0.1'), 'no prefix match');
  t.false(aclAllows(acl, '', '127.0.0.1'));
});

test('initiator prefixes: an entry ending in * or : admits the names that start with it, any case', (t) => {
  const acl = aclFromConfig({ initiators: ['iqn.1998-01.com.VMware:*', 'iqn.2026-11.com.example:'] });
  t.deepEqual(acl.initiators, ['iqn.1998-01.com.vmware:*', 'iqn.2026-11.com.example:']);
  t.true(aclAllows(acl, 'iqn.1998-01.com.vmware:esx1-4f2a', '127.0.0.1'));
  t.true(aclAllows(acl, 'IQN.1998-01.COM.VMWARE:esx2', '127.0.0.1'));
  t.true(aclAllows(acl, NAME_A, '127.0.0.1'));
  t.false(
    aclAllows(acl, 'iqn.1998-01.com.vmware', '127.0.0.1'),
    'the prefix itself without its colon is not in',
  );
  t.false(aclAllows(acl, 'iqn.1998-01.com.vmwarex:esx1', '127.0.0.1'));
  t.false(aclAllows(acl, 'iqn.2026-11.com.other:host', '127.0.0.1'));
  t.true(aclAllows(aclFromConfig({ initiators: ['*'] }), NAME_B, '127.0.0.1'), "'*' alone: every name");
  for (const bad of ['iqn.*.com:x', 'host-*', 'eui.01:'])
    t.throws(() => aclFromConfig({ initiators: [bad] }), { instanceOf: ConfigError }, bad);
});

test('initiator names compare case-insensitively (RFC 3722 folds case), on both sides', (t) => {
  // The config folds the listed names to lower case; aclAllows folds the name the initiator sent.
  const acl = aclFromConfig({ initiators: ['IQN.2026-11.Com.Example:Host-A'] });
  t.deepEqual(acl.initiators, [NAME_A]);
  t.true(aclAllows(acl, NAME_A, '127.0.0.1'));
  t.true(aclAllows(acl, 'iqn.2026-11.COM.EXAMPLE:HOST-A', '127.0.0.1'));
  t.true(aclAllows(acl, 'Iqn.2026-11.com.example:host-A', '127.0.0.1'));
  t.false(aclAllows(acl, 'iqn.2026-11.COM.EXAMPLE:HOST-B', '127.0.0.1'));
});

test('network list: any listed network admits, IPv4 and IPv6 in one list', (t) => {
  const acl = aclFromConfig({ networks: ['192.0.2.0/24', '2001:db8::/32', '127.0.0.1'] });
  t.true(aclAllows(acl, NAME_A, '192.0.2.200'));
  t.true(aclAllows(acl, NAME_B, '127.0.0.1'));
  t.true(aclAllows(acl, NAME_B, '::ffff:127.0.0.1'));
  t.true(aclAllows(acl, NAME_A, '2001:db8:ffff::1'));
  t.false(aclAllows(acl, NAME_A, '127.0.0.2'));
  t.false(aclAllows(acl, NAME_A, '192.0.3.1'));
  t.false(aclAllows(acl, NAME_A, '::1'));
  t.false(aclAllows(acl, NAME_A, '2001:db9::1'));
  t.false(aclAllows(acl, NAME_A, ''), 'an unknown address is outside every network');
});

test('both lists: the name AND the address must be allowed', (t) => {
  const acl = aclFromConfig({ initiators: [NAME_A], networks: ['192.0.2.0/24', '::1/128'] });
  t.true(aclAllows(acl, NAME_A, '192.0.2.1'));
  t.true(aclAllows(acl, NAME_A, '::1'));
  t.false(aclAllows(acl, NAME_A, '198.51.100.1'), 'right name, wrong network');
  t.false(aclAllows(acl, NAME_B, '192.0.2.1'), 'wrong name, right network');
  t.false(aclAllows(acl, NAME_B, '198.51.100.1'), 'wrong name, wrong network');
  t.false(aclAllows(acl, NAME_B, '::1'));
});

test('a network list with only malformed entries (built without the config checks) denies', (t) => {
  const acl: AclConfig = { initiators: [], networks: ['10.0.0.0/33', '::/129', '10.0.0.0/'] };
  t.false(aclAllows(acl, NAME_A, '1.2.3.4'));
  t.false(aclAllows(acl, NAME_A, '2001:db8::1'));
  t.false(aclAllows(acl, NAME_A, '10.1.2.3'));
});
