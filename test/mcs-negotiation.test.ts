/**
 * MC/S negotiation and the login of a connection joining a session, without sockets: MaxConnections (the
 * minimum of the offers; 8 by default, per target from `params`), leading-only keys refused on a non-leading
 * login, and the login statuses of a join (RFC 7143 sec. 11.13.5).
 */
import test from 'ava';
import {
  DEFAULT_TARGET_OFFER,
  Negotiator,
  defaultParams,
  type NegotiatedParams,
} from '../src/login/negotiator';
import { LoginHandler, noAuthentication, type LoginEnvironment } from '../src/login/login';
import { normalizeParams, offerFor } from '../src/config/params';
import { encodeLoginRequest } from '../src/pdu/serializer';
import { encodeTextData, parseTextData } from '../src/login/text';
import { LoginStatus } from '../src/pdu/opcodes';
import type { Pdu } from '../src/pdu/pdu';

const TARGET = 'iqn.2026-11.io.nodetgt.test:disk';
const INITIATOR = 'iqn.2026-11.io.nodetgt.test:ini';
const ISID = Buffer.from([0x80, 0, 0, 0, 0, 9]);

function maxConnections(offer: number, asked: string): string | undefined {
  const n = new Negotiator({ offer: { ...DEFAULT_TARGET_OFFER, maxConnections: offer }, leading: true });
  const r = n.process([['MaxConnections', asked]], 'operational');
  return new Map(r.response).get('MaxConnections');
}

test('MaxConnections: the minimum of the two offers', (t) => {
  t.is(maxConnections(8, '4'), '4');
  t.is(maxConnections(8, '16'), '8');
  t.is(maxConnections(2, '4'), '2');
  t.is(maxConnections(1, '65535'), '1');
  t.is(maxConnections(8, '0'), 'Reject');
});

test('MaxConnections: nodetgt offers 8 by default; a target params value overrides the global one', (t) => {
  t.is(DEFAULT_TARGET_OFFER.maxConnections, 8);
  t.is(offerFor({}).maxConnections, 8);
  const global = normalizeParams({ MaxConnections: 4 }, 'params');
  t.is(offerFor(global).maxConnections, 4);
  t.is(offerFor(normalizeParams({ MaxConnections: 2 }, 'targets[0].params', global)).maxConnections, 2);
  t.is(offerFor(normalizeParams(undefined, 'targets[0].params', global)).maxConnections, 4);
  t.throws(() => normalizeParams({ MaxConnections: 0 }, 'params'), { message: /MaxConnections/ });
});

test('MaxConnections: proposed by the target when the initiator did not send it (the RFC default is 1)', (t) => {
  const n = new Negotiator({ offer: DEFAULT_TARGET_OFFER, leading: true });
  n.process([], 'operational');
  t.true(n.pendingOffers().some(([k, v]) => k === 'MaxConnections' && v === '8'));
  n.process([['MaxConnections', '3']], 'operational');
  t.is(n.result().maxConnections, 3);
  // Not on a connection joining a session: the leading login settled it.
  const j = new Negotiator({ offer: DEFAULT_TARGET_OFFER, leading: false, session: { maxConnections: 3 } });
  j.process([], 'operational');
  t.false(j.pendingOffers().some(([k]) => k === 'MaxConnections'));
  t.is(j.result().maxConnections, 3);
});

// ---- a joining login through LoginHandler --------------------------------------------------

interface FakeSession {
  tsih: number;
  isid: string;
  initiator: string;
  target: string;
  params: NegotiatedParams;
  cids: number[];
}

function env(sessions: FakeSession[]): LoginEnvironment {
  const find = (tsih: number) => sessions.find((s) => s.tsih === tsih);
  return {
    portalGroupTag: 1,
    offer: DEFAULT_TARGET_OFFER,
    authenticator: noAuthentication,
    lookupTarget: (name) => (name === TARGET ? { name } : 'not-found'),
    sessionExists: (tsih, ini, isid, target) => {
      const s = find(tsih);
      return !!s && s.initiator === ini && s.isid === isid && s.target === target;
    },
    sessionHasRoom: (tsih, cid) => {
      const s = find(tsih)!;
      return s.cids.filter((c) => c !== cid).length < s.params.maxConnections;
    },
    sessionParams: (tsih) => find(tsih)?.params,
  };
}

