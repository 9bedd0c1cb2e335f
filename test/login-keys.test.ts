import test, { type ExecutionContext } from 'ava';

import {
  KEYS,
  isExtensionKey,
  lookupKey,
  parseBinaryValue,
  parseBooleanValue,
  parseNumericalValue,
} from '../src/login/keys';
import {
  DEFAULT_TARGET_OFFER,
  Negotiator,
  defaultParams,
  type NegotiationResult,
  type NegotiationStage,
  type NegotiatorOptions,
  type TargetOffer,
} from '../src/login/negotiator';

type Pairs = Array<[string, string]>;

function neg(offer: Partial<TargetOffer> = {}, opts: Partial<NegotiatorOptions> = {}): Negotiator {
  return new Negotiator({ offer: { ...DEFAULT_TARGET_OFFER, ...offer }, leading: true, ...opts });
}

/** A negotiator that has processed an (empty) operational-stage request, ready to propose. */
function opened(offer: Partial<TargetOffer> = {}, opts: Partial<NegotiatorOptions> = {}): Negotiator {
  const n = neg(offer, opts);
  n.process([], 'operational');
  return n;
}

/** Process and require success; returns the response as a map. */
function ok(
  t: ExecutionContext,
  n: Negotiator,
  pairs: Pairs,
  stage: NegotiationStage = 'operational',
): Map<string, string> {
  const r = n.process(pairs, stage);
  t.is(r.failure, undefined, r.failure?.message);
  return new Map(r.response);
}

/** Answer of the target to a single key offered on a fresh leading connection. */
function answer(
  key: string,
  value: string,
  offer: Partial<TargetOffer> = {},
  opts: Partial<NegotiatorOptions> = {},
): string | undefined {
  const r = neg(offer, opts).process([[key, value]], 'operational');
  if (r.failure) return `FAIL:${r.failure.message}`;
  return new Map(r.response).get(key);
}

function fails(t: ExecutionContext, r: NegotiationResult, re?: RegExp): void {
  t.truthy(r.failure);
  t.is(r.failure?.statusClass, 2);
  t.is(r.failure?.statusDetail, 0);
  t.deepEqual(r.response, []);
  if (re) t.regex(r.failure?.message ?? '', re);
}

// ---- key table ----------------------------------------------------------------------------

test('table holds every RFC 7143 / RFC 7144 key with its type, default, range, use and scope', (t) => {
  const expect: Array<
    [string, string, string | undefined, number | undefined, number | undefined, string, string]
  > = [
    // name, type, default, min, max, use, scope
    ['HeaderDigest', 'list', 'None', undefined, undefined, 'IO', 'CO'],
    ['DataDigest', 'list', 'None', undefined, undefined, 'IO', 'CO'],
    ['MaxConnections', 'numerical-min', '1', 1, 65535, 'LO', 'SW'],
    ['SendTargets', 'declarative', undefined, undefined, undefined, 'FFPO', 'SW'],
    ['TargetName', 'declarative', undefined, undefined, undefined, 'IO', 'SW'],
    ['InitiatorName', 'declarative', undefined, undefined, undefined, 'IO', 'SW'],
    ['TargetAlias', 'declarative', undefined, undefined, undefined, 'ALL', 'SW'],
    ['InitiatorAlias', 'declarative', undefined, undefined, undefined, 'ALL', 'SW'],
    ['TargetAddress', 'declarative', undefined, undefined, undefined, 'ALL', 'SW'],
    ['TargetPortalGroupTag', 'declarative', undefined, 0, 65535, 'IO', 'SW'],
    ['InitialR2T', 'boolean-or', 'Yes', undefined, undefined, 'LO', 'SW'],
    ['ImmediateData', 'boolean-and', 'Yes', undefined, undefined, 'LO', 'SW'],
    ['MaxRecvDataSegmentLength', 'declarative', '8192', 512, 16777215, 'ALL', 'CO'],
    ['MaxBurstLength', 'numerical-min', '262144', 512, 16777215, 'LO', 'SW'],
    ['FirstBurstLength', 'numerical-min', '65536', 512, 16777215, 'LO', 'SW'],
    ['DefaultTime2Wait', 'numerical-max', '2', 0, 3600, 'LO', 'SW'],
    ['DefaultTime2Retain', 'numerical-min', '20', 0, 3600, 'LO', 'SW'],
    ['MaxOutstandingR2T', 'numerical-min', '1', 1, 65535, 'LO', 'SW'],
    ['DataPDUInOrder', 'boolean-or', 'Yes', undefined, undefined, 'LO', 'SW'],
    ['DataSequenceInOrder', 'boolean-or', 'Yes', undefined, undefined, 'LO', 'SW'],
    ['ErrorRecoveryLevel', 'numerical-min', '0', 0, 2, 'LO', 'SW'],
    ['SessionType', 'declarative', 'Normal', undefined, undefined, 'LO', 'SW'],
    ['AuthMethod', 'list', 'None', undefined, undefined, 'IO', 'CO'],
    ['TaskReporting', 'list', 'RFC3720', undefined, undefined, 'LO', 'SW'],
    ['iSCSIProtocolLevel', 'numerical-min', '1', 0, 31, 'LO', 'SW'],
    ['X#NodeArchitecture', 'declarative', undefined, undefined, undefined, 'LO', 'SW'],
  ];
  for (const [name, type, def, min, max, use, scope] of expect) {
    const k = lookupKey(name);
    t.truthy(k, name);
    t.is(k?.type as string | undefined, type, name);
    t.is(k?.default, def, name);
    t.is(k?.min, min, name);
    t.is(k?.max, max, name);
    t.is(k?.use as string | undefined, use, name);
    t.is(k?.scope as string | undefined, scope, name);
  }
});

