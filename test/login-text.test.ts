import test from 'ava';

import {
  DEFAULT_MAX_TEXT_LENGTH,
  TextAccumulator,
  encodeTextData,
  parseTextData,
  splitTextData,
} from '../src/login/text';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

// ---- parseTextData ------------------------------------------------------------------------

test('parses NUL-terminated pairs in order', (t) => {
  const r = parseTextData(
    b('InitiatorName=iqn.1993-08.org.debian:01:abc\0SessionType=Normal\0AuthMethod=CHAP,None\0'),
  );
  t.is(r.error, undefined);
  t.deepEqual(r.pairs, [
    ['InitiatorName', 'iqn.1993-08.org.debian:01:abc'],
    ['SessionType', 'Normal'],
    ['AuthMethod', 'CHAP,None'],
  ]);
});

test('empty data segment has no pairs', (t) => {
  t.deepEqual(parseTextData(Buffer.alloc(0)), { pairs: [] });
});

test('value is everything after the first "="', (t) => {
  t.deepEqual(parseTextData(b('X-com.example.k=a=b=c\0')).pairs, [['X-com.example.k', 'a=b=c']]);
});

test('empty value is allowed (SendTargets=)', (t) => {
  t.deepEqual(parseTextData(b('SendTargets=\0')).pairs, [['SendTargets', '']]);
});

test('missing final NUL is an error (RFC 7143 6.1: every pair, including the last, is NUL-terminated)', (t) => {
  const r = parseTextData(b('HeaderDigest=None\0DataDigest=None'));
  t.regex(r.error ?? '', /NUL/);
  t.deepEqual(r.pairs, []);
});

test('extra NULs between and after pairs are ignored', (t) => {
  t.deepEqual(parseTextData(b('A=1\0\0B=2\0\0\0')).pairs, [
    ['A', '1'],
    ['B', '2'],
  ]);
});

test('pair without "=" is an error', (t) => {
  t.regex(parseTextData(b('HeaderDigest\0')).error ?? '', /=/);
  t.deepEqual(parseTextData(b('A=1\0NoEquals\0B=2\0')), {
    pairs: [],
    error: "missing '=' in pair at offset 4",
  });
});

test('empty key is an error', (t) => {
  t.regex(parseTextData(b('=None\0')).error ?? '', /empty key/);
});

test('key of 63 bytes is accepted, 64 is not', (t) => {
  const k63 = 'K' + 'x'.repeat(62);
  t.deepEqual(parseTextData(b(`${k63}=1\0`)).pairs, [[k63, '1']]);
  t.regex(parseTextData(b(`${k63}x=1\0`)).error ?? '', /63/);
});

