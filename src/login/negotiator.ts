/**
 * Target-side text negotiation for one connection (RFC 7143 sec. 6.2 and 13): answers the
 * initiator's offers during login and, later, Text renegotiation in full feature phase;
 * proposes the target's own values where the defaults would hold us back; and yields the
 * negotiated operational parameters.
 *
 * It does no I/O and knows nothing of PDUs: the login state machine feeds it the pairs of each
 * complete request and sends back what it returns.
 */
import {
  KeyDef,
  MAX_DATA_LENGTH,
  RESERVED_VALUES,
  formatBoolean,
  lookupKey,
  parseBooleanValue,
  parseNumberInRange,
  parseNumericalValue,
} from './keys';

export type DigestName = 'CRC32C' | 'None';
export type TaskReportingMode = 'RFC3720' | 'ResponseFence' | 'FastAbort';
export type SessionType = 'Normal' | 'Discovery';
export type NegotiationStage = 'security' | 'operational' | 'ffp';

/** What the target is willing to do. Lists are in the target's order of support. */
export interface TargetOffer {
  headerDigest: DigestName[];
  dataDigest: DigestName[];
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** The most data we accept in one PDU (declared to the initiator). */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  /** e.g. ['None'], ['CHAP'], ['CHAP', 'None']. */
  authMethods: string[];
  taskReporting: TaskReportingMode[];
  /** Highest iSCSIProtocolLevel we implement (RFC 7144: 1 = RFC 7143, 2 = RFC 7144 features). */
  protocolLevel: number;
}

/** The outcome of negotiation: every operational value, defaults filled in. */
export interface NegotiatedParams {
  sessionType: SessionType;
  /** AuthMethod agreed in the security stage ('None' if none was negotiated). */
  authMethod: string;
  /** CRC32C header digest in use on this connection. */
  headerDigest: boolean;
  /** CRC32C data digest in use on this connection. */
  dataDigest: boolean;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** Initiator's MaxRecvDataSegmentLength: the limit for the data segments WE send. */
  initiatorMaxRecvDataSegmentLength: number;
  /** Our declared MaxRecvDataSegmentLength: the limit for the data segments we receive. */
  targetMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  /** Never above maxBurstLength. */
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  taskReporting: TaskReportingMode;
  protocolLevel: number;
}

export interface NegotiationFailure {
  statusClass: number;
  statusDetail: number;
  message: string;
}

export interface NegotiationResult {
  /** Pairs to send back, in the order of the request, then the target's declarations. */
  response: Array<[string, string]>;
  /** Keys the login state machine handles itself (names, SessionType, aliases, SendTargets, auth exchange). */
  declarations: Map<string, string>;
  /** Set when the request is a protocol error: fail the login (or reject the Text request). */
  failure?: NegotiationFailure;
}

export interface NegotiatorOptions {
  offer: TargetOffer;
  /** Leading connection of its session (the only one that may carry LO keys). */
  leading: boolean;
  sessionType?: SessionType;
  /**
   * Values of the session this connection joins (non-leading login). Only the session-wide
   * fields are taken; connection-only ones (digests, MaxRecvDataSegmentLength, AuthMethod) are
   * negotiated afresh on every connection.
   */
  session?: Partial<NegotiatedParams>;
}

/** Tuned for throughput: unsolicited data on, large bursts, several R2Ts in flight. */
export const DEFAULT_TARGET_OFFER: Readonly<TargetOffer> = Object.freeze({
  headerDigest: ['None', 'CRC32C'] as DigestName[],
  dataDigest: ['None', 'CRC32C'] as DigestName[],
  maxConnections: 8,
  initialR2T: false,
  immediateData: true,
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  maxOutstandingR2T: 8,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  // The highest level: ErrorRecoveryLevel is numerical-min, so the session gets what the initiator asks, up to 2.
  errorRecoveryLevel: 2,
  authMethods: ['None'],
  taskReporting: ['RFC3720'] as TaskReportingMode[],
  protocolLevel: 1,
});

/** RFC 7143 defaults (sec. 13) and RFC 7144 (iSCSIProtocolLevel). */
export function defaultParams(): NegotiatedParams {
  return {
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
  };
}