test('table: senders, stages and discovery irrelevance', (t) => {
  for (const name of ['TargetAlias', 'TargetAddress', 'TargetPortalGroupTag'])
    t.is(lookupKey(name)?.senders, 'target');
  for (const name of ['InitiatorName', 'InitiatorAlias', 'SessionType', 'SendTargets'])
    t.is(lookupKey(name)?.senders, 'initiator');
  for (const name of ['AuthMethod', 'CHAP_A', 'CHAP_I', 'CHAP_C', 'CHAP_N', 'CHAP_R'])
    t.is(lookupKey(name)?.stage, 'security');
  for (const name of [
    'InitiatorName',
    'TargetName',
    'SessionType',
    'InitiatorAlias',
    'TargetAlias',
    'TargetPortalGroupTag',
  ]) {
    t.is(lookupKey(name)?.stage, 'any', name);
  }
  const irrelevant = [...KEYS.values()]
    .filter((k) => k.irrelevantInDiscovery)
    .map((k) => k.name)
    .sort();
  t.deepEqual(irrelevant, [
    'DataPDUInOrder',
    'DataSequenceInOrder',
    'FirstBurstLength',
    'ImmediateData',
    'InitialR2T',
    'MaxBurstLength',
    'MaxConnections',
    'MaxOutstandingR2T',
    'TaskReporting',
    'iSCSIProtocolLevel',
  ]);
  for (const name of ['OFMarker', 'IFMarker', 'OFMarkInt', 'IFMarkInt'])
    t.is(lookupKey(name)?.obsoleteAnswer, 'Reject');
});

test('keys are looked up case-sensitively', (t) => {
  t.is(lookupKey('HeaderDigest')?.name, 'HeaderDigest');
  t.is(lookupKey('headerdigest'), undefined);
  t.is(lookupKey('ISCSIProtocolLevel'), undefined);
});

test('extension key formats', (t) => {
  t.true(isExtensionKey('X-com.example.foo'));
  t.true(isExtensionKey('X#NodeArchitecture'));
  t.false(isExtensionKey('XFoo'));
  t.false(isExtensionKey('MaxBurstLength'));
});

// ---- value codecs -------------------------------------------------------------------------

test('numerical values: decimal and hex constants below 2**64', (t) => {
  t.is(parseNumericalValue('0'), 0n);
  t.is(parseNumericalValue('8192'), 8192n);
  t.is(parseNumericalValue('0x1000'), 4096n);
  t.is(parseNumericalValue('0X1f'), 31n);
  t.is(parseNumericalValue('0x0001'), 1n);
  t.is(parseNumericalValue('18446744073709551615'), 18446744073709551615n);
  t.is(parseNumericalValue('0xFFFFFFFFFFFFFFFF'), 18446744073709551615n);
});

test('numerical values: malformed forms are refused', (t) => {
  for (const s of [
    '',
    '08192',
    '-1',
    '+1',
    ' 1',
    '1 ',
    '1e3',
    '1.0',
    '0x',
    '0xg',
    'abc',
    '0b AA==',
    '0bAAAAAAAAAQ==',
  ]) {
    t.is(parseNumericalValue(s), undefined, JSON.stringify(s));
  }
  t.is(parseNumericalValue('18446744073709551616'), undefined);
  t.is(parseNumericalValue('0x10000000000000000'), undefined);
});

test('binary values: decimal, hex and base64 up to 64 bits', (t) => {
  t.is(parseBinaryValue('0bAQA='), 256n);
  t.is(parseBinaryValue('0BAQ=='), 1n);
  t.is(parseBinaryValue('0x0100'), 256n);
  t.is(parseBinaryValue('7'), 7n);
  t.is(parseBinaryValue('0b//////////8='), 0xffffffffffffffffn); // 8 bytes
  t.is(parseBinaryValue('0b////////////'), undefined); // 9 bytes
  t.is(parseBinaryValue('0b/////////w=='), 0xffffffffffffffn);
  t.is(parseBinaryValue('0bA'), undefined);
  t.is(parseBinaryValue('0b'), undefined);
});

test('boolean values are exactly Yes or No', (t) => {
  t.is(parseBooleanValue('Yes'), true);
  t.is(parseBooleanValue('No'), false);
  for (const s of ['yes', 'NO', 'True', '1', '']) t.is(parseBooleanValue(s), undefined);
});

// ---- defaults and offer -------------------------------------------------------------------

test('DEFAULT_TARGET_OFFER is tuned for throughput', (t) => {
  const o = DEFAULT_TARGET_OFFER;
  t.false(o.initialR2T);
  t.true(o.immediateData);
  t.is(o.maxRecvDataSegmentLength, 262144);
  t.is(o.maxBurstLength, 1048576);
  t.is(o.firstBurstLength, 262144);
  t.is(o.maxOutstandingR2T, 8);
  t.deepEqual(o.headerDigest, ['None', 'CRC32C']);
  t.deepEqual(o.dataDigest, ['None', 'CRC32C']);
  t.is(o.errorRecoveryLevel, 2);
  t.is(o.maxConnections, 8);
  t.true(o.dataPDUInOrder && o.dataSequenceInOrder);
  t.is(o.defaultTime2Wait, 2);
  t.is(o.defaultTime2Retain, 20);
});

test('offers outside the key ranges are refused', (t) => {
  t.throws(() => neg({ maxRecvDataSegmentLength: 511 }), { instanceOf: RangeError });
  t.throws(() => neg({ maxBurstLength: 16777216 }), { instanceOf: RangeError });
  t.throws(() => neg({ firstBurstLength: 262144, maxBurstLength: 65536 }), { instanceOf: RangeError });
  t.throws(() => neg({ errorRecoveryLevel: 3 }), { instanceOf: RangeError });
  t.throws(() => neg({ headerDigest: [] }), { instanceOf: RangeError });
  t.notThrows(() => neg({ maxBurstLength: 16776192 }));
});

test('result() before any negotiation is the RFC defaults', (t) => {
  t.deepEqual(neg().result(), defaultParams());
  t.deepEqual(defaultParams(), {
    sessionType: 'Normal',
    authMethod: 'None',
    headerDigest: false,
    dataDigest: false,
    maxConnections: 1,
    initialR2T: true,
    immediateData: true,
    initiatorMaxRecvDataSegmentLength: 8192,
    targetMaxRecvDataSegmentLength: 8192,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
    taskReporting: 'RFC3720',
    protocolLevel: 1,
  });
});

// ---- list keys ----------------------------------------------------------------------------

