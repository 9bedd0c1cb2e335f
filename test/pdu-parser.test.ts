import test from 'ava';

import { Opcode } from '../src/pdu/opcodes';
import { PduParser, PduParseError, type PduParseErrorKind } from '../src/pdu/parser';
import { decodeScsiCommand, type Pdu } from '../src/pdu/pdu';
import {
  encodeDataOut,
  encodeLoginRequest,
  encodeLogoutRequest,
  encodeNopOut,
  encodeScsiCommand,
  encodeSnackRequest,
  encodeTextRequest,
  frameToBuffer,
  scsiCommandAhs,
  type FrameOptions,
} from '../src/pdu/serializer';
import { crc32c } from './helpers/crc32c-table';
import { pduDigestFns, type PduCheckFn } from '../src/pdu/digests';
import { pduCheck as nativeCheck, pduSeal as nativeSeal } from '../src/native';
import { rng } from './helpers/rng';

function bytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

interface Source {
  bhs: Buffer;
  ahs: Buffer | null;
  data: Buffer;
}

/** A set of PDUs of every initiator type, with an AHS, odd lengths and an unknown opcode. */
function sources(): Source[] {
  const out: Source[] = [];
  const add = (bhs: Buffer, data: Buffer, ahs: Buffer | null = null): void => {
    out.push({ bhs, ahs, data });
  };
  add(
    encodeLoginRequest({
      transit: true,
      continue: false,
      csg: 0,
      nsg: 1,
      isid: Buffer.from('80123456789a', 'hex'),
      itt: 1,
      cmdSN: 1,
      expStatSN: 0,
    }),
    Buffer.from('InitiatorName=iqn.2024-01.test:i\0AuthMethod=None\0'), // 49 bytes
  );
  const cdb = Buffer.from(Array.from({ length: 24 }, (_, i) => i + 1));
  add(
    encodeScsiCommand({
      write: true,
      read: true,
      itt: 2,
      expectedDataTransferLength: 512,
      cmdSN: 2,
      expStatSN: 1,
      cdb,
    }),
    bytes(3, 2),
    scsiCommandAhs({ cdb, bidiReadLength: 512 }),
  );
  add(
    encodeDataOut({ final: true, itt: 2, ttt: 7, expStatSN: 1, dataSN: 0, bufferOffset: 0 }),
    bytes(1025, 3),
  );
  add(encodeNopOut({ immediate: true, itt: 3, cmdSN: 3, expStatSN: 1 }), Buffer.alloc(0));
  add(encodeTextRequest({ itt: 4, cmdSN: 3, expStatSN: 1 }), Buffer.from('X'));
  const unknown = encodeNopOut({ itt: 5, cmdSN: 4, expStatSN: 1 });
  unknown[0] = 0x1c;
  add(unknown, bytes(6, 6));
  add(encodeSnackRequest({ type: 1, itt: 6, expStatSN: 1, begRun: 1, runLength: 2 }), Buffer.alloc(0));
  add(encodeLogoutRequest({ reasonCode: 0, itt: 7, cmdSN: 4, expStatSN: 1 }), bytes(8, 8));
  return out;
}

function wire(srcs: Source[], opts: FrameOptions): Buffer {
  return Buffer.concat(srcs.map((s) => frameToBuffer(s.bhs, s.data.length ? s.data : null, opts, s.ahs)));
}

type Event =
  | { t: 'pdu'; bhs: Buffer; ahs: Buffer | null; data: Buffer }
  | { t: 'err'; kind: PduParseErrorKind; bhs: Buffer; data: Buffer | null };

function sameEvent(a: Event, b: Event): boolean {
  if (a.t !== b.t || !a.bhs.equals(b.bhs)) return false;
  if (a.t === 'pdu' && b.t === 'pdu') {
    if ((a.ahs === null) !== (b.ahs === null) || (a.ahs !== null && !a.ahs.equals(b.ahs!))) return false;
    return a.data.equals(b.data);
  }
  if (a.t === 'err' && b.t === 'err') {
    if (a.kind !== b.kind || (a.data === null) !== (b.data === null)) return false;
    return a.data === null || a.data.equals(b.data!);
  }
  return false;
}

function sameEvents(a: Event[], b: Event[]): boolean {
  return a.length === b.length && a.every((e, i) => sameEvent(e, b[i]!));
}

function expectedEvents(srcs: Source[]): Event[] {
  return srcs.map((s) => ({ t: 'pdu', bhs: s.bhs, ahs: s.ahs, data: s.data }));
}

