/**
 * The benchmark's digest section (bench/lib/digests.ts) on fixture samples: medians per target, figure and
 * mode, the on ÷ off ratios of rate and CPU per I/O, failed runs left out of the medians and listed.
 */
import test from 'ava';
import { digestLines, gated, type DigestSample, type DigestSection } from '../bench/lib/digests';

const s = (
  target: string,
  figure: string,
  mode: DigestSample['mode'],
  value: number,
  cpu: number,
  error?: string,
) =>
  ({
    target,
    figure,
    mode,
    rep: 0,
    value,
    targetCpuUsPerIo: cpu,
    initiatorCpuUsPerIo: 5,
    seconds: 2,
    error,
  }) as DigestSample;

test('digest section: medians, ratios on/off and off/on, failed runs excluded and listed', (t) => {
  const sec: DigestSection = {
    kind: 'tmpfs',
    reps: 3,
    secs: 2,
    problems: ['nodetgt rr-qd32 on rep 2: connection closed'],
    samples: [
      s('nodetgt', 'rr-qd32', 'off', 100, 10),
      s('nodetgt', 'rr-qd32', 'off', 120, 12),
      s('nodetgt', 'rr-qd32', 'off', 80, 8),
      s('nodetgt', 'rr-qd32', 'on', 97, 10.5),
      s('nodetgt', 'rr-qd32', 'on', 90, 11),
      s('nodetgt', 'rr-qd32', 'on', NaN, NaN, 'connection closed'),
      s('tgtd', 'rr-qd32', 'off', 50, 20),
      s('tgtd', 'rr-qd32', 'on', 40, 25),
      s('nodetgt', 'rr-qd32', 'qemu-none', 200, 10),
      s('nodetgt', 'rr-qd32', 'qemu-hd', 190, 11),
    ],
  };
  const md = digestLines(sec).join('\n');
  // nodetgt: off median 100 (80–120), on median of the two valid runs 93.5 (90–97): 0.935; CPU 10 / 10.75.
  t.regex(
    md,
    /\| 4K rand read QD32 IOPS \| nodetgt \| 100 \(80–120\) \| 94 \(90–97\) \| 0\.935 \| 10\.0 \| 10\.8 \| 0\.930 \| 5\.0, 5\.0 \| 3\/3, 2\/3 \|/,
  );
  t.regex(md, /\| 4K rand read QD32 IOPS \| tgtd \| 50 \| 40 \| 0\.800 \| 20\.0 \| 25\.0 \| 0\.800 \|/);
  t.regex(md, /\| nodetgt \| 200 \| 190 \| 0\.950 \| 10\.0 \| 11\.0 \| 0\.909 \|/);
  t.true(md.includes('nodetgt rr-qd32 on rep 2: connection closed'));
  t.false(md.includes('1M seq read'), 'figures without samples are left out');
});

test('digest section: the most other load of the counted runs; a run refused as busy is left out', (t) => {
  const busy = {
    ...s('nodetgt', 'rw-qd32', 'on', 10, 99, 'machine busy: other processes used 40% of it (limit 15%)'),
    othersPct: 40,
  };
  const sec: DigestSection = {
    kind: 'tmpfs',
    reps: 2,
    secs: 2,
    problems: [`nodetgt rw-qd32 on rep 0: ${busy.error}`],
    samples: [
      { ...s('nodetgt', 'rw-qd32', 'off', 100, 10), othersPct: 3 },
      { ...s('nodetgt', 'rw-qd32', 'off', 100, 10), othersPct: 7 },
      { ...s('nodetgt', 'rw-qd32', 'on', 95, 10), othersPct: 2 },
      busy,
    ],
  };
  const md = digestLines(sec).join('\n');
  t.regex(md, /\| 4K rand write QD32 IOPS \| nodetgt \| 100 \| 95 \| 0\.950 \| .* \| 2\/2, 1\/2 \| 7 \|/);
  t.true(md.includes('machine busy'));
});

test('gated: a busy run is retried, then refused; --allow-busy keeps it', async (t) => {
  const logs: string[] = [];
  const o = { maxOthersPct: 15, busyPauseMs: 1, log: (m: string) => logs.push(m), aborted: () => false };
  const seq = (others: number[]) => {
    let i = 0;
    return () => Promise.resolve({ ...s('nodetgt', 'rr-qd32', 'off', 100, 10), othersPct: others[i++]! });
  };
  const ok = await gated(o, seq([40, 30, 5]));
  t.is(ok.error, undefined);
  t.is(ok.othersPct, 5);
  t.is(logs.length, 2);
  const refused = await gated(o, seq([40, 30, 20, 1]));
  t.regex(refused.error!, /machine busy: other processes used 20% of it \(limit 15%\)/);
  const kept = await gated({ ...o, allowBusy: true }, seq([40]));
  t.is(kept.error, undefined);
  t.is(kept.othersPct, 40);
  // a run that failed for its own reason is not retried for load
  const failed = await gated(o, () =>
    Promise.resolve({ ...s('nodetgt', 'rr-qd32', 'off', NaN, NaN, 'connection closed'), othersPct: 90 }),
  );
  t.is(failed.error, 'connection closed');
});