test('HeaderDigest/DataDigest: first of the initiator list that we support', (t) => {
  for (const key of ['HeaderDigest', 'DataDigest']) {
    t.is(answer(key, 'CRC32C,None'), 'CRC32C');
    t.is(answer(key, 'None,CRC32C'), 'None');
    t.is(answer(key, 'None'), 'None');
    t.is(answer(key, 'CRC32C'), 'CRC32C');
    t.is(answer(key, 'X-com.example.md5,CRC32C'), 'CRC32C'); // values not understood are ignored
    t.is(answer(key, 'MD5'), 'Reject');
    t.is(answer(key, ''), 'Reject');
    t.is(answer(key, 'None', { headerDigest: ['CRC32C'], dataDigest: ['CRC32C'] }), 'Reject'); // we require CRC32C
    t.is(answer(key, 'CRC32C', { headerDigest: ['None'], dataDigest: ['None'] }), 'Reject');
  }
});

test('digest results land in result()', (t) => {
  const n = neg();
  ok(t, n, [
    ['HeaderDigest', 'CRC32C,None'],
    ['DataDigest', 'None,CRC32C'],
  ]);
  t.true(n.result().headerDigest);
  t.false(n.result().dataDigest);
  const m = neg();
  ok(t, m, [['HeaderDigest', 'MD5']]);
  t.false(m.result().headerDigest); // Reject leaves the default
});

test('AuthMethod in the security stage: list rule against our methods', (t) => {
  const a = (value: string, authMethods: string[]): string | undefined => {
    const r = neg({ authMethods }).process([['AuthMethod', value]], 'security');
    return new Map(r.response).get('AuthMethod');
  };
  t.is(a('CHAP,None', ['None']), 'None');
  t.is(a('CHAP,None', ['CHAP', 'None']), 'CHAP');
  t.is(a('None,CHAP', ['CHAP', 'None']), 'None');
  t.is(a('None', ['CHAP']), 'Reject');
  t.is(a('KRB5,SRP', ['CHAP', 'None']), 'Reject');
  const n = neg({ authMethods: ['CHAP'] });
  ok(t, n, [['AuthMethod', 'SRP,CHAP']], 'security');
  t.is(n.result().authMethod, 'CHAP');
});

test('TaskReporting: list rule, default RFC3720', (t) => {
  t.is(answer('TaskReporting', 'RFC3720'), 'RFC3720');
  t.is(answer('TaskReporting', 'FastAbort,RFC3720'), 'RFC3720');
  t.is(answer('TaskReporting', 'FastAbort'), 'Reject');
  t.is(
    answer('TaskReporting', 'ResponseFence,FastAbort', { taskReporting: ['FastAbort', 'RFC3720'] }),
    'FastAbort',
  );
  const n = neg({ taskReporting: ['ResponseFence', 'RFC3720'] });
  ok(t, n, [['TaskReporting', 'ResponseFence']]);
  t.is(n.result().taskReporting, 'ResponseFence');
});

// ---- boolean keys -------------------------------------------------------------------------

test('InitialR2T: OR', (t) => {
  t.is(answer('InitialR2T', 'No'), 'No'); // ours No
  t.is(answer('InitialR2T', 'Yes'), 'Yes');
  t.is(answer('InitialR2T', 'No', { initialR2T: true }), 'Yes');
  t.is(answer('InitialR2T', 'yes'), 'Reject');
  t.is(answer('InitialR2T', '1'), 'Reject');
});

test('ImmediateData: AND', (t) => {
  t.is(answer('ImmediateData', 'Yes'), 'Yes'); // ours Yes
  t.is(answer('ImmediateData', 'No'), 'No');
  t.is(answer('ImmediateData', 'Yes', { immediateData: false }), 'No');
  t.is(answer('ImmediateData', 'No', { immediateData: false }), 'No');
  t.is(answer('ImmediateData', 'Maybe'), 'Reject');
});

test('DataPDUInOrder / DataSequenceInOrder: OR', (t) => {
  for (const key of ['DataPDUInOrder', 'DataSequenceInOrder']) {
    t.is(answer(key, 'No'), 'Yes'); // ours Yes forces Yes
    t.is(answer(key, 'Yes'), 'Yes');
    t.is(answer(key, 'No', { dataPDUInOrder: false, dataSequenceInOrder: false }), 'No');
    t.is(answer(key, 'Yes', { dataPDUInOrder: false, dataSequenceInOrder: false }), 'Yes');
  }
  const n = neg({ dataPDUInOrder: false });
  ok(t, n, [
    ['DataPDUInOrder', 'No'],
    ['DataSequenceInOrder', 'No'],
  ]);
  t.false(n.result().dataPDUInOrder);
  t.true(n.result().dataSequenceInOrder);
});

test('boolean results land in result()', (t) => {
  const n = neg();
  ok(t, n, [
    ['InitialR2T', 'No'],
    ['ImmediateData', 'No'],
  ]);
  t.false(n.result().initialR2T);
  t.false(n.result().immediateData);
});

// ---- numerical keys -----------------------------------------------------------------------

test('MaxConnections: Minimum over 1..65535', (t) => {
  t.is(answer('MaxConnections', '1'), '1');
  t.is(answer('MaxConnections', '4'), '4');
  t.is(answer('MaxConnections', '65535'), '8');
  t.is(answer('MaxConnections', '0'), 'Reject');
  t.is(answer('MaxConnections', '65536'), 'Reject');
  t.is(answer('MaxConnections', 'many'), 'Reject');
});

test('MaxBurstLength: Minimum over 512..2**24-1; out of range is Reject', (t) => {
  t.is(answer('MaxBurstLength', '262144'), '262144');
  t.is(answer('MaxBurstLength', '16776192'), '1048576');
  t.is(answer('MaxBurstLength', '16777215'), '1048576');
  t.is(answer('MaxBurstLength', '512'), '512');
  t.is(answer('MaxBurstLength', '511'), 'Reject');
  t.is(answer('MaxBurstLength', '0'), 'Reject');
  t.is(answer('MaxBurstLength', '16777216'), 'Reject');
  t.is(answer('MaxBurstLength', '0x40000'), '262144'); // hex-constant
  t.is(answer('MaxBurstLength', '0X100000'), '1048576');
  t.is(answer('MaxBurstLength', '065536'), 'Reject'); // leading zero is not a decimal-constant
  t.is(answer('MaxBurstLength', '0bAAQAAA=='), 'Reject'); // base64 is not a numerical-value
  t.is(answer('MaxBurstLength', ''), 'Reject');
  t.is(answer('MaxBurstLength', 'None'), 'Reject');
  const n = neg();
  ok(t, n, [['MaxBurstLength', '0']]);
  t.is(n.result().maxBurstLength, 262144); // Reject leaves the default
});

