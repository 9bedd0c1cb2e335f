/**
 * Unit tests of CHAP at login (src/login/chap.ts through src/login/login.ts): the exchange for each CHAP_A with
 * responses computed here with node:crypto, refusals (wrong length, wrong secret, unknown user, reflection,
 * no common CHAP_A, None only), mutual CHAP, and the repeated declarative keys libiscsi sends (issue 9 item 6).
 */
import test, { type ExecutionContext } from 'ava';
import * as crypto from 'node:crypto';
import { ChapAuthenticator, decodeBinary } from '../src/login/chap';
import { LoginHandler, type LoginEnvironment, type LoginReply } from '../src/login/login';
import { DEFAULT_TARGET_OFFER } from '../src/login/negotiator';
import { encodeTextData, parseTextData } from '../src/login/text';
import { LoginStatus, Opcode } from '../src/pdu/opcodes';
import type { Pdu } from '../src/pdu/pdu';
import { encodeLoginRequest } from '../src/pdu/serializer';
import type { AuthConfig } from '../src/config/schema';

const TARGET = 'iqn.2026-11.io.nodetgt:chap';
const INITIATOR = 'iqn.2026-11.io.nodetgt:initiator';
const AUTH: AuthConfig = {
  incoming: [
    { user: 'alice', secret: 'alice-secret-123' },
    { user: 'bob', secret: 'bob-secret-4567' },
  ],
  outgoing: { user: 'target', secret: 'target-secret-89' },
};
const HASH: Record<number, string> = { 5: 'md5', 6: 'sha1', 7: 'sha256', 8: 'sha3-256' };

function env(auth: AuthConfig | undefined): LoginEnvironment {
  return {
    portalGroupTag: 1,
    offer: DEFAULT_TARGET_OFFER,
    authenticator: new ChapAuthenticator((ctx) => (ctx.sessionType === 'Normal' ? auth : undefined)),
    lookupTarget: (name) => (name === TARGET ? { name } : 'not-found'),
    sessionExists: () => false,
    sessionHasRoom: () => true,
    sessionParams: () => undefined,
  };
}

/** Drives one login: each call sends one request and returns the reply with its keys. */
class Login {
  readonly h: LoginHandler;
  constructor(auth: AuthConfig | null = AUTH) {
    this.h = new LoginHandler(env(auth ?? undefined));
  }
  send(
    pairs: Array<[string, string]>,
    flags: { csg?: number; nsg?: number; transit?: boolean } = {},
  ): LoginReply & { keys: Map<string, string> } {
    const csg = flags.csg ?? 0;
    const bhs = encodeLoginRequest({
      transit: flags.transit ?? false,
      continue: false,
      csg,
      nsg: flags.nsg ?? 0,
      isid: Buffer.from([0x80, 0, 0, 0, 0, 1]),
      itt: 1,
      cmdSN: 1,
      expStatSN: 0,
    });
    const data = encodeTextData(pairs);
    bhs.writeUIntBE(data.length, 5, 3);
    const pdu: Pdu = {
      bhs,
      ahs: null,
      data,
      opcode: Opcode.LoginRequest,
      immediate: true,
      final: flags.transit ?? false,
      itt: 1,
      dataLength: data.length,
    };
    const reply = this.h.handle(pdu);
    return { ...reply, keys: new Map(parseTextData(reply.data).pairs) };
  }
}

function respond(alg: number, id: number, secret: string, challenge: Buffer): string {
  const h = crypto.createHash(HASH[alg]).update(Buffer.of(id)).update(secret).update(challenge).digest();
  return '0x' + h.toString('hex');
}

/** Up to the target's challenge: returns the login and the CHAP_I/CHAP_C it sent. */
function challenged(t: ExecutionContext, algs: string, auth: AuthConfig = AUTH) {
  const l = new Login(auth);
  const r1 = l.send([
    ['InitiatorName', INITIATOR],
    ['TargetName', TARGET],
    ['SessionType', 'Normal'],
    ['AuthMethod', 'CHAP,None'],
  ]);
  t.is(r1.status, 0);
  t.is(r1.keys.get('AuthMethod'), 'CHAP');
  const r2 = l.send([['CHAP_A', algs]]);
  t.is(r2.status, 0);
  t.false(r2.transit);
  const id = Number(r2.keys.get('CHAP_I'));
  const challenge = decodeBinary(r2.keys.get('CHAP_C') ?? '') ?? Buffer.alloc(0);
  return { l, alg: Number(r2.keys.get('CHAP_A')), id, challenge };
}

const toOperational = { transit: true, nsg: 1 };

