/**
 * Multiple connections per session: the same session load over 1, 2 and 4 connections, through our
 * TypeScript initiator (test/helpers/mcs-initiator.ts; no real initiator here does MC/S), on the null
 * backstore so that the figures are the protocol's and the targets', not a disk's.
 *
 *   node dist/bench/mcs.js [--secs S] [--workers N] [--no-tgtd]
 *
 * Workloads: 1 MiB READ(10) at queue depth 8, and 4 KiB WRITE(10) (immediate data) at queue depth 32, the
 * commands spread round-robin over the session's connections in one CmdSN space. tgtd runs beside nodetgt
 * with MaxConnections=4 set on its target; a figure it cannot give (a join refused) says so.
 *
 * The initiator is one Node.js thread in this process and checks every PDU (StatSN, DataSN, offsets,
 * residuals): on a small machine it can be the bottleneck, and the ratios then understate the difference.
 * Everything listens on 127.0.0.1.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { McsSession } from '../test/helpers/mcs-initiator';
import { defaultOperationalKeys } from '../test/helpers/initiator';
import { Nodetgt, Tgtd, type Target } from './lib/targets';
import { machineInfo } from './lib/sys';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const secs = Number(opt('--secs') ?? 3);
const workers = Number(opt('--workers') ?? Math.min(2, os.availableParallelism()));
const withTgtd = !argv.includes('--no-tgtd');
const CONNS = [1, 2, 4];
const BLOCK = 512;

interface Load {
  name: string;
  bytes: number;
  qd: number;
  write: boolean;
}
const LOADS: Load[] = [
  { name: '1 MiB read, QD8', bytes: 1 << 20, qd: 8, write: false },
  { name: '4 KiB write, QD32', bytes: 4096, qd: 32, write: true },
];

function cdb10(op: number, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  c.writeUInt32BE(lba, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

/** Operations per second of `load` over a session of `n` connections, or why there is no figure. */
async function measure(t: Target, n: number, load: Load): Promise<number | string> {
  const url = new URL(t.url('null'));
  const [, iqn, lun] = url.pathname.split('/');
  const keys = defaultOperationalKeys().map(([k, v]): [string, string] => [
    k,
    k === 'MaxConnections' ? String(n) : v,
  ]);
  let s: McsSession;
  try {
    s = await McsSession.open(t.port, n, { targetName: iqn, keys });
  } catch (e) {
    return `no session of ${n}: ${(e as Error).message}`;
  }
  // A new nexus may start with a unit attention (tgtd's power on / reset): TEST UNIT READY takes it first.
  for (let i = 0; i < 3; i++)
    if ((await s.scsi(Buffer.alloc(6), { lun: Number(lun), edtl: 0 }, 0).catch(() => null))?.status === 0)
      break;
  const blocks = load.bytes / BLOCK;
  const data = load.write ? Buffer.alloc(load.bytes, 0x5a) : undefined;
  const span = 1 << 20; // blocks: 512 MiB of the null LU
  let ops = 0;
  let lba = 0;
  let stop = false;
  const one = async (): Promise<void> => {
    while (!stop) {
      lba = (lba + blocks) % span;
      const r = await s.scsi(cdb10(load.write ? 0x2a : 0x28, lba, blocks), {
        lun: Number(lun),
        edtl: load.bytes,
        read: !load.write,
        write: load.write,
        data,
        immediate: load.bytes,
      });
      // tgtd reports a unit attention (power on / reset) on a new nexus's first commands: not a failure.
      if (r.status === 2 && r.sense && (r.sense[2] & 0x0f) === 6) continue;
      if (r.status !== 0) throw new Error(`SCSI status ${r.status}`);
      ops++;
    }
  };
  let failure: Error | null = null;
  try {
    // A short warm-up, then the measured phase. The first failure stops every runner and is the figure.
    const warm = Date.now() + 300;
    const runners = Array.from({ length: load.qd }, () =>
      one().catch((e: Error) => {
        failure ??= e;
        stop = true;
      }),
    );
    while (Date.now() < warm) await new Promise((r) => setTimeout(r, 20));
    const start = process.hrtime.bigint();
    const startOps = ops;
    await new Promise((r) => setTimeout(r, secs * 1000));
    const done = ops - startOps;
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    stop = true;
    await Promise.all(runners);
    if (failure) throw failure;
    return done / elapsed;
  } catch (e) {
    return `failed: ${(e as Error).message.replace(/\|/g, '/')}`;
  } finally {
    stop = true;
    try {
      s.close();
    } catch {
      /* reported above */
    }
  }
}

const fmt = (load: Load, v: number | string) =>
  typeof v === 'string'
    ? v
    : load.bytes >= 1 << 20
      ? `${((v * load.bytes) / 1e6).toFixed(0)} MB/s`
      : `${v.toFixed(0)} IOPS`;

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-mcs-bench-'));
  const repo = path.resolve(__dirname, '..', '..');
  const targets: Target[] = [
    new Nodetgt('iqn.2026-11.bench.nodetgt:mcs', path.join(work, 'nodetgt.log'), repo, work, workers),
  ];
  if (withTgtd) targets.push(new Tgtd('iqn.2026-11.bench.tgtd:mcs', path.join(work, 'tgtd.log')));
  const stopAll = () => Promise.all(targets.map((t) => t.stop().catch(() => undefined)));
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  const results = new Map<string, number | string>();
  try {
    for (const t of targets) {
      await t.start([{ kind: 'null', direct: false }]);
      if (t instanceof Tgtd) {
        await t.setParam('MaxConnections', '4');
        // nodetgt offers 1 MiB; tgtd's 256 KiB default is also one it exceeds in its Data-In sequences.
        await t.setParam('MaxBurstLength', String(1 << 20));
      }
      for (const load of LOADS)
        for (const n of CONNS) results.set(`${t.name}|${load.name}|${n}`, await measure(t, n, load));
      await t.stop();
    }
  } finally {
    await stopAll();
  }
  const m = machineInfo();
  const out: string[] = [
    `MC/S bench, ${m.date}: ${m.cpu} x${m.cores}, ${m.kernel}, node ${m.node}, ${m.tgtd ? `tgtd ${m.tgtd}` : ''}`,
    `null backstore, nodetgt workers=${workers}, ${secs} s per figure, TypeScript initiator in one thread`,
    '',
    `| workload | connections | nodetgt |${withTgtd ? ' tgtd | nodetgt/tgtd |' : ''}`,
    `|---|---|---|${withTgtd ? '---|---|' : ''}`,
  ];
  for (const load of LOADS)
    for (const n of CONNS) {
      const a = results.get(`nodetgt|${load.name}|${n}`)!;
      const b = results.get(`tgtd|${load.name}|${n}`);
      const ratio = typeof a === 'number' && typeof b === 'number' ? `${(a / b).toFixed(2)}x` : '-';
      out.push(
        `| ${load.name} | ${n} | ${fmt(load, a)} |${withTgtd ? ` ${fmt(load, b ?? '-')} | ${ratio} |` : ''}`,
      );
    }
  process.stdout.write(out.join('\n') + '\n');
  fs.rmSync(work, { recursive: true, force: true });
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
