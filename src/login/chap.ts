/**
 * CHAP in the login's security stage (RFC 7143 sec. 12.1.3 over RFC 1994): the target challenges the
 * initiator, checks CHAP_N/CHAP_R against the accounts configured for the target (or for discovery), and, when
 * the initiator asks for mutual authentication with its own CHAP_I/CHAP_C, answers with the target's outgoing
 * name and response. One ChapAuthenticator serves one connection's login: it holds that login's challenge.
 *
 * Secrets never leave this file other than hashed into a response: failure reasons name the user at most.
 */
import * as crypto from 'node:crypto';
import type { AuthConfig, ChapAccount } from '../config/schema';
import { LoginStatus } from '../pdu/opcodes';
import type { AuthContext, Authenticator, AuthStep } from './login';

/** CHAP_A values we implement (RFC 7143 12.1.3, IANA "PPP Authentication Algorithms") and their hashes. */
export const CHAP_ALGORITHMS: ReadonlyMap<number, string> = new Map([
  [5, 'md5'],
  [6, 'sha1'],
  [7, 'sha256'],
  [8, 'sha3-256'],
]);

/** An initiator's challenge longer than this is refused (RFC 7143 12.1.3 lets targets bound it). */
const MAX_CHALLENGE = 1024;

/** RFC 1994 sec. 4.1: H(identifier ‖ secret ‖ challenge). */
export function chapResponse(
  algorithm: number,
  identifier: number,
  secret: string,
  challenge: Buffer,
): Buffer {
  const name = CHAP_ALGORITHMS.get(algorithm);
  if (name === undefined) throw new RangeError(`CHAP_A ${algorithm} not supported`);
  return crypto
    .createHash(name)
    .update(Buffer.of(identifier & 0xff))
    .update(secret, 'utf8')
    .update(challenge)
    .digest();
}

/** A binary-value (RFC 7143 sec. 6.1): 0x/0X hex or 0b/0B base64; null when malformed or empty. */
export function decodeBinary(text: string): Buffer | null {
  const prefix = text.slice(0, 2).toLowerCase();
  const body = text.slice(2);
  if (prefix === '0x') {
    if (!/^[0-9a-f]+$/i.test(body)) return null;
    // An odd number of digits: the first stands alone (RFC 7143 6.1 pads on the left).
    return Buffer.from(body.length % 2 ? '0' + body : body, 'hex');
  }
  if (prefix === '0b') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) return null;
    const b = Buffer.from(body, 'base64');
    return b.length ? b : null;
  }
  return null;
}

export function encodeHex(b: Buffer): string {
  return '0x' + b.toString('hex');
}

/** CHAP_I: a number 0..255, decimal or hex (RFC 7143 6.1 numeric values). */
function parseIdentifier(text: string): number | null {
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(text)) n = parseInt(text.slice(2), 16);
  else if (/^\d+$/.test(text)) n = Number(text);
  else return null;
  return n >= 0 && n <= 255 ? n : null;
}

/** Which accounts protect what this login is going to: a target's or discovery's; undefined = no CHAP. */
export type AuthLookup = (ctx: AuthContext) => AuthConfig | undefined;

type State = 'start' | 'challenged' | 'rejected' | 'done';

export class ChapAuthenticator implements Authenticator {
  private state: State = 'start';
  private algorithm = 0;
  private identifier = 0;
  private challenge: Buffer = Buffer.alloc(0);

  constructor(private readonly lookup: AuthLookup) {}

  /** CHAP only where CHAP is configured (an initiator offering only None is refused), None elsewhere. */
  methods(ctx: AuthContext): string[] {
    return this.lookup(ctx) ? ['CHAP'] : ['None'];
  }

