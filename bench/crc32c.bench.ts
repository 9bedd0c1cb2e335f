/**
 * CRC32C throughput: the addon (auto-selected, the other hardware paths forced, and portable), the TypeScript reference, and
 * @node-rs/crc32 (a Rust addon) for comparison, at the sizes that matter to iSCSI: a 48-byte header
 * digest, an 8 KiB data segment, a 1 MiB burst.
 *
 *   npm run bench:crc            (or: node dist/bench/crc32c.bench.js [--quick])
 */
import Benchmark from 'benchmark';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { crc32c as nodeRsCrc32c } from '@node-rs/crc32';
import { crc32c, crc32cImpl, crc32cImpls, crc32cPortable, crc32cWith } from '../src/native';
import { crc32cRef } from '../src/pdu/crc32c-ref';

type Fn = (buf: Uint8Array, prev?: number) => number;

const contenders: [string, Fn][] = [
  [`native (${crc32cImpl()})`, crc32c],
  // The other hardware paths this CPU runs, forced, to show what the chosen one gains.
  ...crc32cImpls()
    .filter((impl) => impl !== crc32cImpl() && impl !== 'portable')
    .map((impl): [string, Fn] => [`native forced ${impl}`, (b, p) => crc32cWith(impl, b, p)]),
  ['native portable', crc32cPortable],
  ['TS reference', crc32cRef],
  ['@node-rs/crc32', (b, p) => nodeRsCrc32c(b, p)],
];
const sizes: [string, number][] = [
  ['48 B', 48],
  ['8 KiB', 8192],
  ['1 MiB', 1 << 20],
];
const quick = process.argv.includes('--quick');

// Same answers first, including continuation, or the numbers mean nothing.
function verify(): void {
  for (const len of [0, 1, 7, 48, 100, 1000, 8192, 65_537, 1 << 20]) {
    const buf = randomBytes(len);
    const cut = len >> 1;
    const expected = crc32cRef(buf);
    for (const [name, fn] of contenders) {
      const whole = fn(buf) >>> 0;
      const joined = fn(buf.subarray(cut), fn(buf.subarray(0, cut))) >>> 0;
      if (whole !== expected || joined !== expected)
        throw new Error(`${name} disagrees at length ${len}: ${whole} / ${joined} vs ${expected}`);
    }
  }
}

function run(): void {
  verify();
  const rows: { size: string; name: string; gbps: number; nsPerOp: number; rme: number }[] = [];
  let sink = 0;
  for (const [label, size] of sizes) {
    const buf = randomBytes(size);
    const suite = new Benchmark.Suite(label);
    for (const [name, fn] of contenders) {
      suite.add(
        name,
        () => {
          sink ^= fn(buf);
        },
        { maxTime: quick ? 0.5 : 2, minSamples: 5 },
      );
    }
    suite.on('cycle', (ev: Benchmark.Event) => {
      const b = ev.target as unknown as Benchmark;
      const hz = b.hz ?? 0;
      rows.push({
        size: label,
        name: String(b.name),
        gbps: (hz * size) / 1e9,
        nsPerOp: 1e9 / hz,
        rme: b.stats?.rme ?? 0,
      });
      process.stderr.write('.');
    });
    suite.run({ async: false });
  }
  process.stderr.write('\n');
  if (sink === 0.5) console.log(sink); // keeps the results alive

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`CRC32C, ${new Date().toISOString().slice(0, 10)}, ${cpu}, Node ${process.version}`);
  const header = ['size', 'implementation', 'GB/s', 'ns/op', '±%'];
  const lines = rows.map((r) => [
    r.size,
    r.name,
    r.gbps.toFixed(r.gbps < 1 ? 3 : 2),
    r.nsPerOp.toFixed(r.nsPerOp < 1000 ? 1 : 0),
    r.rme.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ') + ' |';
  console.log(fmt(header));
  console.log(
    '|' + widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|',
  );
  for (const l of lines) console.log(fmt(l));
}

run();