/** Login status "Initiator error (not classified)" (RFC 7143 sec. 11.13.5): class 2, detail 0. */
const INITIATOR_ERROR = { statusClass: 0x02, statusDetail: 0x00 };

type NumericField =
  | 'maxConnections'
  | 'maxBurstLength'
  | 'firstBurstLength'
  | 'defaultTime2Wait'
  | 'defaultTime2Retain'
  | 'maxOutstandingR2T'
  | 'errorRecoveryLevel'
  | 'protocolLevel';
type BooleanField = 'initialR2T' | 'immediateData' | 'dataPDUInOrder' | 'dataSequenceInOrder';

/** Negotiated keys and the result field each one sets. */
const NUMERIC_FIELDS: Record<string, NumericField> = {
  MaxConnections: 'maxConnections',
  MaxBurstLength: 'maxBurstLength',
  FirstBurstLength: 'firstBurstLength',
  DefaultTime2Wait: 'defaultTime2Wait',
  DefaultTime2Retain: 'defaultTime2Retain',
  MaxOutstandingR2T: 'maxOutstandingR2T',
  ErrorRecoveryLevel: 'errorRecoveryLevel',
  iSCSIProtocolLevel: 'protocolLevel',
};
const BOOLEAN_FIELDS: Record<string, BooleanField> = {
  InitialR2T: 'initialR2T',
  ImmediateData: 'immediateData',
  DataPDUInOrder: 'dataPDUInOrder',
  DataSequenceInOrder: 'dataSequenceInOrder',
};

/** Fields with scope SW (session-wide) in RFC 7143 sec. 13. */
const SESSION_WIDE_FIELDS: ReadonlyArray<keyof NegotiatedParams> = [
  'sessionType',
  'maxConnections',
  'initialR2T',
  'immediateData',
  'maxBurstLength',
  'firstBurstLength',
  'defaultTime2Wait',
  'defaultTime2Retain',
  'maxOutstandingR2T',
  'dataPDUInOrder',
  'dataSequenceInOrder',
  'errorRecoveryLevel',
  'taskReporting',
  'protocolLevel',
];

class ProtocolError extends Error {}

export class Negotiator {
  private readonly offer: TargetOffer;
  private readonly leading: boolean;
  private readonly values: NegotiatedParams;
  /** Keys the initiator has sent during this login: a second time is a protocol error. */
  private readonly seen = new Set<string>();
  /** Values of the declarative keys seen in this login: one repeated unchanged is accepted (see processPairs). */
  private readonly declared = new Map<string, string>();
  /** Keys we proposed and whose answer has not come yet, with the value we proposed. */
  private readonly outstanding = new Map<string, string>();
  /** Keys we proposed (answered or not): never proposed twice. */
  private readonly proposed = new Set<string>();
  private declaredMRDSL = false;
  /** Stage of the last request processed: proposals are only made in the operational stage. */
  private lastStage: NegotiationStage | undefined;

  constructor(opts: NegotiatorOptions) {
    validateOffer(opts.offer);
    this.offer = opts.offer;
    this.leading = opts.leading;
    this.values = defaultParams();
    if (opts.session) {
      for (const f of SESSION_WIDE_FIELDS) {
        const v = opts.session[f];
        if (v !== undefined) (this.values as unknown as Record<string, unknown>)[f] = v;
      }
    }
    if (opts.sessionType) this.values.sessionType = opts.sessionType;
  }

  get sessionType(): SessionType {
    return this.values.sessionType;
  }

  /** Answer one complete request (all its PDUs joined). */
  process(pairs: ReadonlyArray<readonly [string, string]>, stage: NegotiationStage): NegotiationResult {
    const declarations = new Map<string, string>();
    try {
      const response = this.processPairs(pairs, stage, declarations);
      return { response, declarations };
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      return { response: [], declarations, failure: { ...INITIATOR_ERROR, message: e.message } };
    }
  }

