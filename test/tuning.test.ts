/**
 * The tuning checks (src/tuning) over a made-up /sys and /proc: each status with its value, expectation and
 * fix; an interface that does not exist and a file that cannot be read are 'unknown' with the reason while
 * the other checks go on; the exit code; the gauge lines; the start-up warning. Then the real thing on
 * loopback: `nodetgt tune --interface nosuch0`, and TCP_INFO of a live connection in `show sessions` and
 * tcpInfo() refusing what is not a TCP socket.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hostProbe, type Probe, type TuningCheck } from '../src/tuning/check';
import { exitCode, runTuning, tuningMetricLines } from '../src/tuning/run';
import { jumboWarnings } from '../src/tuning/monitor';
import type { SessionInfo } from '../src/admin/protocol';
import { tcpInfo } from '../src/native';
import { BIN, startChildTargetWithConfig } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';

type Tree = Record<string, string>;

const NIC = (o: Partial<Record<'mtu' | 'speed' | 'duplex' | 'rps', string>> = {}): Tree => ({
  mtu: o.mtu ?? '9000',
  speed: o.speed ?? '10000',
  duplex: o.duplex ?? 'full',
  type: '1',
  'queues/rx-0/rps_cpus': o.rps ?? 'f',
});

const HOST: Tree = {
  'proc/sys/net/core/rmem_max': '67108864',
  'proc/sys/net/core/wmem_max': '67108864',
  'proc/sys/net/ipv4/tcp_rmem': '4096\t131072\t67108864',
  'proc/sys/net/ipv4/tcp_wmem': '4096\t16384\t67108864',
  'proc/sys/net/ipv4/tcp_congestion_control': 'cubic',
  'sys/devices/system/cpu/cpu0/cpufreq/scaling_governor': 'performance',
  'sys/devices/system/cpu/cpu1/cpufreq/scaling_governor': 'performance',
};

const ETHTOOL_ON =
  'tcp-segmentation-offload: on\ngeneric-segmentation-offload: on\ngeneric-receive-offload: on\n';

interface FakeHost {
  nics?: Record<string, Tree>;
  host?: Tree;
  ethtool?: string | null;
  addresses?: Record<string, string>;
}

function fakeProbe(t: { teardown(fn: () => void): void }, f: FakeHost): Probe {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-tune-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const files: Tree = { ...HOST, ...(f.host ?? {}) };
  for (const [nic, tree] of Object.entries(f.nics ?? { ten0: NIC() }))
    for (const [k, v] of Object.entries(tree)) files[`sys/class/net/${nic}/${k}`] = v;
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(root, path.dirname(file)), { recursive: true });
    // A value of '<dir>' makes a directory where a file is expected: a read that fails (EISDIR).
    if (text === '<dir>') fs.mkdirSync(path.join(root, file));
    else fs.writeFileSync(path.join(root, file), `${text}\n`);
  }
  const addrs = f.addresses ?? { ten0: '10.0.0.1' };
  const ethtool = f.ethtool === undefined ? ETHTOOL_ON : f.ethtool;
  return {
    ...hostProbe(root),
    run: async () => (ethtool === null ? null : { code: 0, stdout: ethtool, stderr: '' }),
    addresses: () =>
      Object.fromEntries(
        Object.entries(addrs).map(([name, address]) => [
          name,
          [{ address, family: 'IPv4', internal: false, netmask: '', mac: '', cidr: null }],
        ]),
      ) as ReturnType<Probe['addresses']>,
    cpuCount: () => 4,
  };
}

function find(checks: TuningCheck[], check: string, subject?: string): TuningCheck {
  const c = checks.find((x) => x.check === check && (subject === undefined || x.subject === subject));
  if (!c) throw new Error(`no ${check} ${subject ?? ''} in ${JSON.stringify(checks, null, 1)}`);
  return c;
}

function row(o: Partial<SessionInfo> & { sndMss: number }): SessionInfo {
  return {
    target: 'iqn.2026-11.io.nodetgt.test:t',
    tsih: 7,
    isid: '800000000001',
    initiator: 'iqn.2026-11.io.nodetgt.test:host1',
    type: 'Normal',
    cid: 0,
    peer: '10.0.0.2:40000',
    state: 'ffp',
    headerDigest: 'None',
    dataDigest: 'None',
    maxRecvDataSegmentLength: { initiator: 262144, target: 262144 },
    maxBurstLength: 1048576,
    worker: 1,
    ageSeconds: 3,
    bytesIn: 0,
    bytesOut: 0,
    local: '10.0.0.1:3260',
    tcp: {
      pmtu: 9000,
      sndMss: o.sndMss,
      rcvMss: 536,
      advMss: 8960,
      rttUs: 200,
      totalRetrans: 0,
      timestamps: true,
    },
    ...o,
  };
}

const noTarget = { error: 'no target running (test)' };

test('a tuned 10GbE node: every check ok, exit 0', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, {}),
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 8948 })],
  });
  const notOk = r.checks.filter((c) => c.status !== 'ok');
  t.deepEqual(notOk, [], JSON.stringify(notOk));
  t.is(find(r.checks, 'interface.mtu', 'ten0').value, '9000');
  t.regex(find(r.checks, 'connection.mss').value, /snd_mss 8948/);
  t.is(exitCode(r.checks), 0);
});

test('10GbE at MTU 1500: a warning with the ip link fix, and the start-up warning', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, { nics: { ten0: NIC({ mtu: '1500' }) } }),
    portalHosts: ['0.0.0.0'],
    sessions: noTarget,
  });
  const mtu = find(r.checks, 'interface.mtu', 'ten0');
  t.is(mtu.status, 'warn');
  t.is(mtu.value, '1500');
  t.regex(mtu.fix ?? '', /^ip link set dev ten0 mtu 9000/);
  t.is(exitCode(r.checks), 0, 'a warning does not fail');
  const w = jumboWarnings(r.interfaces);
  t.is(w.length, 1);
  t.regex(w[0], /ten0 runs at 10000 Mb\/s with MTU 1500/);
  t.deepEqual(jumboWarnings([{ name: 'g0', mtu: 1500, speed: 1000, loopback: false }]), []);
});

test('a virtual interface (speed -1, duplex unknown): unknown with the reason', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, {
      nics: { veth0: NIC({ mtu: '1500', speed: '-1', duplex: 'unknown' }) },
      addresses: { veth0: '10.0.0.1' },
    }),
    portalHosts: ['10.0.0.1'],
    sessions: noTarget,
  });
  for (const c of ['interface.mtu', 'interface.speed', 'interface.duplex']) {
    const x = find(r.checks, c, 'veth0');
    t.is(x.status, 'unknown', c);
    t.truthy(x.reason, c);
  }
  t.regex(find(r.checks, 'interface.speed').reason!, /reports -1/);
  t.is(find(r.checks, 'connection.mss').status, 'unknown');
  t.regex(find(r.checks, 'connection.mss').reason!, /no target running/);
});

test('half duplex fails (exit 1); a slow link warns', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, { nics: { ten0: NIC({ duplex: 'half', speed: '1000', mtu: '1500' }) } }),
    portalHosts: ['10.0.0.1'],
    sessions: [],
  });
  t.is(find(r.checks, 'interface.duplex').status, 'fail');
  t.regex(find(r.checks, 'interface.duplex').fix!, /ethtool -s ten0 duplex full/);
  t.is(find(r.checks, 'interface.speed').status, 'warn');
  t.is(find(r.checks, 'interface.mtu').status, 'ok', 'jumbo frames optional below 10 Gbit/s');
  t.is(exitCode(r.checks), 1);
});

test('an interface that does not exist and a file that cannot be read: unknown with the reason, the rest go on', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, { host: { 'proc/sys/net/core/rmem_max': '<dir>' } }),
    portalHosts: ['10.0.0.1'],
    interfaces: ['nosuch0'],
    sessions: noTarget,
  });
  const nic = find(r.checks, 'interface', 'nosuch0');
  t.is(nic.status, 'unknown');
  t.regex(nic.reason!, /no such interface/);
  const rmem = find(r.checks, 'host.rmem_max');
  t.is(rmem.status, 'unknown');
  t.regex(rmem.reason!, /cannot read \/proc\/sys\/net\/core\/rmem_max: EISDIR/);
  t.is(find(r.checks, 'host.wmem_max').status, 'ok', 'the next check still ran');
  t.is(find(r.checks, 'host.congestion_control').status, 'ok');
  t.is(exitCode(r.checks), 0);
});

test('a portal address no interface holds is unknown', async (t) => {
  const r = await runTuning({ probe: fakeProbe(t, {}), portalHosts: ['192.0.2.9'], sessions: noTarget });
  t.is(find(r.checks, 'portal.interface', '192.0.2.9').status, 'unknown');
});

test('small TCP buffers warn against 2 x BDP at the measured RTT, with sysctl fixes keeping min and default', async (t) => {
  const probe = fakeProbe(t, {
    host: { 'proc/sys/net/ipv4/tcp_rmem': '4096 87380 1048576', 'proc/sys/net/core/wmem_max': '212992' },
  });
  // 1 ms RTT: BDP 1.25 MB, the buffers need 2.5 MB.
  const r = await runTuning({
    probe,
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 8948, tcp: { ...row({ sndMss: 8948 }).tcp!, rttUs: 1000 } })],
  });
  const rmem = find(r.checks, 'host.tcp_rmem');
  t.is(rmem.status, 'warn');
  t.is(rmem.fix, 'sysctl -w net.ipv4.tcp_rmem="4096 87380 4194304"');
  t.regex(rmem.expected, />= 2500000 .*RTT 1000 µs/);
  t.is(find(r.checks, 'host.wmem_max').fix, 'sysctl -w net.core.wmem_max=4194304');
  t.is(find(r.checks, 'host.rmem_max').status, 'ok');
  // At 50 µs (a quiet LAN) 1 MiB is plenty.
  const quiet = await runTuning({
    probe,
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 8948, tcp: { ...row({ sndMss: 8948 }).tcp!, rttUs: 50 } })],
  });
  t.is(find(quiet.checks, 'host.tcp_rmem').status, 'ok');
});

test('governor, congestion control, offloads and receive spread: warnings with their fixes', async (t) => {
  const probe = fakeProbe(t, {
    nics: { ten0: NIC({ rps: '0' }) },
    host: {
      'proc/sys/net/ipv4/tcp_congestion_control': 'reno',
      'sys/devices/system/cpu/cpu1/cpufreq/scaling_governor': 'powersave',
    },
    ethtool:
      'tcp-segmentation-offload: off\ngeneric-segmentation-offload: on\ngeneric-receive-offload: off [fixed]\n',
  });
  const r = await runTuning({ probe, portalHosts: ['10.0.0.1'], sessions: [] });
  const gov = find(r.checks, 'host.cpu_governor');
  t.is(gov.status, 'warn');
  t.is(gov.value, 'performance (1 CPU), powersave (1 CPU)');
  t.is(gov.fix, 'cpupower frequency-set -g performance');
  t.is(find(r.checks, 'host.congestion_control').fix, 'sysctl -w net.ipv4.tcp_congestion_control=cubic');
  t.is(find(r.checks, 'interface.offload.tso').fix, 'ethtool -K ten0 tso on');
  t.is(find(r.checks, 'interface.offload.gso').status, 'ok');
  const gro = find(r.checks, 'interface.offload.gro');
  t.is(gro.value, 'off [fixed]');
  t.is(gro.fix, undefined, 'a setting fixed by the driver has no command');
  const rx = find(r.checks, 'interface.rx_spread');
  t.is(rx.status, 'warn');
  t.regex(rx.fix!, /echo f > \$q\/rps_cpus/);
});

test('no cpufreq (a VM) and no ethtool: unknown with the reason', async (t) => {
  const probe = fakeProbe(t, { ethtool: null });
  const r = await runTuning({
    probe: {
      ...probe,
      list: (dir) =>
        dir === '/sys/devices/system/cpu' ? Promise.resolve(['cpu0', 'online']) : probe.list(dir),
      read: (file) =>
        file.includes('cpufreq')
          ? Promise.reject(new Error(`cannot read ${file}: ENOENT`))
          : probe.read(file),
    },
    portalHosts: ['10.0.0.1'],
    sessions: [],
  });
  t.is(find(r.checks, 'host.cpu_governor').status, 'unknown');
  t.regex(find(r.checks, 'host.cpu_governor').reason!, /no cpufreq/);
  t.regex(find(r.checks, 'interface.offload.tso').reason!, /ethtool not installed/);
});

test('a connection whose MSS is below what the interface MTU implies fails, naming the initiator and peer', async (t) => {
  const r = await runTuning({
    probe: fakeProbe(t, {}),
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 8948, peer: '10.0.0.3:40001' }), row({ sndMss: 1448 })],
  });
  const [good, bad] = r.checks.filter((c) => c.check === 'connection.mss');
  t.is(good.status, 'ok');
  t.is(bad.status, 'fail');
  t.is(bad.subject, 'iqn.2026-11.io.nodetgt.test:host1 10.0.0.2:40000');
  t.regex(bad.reason!, /host1 from 10\.0\.0\.2:40000 .*MTU 1500, not 9000/);
  t.is(bad.expected, 'snd_mss >= 8948 (MTU 9000 on ten0)');
  t.regex(bad.fix!, /ip link set dev IF mtu 9000.*ip link set dev ten0 mtu 1500/);
  t.is(exitCode(r.checks), 1);
  // Without timestamps the segment carries 12 more bytes: 8960 is the full size.
  const nots = await runTuning({
    probe: fakeProbe(t, {}),
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 8960, tcp: { ...row({ sndMss: 8960 }).tcp!, timestamps: false } })],
  });
  t.is(find(nots.checks, 'connection.mss').status, 'ok');
  const noInfo = await runTuning({
    probe: fakeProbe(t, {}),
    portalHosts: ['10.0.0.1'],
    sessions: [row({ sndMss: 0, tcp: undefined, tcpError: 'EBADF' })],
  });
  t.is(find(noInfo.checks, 'connection.mss').status, 'unknown');
});

test('the gauge: 0 ok, 1 warn, 2 fail, -1 unknown, one series per check and subject', (t) => {
  const c = (check: string, status: TuningCheck['status'], subject = 'host'): TuningCheck => ({
    check,
    subject,
    status,
    value: '',
    expected: '',
  });
  const lines = tuningMetricLines([
    c('a', 'ok'),
    c('b', 'warn'),
    c('m', 'ok', 'x "1"'),
    c('m', 'fail', 'x "1"'),
    c('u', 'unknown'),
  ]);
  t.deepEqual(lines.slice(2), [
    'nodetgt_tuning_check{check="a",subject="host"} 0',
    'nodetgt_tuning_check{check="b",subject="host"} 1',
    'nodetgt_tuning_check{check="m",subject="x \\"1\\""} 2',
    'nodetgt_tuning_check{check="u",subject="host"} -1',
  ]);
  t.regex(lines[1], /# TYPE nodetgt_tuning_check gauge/);
});

test('nodetgt tune --interface nosuch0 with no target: those checks unknown, the rest run, exit 0', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-tune-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(
    process.execPath,
    [BIN, 'tune', '--json', '--interface', 'nosuch0', '--state-dir', dir],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { exitCode: number; checks: TuningCheck[] };
  t.is(out.exitCode, 0);
  t.regex(find(out.checks, 'interface', 'nosuch0').reason!, /no such interface/);
  t.regex(find(out.checks, 'connection.mss').reason!, /^no target running/);
  t.true(out.checks.some((c) => c.check === 'host.congestion_control'));
  const bad = spawnSync(process.execPath, [BIN, 'tune', '--bogus'], { encoding: 'utf8' });
  t.is(bad.status, 2);
});

test('tcpInfo refuses what is not a TCP socket', (t) => {
  const fd = fs.openSync(BIN, 'r');
  try {
    t.throws(() => tcpInfo(fd), { code: 'ENOTSOCK' });
  } finally {
    fs.closeSync(fd);
  }
  t.throws(() => tcpInfo(-1), { instanceOf: TypeError });
});

test("show sessions and nodetgt tune report a live loopback connection's TCP_INFO; the gauge is served", async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-tune-live-'));
  const IQN = 'iqn.2026-11.io.nodetgt.test:tune';
  const c = await startChildTargetWithConfig({
    workers: 1,
    stateDir,
    targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '16M' }] }],
  });
  const ini = await TestInitiator.connect(c.port);
  t.teardown(async () => {
    ini.close();
    await c.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });
  t.is((await ini.login({ targetName: IQN })).status, 0);
  const show = spawnSync(process.execPath, [BIN, 'show', 'sessions', '--json', '--state-dir', stateDir], {
    encoding: 'utf8',
  });
  t.is(show.status, 0, show.stderr);
  const [s] = JSON.parse(show.stdout) as SessionInfo[];
  t.truthy(s.tcp, JSON.stringify(s));
  t.true(s.tcp!.pmtu >= 65535, `loopback path MTU ${s.tcp!.pmtu}`);
  t.true(s.tcp!.sndMss > 1000, `snd_mss ${s.tcp!.sndMss}`);
  t.is(s.local, `127.0.0.1:${c.port}`);
  const tune = spawnSync(
    process.execPath,
    [BIN, 'tune', '--json', '--portal', '127.0.0.1', '--state-dir', stateDir],
    { encoding: 'utf8' },
  );
  const out = JSON.parse(tune.stdout) as { checks: TuningCheck[] };
  const conn = find(out.checks, 'connection.mss');
  t.is(conn.status, 'ok');
  t.is(conn.subject, `iqn.2026-11.io.nodetgt.test:initiator 127.0.0.1:${ini.socket.localPort}`);
  // The monitor's first pass runs after the portal listens: poll for it.
  let body = '';
  for (let i = 0; i < 50 && !body.includes('host.congestion_control'); i++) {
    body = await (await fetch(`http://127.0.0.1:${c.metricsPort}/metrics`)).text();
    if (!body.includes('host.congestion_control')) await new Promise((r) => setTimeout(r, 100));
  }
  t.regex(body, /^nodetgt_tuning_check\{check="host.congestion_control",subject="host"\} (0|1)$/m);
  t.regex(body, /^nodetgt_tuning_check\{check="interface.mtu",subject="lo"\} 0$/m);
});