test('FirstBurstLength: Minimum, never above MaxBurstLength', (t) => {
  t.is(answer('FirstBurstLength', '65536'), '65536');
  t.is(answer('FirstBurstLength', '1048576'), '262144');
  t.is(answer('FirstBurstLength', '511'), 'Reject');
  t.is(answer('FirstBurstLength', '16777216'), 'Reject');
  // our MaxBurstLength below our FirstBurstLength? Not allowed in an offer; but a negotiated
  // MaxBurstLength in the same request clips it, whatever the order of the keys.
  const n = neg();
  const r = n.process(
    [
      ['FirstBurstLength', '262144'],
      ['MaxBurstLength', '131072'],
    ],
    'operational',
  );
  t.deepEqual(r.response.slice(0, 2), [
    ['FirstBurstLength', '131072'],
    ['MaxBurstLength', '131072'],
  ]);
  t.is(n.result().firstBurstLength, 131072);
});

test('FirstBurstLength above a MaxBurstLength negotiated later is clipped in result()', (t) => {
  const n = neg();
  ok(t, n, [['FirstBurstLength', '262144']]);
  ok(t, n, [['MaxBurstLength', '65536']]);
  t.is(n.result().maxBurstLength, 65536);
  t.is(n.result().firstBurstLength, 65536);
});

test('FirstBurstLength is Irrelevant when InitialR2T=Yes and ImmediateData=No', (t) => {
  const n = neg();
  const m = ok(t, n, [
    ['FirstBurstLength', '65536'],
    ['InitialR2T', 'Yes'],
    ['ImmediateData', 'No'],
  ]);
  t.is(m.get('FirstBurstLength'), 'Irrelevant');
  const o = neg();
  t.is(
    ok(t, o, [
      ['InitialR2T', 'No'],
      ['ImmediateData', 'No'],
      ['FirstBurstLength', '65536'],
    ]).get('FirstBurstLength'),
    '65536',
  );
  // the target's own InitialR2T=Yes + ImmediateData=No make it irrelevant too
  t.is(
    answer('FirstBurstLength', '65536', {
      initialR2T: true,
      immediateData: false,
      firstBurstLength: 65536,
      maxBurstLength: 262144,
    }),
    '65536', // ImmediateData still at its default Yes: relevant
  );
  const p = neg({ initialR2T: true, immediateData: false });
  t.is(
    ok(t, p, [
      ['ImmediateData', 'Yes'],
      ['FirstBurstLength', '65536'],
    ]).get('FirstBurstLength'),
    'Irrelevant',
  );
});

test('DefaultTime2Wait: Maximum over 0..3600', (t) => {
  t.is(answer('DefaultTime2Wait', '0'), '2');
  t.is(answer('DefaultTime2Wait', '2'), '2');
  t.is(answer('DefaultTime2Wait', '10'), '10');
  t.is(answer('DefaultTime2Wait', '3600'), '3600');
  t.is(answer('DefaultTime2Wait', '3601'), 'Reject');
});

test('DefaultTime2Retain: Minimum over 0..3600', (t) => {
  t.is(answer('DefaultTime2Retain', '0'), '0');
  t.is(answer('DefaultTime2Retain', '60'), '20');
  t.is(answer('DefaultTime2Retain', '3601'), 'Reject');
});

test('MaxOutstandingR2T: Minimum over 1..65535', (t) => {
  t.is(answer('MaxOutstandingR2T', '1'), '1');
  t.is(answer('MaxOutstandingR2T', '16'), '8');
  t.is(answer('MaxOutstandingR2T', '0'), 'Reject');
  t.is(answer('MaxOutstandingR2T', '65536'), 'Reject');
});

test('ErrorRecoveryLevel: Minimum over 0..2', (t) => {
  t.is(answer('ErrorRecoveryLevel', '2'), '2');
  t.is(answer('ErrorRecoveryLevel', '0'), '0');
  t.is(answer('ErrorRecoveryLevel', '1'), '1');
  t.is(answer('ErrorRecoveryLevel', '2', { errorRecoveryLevel: 0 }), '0');
  t.is(answer('ErrorRecoveryLevel', '3'), 'Reject');
});

test('iSCSIProtocolLevel (RFC 7144): Minimum over 0..31', (t) => {
  t.is(answer('iSCSIProtocolLevel', '2'), '1');
  t.is(answer('iSCSIProtocolLevel', '2', { protocolLevel: 2 }), '2');
  t.is(answer('iSCSIProtocolLevel', '31', { protocolLevel: 2 }), '2');
  t.is(answer('iSCSIProtocolLevel', '0'), '0');
  t.is(answer('iSCSIProtocolLevel', '32'), 'Reject');
  const n = neg({ protocolLevel: 2 });
  ok(t, n, [['iSCSIProtocolLevel', '2']]);
  t.is(n.result().protocolLevel, 2);
});

test('numerical results land in result()', (t) => {
  const n = neg();
  ok(t, n, [
    ['MaxConnections', '2'],
    ['MaxBurstLength', '524288'],
    ['FirstBurstLength', '131072'],
    ['DefaultTime2Wait', '5'],
    ['DefaultTime2Retain', '0'],
    ['MaxOutstandingR2T', '4'],
    ['ErrorRecoveryLevel', '1'],
  ]);
  const r = n.result();
  t.is(r.maxConnections, 2);
  t.is(r.maxBurstLength, 524288);
  t.is(r.firstBurstLength, 131072);
  t.is(r.defaultTime2Wait, 5);
  t.is(r.defaultTime2Retain, 0);
  t.is(r.maxOutstandingR2T, 4);
  t.is(r.errorRecoveryLevel, 1);
});

// ---- MaxRecvDataSegmentLength (declarative) ----------------------------------------------

test('MaxRecvDataSegmentLength: the initiator declares, we declare ours once', (t) => {
  const n = neg();
  t.is(n.result().targetMaxRecvDataSegmentLength, 8192); // not declared yet: default
  const r1 = n.process(
    [
      ['MaxRecvDataSegmentLength', '65536'],
      ['HeaderDigest', 'None'],
    ],
    'operational',
  );
  t.deepEqual(r1.response, [
    ['HeaderDigest', 'None'],
    ['MaxRecvDataSegmentLength', '262144'],
  ]);
  t.is(n.result().initiatorMaxRecvDataSegmentLength, 65536);
  t.is(n.result().targetMaxRecvDataSegmentLength, 262144);
  const r2 = n.process([['DataDigest', 'None']], 'operational');
  t.deepEqual(r2.response, [['DataDigest', 'None']]);
});

