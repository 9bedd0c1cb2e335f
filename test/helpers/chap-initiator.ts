/**
 * The initiator side of CHAP for the test initiator (test/helpers/initiator.ts): answers the target's challenge
 * and, for mutual CHAP, challenges the target and checks its answer. Written from RFC 7143 12.1.3 and RFC 1994
 * independently of src/login/chap.ts, so that the two check each other.
 */
import * as crypto from 'node:crypto';

export interface ChapCredentials {
  user: string;
  secret: string;
  /** CHAP_A values offered, in order (default 5: MD5, what every target has). */
  algorithms?: number[];
  /** Authenticate the target too: the name and secret it must answer with. */
  mutual?: { user: string; secret: string };
}

const HASHES: Record<number, string> = { 5: 'md5', 6: 'sha1', 7: 'sha256', 8: 'sha3-256' };

function hash(alg: number, id: number, secret: string, challenge: Buffer): string {
  const h = crypto.createHash(HASHES[alg]);
  return '0x' + h.update(Buffer.of(id)).update(Buffer.from(secret, 'utf8')).update(challenge).digest('hex');
}

function binary(v: string): Buffer {
  if (/^0x/i.test(v)) return Buffer.from(v.slice(2), 'hex');
  if (/^0b/i.test(v)) return Buffer.from(v.slice(2), 'base64');
  throw new Error(`CHAP value '${v}' is not a binary-value`);
}

/** One login's CHAP conversation. `next` gets each security-stage response's keys. */
export class ChapInitiator {
  private state: 'method' | 'algorithms' | 'response' | 'verify' | 'done' = 'method';
  private algorithm = 0;
  private readonly myId = crypto.randomInt(256);
  private readonly myChallenge = crypto.randomBytes(16);

  constructor(private readonly c: ChapCredentials) {}

  firstKeys(): Array<[string, string]> {
    return [['AuthMethod', 'CHAP']];
  }

  /** The keys of the next request and whether it may ask to leave the security stage. */
  next(response: Map<string, string>): { keys: Array<[string, string]>; transit: boolean } {
    switch (this.state) {
      case 'method': {
        if (response.get('AuthMethod') !== 'CHAP')
          throw new Error(`target chose AuthMethod ${response.get('AuthMethod')}`);
        this.state = 'response';
        return { keys: [['CHAP_A', (this.c.algorithms ?? [5]).join(',')]], transit: false };
      }
      case 'response': {
        this.algorithm = Number(response.get('CHAP_A'));
        if (!(this.c.algorithms ?? [5]).includes(this.algorithm))
          throw new Error(`target chose CHAP_A=${response.get('CHAP_A')}, not one offered`);
        const id = Number(response.get('CHAP_I'));
        const challenge = binary(response.get('CHAP_C') ?? '');
        if (!(id >= 0 && id <= 255) || challenge.length === 0)
          throw new Error('target sent no usable challenge');
        const keys: Array<[string, string]> = [
          ['CHAP_N', this.c.user],
          ['CHAP_R', hash(this.algorithm, id, this.c.secret, challenge)],
        ];
        if (this.c.mutual)
          keys.push(['CHAP_I', String(this.myId)], ['CHAP_C', '0x' + this.myChallenge.toString('hex')]);
        this.state = 'verify';
        return { keys, transit: true };
      }
      default:
        throw new Error('CHAP: unexpected response after the exchange');
    }
  }

  /** On the response to our CHAP_R: with mutual CHAP the target must have proven its secret. */
  verifyTarget(response: Map<string, string>): void {
    if (this.state !== 'verify') return;
    this.state = 'done';
    const m = this.c.mutual;
    if (!m) return;
    if (response.get('CHAP_N') !== m.user)
      throw new Error(`mutual CHAP: target named itself '${response.get('CHAP_N')}', expected '${m.user}'`);
    if (response.get('CHAP_R') !== hash(this.algorithm, this.myId, m.secret, this.myChallenge))
      throw new Error('mutual CHAP: the target answered our challenge wrongly');
  }

  get done(): boolean {
    return this.state === 'done';
  }
}
