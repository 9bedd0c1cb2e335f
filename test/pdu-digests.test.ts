/**
 * Digests a PDU at a time (src/pdu/digests.ts): the native pduSeal/pduCheck against the reference built on
 * the table-driven CRC, and frame() with a seal function against frame() computing digests call by call.
 */
import test from 'ava';
import { pduDigestFns, CHECK_DATA, CHECK_HEADER } from '../src/pdu/digests';
import { pduCheck, pduSeal } from '../src/native';
import { crc32cRef } from '../src/pdu/crc32c-ref';
import {
  encodeDataIn,
  encodeScsiResponse,
  frame,
  frameToBuffer,
  type FrameOptions,
} from '../src/pdu/serializer';
import { rng } from './helpers/rng';

const ref = pduDigestFns(crc32cRef);

function bytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

// Lengths around the native code's thresholds (serial below 144 bytes, 3-way streams above, 8 KiB lanes).
const LENGTHS = [0, 1, 2, 3, 4, 5, 47, 143, 144, 145, 1021, 4096, 8191, 24 * 1024 + 7, 65536, 262147];

test('native pduSeal writes what the reference writes, for every pad and both digests', (t) => {
  const bhs = bytes(48, 1);
  for (const n of LENGTHS) {
    const data = bytes(n, n + 2);
    const pad = (4 - (n & 3)) & 3;
    const h1 = Buffer.alloc(52, 0xaa);
    const h2 = Buffer.alloc(52, 0x55);
    const t1 = Buffer.alloc(4 + pad, 0xaa);
    const t2 = Buffer.alloc(4 + pad, 0x55);
    pduSeal(bhs, h1, data, t1);
    ref.seal(bhs, h2, data, t2);
    t.deepEqual(h1, h2, `header, ${n}`);
    t.deepEqual(t1, t2, `trailer, ${n}`);
    t.deepEqual(h1.subarray(0, 48), bhs);
    t.is(h1.readUInt32LE(48), crc32cRef(bhs));
    t.is(t1.readUInt32LE(pad), crc32cRef(Buffer.concat([data, Buffer.alloc(pad)])));
  }
  // Either half alone; the other argument left untouched.
  const tr = Buffer.alloc(4);
  pduSeal(bhs, null, bytes(8, 3), tr);
  t.is(tr.readUInt32LE(0), crc32cRef(bytes(8, 3)));
  const hdr = Buffer.alloc(52);
  pduSeal(bhs, hdr, null, null);
  t.is(hdr.readUInt32LE(48), crc32cRef(bhs));
});

test('pduSeal refuses wrong sizes and types instead of writing out of bounds', (t) => {
  const bhs = Buffer.alloc(48);
  for (const seal of [pduSeal, ref.seal]) {
    t.throws(() => seal(bhs, Buffer.alloc(51), null, null), { instanceOf: TypeError });
    t.throws(() => seal(bhs, null, Buffer.alloc(5), Buffer.alloc(3)), { instanceOf: TypeError });
    t.throws(() => seal(bhs, null, Buffer.alloc(5), Buffer.alloc(8)), { instanceOf: TypeError });
  }
  t.throws(() => pduSeal(bhs, 'x' as unknown as Buffer, null, null), { instanceOf: TypeError });
});

/** A whole PDU on the wire as frame() writes it, at an offset inside a larger buffer. */
function onWire(n: number, o: FrameOptions, at: number): Buffer {
  const bhs = encodeDataIn({ itt: 1, expCmdSN: 1, maxCmdSN: 2, dataSN: 0, bufferOffset: 0 });
  const pdu = frameToBuffer(bhs, n ? bytes(n, n) : null, { ...o, crc32c: crc32cRef });
  return Buffer.concat([bytes(at, 9), pdu, bytes(11, 10)]);
}

test('pduCheck: 0 on a good PDU, the bit of each bad digest, native and reference agree', (t) => {
  for (const n of LENGTHS)
    for (const [hd, dd] of [
      [true, true],
      [true, false],
      [false, true],
    ] as const) {
      const at = 13;
      const buf = onWire(n, { headerDigest: hd, dataDigest: dd }, at);
      const flags = (hd ? CHECK_HEADER : 0) | (dd ? CHECK_DATA : 0);
      t.is(pduCheck(buf, at, 48, n, flags), 0, `good ${n} ${hd} ${dd}`);
      t.is(ref.check(buf, at, 48, n, flags), 0);
      if (hd) {
        const bad = Buffer.from(buf);
        bad[at + 20] ^= 1;
        t.is(pduCheck(bad, at, 48, n, flags), CHECK_HEADER);
        t.is(ref.check(bad, at, 48, n, flags), CHECK_HEADER);
      }
      if (dd && n > 0) {
        const pad = (4 - (n & 3)) & 3;
        const bad = Buffer.from(buf);
        bad[at + 48 + (hd ? 4 : 0) + n + pad - 1] ^= 0x80; // the last data or pad byte
        t.is(pduCheck(bad, at, 48, n, flags), CHECK_DATA, `bad data ${n}`);
        t.is(ref.check(bad, at, 48, n, flags), CHECK_DATA);
      }
    }
});

test('pduCheck throws when the PDU would run past the buffer', (t) => {
  const buf = onWire(100, { headerDigest: true, dataDigest: true }, 0);
  const whole = buf.length - 11;
  t.is(pduCheck(buf.subarray(0, whole), 0, 48, 100, 3), 0);
  for (const check of [pduCheck, ref.check])
    t.throws(() => check(buf.subarray(0, whole - 1), 0, 48, 100, 3), { instanceOf: RangeError });
  t.throws(() => pduCheck(buf, -1, 48, 100, 3), { instanceOf: TypeError });
});

test('frame() with seal: the same bytes as digest by digest, fewer buffers, data passed through', (t) => {
  for (const seal of [pduSeal, ref.seal])
    for (const n of [0, 1, 2, 3, 4, 4096, 65537])
      for (const [hd, dd] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        const data = n ? bytes(n, n) : null;
        const mk = () =>
          n
            ? encodeDataIn({ itt: 7, expCmdSN: 1, maxCmdSN: 2, dataSN: 0, bufferOffset: 0 })
            : encodeScsiResponse({ status: 0, itt: 7, statSN: 3, expCmdSN: 1, maxCmdSN: 2 });
        const plain: FrameOptions = { headerDigest: hd, dataDigest: dd, crc32c: crc32cRef };
        const a = frame(mk(), data, plain);
        const b = frame(mk(), data, { ...plain, seal });
        t.deepEqual(Buffer.concat(b), Buffer.concat(a), `${n} bytes, hd ${hd}, dd ${dd}`);
        const pad = (4 - (n & 3)) & 3;
        t.is(b.length, 1 + (n ? 1 : 0) + (n && (dd || pad) ? 1 : 0));
        if (data) t.is(b[1], data, 'data is not copied');
      }
});
