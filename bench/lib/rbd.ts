/**
 * The side-by-side benchmark's optional RBD section (`npm run bench -- --rbd`, on by default when the Ceph
 * binaries are installed): nodetgt serving a Ceph RBD image against nodetgt serving a file on tmpfs, through the
 * same initiator (qemu-img bench) at 4K QD32 and 1 MiB QD8, read and write; tgtd's rbd backing store beside them
 * when this tgt has it (package tgt-rbd: a peer on the same image); and `rbd bench` on the same image with as
 * many I/O threads as the queue depth, librbd alone in one process, as the limit.
 *
 * The cluster is scripts/ceph-cluster.sh's one-node test cluster (memstore OSD) on 127.0.0.1, started here and
 * stopped on the way out (also on process exit). On a 2-core machine the OSD, librbd's threads, the target and
 * qemu-img share the cores: ratios to `rbd bench` say how much of what librbd can do reaches an initiator
 * through iSCSI here, not what a real cluster would do.
 *
 * Runs alternate between the LUNs (and rbd bench) within each repetition; figures are medians with min-max.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CpuClock } from './cpuclock';
import { FIGURES, K4, M1, unit, fmtRate, type Figure } from './figures';
import { qemuBench, type RunOut } from './measure';
import { fmt } from './report';
import { median, run, track, killGroup } from './sys';
import { Nodetgt, Tgtd, type Backing, type RbdSpec, type Target } from './targets';

const SIZE = 1 << 30;
const CLUSTER_SCRIPT = 'scripts/ceph-cluster.sh';

/** 4K QD32 as in the main matrix; 1 MiB at QD8 (librbd splits nothing under its 4 MiB objects). */
export const RBD_FIGURES: Figure[] = [
  FIGURES.find((f) => f.id === 'rr-qd32')!,
  FIGURES.find((f) => f.id === 'rw-qd32')!,
  {
    id: 'sr-qd8',
    label: '1M seq read QD8',
    write: false,
    bs: M1,
    qd: 8,
    random: false,
    pinned: false,
    guess: 300,
  },
  {
    id: 'sw-qd8',
    label: '1M seq write QD8',
    write: true,
    bs: M1,
    qd: 8,
    random: false,
    pinned: false,
    guess: 200,
  },
];