for (const [alg, len] of [
  [5, 16],
  [6, 20],
  [7, 32],
  [8, 32],
] as const) {
  test(`CHAP_A=${alg}: the response H(I | secret | C) with that hash is accepted`, (t) => {
    const { l, alg: chosen, id, challenge } = challenged(t, `${alg}`);
    t.is(chosen, alg);
    t.true(id >= 0 && id <= 255);
    t.is(challenge.length, len);
    const r = l.send(
      [
        ['CHAP_N', 'bob'],
        ['CHAP_R', respond(alg, id, 'bob-secret-4567', challenge)],
      ],
      toOperational,
    );
    t.is(r.status, 0);
    t.true(r.transit);
    t.is(r.nsg, 1);
    // The same exchange answered with another hash's response is refused.
    const other = alg === 5 ? 7 : 5;
    const c2 = challenged(t, `${alg}`);
    const bad = c2.l.send([
      ['CHAP_N', 'bob'],
      ['CHAP_R', respond(other, c2.id, 'bob-secret-4567', c2.challenge)],
    ]);
    t.is(bad.status, LoginStatus.AuthenticationFailure);
  });
}

test('the target picks the first CHAP_A of the initiator list it supports', (t) => {
  t.is(challenged(t, '99,0x10,8,5').alg, 8);
  t.is(challenged(t, '6,7').alg, 6);
});

test('a new challenge each login', (t) => {
  t.notDeepEqual(challenged(t, '5').challenge, challenged(t, '5').challenge);
});

test('only unsupported CHAP_A: CHAP_A=Reject, then authentication failure', (t) => {
  const l = new Login();
  l.send([
    ['InitiatorName', INITIATOR],
    ['TargetName', TARGET],
    ['AuthMethod', 'CHAP'],
  ]);
  const r = l.send([['CHAP_A', '1,2,128']]);
  t.is(r.status, 0);
  t.is(r.keys.get('CHAP_A'), 'Reject');
  t.false(r.keys.has('CHAP_C'));
  const next = l.send([
    ['CHAP_N', 'alice'],
    ['CHAP_R', '0x00'],
  ]);
  t.is(next.status, LoginStatus.AuthenticationFailure);
});

function refused(t: ExecutionContext, n: string, rOf: (c: ReturnType<typeof challenged>) => string): string {
  const c = challenged(t, '7');
  const r = c.l.send(
    [
      ['CHAP_N', n],
      ['CHAP_R', rOf(c)],
    ],
    toOperational,
  );
  t.is(r.status, LoginStatus.AuthenticationFailure);
  return c.l.h.lastFailure?.message ?? '';
}

test('wrong secret, unknown user, wrong length, malformed: authentication failure, never an exception', (t) => {
  refused(t, 'alice', (c) => respond(7, c.id, 'not-the-secret', c.challenge));
  // Another account's secret does not open this one.
  refused(t, 'alice', (c) => respond(7, c.id, 'bob-secret-4567', c.challenge));
  const unknown = refused(t, 'mallory', (c) => respond(7, c.id, 'alice-secret-123', c.challenge));
  t.regex(unknown, /unknown/);
  // Right secret, response cut short or extended: checked for length before timingSafeEqual.
  refused(t, 'alice', (c) => respond(7, c.id, 'alice-secret-123', c.challenge).slice(0, -2));
  refused(t, 'alice', (c) => respond(7, c.id, 'alice-secret-123', c.challenge) + '00');
  refused(t, 'alice', () => '0x');
  refused(t, 'alice', () => 'not-binary');
  // The wrong identifier.
  refused(t, 'alice', (c) => respond(7, (c.id + 1) & 0xff, 'alice-secret-123', c.challenge));
});

test('failure reasons never carry a secret', (t) => {
  const msg = refused(t, 'alice', (c) => respond(7, c.id, 'guess-guess-guess', c.challenge));
  for (const s of ['alice-secret-123', 'bob-secret-4567', 'target-secret-89', 'guess-guess-guess'])
    t.false(msg.includes(s));
});

test('the base64 form of CHAP_R is accepted too', (t) => {
  const c = challenged(t, '5');
  const hex = respond(5, c.id, 'alice-secret-123', c.challenge).slice(2);
  const r = c.l.send([
    ['CHAP_N', 'alice'],
    ['CHAP_R', '0b' + Buffer.from(hex, 'hex').toString('base64')],
  ]);
  t.is(r.status, 0);
});