interface Harness {
  parser: PduParser;
  events: Event[];
  pdus: Pdu[];
}

/** Frame options, and the whole-PDU digest check the parser is given (none: the piecewise path only). */
type Config = FrameOptions & { pduCheck?: PduCheckFn };

function harness(
  opts: Partial<Config> & { max?: number; onPdu?: (p: Pdu, h: Harness) => void } = {},
): Harness {
  const h: Harness = { parser: undefined as unknown as PduParser, events: [], pdus: [] };
  h.parser = new PduParser({
    crc32c,
    pduCheck: opts.pduCheck,
    maxDataSegmentLength: opts.max ?? 1 << 20,
    onPdu: (p) => {
      // Copy at delivery: the test overwrites chunks after each push.
      h.events.push({
        t: 'pdu',
        bhs: Buffer.from(p.bhs),
        ahs: p.ahs && Buffer.from(p.ahs),
        data: Buffer.from(p.data),
      });
      h.pdus.push(p);
      t_checkPdu(p);
      opts.onPdu?.(p, h);
    },
    onError: (e) => {
      h.events.push({
        t: 'err',
        kind: e.kind,
        bhs: Buffer.from(e.bhs),
        data: e.pdu && Buffer.from(e.pdu.data),
      });
    },
  });
  h.parser.headerDigest = opts.headerDigest ?? false;
  h.parser.dataDigest = opts.dataDigest ?? false;
  return h;
}

/** Pdu summary fields must agree with its BHS. */
function t_checkPdu(p: Pdu): void {
  const ok =
    p.bhs.length === 48 &&
    p.opcode === (p.bhs[0]! & 0x3f) &&
    p.immediate === ((p.bhs[0]! & 0x40) !== 0) &&
    p.final === ((p.bhs[1]! & 0x80) !== 0) &&
    p.itt === p.bhs.readUInt32BE(16) &&
    p.dataLength === p.bhs.readUIntBE(5, 3) &&
    p.data.length === p.dataLength &&
    (p.ahs === null ? p.bhs[4] === 0 : p.ahs.length === p.bhs[4]! * 4);
  if (!ok) throw new Error('inconsistent Pdu');
}

/** Push pieces, then scribble over each one as a reused socket buffer would be. */
function feed(h: Harness, pieces: Buffer[]): void {
  for (const p of pieces) {
    const copy = Buffer.from(p);
    h.parser.push(copy);
    copy.fill(0xee);
  }
}

const ref = pduDigestFns(crc32c);
const CONFIGS: Array<[string, Config]> = [
  ['no digests', { headerDigest: false, dataDigest: false }],
  ['header digest', { headerDigest: true, dataDigest: false, crc32c }],
  ['data digest', { headerDigest: false, dataDigest: true, crc32c }],
  ['both digests', { headerDigest: true, dataDigest: true, crc32c }],
  // Framed a PDU per seal() call, parsed through the whole-PDU check where a PDU lies whole in a chunk.
  [
    'header digest, sealed, whole-PDU check',
    { headerDigest: true, dataDigest: false, crc32c, seal: ref.seal, pduCheck: ref.check },
  ],
  [
    'data digest, sealed, whole-PDU check',
    { headerDigest: false, dataDigest: true, crc32c, seal: ref.seal, pduCheck: ref.check },
  ],
  [
    'both digests, native seal and check',
    { headerDigest: true, dataDigest: true, crc32c, seal: nativeSeal, pduCheck: nativeCheck },
  ],
];

