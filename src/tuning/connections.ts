/**
 * Live connection checks: the MSS of every iSCSI connection of the running target (TCP_INFO, asked over the
 * control socket) against what its interface's MTU implies. An interface at MTU 9000 whose connection sends
 * 1448-byte segments has a 1500 somewhere on the path (the initiator, a switch port): every read then goes
 * out in six times as many segments as the operator believes.
 */
import { isIPv6 } from 'node:net';
import type { SessionInfo } from '../admin/protocol';
import { tryRead, unknown, type Probe, type TuningCheck } from './check';
import { interfaceOf } from './interfaces';

const TCP_TIMESTAMP_BYTES = 12;

/** IP and TCP headers (no options) per segment. */
function headerBytes(address: string): number {
  return isIPv6(address) && !/^::ffff:\d/i.test(address) ? 60 : 40;
}

/** Splits "address:port" (an IPv6 address has colons of its own). */
function hostOf(endpoint: string): string {
  const i = endpoint.lastIndexOf(':');
  return i < 0 ? endpoint : endpoint.slice(0, i);
}

/** The largest RTT of the connections (the worst case the TCP buffers must cover), if any was measured. */
export function maxRttUs(rows: readonly SessionInfo[]): number | undefined {
  const rtts = rows.flatMap((r) => (r.tcp && r.tcp.rttUs > 0 ? [r.tcp.rttUs] : []));
  return rtts.length ? Math.max(...rtts) : undefined;
}

export async function connectionChecks(
  probe: Probe,
  sessions: readonly SessionInfo[] | { error: string },
): Promise<TuningCheck[]> {
  const check = 'connection.mss';
  if ('error' in sessions) return [unknown(check, 'target', sessions.error)];
  if (sessions.length === 0) return [unknown(check, 'target', 'no live iSCSI connection to measure')];
  // One listing of the addresses and one read of each interface's MTU for the whole pass, not per connection
  // (1,000 connections made 1,000 of each, once a minute).
  let addresses: ReturnType<Probe['addresses']> | undefined;
  const reads = new Map<string, ReturnType<Probe['read']>>();
  const pass: Probe = {
    list: (dir) => probe.list(dir),
    run: (cmd, args) => probe.run(cmd, args),
    cpuCount: () => probe.cpuCount(),
    addresses: () => (addresses ??= probe.addresses()),
    read: (file) => {
      let r = reads.get(file);
      if (r === undefined) reads.set(file, (r = probe.read(file)));
      return r;
    },
  };
  return Promise.all(sessions.map((s) => one(pass, s)));
}

async function one(probe: Probe, s: SessionInfo): Promise<TuningCheck> {
  const check = 'connection.mss';
  const subject = `${s.initiator || '(login)'} ${s.peer}`;
  if (!s.tcp) return unknown(check, subject, `TCP_INFO not available: ${s.tcpError ?? 'target too old'}`);
  const t = s.tcp;
  const local = s.local ? hostOf(s.local) : '';
  const ifname = local ? interfaceOf(probe, local) : undefined;
  const value = `snd_mss ${t.sndMss}, rcv_mss ${t.rcvMss}, pmtu ${t.pmtu}, rtt ${t.rttUs} µs, retrans ${t.totalRetrans}`;
  let mtu = t.pmtu;
  let from = 'the path MTU';
  if (ifname) {
    const r = await tryRead(probe, `/sys/class/net/${ifname}/mtu`);
    if ('text' in r && /^\d+$/.test(r.text)) {
      mtu = Number(r.text);
      from = `MTU ${mtu} on ${ifname}`;
    }
    if (ifname === 'lo')
      return { check, subject, status: 'ok', value, expected: 'any (loopback)', reason: 'loopback' };
  }
  const overhead = headerBytes(local || s.peer) + (t.timestamps ? TCP_TIMESTAMP_BYTES : 0);
  const want = mtu - overhead;
  const expected = `snd_mss >= ${want} (${from})`;
  if (t.sndMss >= want) return { check, subject, status: 'ok', value, expected };
  const peerMtu = t.sndMss + overhead;
  return {
    check,
    subject,
    status: 'fail',
    value,
    expected,
    reason:
      `connection of ${s.initiator || 'an initiator logging in'} from ${s.peer} (TSIH ${s.tsih}, CID ${s.cid}) ` +
      `sends ${t.sndMss}-byte segments: the initiator or a switch port on the path has MTU ${peerMtu}, ` +
      `not ${mtu}`,
    fix:
      `on the initiator ${hostOf(s.peer)} (and every switch port between): ip link set dev IF mtu ${mtu}; ` +
      `then log in again (the MSS is fixed at connect). Or match it here: ip link set dev ${ifname ?? 'IF'} mtu ${peerMtu}`,
  };
}
