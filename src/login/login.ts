/**
 * The login phase of one connection (RFC 7143 sec. 6 and 11.12-11.13): stages, text negotiation through the
 * Negotiator, a pluggable security stage, and the decision that creates, joins or reinstates a session.
 */
import type { Pdu, LoginRequest } from '../pdu/pdu';
import { decodeLoginRequest } from '../pdu/pdu';
import { LoginStage, LoginStatus } from '../pdu/opcodes';
import { Negotiator, type NegotiatedParams, type TargetOffer } from './negotiator';
import { parseTextData, encodeTextData } from './text';

/** Who logs in to what: an authenticator decides by it which accounts apply. */
export interface AuthContext {
  initiatorName: string;
  targetName: string | null;
  sessionType: 'Normal' | 'Discovery';
}

/** One security-stage answer; `failure` is a login status, `reason` (never a secret) goes to the log. */
export interface AuthStep {
  response: Array<[string, string]>;
  done: boolean;
  failure?: number;
  reason?: string;
}

/** A security-stage authenticator (src/login/chap.ts plugs in here). */
export interface Authenticator {
  /** Methods offered for this login, in preference order, e.g. ['CHAP'] or ['None']. */
  methods(ctx: AuthContext): string[];
  /** Handle the security keys of one request after AuthMethod was chosen; `done` when the peer is authenticated. */
  step(method: string, keys: Map<string, string>, ctx: AuthContext): AuthStep;
}

export const noAuthentication: Authenticator = {
  methods: () => ['None'],
  step: () => ({ response: [], done: true }),
};

export interface LoginTargetInfo {
  name: string;
  alias?: string;
  /** The target's own operational values (its config `params`); the environment's offer when absent. */
  offer?: TargetOffer;
}

/** What the connection's owner provides to the login: lookups and the final session decision. */
export interface LoginEnvironment {
  portalGroupTag: number;
  offer: TargetOffer;
  authenticator: Authenticator;
  /** Find a target the initiator may log in to: 'not-found' or 'forbidden' otherwise. */
  lookupTarget(name: string, initiatorName: string): LoginTargetInfo | 'not-found' | 'forbidden';
  /**
   * A non-leading login names a TSIH: does that session exist here, for this initiator, ISID and target
   * (null: a discovery session)?
   */
  sessionExists(tsih: number, initiatorName: string, isid: string, targetName: string | null): boolean;
  /**
   * Whether the session can take this connection under its negotiated MaxConnections. A connection with the
   * CID of one already in the session replaces it (connection reinstatement), so it is not counted twice.
   */
  sessionHasRoom(tsih: number, cid: number): boolean;
  /** The session-wide values already negotiated by the session a non-leading connection joins. */
  sessionParams(tsih: number): Partial<NegotiatedParams> | undefined;
}

export interface LoginOutcome {
  initiatorName: string;
  initiatorAlias?: string;
  sessionType: 'Normal' | 'Discovery';
  targetName: string | null;
  isid: string;
  tsih: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
  params: NegotiatedParams;
  leading: boolean;
}

/** One response the connection must send; `final` = success into full feature phase, `fail` = close after. */
export interface LoginReply {
  transit: boolean;
  continue: boolean;
  csg: number;
  nsg: number;
  status: number;
  data: Buffer;
  outcome?: LoginOutcome;
}

const KEY_TEXT_LIMIT = 65536;

export class LoginHandler {
  private first: LoginRequest | null = null;
  private isidHex = '';
  private stage: number = LoginStage.SecurityNegotiation;
  /** Kept after login: Text requests in full feature phase renegotiate through it. */
  negotiator: Negotiator | null = null;
  private initiatorName = '';
  private initiatorAlias: string | undefined;
  private sessionType: 'Normal' | 'Discovery' = 'Normal';
  private target: LoginTargetInfo | null = null;
  private authMethod: string | null = null;
  /** What the authenticator offers for this login's target (or discovery). */
  private authMethods: string[] = ['None'];
  private authenticated = false;
  private sentFirstResponse = false;
  private pendingText: Buffer[] = [];
  private pendingTextLength = 0;
  /** Text of a response longer than one PDU, sent in pieces (C bit). */
  private outgoing: Buffer | null = null;
  private readonly maxSend = 8192;

  constructor(private readonly env: LoginEnvironment) {}

  /** Process one Login Request; always yields exactly one response PDU. */
  handle(pdu: Pdu): LoginReply {
    const req = decodeLoginRequest(pdu);
    try {
      return this.handleRequest(req, pdu.data);
    } catch (e) {
      if (e instanceof LoginFailure) return this.failure(req, e.status);
      throw e;
    }
  }

  /** Why the login failed, for logs and counters. */
  lastFailure: { status: number; message: string } | null = null;