/** The Ceph binaries the cluster needs that are missing (empty: the section can run). */
export function cephMissing(): string[] {
  return ['ceph', 'ceph-mon', 'ceph-osd', 'ceph-mgr', 'rbd'].filter(
    (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0,
  );
}

export interface RbdBenchOptions {
  repo: string;
  work: string;
  workers: number;
  clock: CpuClock;
  reps: number;
  /** Shortest measured phase, s. */
  secs: number;
  note(msg: string): void;
  aborted(): boolean;
}

interface Measured {
  value: number;
  cpuUsPerIo: number;
  invalid?: string;
}

export interface RbdSection {
  markdown: string;
  /** Per figure id, per column: every repetition. */
  json: Record<string, Record<string, Measured[]>>;
}

type Column = 'nodetgt file' | 'nodetgt rbd' | 'tgtd rbd' | 'rbd bench';

interface Cluster {
  dir: string;
  conf: string;
  pool: string;
}

async function startCluster(o: RbdBenchOptions, dir: string): Promise<Cluster> {
  const r = await run(path.join(o.repo, CLUSTER_SCRIPT), ['start', dir], 180_000);
  if (r.code !== 0)
    throw new Error(`${CLUSTER_SCRIPT} start: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const env = Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => l.split('=', 2) as [string, string]),
  );
  return { dir: env.CEPH_DIR, conf: env.CEPH_CONF, pool: env.CEPH_POOL };
}

function stopClusterSync(o: RbdBenchOptions, c: Cluster): void {
  spawnSync(path.join(o.repo, CLUSTER_SCRIPT), ['stop', c.dir], { timeout: 60_000, stdio: 'ignore' });
}

async function rbdCli(c: Cluster, args: string[], timeoutMs = 120_000) {
  const r = await run('rbd', ['-c', c.conf, ...args], timeoutMs);
  if (r.code !== 0) throw new Error(`rbd ${args.join(' ')}: ${r.stderr.trim().split('\n')[0]}`);
  return r;
}

/**
 * `rbd bench` on the image, timed and charged like a target: its ops/s, and its own CPU (user + system of the
 * process, from the shell's `times` after it exits) per I/O, over the whole run (connect included: a few ms).
 */
async function rbdBench(
  c: Cluster,
  image: string,
  f: Figure,
  count: number,
): Promise<Measured & { secs: number }> {
  const args = [
    'bench',
    '-c',
    c.conf,
    '--io-type',
    f.write ? 'write' : 'read',
    '--io-size',
    String(f.bs),
    '--io-threads',
    String(f.qd),
    '--io-total',
    String(count * f.bs),
    '--io-pattern',
    f.random ? 'rand' : 'seq',
    `${c.pool}/${image}`,
  ];
  const quoted = args.map((a) => `'${a}'`).join(' ');
  const child = track(
    spawn('bash', ['-c', `rbd ${quoted} && times`], { stdio: ['ignore', 'pipe', 'pipe'], detached: true }),
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => killGroup(child), 120_000);
  const code = await new Promise<number | null>((res) => child.on('close', res));
  clearTimeout(timer);
  // "elapsed: 3   ops: 40960   ops/sec: 13456.7   bytes/sec: 52.6 MiB/s"; then times: the shell's, the children's.
  const m = /elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops\/sec:\s*([\d.]+)/.exec(out);
  const t = [...out.matchAll(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/g)].pop();
  if (code !== 0 || !m)
    return { value: NaN, cpuUsPerIo: NaN, secs: NaN, invalid: `rbd bench: ${out.trim().split('\n').pop()}` };
  const ops = Number(m[2]);
  const rate = Number(m[3]);
  const cpuS = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
  return { value: fmtRate(f, rate), cpuUsPerIo: (cpuS * 1e6) / ops, secs: ops / rate };
}

/** One measured qemu-img bench run, sized for `secs` from a calibration, resized up to twice when short. */
async function qemuSized(
  o: RbdBenchOptions,
  t: Target,
  kind: Backing['kind'],
  f: Figure,
  rate: Map<string, number>,
) {
  const key = `${t.name}/${kind}/${f.id}`;
  let ops = rate.get(key);
  if (ops === undefined) {
    const cal = await qemuBench(o.clock, t, kind, f, Math.max(50, Math.round(f.guess * 0.3)), 120_000, 0);
    ops = Number.isFinite(cal.opsPerSec) ? cal.opsPerSec : f.guess;
  }
  let out: RunOut | undefined;
  for (let i = 0; i < 3; i++) {
    const count = Math.max(f.bs === M1 ? 64 : 1000, Math.ceil(ops * o.secs * (1.3 + 0.3 * i)));
    out = await qemuBench(o.clock, t, kind, f, count, Math.max(60_000, (5000 * count) / ops), o.secs);
    if (Number.isFinite(out.opsPerSec)) ops = out.opsPerSec;
    if (!out.short || o.aborted()) break;
  }
  rate.set(key, ops);
  return out!;
}

async function fillTmpfs(file: string): Promise<void> {
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0; off < SIZE; off += chunk.length) {
      randomFillSync(chunk);
      fs.writeSync(fd, chunk, 0, chunk.length, off);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    fs.closeSync(fd);
  }
}

const spread = (xs: number[], digits = 0) =>
  xs.length === 0
    ? 'no valid run'
    : xs.length === 1
      ? fmt(xs[0], digits)
      : `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`;

export async function rbdSection(o: RbdBenchOptions): Promise<RbdSection> {
  const json: RbdSection['json'] = {};
  const L: string[] = ['### Ceph RBD: an RBD LUN against a file LUN, and `rbd bench` as the limit', ''];
  const missing = cephMissing();
  if (missing.length) {
    L.push(
      `Skipped: ${missing.join(', ')} not installed (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common).`,
    );
    return { markdown: L.join('\n'), json };
  }
  const dir = path.join(o.work, `ceph-${process.pid}`);
  const tmpfsFile = `/dev/shm/nodetgt-bench-rbd-${process.pid}.img`;
  let cluster: Cluster | undefined;
  const targets: Target[] = [];
  const onExit = () => {
    for (const t of targets) t.killSync();
    if (cluster) stopClusterSync(o, cluster);
    fs.rmSync(tmpfsFile, { force: true });
  };
  process.once('exit', onExit);
  try {
    const t0 = Date.now();
    cluster = await startCluster(o, dir);
    const image = 'bench';
    await rbdCli(cluster, [
      'create',
      '--size',
      '1G',
      '--image-feature',
      'layering',
      `${cluster.pool}/${image}`,
    ]);
    // Every object written once, so reads are of stored data as on the file LUN.
    await rbdCli(
      cluster,
      [
        'bench',
        '--io-type',
        'write',
        '--io-size',
        '4M',
        '--io-threads',
        '4',
        '--io-total',
        '1G',
        '--io-pattern',
        'seq',
        `${cluster.pool}/${image}`,
      ],
      300_000,
    );
    await fillTmpfs(tmpfsFile);
    o.note(
      `rbd: cluster up and image written in ${((Date.now() - t0) / 1000).toFixed(0)} s (${cluster.dir})`,
    );
    const spec: RbdSpec = { pool: cluster.pool, image, conf: cluster.conf };
    const ntg = new Nodetgt(
      'iqn.2026-11.bench.nodetgt:rbd',
      path.join(o.work, `nodetgt-rbd-${process.pid}.log`),
      o.repo,
      o.work,
      o.workers,
    );
    await ntg.start([
      { kind: 'tmpfs', file: tmpfsFile, direct: false },
      { kind: 'rbd', direct: false, rbd: spec },
    ]);
    targets.push(ntg);
    let tgtd: Tgtd | undefined;
    let tgtdNote = '';
    if (!fs.existsSync('/usr/lib/tgt/backing-store/bs_rbd.so'))
      tgtdNote = 'tgtd: not run, this tgt has no rbd backing store (no bs_rbd.so: apt-get install tgt-rbd).';
    else {
      tgtd = new Tgtd('iqn.2026-11.bench.tgtd:rbd', path.join(o.work, `tgtd-rbd-${process.pid}.log`));
      targets.push(tgtd);
      try {
        await tgtd.start([{ kind: 'rbd', direct: false, rbd: spec }]);
      } catch (e) {
        tgtdNote = `tgtd's rbd backing store failed to start: ${(e as Error).message}`;
        await tgtd.stop();
        tgtd = undefined;
      }
    }
    const rate = new Map<string, number>();
    const rbdRate = new Map<string, number>();
    for (const f of RBD_FIGURES) {
      const cols: Record<Column, Measured[]> = {
        'nodetgt file': [],
        'nodetgt rbd': [],
        'tgtd rbd': [],
        'rbd bench': [],
      };
      json[f.id] = cols;
      for (let rep = 0; rep < o.reps && !o.aborted(); rep++) {
        const order: [Column, () => Promise<Measured>][] = [
          ['nodetgt file', () => qemuSized(o, ntg, 'tmpfs', f, rate)],
          ['nodetgt rbd', () => qemuSized(o, ntg, 'rbd', f, rate)],
          ...(tgtd
            ? [['tgtd rbd', () => qemuSized(o, tgtd, 'rbd', f, rate)] as [Column, () => Promise<Measured>]]
            : []),
          [
            'rbd bench',
            async () => {
              const ops =
                rbdRate.get(f.id) ?? (await rbdBench(cluster!, image, f, Math.round(f.guess))).value;
              const perSec = Number.isFinite(ops) ? (f.bs === K4 ? ops : (ops * 1e6) / f.bs) : f.guess;
              const r = await rbdBench(cluster!, image, f, Math.ceil(perSec * o.secs * 1.3));
              if (Number.isFinite(r.value)) rbdRate.set(f.id, r.value);
              return r;
            },
          ],
        ];
        if (rep % 2) order.reverse();
        for (const [col, go] of order) {
          if (o.aborted()) break;
          const r = await go();
          cols[col].push({ value: r.value, cpuUsPerIo: r.cpuUsPerIo, invalid: r.invalid });
          o.note(
            `rbd ${f.label.padEnd(20)} ${col.padEnd(12)} rep ${rep}: ${fmt(r.value)} ${unit(f)}, ${fmt(r.cpuUsPerIo, 1)} us CPU/IO${r.invalid ? ` INVALID ${r.invalid}` : ''}`,
          );
        }
      }
    }
    L.push(
      `One-node test cluster (memstore OSD, scripts/ceph-cluster.sh) on this machine; a 1 GiB image written ` +
        `whole first, a 1 GiB file on tmpfs. ${o.reps} repetition(s) of at least ${o.secs} s, alternating; ` +
        'medians (min–max). CPU µs/IO is the serving process: nodetgt (librbd runs inside it) or `rbd bench`. ' +
        'The OSD shares the cores with everything else.',
      '',
    );
    if (tgtdNote) L.push(tgtdNote, '');
    const cols: Column[] = [
      'nodetgt file',
      'nodetgt rbd',
      ...(tgtd ? (['tgtd rbd'] as Column[]) : []),
      'rbd bench',
    ];
    const cpuCols: Column[] = ['nodetgt file', 'nodetgt rbd', 'rbd bench'];
    L.push(
      `| figure | ${cols.join(' | ')} | nodetgt rbd / rbd bench | ${cpuCols.map((c) => `CPU µs/IO ${c}`).join(' | ')} |`,
    );
    L.push(`|---|${cols.map(() => '--:').join('|')}|--:|${cpuCols.map(() => '--:').join('|')}|`);
    for (const f of RBD_FIGURES) {
      const c = json[f.id] as Record<Column, Measured[]>;
      const ok = (col: Column) => c[col].filter((m) => !m.invalid && Number.isFinite(m.value));
      const v = (col: Column) => ok(col).map((m) => m.value);
      const ratio = median(v('nodetgt rbd')) / median(v('rbd bench'));
      L.push(
        `| ${f.label} (${unit(f)}) | ${cols.map((col) => spread(v(col))).join(' | ')} | ${fmt(ratio, 2)} | ` +
          `${cpuCols
            .map((col) =>
              spread(
                ok(col).map((m) => m.cpuUsPerIo),
                1,
              ),
            )
            .join(' | ')} |`,
      );
    }
  } catch (e) {
    L.push(`Failed: ${(e as Error).message}`);
  } finally {
    for (const t of targets) await t.stop().catch(() => undefined);
    if (cluster) stopClusterSync(o, cluster);
    cluster = undefined;
    fs.rmSync(tmpfsFile, { force: true });
    process.removeListener('exit', onExit);
  }
  return { markdown: L.join('\n'), json };
}
