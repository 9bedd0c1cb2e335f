/**
 * Gateways of one ALUA target for the multi-gateway tests (alua.test.ts on a shared file, alua-rbd.test.ts on a
 * Ceph RBD image): each a `nodetgt serve` child process with its own config file and state directory, changed
 * live by `nodetgt alua state`; and the failover they exist for, a stream of FUA writes through the multipath
 * client while the optimized gateway is killed and another made optimized, then read back chunk by chunk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, startChildTarget, type ChildTarget } from './child-target';
import { TestInitiator } from './initiator';
import { parseRtpg, rtpgCdb } from './alua';
import { senseOf } from './live';
import type { MultipathClient } from './multipath';
import { run } from './run';
import { cdb10, pattern } from '../scsi-helpers';

export interface Gateway {
  c: ChildTarget;
  /** Its config file: `nodetgt alua state --config` finds the control socket through it. */
  file: string;
}

export interface GatewaySpec {
  /** Where the config file and the state directory go. */
  dir: string;
  name: string;
  iqn: string;
  /** This gateway's target port group, also its portal group tag (each gateway is its own target port). */
  group: number;
  /** The state of groups 1, 2, ... (the same list on every gateway). */
  states: string[];
  luns: unknown[];
  /** How long to wait for the portal (opening an RBD image takes longer than a file). */
  timeoutMs?: number;
  /** Extra environment (the test hooks). */
  env?: Record<string, string>;
}

/** Start one gateway; resolves once its portal listens. */
export async function startGateway(g: GatewaySpec): Promise<Gateway> {
  const file = path.join(g.dir, `${g.name}.json`);
  const config = {
    portals: ['127.0.0.1:0'],
    nopInInterval: 0,
    workers: 2,
    portalGroupTag: g.group,
    stateDir: path.join(g.dir, `state-${g.name}`),
    targets: [
      {
        name: g.iqn,
        luns: g.luns,
        alua: { localGroup: g.group, groups: g.states.map((state, i) => ({ id: i + 1, state })) },
      },
    ],
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const c = await startChildTarget(['--config', file], { timeoutMs: g.timeoutMs, env: g.env });
  return { c, file };
}

/** `nodetgt alua state IQN GROUP STATE` against a running gateway; resolves with what it printed. */
export async function setAluaState(g: Gateway, iqn: string, group: number, state: string): Promise<string> {
  const r = await run(process.execPath, [
    BIN,
    'alua',
    'state',
    iqn,
    String(group),
    state,
    '--config',
    g.file,
  ]);
  if (r.code !== 0) throw new Error(`alua state: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A logged-in session to one gateway. */
export async function gatewaySession(
  port: number,
  target: string,
  initiatorName: string,
): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(port);
  const r = await ini.login({ targetName: target, initiatorName });
  if (r.status !== 0) throw new Error(`login: 0x${r.status.toString(16)}`);
  return ini;
}

/** REPORT TARGET PORT GROUPS through one session, as [id, state, ports] per group. */
export async function reportedGroups(s: TestInitiator, extended: boolean): Promise<unknown[]> {
  const r = await s.scsi(rtpgCdb(extended), { edtl: 1024, read: true });
  if (r.status !== 0) throw new Error(`RTPG: ${senseOf(r)}`);
  return parseRtpg(r.data, extended).groups.map((g) => [g.id, g.state, g.ports]);
}

/** Chunk i of a stream is pattern(chunkBytes, seed + i) at LBA i * chunkBytes / 512. */
export interface Chunks {
  count: number;
  chunkBytes: number;
  seed: number;
}

export interface FailoverStream extends Chunks {
  /** The chunk whose write is sent right after the kill is issued (the kill lands mid-stream). */
  killAt: number;
  kill(): Promise<void>;
  /** The cluster manager's move once the killed gateway is gone; the stream waits in the client meanwhile. */
  failover(): Promise<void>;
}

/**
 * Write every chunk with FUA, one at a time, through the multipath client, killing and failing over on the way;
 * resolves with the chunks acknowledged, in order (a write that fails for good rejects).
 */
export async function writeThroughFailover(mp: MultipathClient, o: FailoverStream): Promise<number[]> {
  const blocks = o.chunkBytes / 512;
  const acked: number[] = [];
  let killed: Promise<void> | null = null;
  let onKill = () => {};
  const killIssued = new Promise<void>((resolve) => (onKill = resolve));
  const stream = (async () => {
    for (let i = 0; i < o.count; i++) {
      if (i === o.killAt) {
        killed = o.kill();
        onKill();
      }
      const data = pattern(o.chunkBytes, o.seed + i);
      const r = await mp.scsi(cdb10(0x2a, i * blocks, blocks, 0x08), {
        edtl: data.length,
        write: true,
        data,
      });
      if (r.status !== 0) throw new Error(`write ${i}: ${senseOf(r)}`);
      acked.push(i);
    }
  })();
  await Promise.race([killIssued, stream]);
  await killed;
  await o.failover();
  await stream;
  return acked;
}

/** The chunks that read back different through the multipath client. */
export async function chunksDifferingThrough(mp: MultipathClient, o: Chunks): Promise<number[]> {
  const blocks = o.chunkBytes / 512;
  const bad: number[] = [];
  for (let i = 0; i < o.count; i++) {
    const r = await mp.scsi(cdb10(0x28, i * blocks, blocks), { edtl: o.chunkBytes, read: true });
    if (r.status !== 0 || !r.data.equals(pattern(o.chunkBytes, o.seed + i))) bad.push(i);
  }
  return bad;
}

/** The chunks that differ in a copy of the image itself (read past the target). */
export function chunksDifferingIn(image: Buffer, o: Chunks): number[] {
  const bad: number[] = [];
  for (let i = 0; i < o.count; i++)
    if (!image.subarray(i * o.chunkBytes, (i + 1) * o.chunkBytes).equals(pattern(o.chunkBytes, o.seed + i)))
      bad.push(i);
  return bad;
}

/** What the client's event log must show of a failover from `from` to `to`; the steps missing from it. */
export function missingFailoverSteps(mp: MultipathClient, from: string, to: string): string[] {
  const steps: Array<[string, RegExp]> = [
    [`${from} failed`, new RegExp(`^${from} failed`)],
    [`${to} asked while no group was active`, new RegExp(`RTPG via ${to} .*no active path`)],
    [`${to} chosen`, new RegExp(`RTPG via ${to} .*using ${to}`)],
  ];
  return steps.filter(([, re]) => !mp.events.some((e) => re.test(e))).map(([what]) => what);
}