  /**
   * Keys the target proposes because the value in force (the default, as the initiator did not
   * send the key) differs from what we want: above or below it. Call when about to answer a
   * request to leave the operational stage; send them with T=0 and let process() take the
   * answers. Each key is proposed at most once per login; nothing is proposed in a discovery
   * session beyond the keys relevant there, nor LO keys on a non-leading connection. Returns
   * nothing unless the last request processed was in the operational stage (operational keys
   * must not appear in a security-stage response; an initiator going from security straight to
   * full feature phase gets the defaults).
   */
  pendingOffers(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    if (this.lastStage !== 'operational') return out;
    const v = this.values;
    const o = this.offer;
    const propose = (key: string, ours: string, current: string): void => {
      const def = lookupKey(key) as KeyDef;
      if (this.seen.has(key) || this.proposed.has(key) || ours === current) return;
      if (def.use === 'LO' && !this.leading) return;
      if (def.irrelevantInDiscovery && v.sessionType === 'Discovery') return;
      this.proposed.add(key);
      this.outstanding.set(key, ours);
      out.push([key, ours]);
    };
    // Digests: only when the default None is unacceptable to us.
    if (!o.headerDigest.includes('None') && !v.headerDigest)
      propose('HeaderDigest', o.headerDigest.join(','), 'None');
    if (!o.dataDigest.includes('None') && !v.dataDigest)
      propose('DataDigest', o.dataDigest.join(','), 'None');
    propose('MaxConnections', String(o.maxConnections), String(v.maxConnections));
    propose('InitialR2T', formatBoolean(o.initialR2T), formatBoolean(v.initialR2T));
    propose('ImmediateData', formatBoolean(o.immediateData), formatBoolean(v.immediateData));
    propose('MaxBurstLength', String(o.maxBurstLength), String(v.maxBurstLength));
    // FirstBurstLength: relevant unless InitialR2T=Yes and ImmediateData=No would hold once our
    // proposals are accepted; never above the MaxBurstLength we propose.
    const r2tAfter = this.outstanding.has('InitialR2T') ? o.initialR2T : v.initialR2T;
    const immAfter = this.outstanding.has('ImmediateData') ? o.immediateData : v.immediateData;
    const mblAfter = this.outstanding.has('MaxBurstLength') ? o.maxBurstLength : v.maxBurstLength;
    if (!(r2tAfter && !immAfter)) {
      propose('FirstBurstLength', String(Math.min(o.firstBurstLength, mblAfter)), String(v.firstBurstLength));
    }
    propose('DefaultTime2Wait', String(o.defaultTime2Wait), String(v.defaultTime2Wait));
    propose('DefaultTime2Retain', String(o.defaultTime2Retain), String(v.defaultTime2Retain));
    propose('MaxOutstandingR2T', String(o.maxOutstandingR2T), String(v.maxOutstandingR2T));
    propose('DataPDUInOrder', formatBoolean(o.dataPDUInOrder), formatBoolean(v.dataPDUInOrder));
    propose(
      'DataSequenceInOrder',
      formatBoolean(o.dataSequenceInOrder),
      formatBoolean(v.dataSequenceInOrder),
    );
    // A discovery session has no task to recover, and nodetgt keeps none for reassignment (erl2.ts): no offer.
    if (v.sessionType !== 'Discovery')
      propose('ErrorRecoveryLevel', String(o.errorRecoveryLevel), String(v.errorRecoveryLevel));
    if (o.taskReporting[0] !== v.taskReporting) {
      propose('TaskReporting', o.taskReporting.join(','), v.taskReporting);
    }
    propose('iSCSIProtocolLevel', String(o.protocolLevel), String(v.protocolLevel));
    return out;
  }

  /**
   * Why the values in force cannot go into full feature phase (a digest the target requires is not on),
   * or null. An initiator that skipped the operational stage never heard our proposal of it.
   */
  unmetRequirement(): 'HeaderDigest' | 'DataDigest' | null {
    if (!this.offer.headerDigest.includes('None') && !this.values.headerDigest) return 'HeaderDigest';
    if (!this.offer.dataDigest.includes('None') && !this.values.dataDigest) return 'DataDigest';
    return null;
  }

  /** No proposal of ours is waiting for its answer. */
  complete(): boolean {
    return this.outstanding.size === 0;
  }

