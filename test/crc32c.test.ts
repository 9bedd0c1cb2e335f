import test from 'ava';
import { randomBytes } from 'node:crypto';
import { crc32c, crc32cImpl, crc32cImpls, crc32cPortable, crc32cWith, type Crc32cImpl } from '../src/native';
import { crc32cRef } from '../src/pdu/crc32c-ref';

type Fn = (buf: Uint8Array, prev?: number) => number;

const impls: [string, Fn][] = [
  ['native auto', crc32c],
  ['native portable', crc32cPortable],
  ...crc32cImpls().map((impl): [string, Fn] => [`native forced ${impl}`, (b, p) => crc32cWith(impl, b, p)]),
  ['ts reference', crc32cRef],
];

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

test('reports the implementation it picked', (t) => {
  const impl: Crc32cImpl = crc32cImpl();
  t.true(['sse4.2+pclmul', 'sse4.2', 'portable'].includes(impl));
  t.is(crc32cImpls()[0], impl);
  t.true(crc32cImpls().includes('portable'));
  if (process.arch === 'x64')
    t.not(impl, 'portable', 'every x86-64 server CPU of the last 15 years has SSE4.2');
});

for (const [name, fn] of impls) {
  test(`RFC 3720 B.4 vectors: ${name}`, (t) => {
    for (const [what, data, expected] of vectors) t.is(fn(data), expected, what);
    // The same vector bytes sitting at an odd address inside a larger buffer.
    const big = Buffer.alloc(readPdu.length + 11);
    big.set(readPdu, 7);
    t.is(fn(big.subarray(7, 7 + readPdu.length)), 0xd9963a56);
  });
}

test('every length 0..4096 at random misalignments matches the reference, every native path', (t) => {
  const pool = randomBytes(4096 + 64);
  const natives = impls.filter(([name]) => name !== 'ts reference');
  let checked = 0;
  for (let len = 0; len <= 4096; len++) {
    const off = (len * 7919) % 61; // spreads offsets 0..60 over the lengths
    const view = pool.subarray(off, off + len);
    const prev = len % 3 === 0 ? 0 : (len * 2654435761) >>> 0;
    const expected = crc32cRef(view, prev);
    for (const [name, fn] of natives) {
      const got = fn(view, prev);
      if (got !== expected) {
        t.fail(`${name}: length ${len} offset ${off} prev ${prev}: ${got} != ${expected}`);
        return;
      }
      checked++;
    }
  }
  t.is(checked, 4097 * natives.length);
});

test('buffers of several MiB agree across implementations', (t) => {
  for (const size of [1 << 20, (3 << 20) + 17, (8 << 20) - 5]) {
    const buf = randomBytes(size);
    const expected = crc32cRef(buf);
    for (const [name, fn] of impls) t.is(fn(buf), expected, `${name} at ${size} bytes`);
    t.is(crc32c(buf.subarray(3)), crc32cRef(buf.subarray(3)), 'misaligned start');
  }
});

test('continuation: crc(b, crc(a)) === crc(a ++ b) at every split point', (t) => {
  const data = randomBytes(1000);
  for (const [name, fn] of impls) {
    const whole = fn(data);
    for (let split = 0; split <= data.length; split += name === 'ts reference' ? 37 : 1) {
      const got = fn(data.subarray(split), fn(data.subarray(0, split)));
      if (got !== whole) return t.fail(`${name}: split at ${split}`);
    }
    // Three pieces, and a long tail that takes the 3-stream path.
    const long = randomBytes(100_000);
    t.is(fn(long.subarray(70_001), fn(long.subarray(5, 70_001), fn(long.subarray(0, 5)))), fn(long), name);
  }
  t.pass();
});

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