test('key characters outside the key charset are errors', (t) => {
  for (const key of ['Header Digest', 'Key/x', 'Kéy', 'A#B', 'Key,x', 'Key:x', 'Key\x01']) {
    t.regex(parseTextData(b(`${key}=1\0`)).error ?? '', /^invalid character in key '/, key);
  }
  for (const key of ['X-com.example.key_1+2@x', 'X#NodeArchitecture', 'iSCSIProtocolLevel', 'CHAP_A']) {
    t.is(parseTextData(b(`${key}=1\0`)).error, undefined, key);
  }
});

test('simple value of 255 bytes is accepted, 256 is not', (t) => {
  t.is(parseTextData(b(`InitiatorAlias=${'a'.repeat(255)}\0`)).error, undefined);
  t.regex(parseTextData(b(`InitiatorAlias=${'a'.repeat(256)}\0`)).error ?? '', /255/);
});

test('a list may be longer than 255 bytes when each element is within it', (t) => {
  const v = ['a'.repeat(255), 'b'.repeat(255), 'c'].join(',');
  t.deepEqual(parseTextData(b(`X-com.example.list=${v}\0`)).pairs, [['X-com.example.list', v]]);
  t.is(
    parseTextData(b(`X-com.example.list=a,${'b'.repeat(256)}\0`)).error,
    'value of X-com.example.list has an element longer than 255 bytes',
  );
});

test('hex/base64 encoded (large binary) values may reach 8192 bytes, not more', (t) => {
  const hex8192 = '0x' + 'ab'.repeat(4095);
  t.is(hex8192.length, 8192);
  t.deepEqual(parseTextData(b(`CHAP_C=${hex8192}\0`)).pairs, [['CHAP_C', hex8192]]);
  t.regex(parseTextData(b(`CHAP_C=${hex8192}a\0`)).error ?? '', /8192/);
  const b64 = '0b' + 'QUJD'.repeat(500);
  t.is(parseTextData(b(`CHAP_R=${b64}\0`)).error, undefined);
});

test('value that is not UTF-8 is an error; UTF-8 aliases are fine', (t) => {
  t.regex(
    parseTextData(Buffer.concat([b('InitiatorAlias='), Buffer.from([0xc3, 0x28]), b('\0')])).error ?? '',
    /UTF-8/,
  );
  t.deepEqual(parseTextData(b('InitiatorAlias=Serveur Ñandú 東京\0')).pairs, [
    ['InitiatorAlias', 'Serveur Ñandú 東京'],
  ]);
});

test('duplicate key in one text is an error unless allowed', (t) => {
  const data = b('TargetName=iqn.a\0TargetAddress=10.0.0.1:3260,1\0TargetName=iqn.b\0');
  t.regex(parseTextData(data).error ?? '', /duplicate key TargetName/);
  t.is(parseTextData(data, { allowDuplicates: true }).pairs.length, 3);
});

test('keys are case-sensitive: differing case is not a duplicate', (t) => {
  t.is(parseTextData(b('HeaderDigest=None\0headerdigest=None\0')).pairs.length, 2);
});

// ---- encodeTextData -----------------------------------------------------------------------

test('encode produces key=value NUL and round-trips', (t) => {
  const pairs: Array<[string, string]> = [
    ['HeaderDigest', 'None'],
    ['MaxRecvDataSegmentLength', '262144'],
    ['TargetAlias', 'dépôt 1'],
    ['SendTargets', ''],
  ];
  const buf = encodeTextData(pairs);
  t.is(buf.toString('latin1', 0, 18), 'HeaderDigest=None\0');
  t.is(buf[buf.length - 1], 0);
  t.deepEqual(parseTextData(buf).pairs, pairs);
});

test('encode of nothing is an empty buffer', (t) => {
  t.is(encodeTextData([]).length, 0);
});

test('encode refuses keys and values that cannot be sent', (t) => {
  t.throws(() => encodeTextData([['', 'x']]), { instanceOf: RangeError });
  t.throws(() => encodeTextData([['A=B', 'x']]), { instanceOf: RangeError });
  t.throws(() => encodeTextData([['K'.repeat(64), 'x']]), { instanceOf: RangeError });
  t.throws(() => encodeTextData([['Key', 'a\0b']]), { instanceOf: RangeError });
});

// ---- TextAccumulator ----------------------------------------------------------------------

test('accumulator joins C=1 segments up to the final C=0 one', (t) => {
  const acc = new TextAccumulator();
  t.false(acc.inProgress);
  t.deepEqual(acc.push(b('Header'), true), { state: 'partial' });
  t.true(acc.inProgress);
  t.deepEqual(acc.push(b('Digest=No'), true), { state: 'partial' });
  t.is(acc.pending, 15);
  const r = acc.push(b('ne\0'), false);
  t.is(r.state, 'complete');
  if (r.state === 'complete') t.deepEqual(parseTextData(r.data).pairs, [['HeaderDigest', 'None']]);
  t.false(acc.inProgress);
  t.is(acc.pending, 0);
});

test('accumulator passes a lone C=0 segment through without copying', (t) => {
  const acc = new TextAccumulator();
  const seg = b('A=1\0');
  const r = acc.push(seg, false);
  t.true(r.state === 'complete' && r.data === seg);
});

test('accumulator copies held segments (receive buffers are pooled)', (t) => {
  const acc = new TextAccumulator();
  const pooled = b('A=1\0');
  acc.push(pooled, true);
  pooled.fill(0x5a); // the pool reuses the memory
  const r = acc.push(b('B=2\0'), false);
  t.true(r.state === 'complete' && r.data.toString() === 'A=1\0B=2\0');
});

test('accumulator accepts empty C=1 segments', (t) => {
  const acc = new TextAccumulator();
  t.deepEqual(acc.push(Buffer.alloc(0), true), { state: 'partial' });
  t.true(acc.inProgress);
  const r = acc.push(b('A=1\0'), false);
  t.true(r.state === 'complete' && r.data.toString() === 'A=1\0');
});

test('accumulator refuses text beyond its cap and starts afresh', (t) => {
  const acc = new TextAccumulator(1000);
  t.deepEqual(acc.push(Buffer.alloc(600, 0x41), true), { state: 'partial' });
  const r = acc.push(Buffer.alloc(401, 0x41), true);
  t.is(r.state, 'error');
  t.false(acc.inProgress);
  const ok = acc.push(b('A=1\0'), false);
  t.true(ok.state === 'complete' && ok.data.toString() === 'A=1\0');
});

test('accumulator cap: exactly the cap is accepted, default cap is 64 KiB', (t) => {
  t.is(DEFAULT_MAX_TEXT_LENGTH, 65536);
  const acc = new TextAccumulator();
  acc.push(Buffer.alloc(32768), true);
  t.is(acc.push(Buffer.alloc(32768), false).state, 'complete');
  acc.push(Buffer.alloc(32768), true);
  t.is(acc.push(Buffer.alloc(32769), false).state, 'error');
});

// ---- splitTextData ------------------------------------------------------------------------

test('split cuts into segments no larger than maxLen, sharing memory', (t) => {
  const buf = Buffer.alloc(2500, 0x41);
  const parts = splitTextData(buf, 1024);
  t.deepEqual(
    parts.map((p) => p.length),
    [1024, 1024, 452],
  );
  t.is(parts[0].buffer, buf.buffer);
});

test('split of an exact multiple leaves no empty tail', (t) => {
  t.deepEqual(
    splitTextData(Buffer.alloc(2048), 1024).map((p) => p.length),
    [1024, 1024],
  );
});

test('split of a short or empty text is one segment', (t) => {
  t.deepEqual(
    splitTextData(Buffer.alloc(10), 8192).map((p) => p.length),
    [10],
  );
  t.deepEqual(
    splitTextData(Buffer.alloc(0), 8192).map((p) => p.length),
    [0],
  );
});

test('split refuses a non-positive length', (t) => {
  t.throws(() => splitTextData(Buffer.alloc(1), 0), { instanceOf: RangeError });
  t.throws(() => splitTextData(Buffer.alloc(1), 1.5), { instanceOf: RangeError });
});

test('split then accumulate round-trips, pairs straddling PDU boundaries', (t) => {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < 200; i++) pairs.push([`TargetName`, `iqn.2024-01.org.example:disk${i}`]);
  for (let i = 0; i < 200; i++) pairs.push([`TargetAddress`, `192.168.${i >> 8}.${i & 255}:3260,1`]);
  const text = encodeTextData(pairs);
  for (const maxLen of [512, 1000, 8192]) {
    const parts = splitTextData(text, maxLen);
    t.true(parts.length > 1);
    const acc = new TextAccumulator();
    let out: Buffer | undefined;
    parts.forEach((p, i) => {
      const r = acc.push(p, i < parts.length - 1);
      if (r.state === 'complete') out = r.data;
    });
    t.truthy(out);
    t.true(out!.equals(text));
    t.deepEqual(parseTextData(out!, { allowDuplicates: true }).pairs, pairs);
  }
});