  /** Every operational value, defaults filled in. */
  result(): NegotiatedParams {
    // targetMaxRecvDataSegmentLength stays at the default 8192 until we have declared ours.
    const r = { ...this.values };
    r.firstBurstLength = Math.min(r.firstBurstLength, r.maxBurstLength);
    return r;
  }

  // ---- internals ---------------------------------------------------------------------------

  private processPairs(
    pairs: ReadonlyArray<readonly [string, string]>,
    stage: NegotiationStage,
    declarations: Map<string, string>,
  ): Array<[string, string]> {
    const inLogin = stage !== 'ffp';
    this.lastStage = stage;
    const thisRequest = new Set<string>();
    for (const [key, value] of pairs) {
      if (thisRequest.has(key)) throw new ProtocolError(`key ${key} sent twice`);
      thisRequest.add(key);
      // libiscsi sends InitiatorName, TargetName and SessionType again in the operational stage after CHAP:
      // a declaration repeated unchanged states nothing new; a changed one is still an error.
      if (inLogin && this.seen.has(key) && this.declared.get(key) !== value)
        throw new ProtocolError(`key ${key} negotiated twice in one login`);
    }
    // SessionType decides what else is relevant, whatever its place in the request.
    const st = pairs.find(([k]) => k === 'SessionType');
    if (st && inLogin && this.leading) {
      if (st[1] !== 'Normal' && st[1] !== 'Discovery')
        throw new ProtocolError(`invalid SessionType '${st[1]}'`);
      this.values.sessionType = st[1];
    }

    // Answers are placed in request order; FirstBurstLength is decided last, once
    // MaxBurstLength, InitialR2T and ImmediateData of the same request are known.
    const slots: Array<[string, string] | undefined> = [];
    let deferred: { index: number; value: string } | undefined;
    for (const [key, value] of pairs) {
      if (inLogin) {
        this.seen.add(key);
        if (lookupKey(key)?.type === 'declarative') this.declared.set(key, value);
      }
      if (key === 'FirstBurstLength' && !this.outstanding.has(key)) {
        const def = lookupKey(key) as KeyDef;
        const early = this.gate(def, key, value, stage);
        if (early === null) {
          deferred = { index: slots.length, value };
          slots.push(undefined);
        } else {
          slots.push(early);
        }
        continue;
      }
      slots.push(this.answer(key, value, stage, declarations));
    }
    if (deferred) slots[deferred.index] = this.answerFirstBurst(deferred.value);

    const response = slots.filter((s): s is [string, string] => s !== undefined);
    if (stage === 'operational' && !this.declaredMRDSL) {
      this.declaredMRDSL = true;
      this.values.targetMaxRecvDataSegmentLength = this.offer.maxRecvDataSegmentLength;
      response.push(['MaxRecvDataSegmentLength', String(this.offer.maxRecvDataSegmentLength)]);
    }
    return response;
  }

  /**
   * Checks common to every key: returns the answer when it is decided without the result
   * function (NotUnderstood, Irrelevant, the fixed Reject of obsoleted keys), throws on a
   * protocol error, or returns null when the key is to be declared or negotiated.
   */
  private gate(
    def: Readonly<KeyDef> | undefined,
    key: string,
    value: string,
    stage: NegotiationStage,
  ): [string, string] | null {
    if (!def) return [key, 'NotUnderstood'];
    if (def.obsoleteAnswer) return [key, def.obsoleteAnswer];
    if (def.senders === 'target') throw new ProtocolError(`${key} may only be sent by a target`);

    if (stage === 'ffp') {
      if (def.use !== 'ALL' && def.use !== 'FFPO') return [key, 'Irrelevant'];
    } else {
      if (def.use === 'FFPO') return [key, 'Irrelevant'];
      if (def.stage === 'security' && stage !== 'security') {
        throw new ProtocolError(`security key ${key} outside the security negotiation stage`);
      }
      if (def.stage === 'operational' && stage === 'security') {
        throw new ProtocolError(`operational key ${key} in the security negotiation stage`);
      }
    }
    // RFC 7143 sec. 6.2: a session-wide value was settled by the leading login; sending it again on a
    // non-leading connection is an attempt to renegotiate it, which the target must refuse (initiator error).
    // SessionType is the one LO key a joining connection may repeat: the login checks it names the session's.
    if (def.use === 'LO' && !this.leading && key !== 'SessionType')
      throw new ProtocolError(`leading-only key ${key} in a non-leading login`);
    if (def.type === 'declarative') return null;
    if (RESERVED_VALUES.has(value))
      throw new ProtocolError(`${key}=${value}: reserved constant offered as a value`);
    if (def.irrelevantInDiscovery && this.values.sessionType === 'Discovery') return [key, 'Irrelevant'];
    return null;
  }