for (const [label, opts] of CONFIGS) {
  test(`whole stream in one chunk (${label})`, (t) => {
    const srcs = sources();
    const h = harness(opts);
    h.parser.push(wire(srcs, opts));
    t.true(sameEvents(h.events, expectedEvents(srcs)));
    t.true(h.parser.idle);
    const unknown = h.pdus.find((p) => p.opcode === 0x1c);
    t.truthy(unknown);
    const cmd = h.pdus.find((p) => p.opcode === Opcode.ScsiCommand)!;
    t.is(decodeScsiCommand(cmd).cdb.length, 24);
    t.is(decodeScsiCommand(cmd).bidiReadLength, 512);
  });

  test(`two-chunk split at every byte boundary (${label})`, (t) => {
    const srcs = sources();
    const w = wire(srcs, opts);
    const exp = expectedEvents(srcs);
    for (let i = 0; i <= w.length; i++) {
      const h = harness(opts);
      feed(h, [w.subarray(0, i), w.subarray(i)]);
      if (!sameEvents(h.events, exp) || !h.parser.idle) {
        t.fail(`split at ${i} of ${w.length}`);
        return;
      }
    }
    t.pass();
  });

  test(`one byte at a time (${label})`, (t) => {
    const srcs = sources();
    const w = wire(srcs, opts);
    const h = harness(opts);
    feed(
      h,
      Array.from({ length: w.length }, (_, i) => w.subarray(i, i + 1)),
    );
    t.true(sameEvents(h.events, expectedEvents(srcs)));
    t.true(h.parser.idle);
  });

  test(`random three-chunk splits (${label})`, (t) => {
    const srcs = sources();
    const w = wire(srcs, opts);
    const exp = expectedEvents(srcs);
    const r = rng(42);
    for (let k = 0; k < 1500; k++) {
      const a = Math.floor(r() * (w.length + 1));
      const b = a + Math.floor(r() * (w.length + 1 - a));
      const h = harness(opts);
      feed(h, [w.subarray(0, a), w.subarray(a, b), w.subarray(b)]);
      if (!sameEvents(h.events, exp)) {
        t.fail(`splits at ${a}, ${b}`);
        return;
      }
    }
    t.pass();
  });

  test(`data-too-long is skipped and the next PDU parsed, every split (${label})`, (t) => {
    const srcs = sources().filter((s) => s.bhs[0] !== 0x05); // without the big Data-Out
    const big = {
      bhs: encodeDataOut({ itt: 9, expStatSN: 1, dataSN: 0, bufferOffset: 0 }),
      ahs: null,
      data: bytes(1001, 9),
    };
    const all = [srcs[0]!, big, ...srcs.slice(1)];
    const w = wire(all, opts);
    const exp: Event[] = [
      ...expectedEvents([srcs[0]!]),
      { t: 'err', kind: 'data-too-long', bhs: big.bhs, data: null },
      ...expectedEvents(srcs.slice(1)),
    ];
    for (let i = 0; i <= w.length; i++) {
      const h = harness({ ...opts, max: 1000 });
      feed(h, [w.subarray(0, i), w.subarray(i)]);
      if (!sameEvents(h.events, exp)) {
        t.fail(`split at ${i}`);
        return;
      }
    }
    t.pass();
  });
}

test('zero-copy: data and BHS are slices of the pushed chunk', (t) => {
  const opts: FrameOptions = { headerDigest: true, dataDigest: true, crc32c };
  const srcs = sources();
  const w = wire(srcs, opts);
  const h = harness(opts);
  h.parser.push(w);
  t.is(h.pdus.length, srcs.length);
  for (const p of h.pdus) {
    t.is(p.bhs.buffer, w.buffer);
    if (p.dataLength > 0) t.is(p.data.buffer, w.buffer);
    if (p.ahs) t.is(p.ahs.buffer, w.buffer);
  }
  const dataOut = h.pdus.find((p) => p.opcode === Opcode.DataOut)!;
  t.is(w[dataOut.data.byteOffset - w.byteOffset], dataOut.data[0]);
});

test('zero-copy when the data segment is whole in a later chunk; assembled when split', (t) => {
  const data = bytes(1000, 1);
  const w = frameToBuffer(encodeDataOut({ itt: 1, expStatSN: 1, dataSN: 0, bufferOffset: 0 }), data, {
    headerDigest: false,
    dataDigest: false,
  });
  let h = harness();
  const first = w.subarray(0, 48);
  const second = w.subarray(48);
  h.parser.push(first);
  h.parser.push(second);
  t.is(h.pdus[0]!.data.buffer, second.buffer);
  t.is(h.pdus[0]!.data.byteOffset, second.byteOffset);

  h = harness();
  const a = Buffer.from(w.subarray(0, 500));
  const b = Buffer.from(w.subarray(500));
  h.parser.push(a);
  h.parser.push(b);
  // Small Buffers share Node's allocation pool (8 KiB on Node 20, 64 KiB on Node 24), so the copy
  // may sit in the same ArrayBuffer as the chunks: what matters is that it overlaps neither of them.
  t.false(overlaps(h.pdus[0]!.data, a));
  t.false(overlaps(h.pdus[0]!.data, b));
  t.is(h.pdus[0]!.data.length, 1000);
  a.fill(0);
  b.fill(0);
  t.deepEqual(h.pdus[0]!.data, data, 'a copy: the chunks can be reused');
});