function join(e: LoginEnvironment, tsih: number, cid: number, keys: Array<[string, string]> = []) {
  const bhs = encodeLoginRequest({
    transit: true,
    continue: false,
    csg: 1,
    nsg: 3,
    isid: ISID,
    tsih,
    itt: 5,
    cid,
    cmdSN: 10,
    expStatSN: 0,
  });
  const data = encodeTextData([
    ['InitiatorName', INITIATOR],
    ['SessionType', 'Normal'],
    ['TargetName', TARGET],
    ...keys,
  ]);
  const pdu: Pdu = {
    bhs,
    ahs: null,
    data,
    opcode: bhs[0] & 0x3f,
    immediate: true,
    final: true,
    itt: 5,
    dataLength: data.length,
  };
  const h = new LoginHandler(e);
  const r = h.handle(pdu);
  return { ...r, keys: new Map(parseTextData(r.data).pairs), why: h.lastFailure?.message ?? '' };
}

const session = (cids: number[], over: Partial<FakeSession> = {}): FakeSession => ({
  tsih: 7,
  isid: ISID.toString('hex'),
  initiator: INITIATOR,
  target: TARGET,
  params: { ...defaultParams(), maxConnections: 2, maxBurstLength: 524288 },
  cids,
  ...over,
});

test('join: the session of the TSIH, with its session-wide values, and a new CID', (t) => {
  const r = join(env([session([0])]), 7, 1, [['MaxRecvDataSegmentLength', '65536']]);
  t.is(r.status, 0, r.why);
  t.truthy(r.outcome);
  t.false(r.outcome!.leading);
  t.is(r.outcome!.tsih, 7);
  t.is(r.outcome!.cid, 1);
  t.is(r.outcome!.params.maxBurstLength, 524288, 'inherited from the session');
  t.is(r.outcome!.params.initiatorMaxRecvDataSegmentLength, 65536, 'declared on this connection');
  t.false(r.keys.has('MaxConnections'), 'no LO proposal on a non-leading login');
});

test("join: a TSIH naming no session, or another initiator/ISID/target's, is 0x020a", (t) => {
  t.is(join(env([session([0])]), 8, 1).status, LoginStatus.SessionDoesNotExist);
  t.is(join(env([session([0], { isid: '800000000001' })]), 7, 1).status, LoginStatus.SessionDoesNotExist);
  t.is(join(env([session([0], { initiator: 'iqn.x:other' })]), 7, 1).status, LoginStatus.SessionDoesNotExist);
  t.is(join(env([session([0], { target: 'iqn.x:t2' })]), 7, 1).status, LoginStatus.SessionDoesNotExist);
});

test('join: past MaxConnections is 0x0206; a CID in use is a replacement, not one more', (t) => {
  t.is(join(env([session([0, 1])]), 7, 2).status, LoginStatus.TooManyConnections);
  t.is(join(env([session([0, 1])]), 7, 1).status, 0);
});

test("join: a leading-only key is 0x0200 (initiator error), a SessionType other than the session's too", (t) => {
  const e = env([session([0])]);
  for (const k of [
    ['MaxConnections', '2'],
    ['InitialR2T', 'Yes'],
    ['MaxBurstLength', '65536'],
    ['DefaultTime2Retain', '0'],
  ] as Array<[string, string]>) {
    const r = join(e, 7, 1, [k]);
    t.is(r.status, LoginStatus.InitiatorError, k[0]);
    t.regex(r.why, /leading-only/);
  }
  t.is(
    join(env([session([0], { params: { ...defaultParams(), sessionType: 'Discovery' } })]), 7, 1).status,
    LoginStatus.InitiatorError,
  );
});