  private failure(req: LoginRequest, status: number): LoginReply {
    return { transit: false, continue: false, csg: req.csg, nsg: 0, status, data: Buffer.alloc(0) };
  }

  private fail(status: number, message: string): never {
    this.lastFailure = { status, message };
    throw new LoginFailure(status);
  }

  private handleRequest(req: LoginRequest, data: Buffer): LoginReply {
    if (this.first === null) {
      if (req.versionMin > 0)
        this.fail(LoginStatus.UnsupportedVersion, `version ${req.versionMin}-${req.versionMax}`);
      this.first = req;
      this.isidHex = req.isid.toString('hex');
      this.stage = req.csg;
    } else if (
      !req.isid.equals(this.first.isid) ||
      req.tsih !== this.first.tsih ||
      req.cid !== this.first.cid ||
      req.itt !== this.first.itt
    ) {
      this.fail(LoginStatus.InitiatorError, 'ISID/TSIH/CID/ITT changed during login');
    }
    if (req.csg !== this.stage || req.csg === 2)
      this.fail(LoginStatus.InitiatorError, `unexpected CSG ${req.csg}`);
    if (req.transit && (req.nsg === 2 || req.nsg <= req.csg))
      this.fail(LoginStatus.InitiatorError, `invalid transition ${req.csg}->${req.nsg}`);
    if (req.transit && req.continue) this.fail(LoginStatus.InitiatorError, 'T and C both set');

    // A response longer than one PDU: the initiator acknowledges each piece with an empty request.
    if (this.outgoing) return this.continueOutgoing(req);

    // Key text spread over several PDUs (C bit): acknowledge each with an empty response.
    this.pendingTextLength += data.length;
    if (this.pendingTextLength > KEY_TEXT_LIMIT) this.fail(LoginStatus.InitiatorError, 'login text too long');
    this.pendingText.push(data);
    if (req.continue)
      return { transit: false, continue: false, csg: req.csg, nsg: 0, status: 0, data: Buffer.alloc(0) };
    const text = this.pendingText.length === 1 ? this.pendingText[0] : Buffer.concat(this.pendingText);
    this.pendingText = [];
    this.pendingTextLength = 0;

    const parsed = parseTextData(text);
    if (parsed.error) this.fail(LoginStatus.InitiatorError, `malformed login text: ${parsed.error}`);
    const pairs = parsed.pairs;
    const response: Array<[string, string]> = [];

    if (this.negotiator === null) this.startSession(pairs, req);
    const negotiator = this.negotiator!;

    const stageName = req.csg === LoginStage.SecurityNegotiation ? 'security' : 'operational';
    const result = negotiator.process(pairs, stageName);
    if (result.failure) {
      this.fail((result.failure.statusClass << 8) | result.failure.statusDetail, result.failure.message);
    }
    response.push(...result.response);
    if (!this.sentFirstResponse) {
      if (this.sessionType === 'Normal') {
        if (this.target?.alias) response.push(['TargetAlias', this.target.alias]);
        response.push(['TargetPortalGroupTag', String(this.env.portalGroupTag)]);
      }
      this.sentFirstResponse = true;
    }

    if (req.csg === LoginStage.SecurityNegotiation) {
      const chosen = result.response.find(([k]) => k === 'AuthMethod')?.[1];
      if (chosen !== undefined) {
        if (chosen === 'Reject' || chosen === 'NotUnderstood')
          this.fail(LoginStatus.AuthenticationFailure, 'no acceptable AuthMethod');
        this.authMethod = chosen;
      }
      if (this.authMethod !== null && this.authMethod !== 'None') {
        const step = this.env.authenticator.step(this.authMethod, result.declarations, this.authContext());
        if (step.failure !== undefined) this.fail(step.failure, step.reason ?? 'authentication failed');
        response.push(...step.response);
        if (step.done) this.authenticated = true;
      } else if (this.authMethod === 'None') {
        this.authenticated = true;
      }
    } else if (!this.authenticated) {
      // The security stage was skipped: acceptable only when the target requires no authentication.
      if (!this.authMethods.includes('None'))
        this.fail(LoginStatus.AuthenticationFailure, 'authentication required');
      this.authenticated = true;
    }

    let transit = req.transit;
    let nsg = req.transit ? req.nsg : 0;
    if (transit && req.csg === LoginStage.SecurityNegotiation && !this.authenticated) transit = false;
    if (transit && nsg === LoginStage.FullFeaturePhase) {
      const offers = negotiator.pendingOffers();
      if (offers.length) {
        // Keys we still want to propose: one more round before full feature phase.
        response.push(...offers);
        transit = false;
      }
    }
    if (!transit) nsg = 0;
    let outcome: LoginOutcome | undefined;
    if (transit && nsg === LoginStage.FullFeaturePhase) {
      const unmet = negotiator.unmetRequirement();
      // The initiator first hears the RFC answer (unmet=Reject) and stays in its stage; a login that still
      // asks for full feature phase without the digest the target requires is refused.
      if (unmet !== null && response.some(([k, v]) => k === unmet && v === 'Reject')) {
        transit = false;
        nsg = 0;
      } else if (unmet !== null) this.fail(LoginStatus.InitiatorError, `the target requires ${unmet}=CRC32C`);
      else outcome = this.finish(req, negotiator);
    }
    if (transit) this.stage = nsg;

    const body = encodeTextData(response);
    if (body.length > this.maxSend) {
      this.outgoing = body;
      this.pendingOutcome = { transit, nsg, outcome };
      return this.continueOutgoing(req);
    }
    return { transit, continue: false, csg: req.csg, nsg, status: 0, data: body, outcome };
  }