/** Whether two views share any byte of memory. */
function overlaps(x: Uint8Array, y: Uint8Array): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

test('overlaps() sees views of one pooled ArrayBuffer as apart unless their bytes meet', (t) => {
  const pool = new Uint8Array(64);
  t.true(overlaps(pool.subarray(0, 10), pool.subarray(9, 20)));
  t.false(overlaps(pool.subarray(0, 10), pool.subarray(10, 20)));
  t.false(overlaps(pool.subarray(0, 10), new Uint8Array(10)));
});

test('never allocates from an unchecked length (data-too-long, 1-byte feeding)', (t) => {
  const opts: FrameOptions = { headerDigest: true, dataDigest: true, crc32c };
  const bhs = encodeDataOut({ itt: 1, expStatSN: 1, dataSN: 0, bufferOffset: 0 });
  const w = Buffer.concat([
    frameToBuffer(bhs, bytes(200_000, 4), opts),
    frameToBuffer(encodeNopOut({ itt: 2, cmdSN: 1, expStatSN: 1 }), bytes(5, 5), opts),
  ]);
  const h = harness({ ...opts, max: 8192 });
  const sizes: number[] = [];
  const orig = { u: Buffer.allocUnsafe, s: Buffer.allocUnsafeSlow, a: Buffer.alloc };
  Buffer.allocUnsafe = (n: number) => (sizes.push(n), orig.u(n));
  Buffer.allocUnsafeSlow = (n: number) => (sizes.push(n), orig.s(n));
  Buffer.alloc = ((n: number, ...rest: unknown[]) => (
    sizes.push(n),
    (orig.a as (...x: unknown[]) => Buffer)(n, ...rest)
  )) as typeof Buffer.alloc;
  try {
    for (let i = 0; i < w.length; i += 7) h.parser.push(w.subarray(i, i + 7));
  } finally {
    Buffer.allocUnsafe = orig.u;
    Buffer.allocUnsafeSlow = orig.s;
    Buffer.alloc = orig.a;
  }
  t.true(Math.max(0, ...sizes) <= 8192, `largest allocation ${Math.max(...sizes)}`);
  t.deepEqual(
    h.events.map((e) => (e.t === 'err' ? e.kind : 'pdu')),
    ['data-too-long', 'pdu'],
  );
});

for (const [how, check] of [
  ['piecewise', undefined],
  ['whole-PDU check', nativeCheck],
] as const) {
  test(`corrupted header digest is fatal: nothing further is delivered (${how})`, (t) => {
    const opts: Config = { headerDigest: true, dataDigest: true, crc32c, pduCheck: check };
    const srcs = sources();
    const parts = srcs.map((s) => frameToBuffer(s.bhs, s.data.length ? s.data : null, opts, s.ahs));
    for (const where of ['bhs', 'ahs', 'digest'] as const) {
      const bad = Buffer.from(parts[1]!); // the SCSI Command with AHS
      if (where === 'bhs') bad[20] ^= 0x01;
      else if (where === 'ahs') bad[48 + 5] ^= 0x80;
      else bad[48 + srcs[1]!.ahs!.length + 2] ^= 0x10;
      const w = Buffer.concat([parts[0]!, bad, ...parts.slice(2)]);
      for (let i = 0; i <= w.length; i += 3) {
        const h = harness(opts);
        feed(h, [w.subarray(0, i), w.subarray(i)]);
        h.parser.push(Buffer.concat(parts)); // ignored after the fatal error
        const kinds = h.events.map((e) => (e.t === 'err' ? e.kind : 'pdu'));
        if (kinds.join() !== 'pdu,header-digest' || !h.parser.failed) {
          t.fail(`${where} split ${i}: ${kinds.join()}`);
          return;
        }
      }
      // The error carries the offending BHS and is marked fatal.
      let err: PduParseError | undefined;
      const p = new PduParser({ crc32c, onPdu: () => undefined, onError: (e) => (err = e) });
      p.headerDigest = true;
      p.push(bad);
      t.truthy(err);
      t.true(err instanceof PduParseError && err.fatal && err.kind === 'header-digest');
      t.deepEqual(err!.bhs, bad.subarray(0, 48));
      t.not(err!.received, err!.computed);
    }
  });

  test(`corrupted data digest: error with the PDU, next PDU fine (data, pad, digest bytes) (${how})`, (t) => {
    const opts: Config = { headerDigest: true, dataDigest: true, crc32c, pduCheck: check };
    const srcs = sources();
    const parts = srcs.map((s) => frameToBuffer(s.bhs, s.data.length ? s.data : null, opts, s.ahs));
    // Login Request: 48 BHS + 4 HD + 49 data + 3 pad + 4 DD.
    for (const off of [52, 52 + 48, 52 + 49, 52 + 51, 52 + 52 + 3]) {
      const bad = Buffer.from(parts[0]!);
      bad[off] ^= 0x04;
      const w = Buffer.concat([bad, ...parts.slice(1)]);
      const badData = bad.subarray(52, 52 + 49);
      const exp: Event[] = [
        { t: 'err', kind: 'data-digest', bhs: srcs[0]!.bhs, data: Buffer.from(badData) },
        ...expectedEvents(srcs.slice(1)),
      ];
      for (let i = 0; i <= w.length; i += 5) {
        const h = harness(opts);
        feed(h, [w.subarray(0, i), w.subarray(i)]);
        if (!sameEvents(h.events, exp) || h.parser.failed) {
          t.fail(`offset ${off} split ${i}`);
          return;
        }
      }
    }
    t.pass();
  });
}