  step(method: string, keys: Map<string, string>, ctx: AuthContext): AuthStep {
    const auth = this.lookup(ctx);
    if (method !== 'CHAP' || !auth) return deny(`AuthMethod ${method} not configured`);
    switch (this.state) {
      case 'start':
        return this.offerChallenge(keys);
      case 'challenged':
        return this.verify(keys, auth);
      case 'rejected':
        return deny('no CHAP_A in common');
      case 'done':
        return deny('CHAP keys after authentication');
    }
  }

  private offerChallenge(keys: Map<string, string>): AuthStep {
    if (keys.has('CHAP_N') || keys.has('CHAP_R') || keys.has('CHAP_C'))
      return deny('CHAP response before the challenge');
    const list = keys.get('CHAP_A');
    // AuthMethod alone: CHAP_A comes in the next request.
    if (list === undefined) return { response: [], done: false };
    const chosen = list
      .split(',')
      .map((v) => (/^\d+$/.test(v) ? Number(v) : NaN))
      .find((a) => CHAP_ALGORITHMS.has(a));
    if (chosen === undefined) {
      // RFC 7143 12.1.3: answer Reject; whatever the initiator sends next ends the login.
      this.state = 'rejected';
      return { response: [['CHAP_A', 'Reject']], done: false };
    }
    this.algorithm = chosen;
    this.identifier = crypto.randomInt(256);
    this.challenge = crypto.randomBytes(hashLength(chosen));
    this.state = 'challenged';
    return {
      response: [
        ['CHAP_A', String(chosen)],
        ['CHAP_I', String(this.identifier)],
        ['CHAP_C', encodeHex(this.challenge)],
      ],
      done: false,
    };
  }

  private verify(keys: Map<string, string>, auth: AuthConfig): AuthStep {
    const user = keys.get('CHAP_N');
    const given = keys.get('CHAP_R');
    if (user === undefined || given === undefined) return deny('CHAP_N or CHAP_R missing');
    const account = auth.incoming.find((a) => a.user === user);
    // An unknown user costs the same hash as a known one: the timing does not tell which names exist.
    const expected = chapResponse(this.algorithm, this.identifier, account?.secret ?? '', this.challenge);
    const r = decodeBinary(given);
    const match = r !== null && r.length === expected.length && crypto.timingSafeEqual(r, expected);
    if (!account) return deny(`unknown CHAP user '${user}'`);
    if (!match) return deny(`wrong CHAP response for user '${user}'`);
    this.state = 'done';

    const theirId = keys.get('CHAP_I');
    const theirChallenge = keys.get('CHAP_C');
    if (theirId === undefined && theirChallenge === undefined) return { response: [], done: true };
    return this.answerMutual(theirId, theirChallenge, auth.outgoing);
  }

  /** The initiator authenticates the target in turn: our name and H(its I ‖ our secret ‖ its C). */
  private answerMutual(
    theirId: string | undefined,
    theirChallenge: string | undefined,
    outgoing: ChapAccount | undefined,
  ): AuthStep {
    if (theirId === undefined || theirChallenge === undefined) return deny('CHAP_I without CHAP_C');
    if (!outgoing) return deny('mutual CHAP asked but no outgoing account configured');
    const id = parseIdentifier(theirId);
    const c = decodeBinary(theirChallenge);
    if (id === null || c === null || c.length > MAX_CHALLENGE) return deny('malformed CHAP_I or CHAP_C');
    // Our own challenge sent back: answering it would hand a third party the response it needs.
    if (c.equals(this.challenge)) return deny('CHAP_C reflects the target challenge');
    const response = chapResponse(this.algorithm, id, outgoing.secret, c);
    return {
      response: [
        ['CHAP_N', outgoing.user],
        ['CHAP_R', encodeHex(response)],
      ],
      done: true,
    };
  }
}

function hashLength(algorithm: number): number {
  return crypto.createHash(CHAP_ALGORITHMS.get(algorithm)!).digest().length;
}

function deny(reason: string): AuthStep {
  return { response: [], done: false, failure: LoginStatus.AuthenticationFailure, reason };
}