test('MaxRecvDataSegmentLength: our declaration goes out in the first operational response even if not asked', (t) => {
  const n = neg();
  t.deepEqual(n.process([], 'operational').response, [['MaxRecvDataSegmentLength', '262144']]);
  const s = neg();
  t.deepEqual(s.process([['AuthMethod', 'None']], 'security').response, [['AuthMethod', 'None']]);
  t.is(s.result().targetMaxRecvDataSegmentLength, 8192);
});

test('MaxRecvDataSegmentLength: hex accepted, above 2**24-1 used as 2**24-1, below 512 fails', (t) => {
  const n = neg();
  ok(t, n, [['MaxRecvDataSegmentLength', '0x10000']]);
  t.is(n.result().initiatorMaxRecvDataSegmentLength, 65536);
  const m = neg();
  ok(t, m, [['MaxRecvDataSegmentLength', '16777216']]);
  t.is(m.result().initiatorMaxRecvDataSegmentLength, 16777215);
  fails(t, neg().process([['MaxRecvDataSegmentLength', '511']], 'operational'), /MaxRecvDataSegmentLength/);
  fails(t, neg().process([['MaxRecvDataSegmentLength', 'big']], 'operational'));
  fails(t, neg().process([['MaxRecvDataSegmentLength', 'Reject']], 'operational'));
});

test('MaxRecvDataSegmentLength may be re-declared in full feature phase, without an answer', (t) => {
  const n = neg();
  ok(t, n, [['MaxRecvDataSegmentLength', '8192']]);
  const r = n.process([['MaxRecvDataSegmentLength', '131072']], 'ffp');
  t.deepEqual(r.response, []);
  t.is(n.result().initiatorMaxRecvDataSegmentLength, 131072);
  t.is(n.result().targetMaxRecvDataSegmentLength, 262144);
});

// ---- declarations, unknown and obsolete keys ---------------------------------------------

test('declarations the login state machine handles are passed through unanswered', (t) => {
  const n = neg({ authMethods: ['CHAP'] });
  const r = n.process(
    [
      ['InitiatorName', 'iqn.1994-05.com.redhat:abc'],
      ['TargetName', 'iqn.2024-01.org.example:disk0'],
      ['SessionType', 'Normal'],
      ['InitiatorAlias', 'host1'],
      ['AuthMethod', 'CHAP,None'],
      ['X#NodeArchitecture', 'ExampleOS/v1234,ExampleInc_SW_Initiator/1.05a'],
    ],
    'security',
  );
  t.is(r.failure, undefined);
  t.deepEqual(r.response, [['AuthMethod', 'CHAP']]);
  t.deepEqual(
    [...r.declarations],
    [
      ['InitiatorName', 'iqn.1994-05.com.redhat:abc'],
      ['TargetName', 'iqn.2024-01.org.example:disk0'],
      ['SessionType', 'Normal'],
      ['InitiatorAlias', 'host1'],
      ['X#NodeArchitecture', 'ExampleOS/v1234,ExampleInc_SW_Initiator/1.05a'],
    ],
  );
  const c1 = n.process([['CHAP_A', '5']], 'security');
  t.deepEqual([...c1.declarations], [['CHAP_A', '5']]);
  t.deepEqual(c1.response, []);
  const c2 = n.process(
    [
      ['CHAP_N', 'user'],
      ['CHAP_R', '0x' + 'ab'.repeat(16)],
    ],
    'security',
  );
  t.is(c2.failure, undefined);
  t.is(c2.declarations.get('CHAP_R'), '0x' + 'ab'.repeat(16));
});

test('unknown keys, X- and unregistered X# keys are answered NotUnderstood', (t) => {
  t.is(answer('FooBar', '1'), 'NotUnderstood');
  t.is(answer('X-com.example.vendor.feature', 'Yes'), 'NotUnderstood');
  t.is(answer('X#SomethingElse', 'a'), 'NotUnderstood');
  t.is(answer('SPKM_REQ', '0x00'), 'NotUnderstood'); // SPKM was removed
  const r = neg().process([['X-org.example.thing', '1']], 'security');
  t.deepEqual(r.response, [['X-org.example.thing', 'NotUnderstood']]);
  const f = neg().process([['X-org.example.thing', '1']], 'ffp');
  t.deepEqual(f.response, [['X-org.example.thing', 'NotUnderstood']]);
});

test('obsoleted marker keys are answered Reject, never NotUnderstood (RFC 7143 13.25)', (t) => {
  t.is(answer('OFMarker', 'No'), 'Reject');
  t.is(answer('IFMarker', 'Yes'), 'Reject');
  t.is(answer('OFMarkInt', '2048~65535'), 'Reject');
  t.is(answer('IFMarkInt', '1~65535'), 'Reject');
});

test('keys only a target may send are a protocol error from the initiator', (t) => {
  fails(t, neg().process([['TargetAlias', 'x']], 'operational'), /target/);
  fails(t, neg().process([['TargetAddress', '10.0.0.1:3260,1']], 'operational'));
  fails(t, neg().process([['TargetPortalGroupTag', '1']], 'security'));
});

test('reserved constants offered as values are a protocol error', (t) => {
  fails(t, neg().process([['MaxBurstLength', 'Reject']], 'operational'), /reserved/);
  fails(t, neg().process([['HeaderDigest', 'NotUnderstood']], 'operational'));
  fails(t, neg().process([['InitialR2T', 'Irrelevant']], 'operational'));
});

// ---- once per login -----------------------------------------------------------------------

test('a key twice in one request is a protocol error', (t) => {
  fails(
    t,
    neg().process(
      [
        ['MaxBurstLength', '65536'],
        ['MaxBurstLength', '65536'],
      ],
      'operational',
    ),
    /twice/,
  );
});