test('whole-PDU check: one call per PDU lying whole in a chunk, views into the chunk, digests counted', (t) => {
  const opts: FrameOptions = { headerDigest: true, dataDigest: true, crc32c };
  const srcs = sources();
  const w = wire(srcs, opts);
  let calls = 0;
  const counting: PduCheckFn = (...a) => (calls++, nativeCheck(...a));
  const h = harness({ ...opts, pduCheck: counting });
  h.parser.push(w);
  t.true(sameEvents(h.events, expectedEvents(srcs)));
  t.is(calls, srcs.length);
  t.is(h.parser.headerDigestsVerified, srcs.length);
  t.is(h.parser.dataDigestsVerified, srcs.filter((s) => s.data.length > 0).length);
  const dataOut = h.pdus.find((p) => p.opcode === Opcode.DataOut)!;
  t.is(dataOut.data.buffer, w.buffer, 'data is a view of the pushed chunk');
  // A PDU cut by the chunk's end takes the piecewise path: no call for it.
  calls = 0;
  const h2 = harness({ ...opts, pduCheck: counting });
  const first = frameToBuffer(srcs[0]!.bhs, srcs[0]!.data, opts, null);
  h2.parser.push(w.subarray(0, first.length + 60));
  h2.parser.push(w.subarray(first.length + 60));
  t.true(sameEvents(h2.events, expectedEvents(srcs)));
  t.is(calls, srcs.length - 1);
});

test('digest flags switch at the PDU boundary, set from inside onPdu', (t) => {
  const plain: FrameOptions = { headerDigest: false, dataDigest: false };
  const dig: FrameOptions = { headerDigest: true, dataDigest: true, crc32c };
  const srcs = sources();
  const w = Buffer.concat([wire(srcs.slice(0, 1), plain), wire(srcs.slice(1), dig)]);
  for (let i = 0; i <= w.length; i++) {
    const h = harness({
      ...plain,
      onPdu: (p, hh) => {
        if (p.opcode === Opcode.LoginRequest) {
          hh.parser.headerDigest = true;
          hh.parser.dataDigest = true;
        }
      },
    });
    feed(h, [w.subarray(0, i), w.subarray(i)]);
    if (!sameEvents(h.events, expectedEvents(srcs))) {
      t.fail(`split ${i}`);
      return;
    }
  }
  t.pass();
});

test('enabling digests without a crc32c function throws at the setter', (t) => {
  const p = new PduParser({ onPdu: () => undefined, onError: () => undefined });
  t.throws(() => (p.headerDigest = true), { instanceOf: TypeError });
  t.throws(() => (p.dataDigest = true), { instanceOf: TypeError });
  t.notThrows(() => (p.dataDigest = false));
  t.is(p.maxDataSegmentLength, 8192);
});

test('reset() from a callback drops the rest of the chunk; reset() clears a fatal error', (t) => {
  const opts: FrameOptions = { headerDigest: false, dataDigest: false };
  const srcs = sources();
  const w = wire(srcs, opts);
  const h = harness({ onPdu: (p, hh) => p.opcode === Opcode.LoginRequest && hh.parser.reset() });
  h.parser.push(w);
  t.is(h.events.length, 1);
  t.true(h.parser.idle);
  h.parser.push(w);
  t.is(h.events.length, 2); // reset again at the login PDU

  const f = harness({ headerDigest: true, dataDigest: false });
  f.parser.push(Buffer.alloc(56, 1)); // BHS with a 4-byte AHS, then a wrong digest
  t.true(f.parser.failed);
  f.parser.reset();
  t.false(f.parser.failed);
  f.parser.push(wire(srcs.slice(1), { headerDigest: true, dataDigest: false, crc32c }));
  t.is(f.events.length, 1 + srcs.length - 1);
});