  private answer(
    key: string,
    value: string,
    stage: NegotiationStage,
    declarations: Map<string, string>,
  ): [string, string] | undefined {
    const def = lookupKey(key);
    if (def && this.outstanding.has(key)) {
      this.takeAnswer(def, key, value);
      return undefined;
    }
    const early = this.gate(def, key, value, stage);
    if (early !== null) return early;
    const d = def as Readonly<KeyDef>;

    switch (d.type) {
      case 'declarative':
        if (key === 'MaxRecvDataSegmentLength') {
          this.values.initiatorMaxRecvDataSegmentLength = parseDeclaredMRDSL(value);
        } else {
          declarations.set(key, value);
        }
        return undefined;
      case 'list':
        return [key, this.answerList(key, value)];
      case 'boolean-and':
      case 'boolean-or': {
        const field = BOOLEAN_FIELDS[key];
        const theirs = parseBooleanValue(value);
        if (theirs === undefined) return [key, 'Reject'];
        const ours = this.offer[field];
        const result = d.type === 'boolean-and' ? theirs && ours : theirs || ours;
        this.values[field] = result;
        return [key, formatBoolean(result)];
      }
      case 'numerical-min':
      case 'numerical-max': {
        const field = NUMERIC_FIELDS[key];
        const theirs = parseNumberInRange(d, value);
        if (theirs === undefined) return [key, 'Reject'];
        const ours = this.offer[field];
        const result = d.type === 'numerical-min' ? Math.min(theirs, ours) : Math.max(theirs, ours);
        this.values[field] = result;
        return [key, String(result)];
      }
    }
  }

  private answerList(key: string, value: string): string {
    const theirs = value.split(',');
    const pick = (ours: readonly string[]): string | undefined => theirs.find((v) => ours.includes(v));
    switch (key) {
      case 'HeaderDigest':
      case 'DataDigest': {
        const ours = key === 'HeaderDigest' ? this.offer.headerDigest : this.offer.dataDigest;
        const chosen = pick(ours);
        // A target requiring CRC32C answers None with Reject too (RFC 7143 6.2.1); the login then cannot end
        // with the digest off (unmetRequirement).
        if (chosen === undefined) return 'Reject';
        this.values[key === 'HeaderDigest' ? 'headerDigest' : 'dataDigest'] = chosen === 'CRC32C';
        return chosen;
      }
      case 'AuthMethod': {
        const chosen = pick(this.offer.authMethods);
        if (chosen === undefined) return 'Reject';
        this.values.authMethod = chosen;
        return chosen;
      }
      case 'TaskReporting': {
        const chosen = pick(this.offer.taskReporting);
        if (chosen === undefined) return 'Reject';
        this.values.taskReporting = chosen as TaskReportingMode;
        return chosen;
      }
      default:
        return 'Reject';
    }
  }

  /** FirstBurstLength: Minimum, clipped to the negotiated MaxBurstLength (RFC 7143 sec. 13.14). */
  private answerFirstBurst(value: string): [string, string] {
    const key = 'FirstBurstLength';
    if (this.values.initialR2T && !this.values.immediateData) return [key, 'Irrelevant'];
    const theirs = parseNumberInRange(lookupKey(key) as KeyDef, value);
    if (theirs === undefined) return [key, 'Reject'];
    const result = Math.min(theirs, this.offer.firstBurstLength, this.values.maxBurstLength);
    this.values.firstBurstLength = result;
    return [key, String(result)];
  }