test('a key negotiated again, or declared again with another value, later in the same login is a protocol error', (t) => {
  const n = neg();
  ok(t, n, [['MaxBurstLength', '65536']]);
  fails(t, n.process([['MaxBurstLength', '131072']], 'operational'), /twice/);
  const m = neg();
  ok(t, m, [['InitiatorName', 'iqn.a']], 'security');
  fails(t, m.process([['InitiatorName', 'iqn.b']], 'operational'), /twice/);
  // The same declaration repeated (libiscsi after CHAP, issue 9 item 6) is accepted.
  const r = neg();
  ok(t, r, [['InitiatorName', 'iqn.a']], 'security');
  ok(t, r, [['InitiatorName', 'iqn.a']], 'operational');
  const d = neg();
  ok(t, d, [['HeaderDigest', 'None']]);
  fails(t, d.process([['HeaderDigest', 'None']], 'operational'));
});

test('in full feature phase a key may be renegotiated in a later Text request', (t) => {
  const n = neg();
  ok(t, n, [['MaxRecvDataSegmentLength', '8192']], 'ffp');
  ok(t, n, [['MaxRecvDataSegmentLength', '16384']], 'ffp');
  t.is(n.result().initiatorMaxRecvDataSegmentLength, 16384);
});

// ---- stages and phases -------------------------------------------------------------------

test('operational keys in the security stage are a protocol error', (t) => {
  fails(t, neg().process([['MaxBurstLength', '65536']], 'security'), /security/);
  fails(t, neg().process([['HeaderDigest', 'None']], 'security'));
  fails(t, neg().process([['MaxRecvDataSegmentLength', '8192']], 'security'));
});

test('security keys outside the security stage are a protocol error', (t) => {
  fails(t, neg().process([['AuthMethod', 'None']], 'operational'), /security/);
  fails(t, neg().process([['CHAP_N', 'user']], 'operational'));
});

test('Any-Stage declarations are accepted in either login stage', (t) => {
  ok(t, neg(), [['InitiatorName', 'iqn.a']], 'security');
  ok(t, neg(), [['InitiatorName', 'iqn.a']], 'operational');
  ok(t, neg(), [['SessionType', 'Normal']], 'operational');
});

test('SendTargets is Irrelevant during login and passed through in full feature phase', (t) => {
  t.is(answer('SendTargets', 'All'), 'Irrelevant');
  const r = neg({}, { sessionType: 'Discovery' }).process([['SendTargets', 'All']], 'ffp');
  t.deepEqual(r.response, []);
  t.is(r.declarations.get('SendTargets'), 'All');
});

test('IO and LO keys in full feature phase are Irrelevant', (t) => {
  const n = neg();
  ok(t, n, [['HeaderDigest', 'None']]);
  const r = ok(
    t,
    n,
    [
      ['HeaderDigest', 'CRC32C'],
      ['MaxBurstLength', '65536'],
      ['InitialR2T', 'Yes'],
      ['InitiatorName', 'iqn.x'],
      ['AuthMethod', 'CHAP'],
      ['InitiatorAlias', 'still-declarable'],
    ],
    'ffp',
  );
  t.is(r.get('HeaderDigest'), 'Irrelevant');
  t.is(r.get('MaxBurstLength'), 'Irrelevant');
  t.is(r.get('InitialR2T'), 'Irrelevant');
  t.is(r.get('InitiatorName'), 'Irrelevant');
  t.is(r.get('AuthMethod'), 'Irrelevant');
  t.false(r.has('InitiatorAlias'));
  t.false(n.result().headerDigest);
  t.is(n.result().maxBurstLength, 262144);
});

