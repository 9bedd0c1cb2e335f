/**
 * Host checks: TCP buffer limits against the bandwidth-delay product, congestion control, the CPU frequency
 * governor, and per interface the offloads (TSO/GSO/GRO) and how receive work spreads over the CPUs.
 */
import { tryRead, unknown, type Probe, type TuningCheck } from './check';

/** The link the buffers are sized for: 10 Gbit/s, in bytes per second. */
const LINK_BYTES_PER_S = 10e9 / 8;
/** Without a live connection to measure, a loaded 10GbE SAN's round trip (documented in tuning/README.md). */
export const ASSUMED_RTT_US = 1000;
const GOOD_CC = new Set(['cubic', 'bbr', 'dctcp', 'htcp']);

/** Bytes in flight on 10 Gbit/s at `rttUs`. */
export function bdp(rttUs: number): number {
  return Math.ceil((LINK_BYTES_PER_S * rttUs) / 1e6);
}

/** The next power of two at or above n, at least 4 MiB: a round figure for sysctl. */
function roundUp(n: number): number {
  let v = 4 * 2 ** 20;
  while (v < n) v *= 2;
  return v;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 1)} MiB`;

/**
 * The kernel counts each skb's overhead against a socket's buffer, so about half of it carries data: a
 * buffer of twice the BDP keeps 10 Gbit/s in flight.
 */
export async function bufferChecks(probe: Probe, rttUs: number | undefined): Promise<TuningCheck[]> {
  const rtt = rttUs ?? ASSUMED_RTT_US;
  const need = 2 * bdp(rtt);
  const rttText = rttUs === undefined ? `assumed RTT ${rtt} µs, no connection` : `RTT ${rtt} µs`;
  const expected = `>= ${need} (${mib(need)}: 2 x BDP, 10 Gbit/s x ${rttText})`;
  const out: TuningCheck[] = [];
  for (const key of ['net.core.rmem_max', 'net.core.wmem_max', 'net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem']) {
    const check = `host.${key.split('.').pop()!}`;
    const r = await tryRead(probe, `/proc/sys/${key.replace(/\./g, '/')}`);
    if ('error' in r) {
      out.push(unknown(check, 'host', r.error, expected));
      continue;
    }
    const text = r.text.replace(/\s+/g, ' ');
    const fields = text.split(' ').map(Number);
    // tcp_rmem/tcp_wmem: "min default max"; autotuning grows a connection's buffer up to max.
    const max = fields[fields.length - 1];
    if (!Number.isFinite(max)) {
      out.push(unknown(check, 'host', `unexpected content '${r.text}'`, expected));
      continue;
    }
    const ok = max >= need;
    const target = roundUp(need);
    const fix =
      fields.length === 3
        ? `sysctl -w ${key}="${fields[0]} ${fields[1]} ${target}"`
        : `sysctl -w ${key}=${target}`;
    out.push({
      check,
      subject: 'host',
      status: ok ? 'ok' : 'warn',
      value: text,
      expected,
      ...(ok ? {} : { fix }),
    });
  }
  return out;
}

export async function congestionCheck(probe: Probe): Promise<TuningCheck> {
  const check = 'host.congestion_control';
  const expected = [...GOOD_CC].join(' or ');
  const r = await tryRead(probe, '/proc/sys/net/ipv4/tcp_congestion_control');
  if ('error' in r) return unknown(check, 'host', r.error, expected);
  const ok = GOOD_CC.has(r.text);
  return {
    check,
    subject: 'host',
    status: ok ? 'ok' : 'warn',
    value: r.text,
    expected,
    ...(ok ? {} : { fix: 'sysctl -w net.ipv4.tcp_congestion_control=cubic' }),
  };
}

export async function governorCheck(probe: Probe): Promise<TuningCheck> {
  const check = 'host.cpu_governor';
  const expected = 'performance';
  let cpus: string[];
  try {
    cpus = (await probe.list('/sys/devices/system/cpu')).filter((n) => /^cpu\d+$/.test(n));
  } catch (e) {
    return unknown(check, 'host', (e as Error).message, expected);
  }
  const reads = await Promise.all(
    cpus.map((c) => tryRead(probe, `/sys/devices/system/cpu/${c}/cpufreq/scaling_governor`)),
  );
  const governors = reads.flatMap((r) => ('text' in r ? [r.text] : []));
  if (governors.length === 0)
    return unknown(
      check,
      'host',
      'no cpufreq in /sys (a VM, or the CPU frequency is not scalable)',
      expected,
    );
  const count = new Map<string, number>();
  for (const g of governors) count.set(g, (count.get(g) ?? 0) + 1);
  const value = [...count].map(([g, n]) => `${g} (${n} CPU${n > 1 ? 's' : ''})`).join(', ');
  const ok = count.size === 1 && count.has('performance');
  return {
    check,
    subject: 'host',
    status: ok ? 'ok' : 'warn',
    value,
    expected,
    ...(ok ? {} : { fix: 'cpupower frequency-set -g performance' }),
    ...(ok ? {} : { reason: 'a CPU clocking down between I/Os adds latency to every command' }),
  };
}

const OFFLOADS: Array<[string, string, string]> = [
  ['tso', 'tcp-segmentation-offload', 'on, the NIC cuts large sends into segments'],
  ['gso', 'generic-segmentation-offload', 'on, the stack segments once per large send, late'],
  ['gro', 'generic-receive-offload', 'on, received segments are merged before TCP sees them'],
];

/** TSO, GSO and GRO from `ethtool -k` (there is no /sys file for them). */
export async function offloadChecks(probe: Probe, name: string): Promise<TuningCheck[]> {
  const r = await probe.run('ethtool', ['-k', name]);
  const why =
    r === null
      ? 'ethtool not installed (apt-get install ethtool)'
      : r.code !== 0
        ? `ethtool -k ${name} failed: ${r.stderr.trim() || `exit ${r.code}`}`
        : undefined;
  return OFFLOADS.map(([short, long, what]): TuningCheck => {
    const check = `interface.offload.${short}`;
    if (why !== undefined || r === null) return unknown(check, name, why ?? '', 'on');
    const m = new RegExp(`^${long}:\\s*(on|off)(\\s*\\[fixed\\])?`, 'm').exec(r.stdout);
    if (!m) return unknown(check, name, `ethtool -k ${name} does not list ${long}`, 'on');
    if (m[1] === 'on') return { check, subject: name, status: 'ok', value: 'on', expected: 'on' };
    return {
      check,
      subject: name,
      status: 'warn',
      value: m[2] ? 'off [fixed]' : 'off',
      expected: 'on',
      reason: `off: the CPU pays for every segment (${what})`,
      ...(m[2] ? {} : { fix: `ethtool -K ${name} ${short} on` }),
    };
  });
}

/** CPUs that took interrupts of the given IRQ numbers, from /proc/interrupts. */
function irqCpus(interrupts: string, irqs: ReadonlySet<string>): Set<number> {
  const cpus = new Set<number>();
  for (const line of interrupts.split('\n').slice(1)) {
    const m = /^\s*(\d+):\s+([\d\s]+)/.exec(line);
    if (!m || !irqs.has(m[1])) continue;
    m[2]
      .trim()
      .split(/\s+/)
      .forEach((n, cpu) => Number(n) > 0 && cpus.add(cpu));
  }
  return cpus;
}

/**
 * Receive work over the CPUs: the device's interrupts land on several CPUs (multi-queue NIC, irqbalance), or
 * RPS hands packets to other CPUs (rps_cpus not 0). With neither, one CPU takes every packet of the port.
 */
export async function rxSpreadCheck(probe: Probe, name: string): Promise<TuningCheck> {
  const check = 'interface.rx_spread';
  const cpuCount = probe.cpuCount();
  const allMask = (2n ** BigInt(Math.min(cpuCount, 64)) - 1n).toString(16);
  const expected = `interrupts on several CPUs, or RPS (rps_cpus ${allMask})`;
  if (cpuCount < 2)
    return { check, subject: name, status: 'ok', value: '1 CPU', expected, reason: 'nothing to spread' };
  let queues: string[];
  try {
    queues = (await probe.list(`/sys/class/net/${name}/queues`)).filter((q) => q.startsWith('rx-'));
  } catch (e) {
    return unknown(check, name, (e as Error).message, expected);
  }
  const masks = await Promise.all(
    queues.map((q) => tryRead(probe, `/sys/class/net/${name}/queues/${q}/rps_cpus`)),
  );
  const rpsOn = masks.some((m) => 'text' in m && /[1-9a-f]/i.test(m.text));
  const rpsKnown = masks.some((m) => 'text' in m);
  const irqs = await probe.list(`/sys/class/net/${name}/device/msi_irqs`).catch(() => [] as string[]);
  const interrupts = irqs.length ? await tryRead(probe, '/proc/interrupts') : undefined;
  const spread = interrupts && 'text' in interrupts ? irqCpus(interrupts.text, new Set(irqs)) : undefined;
  const value =
    `${queues.length} rx queue(s), RPS ${rpsKnown ? (rpsOn ? 'on' : 'off') : 'unavailable'}` +
    (spread ? `, IRQs on CPU(s) ${[...spread].join(',') || 'none yet'}` : ', no MSI IRQs');
  if (rpsOn || (spread && spread.size >= 2)) return { check, subject: name, status: 'ok', value, expected };
  if (!rpsKnown && !spread)
    return unknown(check, name, 'neither rps_cpus nor the device IRQs are readable', expected);
  return {
    check,
    subject: name,
    status: 'warn',
    value,
    expected,
    reason: 'one CPU takes all receive work of the interface',
    fix: `for q in /sys/class/net/${name}/queues/rx-*; do echo ${allMask} > $q/rps_cpus; done`,
  };
}