  private pendingOutcome: { transit: boolean; nsg: number; outcome?: LoginOutcome } | null = null;

  private continueOutgoing(req: LoginRequest): LoginReply {
    const body = this.outgoing!;
    const piece = body.subarray(0, this.maxSend);
    if (body.length > this.maxSend) {
      this.outgoing = body.subarray(this.maxSend);
      return { transit: false, continue: true, csg: req.csg, nsg: 0, status: 0, data: piece };
    }
    this.outgoing = null;
    const p = this.pendingOutcome!;
    this.pendingOutcome = null;
    return {
      transit: p.transit,
      continue: false,
      csg: req.csg,
      nsg: p.nsg,
      status: 0,
      data: piece,
      outcome: p.outcome,
    };
  }

  /** First request: who is logging in to what. */
  private startSession(pairs: Array<[string, string]>, req: LoginRequest): void {
    const get = (k: string) => pairs.find(([key]) => key === k)?.[1];
    const name = get('InitiatorName');
    if (!name) this.fail(LoginStatus.MissingParameter, 'InitiatorName missing');
    this.initiatorName = name;
    this.initiatorAlias = get('InitiatorAlias');
    const st = get('SessionType') ?? 'Normal';
    if (st !== 'Normal' && st !== 'Discovery')
      this.fail(LoginStatus.SessionTypeNotSupported, `SessionType ${st}`);
    this.sessionType = st;
    const leading = req.tsih === 0;
    if (st === 'Normal') {
      const tn = get('TargetName');
      if (!tn) this.fail(LoginStatus.MissingParameter, 'TargetName missing');
      const t = this.env.lookupTarget(tn, name);
      if (t === 'not-found') this.fail(LoginStatus.NotFound, `no target ${tn}`);
      if (t === 'forbidden') this.fail(LoginStatus.AuthorizationFailure, `initiator not allowed on ${tn}`);
      this.target = t;
    }
    if (!leading) {
      // RFC 7143 sec. 11.12.5 (TSIH): a connection joins the session of this TSIH, which must be the
      // initiator's own (name and ISID) on the same target.
      if (!this.env.sessionExists(req.tsih, name, this.isidHex, this.target?.name ?? null))
        this.fail(LoginStatus.SessionDoesNotExist, `no session with TSIH ${req.tsih} for this initiator`);
      if (this.env.sessionParams(req.tsih)?.sessionType !== st)
        this.fail(LoginStatus.InitiatorError, `SessionType ${st} differs from the session's`);
      if (!this.env.sessionHasRoom(req.tsih, req.cid))
        this.fail(LoginStatus.TooManyConnections, `MaxConnections of session ${req.tsih} reached`);
    }
    this.authMethods = this.env.authenticator.methods(this.authContext());
    this.negotiator = new Negotiator({
      // TargetName is in the first request, so the target's own values apply from the first operational key.
      offer: { ...(this.target?.offer ?? this.env.offer), authMethods: this.authMethods },
      leading,
      sessionType: st,
      session: leading ? undefined : this.env.sessionParams(req.tsih),
    });
  }

  private authContext(): AuthContext {
    return {
      initiatorName: this.initiatorName,
      targetName: this.target?.name ?? null,
      sessionType: this.sessionType,
    };
  }

  /** The initiator's name once the first request has been read ('' before), for logs. */
  get initiator(): string {
    return this.initiatorName;
  }

  private finish(req: LoginRequest, negotiator: Negotiator): LoginOutcome {
    return {
      initiatorName: this.initiatorName,
      initiatorAlias: this.initiatorAlias,
      sessionType: this.sessionType,
      targetName: this.target?.name ?? null,
      isid: this.isidHex,
      tsih: req.tsih,
      cid: req.cid,
      cmdSN: this.first!.cmdSN,
      expStatSN: req.expStatSN,
      params: negotiator.result(),
      leading: req.tsih === 0,
    };
  }
}

class LoginFailure extends Error {
  constructor(readonly status: number) {
    super(`login failure 0x${status.toString(16)}`);
  }
}
