import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { crc32c, crc32cImpl, crc32cImpls, crc32cPortable, crc32cWith, type Crc32cImpl } from '../src/native';
import { crc32cRef } from '../src/pdu/crc32c-ref';

type Fn = (buf: Uint8Array, prev?: number) => number;

/**
 * Which CRC32C paths this machine can run, read from the CPU flags the kernel reports (/proc/cpuinfo),
 * independently of the addon's own detection: the portable path always; the SSE4.2 paths only on x86-64 with
 * sse4_2 (and pclmulqdq). A VM may hide SSE4.2, and then only the portable path runs; the tests of the other
 * paths are registered with test.skip (shown as skipped, with the reason in the title), never as passed.
 */
function cpuFlags(): Set<string> {
  let text = '';
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return new Set();
  }
  const line = /^flags\s*:(.*)$/m.exec(text);
  return new Set(line ? line[1].trim().split(/\s+/) : []);
}
const flags = cpuFlags();
const hw: Record<Exclude<Crc32cImpl, 'portable'>, string | null> = {
  // null: runnable here; else why not
  'sse4.2':
    process.arch !== 'x64'
      ? `no x86-64 CPU (${process.arch})`
      : flags.has('sse4_2')
        ? null
        : 'CPU does not report sse4_2 in /proc/cpuinfo',
  'sse4.2+pclmul':
    process.arch !== 'x64'
      ? `no x86-64 CPU (${process.arch})`
      : !flags.has('sse4_2')
        ? 'CPU does not report sse4_2 in /proc/cpuinfo'
        : !flags.has('pclmulqdq')
          ? 'CPU does not report pclmulqdq in /proc/cpuinfo'
          : null,
  'avx2+vpclmulqdq':
    process.arch !== 'x64'
      ? `no x86-64 CPU (${process.arch})`
      : !flags.has('sse4_2') || !flags.has('pclmulqdq')
        ? 'CPU does not report sse4_2 and pclmulqdq in /proc/cpuinfo'
        : !flags.has('avx2')
          ? 'CPU does not report avx2 in /proc/cpuinfo'
          : !flags.has('vpclmulqdq')
            ? 'CPU does not report vpclmulqdq in /proc/cpuinfo'
            : null,
  'avx512+vpclmulqdq':
    process.arch !== 'x64'
      ? `no x86-64 CPU (${process.arch})`
      : !flags.has('sse4_2') || !flags.has('pclmulqdq') || !flags.has('avx2')
        ? 'CPU does not report sse4_2, pclmulqdq and avx2 in /proc/cpuinfo'
        : !flags.has('avx512f') || !flags.has('avx512vl')
          ? 'CPU does not report avx512f and avx512vl in /proc/cpuinfo'
          : !flags.has('vpclmulqdq')
            ? 'CPU does not report vpclmulqdq in /proc/cpuinfo'
            : null,
};
/** What the addon should offer on this CPU, best first. */
const expectedImpls: Crc32cImpl[] = [
  ...(hw['avx512+vpclmulqdq'] === null ? (['avx512+vpclmulqdq'] as const) : []),
  ...(hw['avx2+vpclmulqdq'] === null ? (['avx2+vpclmulqdq'] as const) : []),
  ...(hw['sse4.2+pclmul'] === null ? (['sse4.2+pclmul'] as const) : []),
  ...(hw['sse4.2'] === null ? (['sse4.2'] as const) : []),
  'portable',
];

interface Impl {
  name: string;
  fn: Fn;
  /** null: test it here; otherwise the reason it cannot run on this CPU (its tests are skipped). */
  skip: string | null;
}

const impls: Impl[] = [
  // Always testable: the portable path by both of its entry points, the TS reference, and the automatic choice
  // (whichever path this CPU gets: the portable one where SSE4.2 is hidden).
  { name: 'native portable', fn: crc32cPortable, skip: null },
  { name: 'native forced portable', fn: (b, p) => crc32cWith('portable', b, p), skip: null },
  { name: `native auto (${crc32cImpl()})`, fn: crc32c, skip: null },
  { name: 'ts reference', fn: crc32cRef, skip: null },
  // Hardware paths: only where the CPU has them.
  ...(['sse4.2', 'sse4.2+pclmul', 'avx2+vpclmulqdq', 'avx512+vpclmulqdq'] as const).map((impl): Impl => ({
    name: `native forced ${impl}`,
    fn: (b, p) => crc32cWith(impl, b, p),
    skip: hw[impl],
  })),
];

/** test() for an implementation this CPU runs, test.skip() with the reason in the title for one it does not. */
function implTest(impl: Impl, title: string, body: (t: ExecutionContext) => void): void {
  if (impl.skip === null) test(`${title}: ${impl.name}`, body);
  else test.skip(`${title}: ${impl.name} (skipped: ${impl.skip})`, body);
}

