/**
 * A narrow QD1 benchmark: 4K random read and write at queue depth 1 on a tmpfs LUN (and/or a null LUN, which
 * leaves only the protocol path), tgtd against one or more nodetgt builds (this checkout, and others given with
 * --base DIR), through qemu-img bench over libiscsi as in side-by-side.ts. Targets are run in turn within each
 * repetition (alternating), and the medians (min-max) of IOPS, target CPU µs per I/O and the ratio to tgtd are
 * printed.
 *
 *   node dist/bench/qd1.js [--reps N] [--count N] [--base DIR[:NAME]]... [--workers N] [--only read|write]
 *                          [--kinds tmpfs,null] [--pin]
 *
 * --pin puts every target (all threads) and qemu-img on CPU 0: the figure is then the CPU of the path itself,
 * without the cross-CPU wake-ups that make unpinned QD1 figures wander (PEERS.md "Measuring").
 *
 * Quick and rough on purpose (no busy check, no calibration): for comparing changes on one machine, not for
 * the report. Everything listens on 127.0.0.1; the backing file is removed on the way out.
 */
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CpuClock } from './lib/cpuclock';
import { FIGURES } from './lib/figures';
import { qemuBench } from './lib/measure';
import { killGroup, liveChildren, median, run } from './lib/sys';
import { Nodetgt, Tgtd, type Target } from './lib/targets';

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const opts = (name: string): string[] => argv.flatMap((a, i) => (a === name ? [argv[i + 1]!] : []));
const reps = Number(opt('--reps') ?? 3);
const count = Number(opt('--count') ?? 20000);
const workers = Number(opt('--workers') ?? 1);
const only = opt('--only');
const kinds = (opt('--kinds') ?? 'tmpfs').split(',') as Array<'tmpfs' | 'null'>;
if (!kinds.every((k) => k === 'tmpfs' || k === 'null')) throw new Error('--kinds: tmpfs and/or null');
const pin = argv.includes('--pin');

const REPO = path.resolve(__dirname, '../..');
const WORK = '/var/tmp/nodetgt-bench';
const SIZE = 256 << 20;
const FILE = `/dev/shm/nodetgt-qd1-${process.pid}.img`;
const figures = FIGURES.filter(
  (f) => (f.id === 'rr-qd1' && only !== 'write') || (f.id === 'rw-qd1' && only !== 'read'),
).map((f) => ({ ...f, pinned: pin }));

function cleanup(): void {
  fs.rmSync(FILE, { force: true });
  for (const c of liveChildren) killGroup(c);
}

async function main(): Promise<void> {
  fs.mkdirSync(WORK, { recursive: true });
  const fd = fs.openSync(FILE, 'w');
  const chunk = Buffer.allocUnsafe(8 << 20);
  for (let off = 0; off < SIZE; off += chunk.length)
    fs.writeSync(fd, randomFillSync(chunk), 0, chunk.length, off);
  fs.closeSync(fd);
  const backings = kinds.map((kind) => ({ kind, file: kind === 'tmpfs' ? FILE : undefined, direct: false }));
  const targets: { label: string; t: Target }[] = [];
  const tgtd = new Tgtd('iqn.2026-11.bench.tgtd:qd1', path.join(WORK, `qd1-tgtd.log`));
  targets.push({ label: 'tgtd', t: tgtd });
  const roots = [`${REPO}:this`, ...opts('--base')];
  for (const r of roots) {
    const [dir, name] = r.split(':');
    const label = name ?? path.basename(dir!);
    const iqn = `iqn.2026-11.bench.nodetgt:${label.replace(/[^a-z0-9.-]/gi, '')}`;
    targets.push({ label, t: new Nodetgt(iqn, path.join(WORK, `qd1-${label}.log`), dir!, WORK, workers) });
  }
  for (const { label, t } of targets) {
    await t.start(backings);
    if (pin && (await run('taskset', ['-a', '-p', '-c', '0', String(t.pid)], 5000)).code !== 0)
      throw new Error(`taskset could not pin ${label}`);
  }
  const clock = await new CpuClock().open();
  const res = new Map<string, { iops: number[]; cpu: number[] }>();
  try {
    for (let rep = 0; rep < reps; rep++)
      for (const kind of kinds)
        for (const f of figures)
          for (const { label, t } of rep % 2 ? [...targets].reverse() : targets) {
            const out = await qemuBench(clock, t, kind, f, count, 120_000, 0);
            const key = `${kind}/${f.id}/${label}`;
            const r = res.get(key) ?? { iops: [], cpu: [] };
            res.set(key, r);
            if (out.invalid) {
              process.stderr.write(`${key}: invalid: ${out.invalid}\n`);
              continue;
            }
            r.iops.push(out.opsPerSec);
            r.cpu.push(out.cpuUsPerIo);
            process.stderr.write(
              `${key}: ${out.opsPerSec.toFixed(0)} IOPS, ${out.cpuUsPerIo.toFixed(1)} µs CPU/IO, others ${out.othersPct.toFixed(0)}%\n`,
            );
          }
  } finally {
    clock.close();
    for (const { t } of targets) await t.stop();
    cleanup();
  }
  const mm = (xs: number[], d = 0) =>
    xs.length
      ? `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`
      : 'n/a';
  for (const kind of kinds)
    for (const f of figures) {
      const base = median(res.get(`${kind}/${f.id}/tgtd`)?.iops ?? []);
      for (const { label } of targets) {
        const r = res.get(`${kind}/${f.id}/${label}`)!;
        const ratio = label === 'tgtd' ? '' : ` ratio ${(median(r.iops) / base).toFixed(2)}x`;
        console.log(
          `${kind.padEnd(5)} ${f.label.padEnd(18)} ${label.padEnd(8)} IOPS ${mm(r.iops)}  CPU µs/IO ${mm(r.cpu, 1)}${ratio}`,
        );
      }
    }
}

process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  cleanup();
  process.exit(1);
});