test('push() returns bytes consumed: stop after the first PDU and hand the rest over', (t) => {
  for (const [label, opts] of CONFIGS) {
    const srcs = sources();
    const w = wire(srcs, opts);
    const firstLen = wire(srcs.slice(0, 1), opts).length;
    for (let i = 1; i <= firstLen + 60; i++) {
      const h = harness({ ...opts, onPdu: (_p, hh) => hh.parser.reset() });
      let consumed = h.parser.push(w.subarray(0, i));
      let rest = w.subarray(consumed);
      if (h.events.length === 0) {
        t.is(consumed, i);
        consumed = h.parser.push(w.subarray(i));
        rest = w.subarray(i + consumed);
      }
      // The rest starts exactly at the second PDU (after padding and digest), whatever the split.
      if (h.events.length !== 1 || !rest.equals(w.subarray(firstLen))) {
        t.fail(`${label} split ${i}: events ${h.events.length}, rest ${rest.length}`);
        return;
      }
    }
  }
  t.pass();
});

test('an exception from onPdu propagates and fails the parser', (t) => {
  const w = wire(sources(), { headerDigest: false, dataDigest: false });
  let n = 0;
  const p = new PduParser({
    maxDataSegmentLength: 1 << 20,
    onPdu: () => {
      if (++n === 2) throw new Error('boom');
    },
    onError: () => undefined,
  });
  t.throws(() => p.push(w), { message: 'boom' });
  t.true(p.failed);
  t.notThrows(() => p.push(w));
  t.is(n, 2);
});

test('fuzz: random garbage in random chunks never throws and stays bounded', (t) => {
  const r = rng(7);
  let pdus = 0;
  let errors = 0;
  for (const [label, opts] of CONFIGS) {
    const p = new PduParser({
      crc32c,
      maxDataSegmentLength: 4096,
      onPdu: (x) => {
        pdus++;
        if (x.data.length > 4096 || x.bhs.length !== 48) throw new Error('bad pdu');
      },
      onError: (e) => {
        errors++;
        if (!(e instanceof PduParseError)) throw new Error('bad error');
        // Resetting also after most skips keeps the fuzz from idling in huge skips.
        if (e.fatal || r() < 0.8) p.reset();
      },
    });
    p.headerDigest = opts.headerDigest;
    p.dataDigest = opts.dataDigest;
    for (let i = 0; i < 3000; i++) {
      // Mostly small chunks, some large; half of them mostly zero so lengths often pass the limit.
      const n = r() < 0.9 ? Math.floor(r() * 64) : Math.floor(r() * 5000);
      const c = Buffer.allocUnsafe(n);
      const sparse = r() < 0.5;
      for (let j = 0; j < n; j++) c[j] = sparse && r() < 0.9 ? 0 : (r() * 256) | 0;
      try {
        p.push(c);
      } catch (e) {
        t.fail(`${label}: push threw ${String(e)}`);
        return;
      }
    }
  }
  t.log(`fuzz: ${pdus} PDUs, ${errors} errors`);
  t.true(pdus + errors > 0);
});

test('fuzz: mutated valid streams never throw', (t) => {
  const r = rng(99);
  const srcs = sources();
  let events = 0;
  for (const [, opts] of CONFIGS) {
    const base = wire(srcs, opts);
    for (let k = 0; k < 300; k++) {
      const w = Buffer.from(base);
      const flips = 1 + Math.floor(r() * 4);
      for (let f = 0; f < flips; f++) w[Math.floor(r() * w.length)] = (r() * 256) | 0;
      const p = new PduParser({
        crc32c,
        maxDataSegmentLength: 2048,
        onPdu: () => void events++,
        onError: () => void events++,
      });
      p.headerDigest = opts.headerDigest;
      p.dataDigest = opts.dataDigest;
      let pos = 0;
      while (pos < w.length) {
        const n = 1 + Math.floor(r() * 200);
        p.push(w.subarray(pos, pos + n));
        pos += n;
      }
    }
  }
  t.true(events > 0);
});
