/**
 * Jumbo frames end to end, in two network namespaces this test creates (a veth pair, 10.231.7.0/30, both
 * ends inside the namespaces): `nodetgt serve` in namespace A, an initiator process holding a session open
 * and reading in namespace B, then `nodetgt tune --json` in A. At MTU 9000 on both ends the connection's MSS
 * is 8948 and the check is ok; with the initiator's end at 1500 the connection check fails and names it.
 * Needs root and iproute2: without them the tests FAIL (CI runs as root).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TuningCheck } from '../src/tuning/check';
import { BIN, startChildTarget } from './helpers/child-target';
import { createNsPair, netnsUnavailable, writeNsTargetConfig } from './helpers/netns';

const IQN = 'iqn.2026-11.io.nodetgt.test:jumbo';
const INITIATOR = 'iqn.2026-11.io.nodetgt.test:initiator';
const HOLD = path.join(__dirname, 'helpers', 'hold-session.js');

interface Tuned {
  code: number | null;
  checks: TuningCheck[];
  conn: TuningCheck[];
  stderr: string;
}

async function tuneAcross(
  t: ExecutionContext,
  mtuTarget: number,
  mtuInitiator: number,
): Promise<Tuned | null> {
  const why = netnsUnavailable();
  if (why) {
    t.fail(`jumbo-frame tests cannot run: ${why}`);
    return null;
  }
  const pair = createNsPair('tune', mtuTarget, mtuInitiator);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-netns-'));
  const cleanups: Array<() => Promise<void> | void> = [
    () => pair.destroy(),
    () => fs.rmSync(dir, { recursive: true, force: true }),
  ];
  t.teardown(async () => {
    for (const f of cleanups.reverse()) await f();
  });
  const config = writeNsTargetConfig(pair, dir, IQN, '64M', { workers: 1 });
  const target = await startChildTarget(['--config', config], { prefix: pair.exec(pair.a) });
  cleanups.push(() => target.stop());
  const [cmd, ...args] = [...pair.exec(pair.b), process.execPath, HOLD, pair.addrA, '3260', IQN, '60'];
  const hold = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const held = new Promise<void>((resolve) => hold.once('exit', () => resolve()));
  cleanups.push(async () => {
    hold.kill('SIGTERM');
    await held;
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no session within 20 s: ${out}`)), 20_000);
    const on = (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve();
      }
    };
    hold.stdout.on('data', on);
    hold.stderr.on('data', on);
    hold.once('exit', (code) => reject(new Error(`the initiator exited (${code}): ${out}\n${target.log()}`)));
  });
  const r = spawnSync(
    pair.exec(pair.a)[0],
    [...pair.exec(pair.a).slice(1), process.execPath, BIN, 'tune', '--json', '--config', config],
    {
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  const parsed = JSON.parse(r.stdout) as { exitCode: number; checks: TuningCheck[] };
  t.is(parsed.exitCode, r.status ?? -1, 'the JSON says the exit code');
  const conn = parsed.checks.filter((c) => c.check === 'connection.mss');
  t.log(conn.map((c) => `${c.status} ${c.subject}: ${c.value} (${c.expected})`).join('\n'));
  // The target side's interface was checked, not the host's.
  const mtu = parsed.checks.find((c) => c.check === 'interface.mtu');
  t.is(mtu?.subject, pair.ifA);
  t.is(mtu?.value, String(mtuTarget));
  return { code: r.status, checks: parsed.checks, conn, stderr: r.stderr };
}

test.serial('MTU 9000 on both ends: the connection sends 8948-byte segments, ok', async (t) => {
  const r = await tuneAcross(t, 9000, 9000);
  if (!r) return;
  t.is(r.conn.length, 1, JSON.stringify(r.conn));
  t.is(r.conn[0].status, 'ok');
  t.regex(r.conn[0].value, /^snd_mss 8948, .*pmtu 9000/);
  t.is(
    r.conn[0].expected,
    `snd_mss >= 8948 (MTU 9000 on ${r.checks.find((c) => c.check === 'interface.mtu')!.subject})`,
  );
  t.is(r.code ?? -1, r.checks.some((c) => c.status === 'fail') ? 1 : 0, r.stderr);
});

test.serial('target at 9000, initiator at 1500: a FAILED check naming the connection, exit 1', async (t) => {
  const r = await tuneAcross(t, 9000, 1500);
  if (!r) return;
  t.is(r.conn.length, 1, JSON.stringify(r.conn));
  const c = r.conn[0];
  t.is(c.status, 'fail');
  t.regex(c.value, /^snd_mss 1448,/);
  t.regex(c.subject, new RegExp(`^${INITIATOR} 10\\.231\\.7\\.2:\\d+$`));
  t.regex(c.reason!, new RegExp(`${INITIATOR} from 10\\.231\\.7\\.2:\\d+ .*MTU 1500, not 9000`));
  t.regex(c.fix!, /ip link set dev IF mtu 9000/);
  t.is(r.code ?? -1, 1, r.stderr);
});
