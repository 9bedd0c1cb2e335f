/**
 * Interface checks: which interfaces serve the portals, their MTU (jumbo frames on 10GbE), link speed and
 * duplex, from /sys/class/net.
 */
import { tryRead, unknown, type Probe, type TuningCheck } from './check';

/** Jumbo frames, as switches and initiators commonly configure them. */
export const JUMBO_MTU = 9000;
/** From this link speed on, jumbo frames are expected (Mb/s, as /sys/class/net/IF/speed reports it). */
export const JUMBO_SPEED = 10_000;
const ARPHRD_LOOPBACK = '772';

export interface InterfaceFacts {
  name: string;
  mtu?: number;
  /** Mb/s; absent when the driver does not report one (virtual interfaces report -1). */
  speed?: number;
  loopback: boolean;
}

const ANY = new Set(['0.0.0.0', '::', '']);

/** An address as os.networkInterfaces() spells it (no brackets, no IPv4-mapped prefix, no zone). */
export function plainAddress(a: string): string {
  return a
    .replace(/^\[|\]$/g, '')
    .replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1')
    .replace(/%.*$/, '')
    .toLowerCase();
}

/** The interface holding a local address, if any. */
export function interfaceOf(probe: Probe, address: string): string | undefined {
  const want = plainAddress(address);
  for (const [name, addrs] of Object.entries(probe.addresses()))
    if (addrs?.some((a) => plainAddress(a.address) === want)) return name;
  return undefined;
}

/**
 * The interfaces to check: those named with --interface, else those serving the portals (a wildcard portal:
 * every interface with an address outside loopback). A portal no interface holds gets an 'unknown' check.
 */
export function portalInterfaces(
  probe: Probe,
  portalHosts: readonly string[],
  named: readonly string[],
): { names: string[]; checks: TuningCheck[] } {
  if (named.length) return { names: [...new Set(named)], checks: [] };
  const names = new Set<string>();
  const checks: TuningCheck[] = [];
  for (const host of portalHosts) {
    if (ANY.has(plainAddress(host))) {
      for (const [name, addrs] of Object.entries(probe.addresses()))
        if (addrs?.some((a) => !a.internal)) names.add(name);
      continue;
    }
    const name = interfaceOf(probe, host);
    if (name) names.add(name);
    else checks.push(unknown('portal.interface', host, `no interface on this host holds address ${host}`));
  }
  return { names: [...names], checks };
}

function intOf(r: { text: string } | { error: string }): number | undefined {
  if (!('text' in r) || !/^-?\d+$/.test(r.text)) return undefined;
  return Number(r.text);
}

/** MTU, speed and duplex of one interface; an interface that does not exist is one 'unknown' check. */
export async function interfaceChecks(
  probe: Probe,
  name: string,
): Promise<{ facts?: InterfaceFacts; checks: TuningCheck[] }> {
  const dir = `/sys/class/net/${name}`;
  const mtuRead = await tryRead(probe, `${dir}/mtu`);
  if ('error' in mtuRead) {
    const why = /ENOENT/.test(mtuRead.error) ? `no such interface (${dir} absent)` : mtuRead.error;
    return { checks: [unknown('interface', name, why)] };
  }
  const [type, speedRead, duplexRead] = await Promise.all([
    tryRead(probe, `${dir}/type`),
    tryRead(probe, `${dir}/speed`),
    tryRead(probe, `${dir}/duplex`),
  ]);
  const loopback = name === 'lo' || ('text' in type && type.text === ARPHRD_LOOPBACK);
  const mtu = intOf(mtuRead);
  const rawSpeed = intOf(speedRead);
  const speed = rawSpeed !== undefined && rawSpeed > 0 ? rawSpeed : undefined;
  const facts: InterfaceFacts = { name, mtu, speed, loopback };
  if (loopback)
    return {
      facts,
      checks: [
        {
          check: 'interface.mtu',
          subject: name,
          status: 'ok',
          value: String(mtu ?? ''),
          expected: 'any (loopback)',
          reason: 'loopback: traffic never leaves the host',
        },
      ],
    };
  const speedWhy =
    'error' in speedRead
      ? `${speedRead.error} (a virtual interface, or the link is down)`
      : `the driver reports ${speedRead.text} (a virtual interface, or the link is down)`;
  return {
    facts,
    checks: [mtuCheck(facts, speedWhy), speedCheck(facts, speedWhy), duplexCheck(name, duplexRead)],
  };
}

function mtuCheck(f: InterfaceFacts, speedWhy: string): TuningCheck {
  const base = { check: 'interface.mtu', subject: f.name, value: String(f.mtu ?? '') };
  const expected = `${JUMBO_MTU} on links of ${JUMBO_SPEED / 1000} Gbit/s or more`;
  const fix = `ip link set dev ${f.name} mtu ${JUMBO_MTU}`;
  if (f.mtu === undefined) return { ...base, status: 'unknown', expected, reason: 'MTU not a number' };
  if (f.mtu >= JUMBO_MTU) return { ...base, status: 'ok', expected };
  if (f.speed === undefined)
    return { ...base, status: 'unknown', expected, reason: `link speed unknown: ${speedWhy}` };
  if (f.speed < JUMBO_SPEED)
    return { ...base, status: 'ok', expected, reason: `${f.speed} Mb/s link: jumbo frames optional` };
  return {
    ...base,
    status: 'warn',
    expected,
    fix: `${fix} (and the same MTU on the switch ports and the initiators)`,
    reason: `${f.speed} Mb/s link at MTU ${f.mtu}: each 1 MiB read costs about ${Math.ceil(2 ** 20 / (f.mtu - 52))} segments`,
  };
}

function speedCheck(f: InterfaceFacts, why: string): TuningCheck {
  const base = { check: 'interface.speed', subject: f.name, expected: `>= ${JUMBO_SPEED} Mb/s` };
  if (f.speed === undefined) return { ...base, status: 'unknown', value: '', reason: why };
  return {
    ...base,
    value: `${f.speed} Mb/s`,
    status: f.speed >= JUMBO_SPEED ? 'ok' : 'warn',
    ...(f.speed < JUMBO_SPEED
      ? { reason: 'slower than 10GbE: check the cable, the SFP and autonegotiation' }
      : {}),
    ...(f.speed < JUMBO_SPEED ? { fix: `ethtool -s ${f.name} autoneg on` } : {}),
  };
}

function duplexCheck(name: string, r: { text: string } | { error: string }): TuningCheck {
  const base = { check: 'interface.duplex', subject: name, expected: 'full' };
  if ('error' in r) return { ...base, status: 'unknown', value: '', reason: r.error };
  if (r.text === 'full') return { ...base, status: 'ok', value: 'full' };
  if (r.text === 'half')
    return {
      ...base,
      status: 'fail',
      value: 'half',
      fix: `ethtool -s ${name} duplex full autoneg on`,
      reason: 'half duplex: collisions and a fraction of the throughput (an autonegotiation mismatch?)',
    };
  return {
    ...base,
    status: 'unknown',
    value: r.text,
    reason: `the driver reports '${r.text}' (a virtual interface?)`,
  };
}