  /**
   * The initiator's answer to a key we proposed. The answer must be one the result function
   * allows given our value (RFC 7143 sec. 6.2, 13 intro); Reject, Irrelevant and NotUnderstood
   * leave the key at its current value.
   */
  private takeAnswer(def: Readonly<KeyDef>, key: string, value: string): void {
    const proposed = this.outstanding.get(key) as string;
    this.outstanding.delete(key);
    if (RESERVED_VALUES.has(value)) {
      // A required digest proposed and refused: going on would run the connection without it.
      if ((key === 'HeaderDigest' || key === 'DataDigest') && !proposed.split(',').includes('None'))
        throw new ProtocolError(`${key}=${value} to our required ${key}=${proposed}`);
      return;
    }
    const bad = `answer ${key}=${value} not admissible for our offer ${key}=${proposed}`;
    switch (def.type) {
      case 'list': {
        if (!proposed.split(',').includes(value)) throw new ProtocolError(bad);
        if (key === 'HeaderDigest') this.values.headerDigest = value === 'CRC32C';
        else if (key === 'DataDigest') this.values.dataDigest = value === 'CRC32C';
        else if (key === 'TaskReporting') this.values.taskReporting = value as TaskReportingMode;
        return;
      }
      case 'boolean-and':
      case 'boolean-or': {
        const theirs = parseBooleanValue(value);
        if (theirs === undefined) throw new ProtocolError(bad);
        const ours = proposed === 'Yes';
        // AND: having offered No, only No is possible; OR: having offered Yes, only Yes.
        if (def.type === 'boolean-and' && !ours && theirs) throw new ProtocolError(bad);
        if (def.type === 'boolean-or' && ours && !theirs) throw new ProtocolError(bad);
        this.values[BOOLEAN_FIELDS[key]] = theirs;
        return;
      }
      case 'numerical-min':
      case 'numerical-max': {
        const theirs = parseNumberInRange(def, value);
        if (theirs === undefined) throw new ProtocolError(bad);
        const ours = Number(proposed);
        // Minimum: the answer cannot exceed the offer; Maximum: it cannot be lower.
        if (def.type === 'numerical-min' ? theirs > ours : theirs < ours) throw new ProtocolError(bad);
        this.values[NUMERIC_FIELDS[key]] = theirs;
        return;
      }
      default:
        return;
    }
  }
}

/**
 * The initiator's declared MaxRecvDataSegmentLength. Above 2**24-1 we use 2**24-1 (it can
 * receive at least that); below 512 or malformed there is no admissible value we could use,
 * and the key cannot be answered Reject since our own declaration uses the same key.
 */
function parseDeclaredMRDSL(value: string): number {
  const v = parseNumericalValue(value);
  if (v === undefined || v < 512n) throw new ProtocolError(`invalid MaxRecvDataSegmentLength '${value}'`);
  return v > BigInt(MAX_DATA_LENGTH) ? MAX_DATA_LENGTH : Number(v);
}

function validateOffer(o: TargetOffer): void {
  const num = (name: keyof TargetOffer, min: number, max: number): void => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`TargetOffer.${name} must be an integer in ${min}..${max}`);
    }
  };
  num('maxConnections', 1, 65535);
  num('maxRecvDataSegmentLength', 512, MAX_DATA_LENGTH);
  num('maxBurstLength', 512, MAX_DATA_LENGTH);
  num('firstBurstLength', 512, MAX_DATA_LENGTH);
  num('defaultTime2Wait', 0, 3600);
  num('defaultTime2Retain', 0, 3600);
  num('maxOutstandingR2T', 1, 65535);
  num('errorRecoveryLevel', 0, 2);
  num('protocolLevel', 0, 31);
  if (o.firstBurstLength > o.maxBurstLength)
    throw new RangeError('TargetOffer.firstBurstLength exceeds maxBurstLength');
  for (const [name, list] of [
    ['headerDigest', o.headerDigest],
    ['dataDigest', o.dataDigest],
    ['authMethods', o.authMethods],
    ['taskReporting', o.taskReporting],
  ] as const) {
    if (!Array.isArray(list) || list.length === 0)
      throw new RangeError(`TargetOffer.${name} must not be empty`);
  }
}