test('LO keys on a non-leading connection are an initiator error; IO keys negotiated; session values kept', (t) => {
  // RFC 7143 sec. 6.2: renegotiating a value the leading login settled is refused with an initiator error.
  const session = {
    ...defaultParams(),
    maxBurstLength: 524288,
    initialR2T: false,
    maxConnections: 4,
    headerDigest: true,
  };
  for (const [k, v] of [
    ['MaxBurstLength', '65536'],
    ['InitialR2T', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
    ['MaxConnections', '2'],
  ] as const)
    fails(t, neg({}, { leading: false, session }).process([[k, v]], 'operational'), /leading-only key/);
  const n = neg({}, { leading: false, session });
  const r = ok(t, n, [
    ['HeaderDigest', 'None,CRC32C'],
    ['MaxRecvDataSegmentLength', '32768'],
  ]);
  t.is(r.get('HeaderDigest'), 'None'); // IO: negotiated on every connection
  t.is(r.get('MaxRecvDataSegmentLength'), '262144');
  const res = n.result();
  t.is(res.maxBurstLength, 524288);
  t.false(res.initialR2T);
  t.is(res.maxConnections, 4);
  t.false(res.headerDigest); // connection-only values are not inherited
  t.is(res.initiatorMaxRecvDataSegmentLength, 32768);
});

// ---- discovery sessions ------------------------------------------------------------------

test('discovery session: session keys are Irrelevant, the rest negotiated', (t) => {
  const n = neg();
  ok(
    t,
    n,
    [
      ['InitiatorName', 'iqn.a'],
      ['SessionType', 'Discovery'],
      ['AuthMethod', 'None'],
    ],
    'security',
  );
  t.is(n.sessionType, 'Discovery');
  const r = ok(t, n, [
    ['HeaderDigest', 'None'],
    ['DataDigest', 'None'],
    ['MaxConnections', '1'],
    ['InitialR2T', 'Yes'],
    ['ImmediateData', 'No'],
    ['MaxBurstLength', '262144'],
    ['FirstBurstLength', '65536'],
    ['DefaultTime2Wait', '0'],
    ['DefaultTime2Retain', '0'],
    ['MaxOutstandingR2T', '1'],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
    ['TaskReporting', 'RFC3720'],
    ['iSCSIProtocolLevel', '1'],
    ['MaxRecvDataSegmentLength', '32768'],
  ]);
  for (const k of [
    'MaxConnections',
    'InitialR2T',
    'ImmediateData',
    'MaxBurstLength',
    'FirstBurstLength',
    'MaxOutstandingR2T',
    'DataPDUInOrder',
    'DataSequenceInOrder',
    'TaskReporting',
    'iSCSIProtocolLevel',
  ]) {
    t.is(r.get(k), 'Irrelevant', k);
  }
  t.is(r.get('HeaderDigest'), 'None');
  t.is(r.get('DataDigest'), 'None');
  t.is(r.get('DefaultTime2Wait'), '2');
  t.is(r.get('DefaultTime2Retain'), '0');
  t.is(r.get('ErrorRecoveryLevel'), '0');
  t.is(r.get('MaxRecvDataSegmentLength'), '262144');
  t.deepEqual(n.pendingOffers(), []);
  t.true(n.complete());
  const res = n.result();
  t.is(res.sessionType, 'Discovery');
  t.is(res.maxBurstLength, 262144);
  t.true(res.initialR2T);
});

test('SessionType later in the same request still decides relevance', (t) => {
  const n = neg();
  const r = ok(t, n, [
    ['MaxBurstLength', '65536'],
    ['SessionType', 'Discovery'],
  ]);
  t.is(r.get('MaxBurstLength'), 'Irrelevant');
});

test('sessionType can be given to the constructor; an invalid SessionType fails', (t) => {
  t.is(answer('MaxBurstLength', '65536', {}, { sessionType: 'Discovery' }), 'Irrelevant');
  fails(t, neg().process([['SessionType', 'Boot']], 'security'), /SessionType/);
});

// ---- target offers -----------------------------------------------------------------------

test('target offers: proposes what the defaults would hold back, then takes the answers', (t) => {
  const n = opened();
  ok(t, n, [
    ['HeaderDigest', 'None'],
    ['DataDigest', 'None'],
  ]);
  t.true(n.complete());
  const offers = n.pendingOffers();
  t.deepEqual(offers, [
    ['MaxConnections', '8'],
    ['InitialR2T', 'No'],
    ['MaxBurstLength', '1048576'],
    ['FirstBurstLength', '262144'],
    ['MaxOutstandingR2T', '8'],
    ['ErrorRecoveryLevel', '2'],
  ]);
  t.false(n.complete());
  t.deepEqual(n.pendingOffers(), []); // proposed once only
  const r = n.process(
    [
      ['MaxConnections', '1'],
      ['InitialR2T', 'No'],
      ['MaxBurstLength', '262144'],
      ['FirstBurstLength', '65536'],
      ['MaxOutstandingR2T', '4'],
      ['ErrorRecoveryLevel', '1'],
    ],
    'operational',
  );
  t.is(r.failure, undefined);
  t.deepEqual(r.response, []); // answers are not answered
  t.true(n.complete());
  const res = n.result();
  t.is(res.maxConnections, 1);
  t.false(res.initialR2T);
  t.is(res.maxBurstLength, 262144);
  t.is(res.firstBurstLength, 65536);
  t.is(res.maxOutstandingR2T, 4);
  t.is(res.errorRecoveryLevel, 1);
});

test('target offers: only in the operational stage', (t) => {
  const n = neg();
  t.deepEqual(n.pendingOffers(), []); // nothing processed yet
  ok(t, n, [['AuthMethod', 'None']], 'security');
  t.deepEqual(n.pendingOffers(), []); // security -> full feature phase directly: defaults
  t.true(n.complete());
  ok(t, n, [['HeaderDigest', 'None']], 'operational');
  t.is(n.pendingOffers().length, 6);
  const f = neg();
  ok(t, f, [], 'ffp');
  t.deepEqual(f.pendingOffers(), []);
});

test('target offers: in a discovery session only keys relevant there are proposed', (t) => {
  const n = opened({ defaultTime2Wait: 10 }, { sessionType: 'Discovery' });
  t.deepEqual(n.pendingOffers(), [['DefaultTime2Wait', '10']]);
  const m = opened({}, { sessionType: 'Discovery' });
  t.deepEqual(m.pendingOffers(), []);
});

test('target offers: nothing to propose when the initiator sent every key', (t) => {
  const n = opened();
  ok(t, n, [
    ['MaxConnections', '1'],
    ['InitialR2T', 'Yes'],
    ['ImmediateData', 'Yes'],
    ['MaxBurstLength', '262144'],
    ['FirstBurstLength', '65536'],
    ['MaxOutstandingR2T', '1'],
    ['ErrorRecoveryLevel', '0'],
  ]);
  t.deepEqual(n.pendingOffers(), []);
  t.true(n.complete());
});

test('target offers: values below the defaults are proposed too', (t) => {
  const n = opened({
    maxBurstLength: 131072,
    firstBurstLength: 65536,
    maxConnections: 1,
    maxOutstandingR2T: 1,
    initialR2T: true,
    errorRecoveryLevel: 0,
  });
  t.deepEqual(n.pendingOffers(), [['MaxBurstLength', '131072']]);
  const m = opened({
    immediateData: false,
    initialR2T: true,
    maxConnections: 1,
    maxOutstandingR2T: 1,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    errorRecoveryLevel: 0,
  });
  // ImmediateData=No with InitialR2T=Yes makes FirstBurstLength irrelevant: not proposed
  t.deepEqual(m.pendingOffers(), [['ImmediateData', 'No']]);
});

test('target offers: FirstBurstLength proposal is clipped to the MaxBurstLength in force', (t) => {
  const n = opened();
  ok(t, n, [['MaxBurstLength', '131072']]);
  t.deepEqual(new Map(n.pendingOffers()).get('FirstBurstLength'), '131072');
});

test('target offers: none for FirstBurstLength when it is irrelevant', (t) => {
  const n = opened();
  ok(t, n, [
    ['InitialR2T', 'Yes'],
    ['ImmediateData', 'No'],
  ]);
  const offers = new Map(n.pendingOffers());
  t.false(offers.has('FirstBurstLength'));
  t.false(offers.has('InitialR2T'));
  t.false(offers.has('ImmediateData'));
});

test('target offers: Reject, Irrelevant or NotUnderstood answers keep the value in force', (t) => {
  for (const reply of ['Reject', 'Irrelevant', 'NotUnderstood']) {
    const n = opened();
    n.pendingOffers();
    ok(t, n, [
      ['MaxBurstLength', reply],
      ['InitialR2T', reply],
    ]);
    t.false(n.complete()); // other offers still unanswered
    t.is(n.result().maxBurstLength, 262144);
    t.true(n.result().initialR2T);
  }
});

test('target offers: an answer the result function does not allow is a protocol error', (t) => {
  const n = opened();
  n.pendingOffers();
  fails(t, n.process([['MaxBurstLength', '2097152']], 'operational'), /not admissible/); // Minimum: above our offer
  const m = opened({
    immediateData: false,
    initialR2T: true,
    maxConnections: 1,
    maxOutstandingR2T: 1,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
  });
  m.pendingOffers();
  fails(t, m.process([['ImmediateData', 'Yes']], 'operational')); // AND: No offered, only No possible
  const w = opened({ defaultTime2Wait: 10 });
  t.true(new Map(w.pendingOffers()).has('DefaultTime2Wait'));
  fails(t, w.process([['DefaultTime2Wait', '5']], 'operational')); // Maximum: below our offer
  const x = opened();
  x.pendingOffers();
  fails(t, x.process([['MaxOutstandingR2T', 'lots']], 'operational'));
});

test('target offers: Maximum and OR answers that are allowed', (t) => {
  const w = opened({ defaultTime2Wait: 10 });
  w.pendingOffers();
  ok(t, w, [['DefaultTime2Wait', '20']]);
  t.is(w.result().defaultTime2Wait, 20);
  const n = opened();
  n.pendingOffers();
  ok(t, n, [['InitialR2T', 'Yes']]); // OR with our No: either answer is fine
  t.true(n.result().initialR2T);
});

test('target offers: required digest is proposed; None in answer is refused', (t) => {
  const n = opened({ headerDigest: ['CRC32C'] }, { leading: false });
  t.deepEqual(n.pendingOffers(), [['HeaderDigest', 'CRC32C']]); // non-leading: no LO offers
  ok(t, n, [['HeaderDigest', 'CRC32C']]);
  t.true(n.result().headerDigest);
  const m = opened({ dataDigest: ['CRC32C'] }, { leading: false });
  m.pendingOffers();
  fails(t, m.process([['DataDigest', 'None']], 'operational'));
});

test('target offers: TaskReporting and iSCSIProtocolLevel proposed when ours differ', (t) => {
  const n = opened({ taskReporting: ['FastAbort', 'RFC3720'], protocolLevel: 2 });
  const offers = new Map(n.pendingOffers());
  t.is(offers.get('TaskReporting'), 'FastAbort,RFC3720');
  t.is(offers.get('iSCSIProtocolLevel'), '2');
  ok(t, n, [
    ['TaskReporting', 'FastAbort'],
    ['iSCSIProtocolLevel', '1'],
  ]);
  t.is(n.result().taskReporting, 'FastAbort');
  t.is(n.result().protocolLevel, 1);
  const m = opened({ taskReporting: ['FastAbort', 'RFC3720'] });
  m.pendingOffers();
  fails(t, m.process([['TaskReporting', 'ResponseFence']], 'operational'));
});

test('target offers: an answered key cannot be sent again', (t) => {
  const n = opened();
  n.pendingOffers();
  ok(t, n, [['MaxBurstLength', '524288']]);
  fails(t, n.process([['MaxBurstLength', '524288']], 'operational'), /twice/);
});

test('target offers: answers mixed with new offers from the initiator', (t) => {
  const n = opened();
  ok(t, n, [['HeaderDigest', 'None']]);
  n.pendingOffers();
  const r = ok(t, n, [
    ['MaxBurstLength', '1048576'],
    ['DataDigest', 'CRC32C,None'],
    ['MaxConnections', '2'],
    ['InitialR2T', 'No'],
    ['FirstBurstLength', '262144'],
    ['MaxOutstandingR2T', '8'],
    ['ErrorRecoveryLevel', '2'],
  ]);
  t.deepEqual([...r], [['DataDigest', 'CRC32C']]);
  t.true(n.complete());
  const res = n.result();
  t.is(res.maxBurstLength, 1048576);
  t.is(res.firstBurstLength, 262144);
  t.true(res.dataDigest);
  t.is(res.maxConnections, 2);
});

// ---- a whole login, as open-iscsi sends it -----------------------------------------------

test('typical open-iscsi login against the default offer', (t) => {
  const n = neg();
  const sec = n.process(
    [
      ['InitiatorName', 'iqn.2004-10.com.ubuntu:01:abcdef'],
      ['InitiatorAlias', 'node1'],
      ['TargetName', 'iqn.2024-01.org.example:disk0'],
      ['SessionType', 'Normal'],
      ['AuthMethod', 'None'],
    ],
    'security',
  );
  t.deepEqual(sec.response, [['AuthMethod', 'None']]);
  const op = n.process(
    [
      ['HeaderDigest', 'None'],
      ['DataDigest', 'None'],
      ['DefaultTime2Wait', '2'],
      ['DefaultTime2Retain', '0'],
      ['IFMarker', 'No'],
      ['OFMarker', 'No'],
      ['ErrorRecoveryLevel', '0'],
      ['InitialR2T', 'No'],
      ['ImmediateData', 'Yes'],
      ['MaxBurstLength', '16776192'],
      ['FirstBurstLength', '262144'],
      ['MaxOutstandingR2T', '1'],
      ['MaxConnections', '1'],
      ['DataPDUInOrder', 'Yes'],
      ['DataSequenceInOrder', 'Yes'],
      ['MaxRecvDataSegmentLength', '262144'],
    ],
    'operational',
  );
  t.is(op.failure, undefined);
  t.deepEqual(op.response, [
    ['HeaderDigest', 'None'],
    ['DataDigest', 'None'],
    ['DefaultTime2Wait', '2'],
    ['DefaultTime2Retain', '0'],
    ['IFMarker', 'Reject'],
    ['OFMarker', 'Reject'],
    ['ErrorRecoveryLevel', '0'],
    ['InitialR2T', 'No'],
    ['ImmediateData', 'Yes'],
    ['MaxBurstLength', '1048576'],
    ['FirstBurstLength', '262144'],
    ['MaxOutstandingR2T', '1'],
    ['MaxConnections', '1'],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['MaxRecvDataSegmentLength', '262144'],
  ]);
  t.deepEqual(n.pendingOffers(), []);
  t.true(n.complete());
  t.deepEqual(n.result(), {
    ...defaultParams(),
    initialR2T: false,
    immediateData: true,
    maxBurstLength: 1048576,
    firstBurstLength: 262144,
    defaultTime2Retain: 0,
    initiatorMaxRecvDataSegmentLength: 262144,
    targetMaxRecvDataSegmentLength: 262144,
  });
});