// RFC 3720 appendix B.4 (the same examples as RFC 7143 appendix A.4): the CRC bytes listed there are the
// value as sent, least significant byte first.
const readPdu = Uint8Array.from([
  0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
]);
const vectors: [string, Uint8Array, number][] = [
  ['32 bytes of zeros', new Uint8Array(32), 0x8a9136aa],
  ['32 bytes of 0xff', new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ['32 incrementing bytes', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ['32 decrementing bytes', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ['iSCSI Read(10) command PDU', readPdu, 0xd9963a56],
  ['"123456789"', new TextEncoder().encode('123456789'), 0xe3069283],
  ['empty', new Uint8Array(0), 0],
];

test('picks the best implementation the CPU reports; portable is always there', (t) => {
  t.deepEqual(
    crc32cImpls(),
    expectedImpls,
    `cpu flags: sse4_2 ${flags.has('sse4_2')}, pclmulqdq ${flags.has('pclmulqdq')}`,
  );
  t.is(crc32cImpl(), expectedImpls[0], 'crc32c() runs the best of them');
  // The auto path is the chosen implementation, not some other one: same results on a large random buffer.
  const buf = randomBytes(100_003);
  t.is(crc32c(buf), crc32cWith(crc32cImpl(), buf));
  t.is(crc32cWith('portable', buf), crc32cRef(buf));
});

for (const impl of ['sse4.2', 'sse4.2+pclmul', 'avx2+vpclmulqdq', 'avx512+vpclmulqdq'] as const) {
  const reason = hw[impl];
  const title = `forcing ${impl} where the CPU lacks it throws instead of computing`;
  if (reason === null) test.skip(`${title} (skipped: this CPU has ${impl})`, () => undefined);
  else
    test(`${title} (${reason})`, (t) => {
      t.throws(() => crc32cWith(impl, Buffer.alloc(16)), { code: 'ERR_UNSUPPORTED' });
    });
}

for (const impl of impls) {
  implTest(impl, 'RFC 3720 B.4 vectors', (t) => {
    for (const [what, data, expected] of vectors) t.is(impl.fn(data), expected, what);
    // The same vector bytes sitting at an odd address inside a larger buffer.
    const big = Buffer.alloc(readPdu.length + 11);
    big.set(readPdu, 7);
    t.is(impl.fn(big.subarray(7, 7 + readPdu.length)), 0xd9963a56);
  });

  if (impl.fn !== crc32cRef) {
    implTest(impl, 'every length 0..4096 at random misalignments matches the reference', (t) => {
      const pool = randomBytes(4096 + 64);
      let mismatches = 0;
      let first = '';
      for (let len = 0; len <= 4096; len++) {
        const off = (len * 7919) % 61; // spreads offsets 0..60 over the lengths
        const view = pool.subarray(off, off + len);
        const prev = len % 3 === 0 ? 0 : (len * 2654435761) >>> 0;
        const expected = crc32cRef(view, prev);
        const got = impl.fn(view, prev);
        if (got !== expected && mismatches++ === 0)
          first = `length ${len} offset ${off} prev ${prev}: ${got} != ${expected}`;
      }
      t.is(mismatches, 0, `first mismatch: ${first}`);
    });

    implTest(impl, 'buffers of several MiB match the reference', (t) => {
      for (const size of [1 << 20, (3 << 20) + 17, (8 << 20) - 5]) {
        const buf = randomBytes(size);
        const expected = crc32cRef(buf);
        t.is(impl.fn(buf), expected, `${size} bytes`);
        t.is(impl.fn(buf.subarray(3)), crc32cRef(buf.subarray(3)), `${size - 3} bytes, misaligned start`);
      }
    });
  }

  implTest(impl, 'continuation: crc(b, crc(a)) === crc(a ++ b) at every split point', (t) => {
    const data = randomBytes(1000);
    const whole = impl.fn(data);
    const step = impl.fn === crc32cRef ? 37 : 1;
    const bad: number[] = [];
    for (let split = 0; split <= data.length; split += step)
      if (impl.fn(data.subarray(split), impl.fn(data.subarray(0, split))) !== whole) bad.push(split);
    t.deepEqual(bad, [], 'split points where the continued CRC differs');
    // Three pieces, and a long tail that takes the 3-stream path.
    const long = randomBytes(100_000);
    t.is(
      impl.fn(long.subarray(70_001), impl.fn(long.subarray(5, 70_001), impl.fn(long.subarray(0, 5)))),
      impl.fn(long),
    );
    t.is(impl.fn(long), crc32cRef(long));
  });
}

test('accepts any ArrayBufferView and counts bytes, not elements', (t) => {
  const bytes = randomBytes(64);
  const expected = crc32cRef(bytes);
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, 16);
  t.is(crc32c(u32 as unknown as Uint8Array), expected);
  t.is(crc32c(new DataView(bytes.buffer, bytes.byteOffset, 64) as unknown as Uint8Array), expected);
  t.is(crc32c(new Uint8Array(bytes)), expected);
  t.is(crc32c(bytes, undefined), expected);
});

test('rejects what is not a buffer', (t) => {
  t.throws(() => crc32c('abc' as unknown as Uint8Array), { instanceOf: TypeError });
  t.throws(() => crc32c(Buffer.alloc(1), 'x' as unknown as number), { instanceOf: TypeError });
  t.throws(() => (crc32c as () => number)(), { instanceOf: TypeError });
});