test('mutual CHAP: the target answers with its outgoing name and secret', (t) => {
  for (const alg of [5, 7]) {
    const c = challenged(t, String(alg));
    const mine = crypto.randomBytes(16);
    const r = c.l.send(
      [
        ['CHAP_N', 'alice'],
        ['CHAP_R', respond(alg, c.id, 'alice-secret-123', c.challenge)],
        ['CHAP_I', '77'],
        ['CHAP_C', '0x' + mine.toString('hex')],
      ],
      toOperational,
    );
    t.is(r.status, 0);
    t.is(r.keys.get('CHAP_N'), 'target');
    t.is(r.keys.get('CHAP_R'), respond(alg, 77, 'target-secret-89', mine));
    t.true(r.transit);
  }
});

test('mutual CHAP: a reflected challenge is refused', (t) => {
  const c = challenged(t, '7');
  const r = c.l.send([
    ['CHAP_N', 'alice'],
    ['CHAP_R', respond(7, c.id, 'alice-secret-123', c.challenge)],
    ['CHAP_I', String(c.id)],
    ['CHAP_C', '0x' + c.challenge.toString('hex')],
  ]);
  t.is(r.status, LoginStatus.AuthenticationFailure);
  t.regex(c.l.h.lastFailure?.message ?? '', /reflect/);
});

test('mutual CHAP without an outgoing account is refused', (t) => {
  const c = challenged(t, '5', { incoming: AUTH.incoming });
  const r = c.l.send([
    ['CHAP_N', 'alice'],
    ['CHAP_R', respond(5, c.id, 'alice-secret-123', c.challenge)],
    ['CHAP_I', '1'],
    ['CHAP_C', '0x0102030405060708090a0b0c0d0e0f10'],
  ]);
  t.is(r.status, LoginStatus.AuthenticationFailure);
});

test('CHAP configured: an initiator offering only None, or skipping the security stage, is refused', (t) => {
  const l = new Login();
  const r = l.send([
    ['InitiatorName', INITIATOR],
    ['TargetName', TARGET],
    ['AuthMethod', 'None'],
  ]);
  t.is(r.status, LoginStatus.AuthenticationFailure);
  const skip = new Login().send(
    [
      ['InitiatorName', INITIATOR],
      ['TargetName', TARGET],
    ],
    { csg: 1, nsg: 3, transit: true },
  );
  t.is(skip.status, LoginStatus.AuthenticationFailure);
});

test('CHAP configured: the target offers CHAP only', (t) => {
  const r = new Login().send([
    ['InitiatorName', INITIATOR],
    ['TargetName', TARGET],
    ['AuthMethod', 'None,CHAP'],
  ]);
  t.is(r.keys.get('AuthMethod'), 'CHAP');
});

test('no CHAP configured: AuthMethod None as before', (t) => {
  const r = new Login(null).send(
    [
      ['InitiatorName', INITIATOR],
      ['TargetName', TARGET],
      ['AuthMethod', 'CHAP,None'],
    ],
    toOperational,
  );
  t.is(r.status, 0);
  t.is(r.keys.get('AuthMethod'), 'None');
  t.true(r.transit);
});

test('CHAP response before the challenge is refused', (t) => {
  const l = new Login();
  l.send([
    ['InitiatorName', INITIATOR],
    ['TargetName', TARGET],
    ['AuthMethod', 'CHAP'],
  ]);
  const r = l.send([
    ['CHAP_N', 'alice'],
    ['CHAP_R', '0x00112233445566778899aabbccddeeff'],
  ]);
  t.is(r.status, LoginStatus.AuthenticationFailure);
});

// Issue 9 item 6: libiscsi with CHAP repeats InitiatorName, TargetName and SessionType in the operational stage.
test('a declarative key repeated with the same value in the operational stage is accepted', (t) => {
  const c = challenged(t, '5');
  const r = c.l.send(
    [
      ['CHAP_N', 'alice'],
      ['CHAP_R', respond(5, c.id, 'alice-secret-123', c.challenge)],
    ],
    toOperational,
  );
  t.is(r.status, 0);
  const op = c.l.send(
    [
      ['InitiatorName', INITIATOR],
      ['TargetName', TARGET],
      ['SessionType', 'Normal'],
      ['MaxRecvDataSegmentLength', '262144'],
    ],
    { csg: 1, nsg: 3, transit: true },
  );
  t.is(op.status, 0, c.l.h.lastFailure?.message);
  t.false(op.keys.has('InitiatorName'));
});

test('a declarative key repeated with another value is still an error', (t) => {
  const l = new Login(null);
  l.send(
    [
      ['InitiatorName', INITIATOR],
      ['TargetName', TARGET],
      ['AuthMethod', 'None'],
    ],
    toOperational,
  );
  const r = l.send([['InitiatorName', INITIATOR + '-other']], { csg: 1, nsg: 3, transit: true });
  t.is(r.status, LoginStatus.InitiatorError);
  t.regex(l.h.lastFailure?.message ?? '', /twice/);
});
