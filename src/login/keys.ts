/**
 * The login/text key table: every key of RFC 7143 (sec. 12 security keys, sec. 13 operational
 * keys), iSCSIProtocolLevel from RFC 7144, and the obsoleted marker keys; plus the value codecs
 * of RFC 7143 sec. 6.1 (numerical, boolean, binary values).
 *
 * The table is data; negotiator.ts interprets it. Each entry says how a key is negotiated
 * (result function), when it may appear (use, stage), who may send it, and its scope.
 */

/** How the responder computes its answer (RFC 7143 sec. 6.2, "Result function" in sec. 13). */
export type KeyType =
  | 'list' // first value of the originator's list that the responder supports, else Reject
  | 'boolean-and'
  | 'boolean-or'
  | 'numerical-min'
  | 'numerical-max'
  | 'declarative'; // no answer expected

/**
 * When a key may be used (RFC 7143 sec. 13 intro):
 * IO = login only (any connection), LO = login of the leading connection only,
 * FFPO = full feature phase only, ALL = login and full feature phase.
 */
export type KeyUse = 'IO' | 'LO' | 'FFPO' | 'ALL';

/** SW = session-wide, CO = connection-only. */
export type KeyScope = 'SW' | 'CO';

export type KeySenders = 'initiator' | 'target' | 'both';

/**
 * Login stage in which the key is legal: 'security' keys only in SecurityNegotiation,
 * 'operational' keys only in LoginOperationalNegotiation (and FFP where use allows),
 * 'any' = "Any-Stage" declarations (RFC 7143 sec. 13 intro).
 */
export type KeyStage = 'security' | 'operational' | 'any';

/** Syntax of the value (RFC 7143 sec. 6.1). */
export type ValueSyntax =
  | 'boolean'
  | 'numerical'
  | 'binary' // regular-binary-value: decimal, hex or base64, < 2**64
  | 'list'
  | 'iscsi-name'
  | 'local-name' // UTF-8, aliases
  | 'text'
  | 'address' // TargetAddress: domainname[:port][,portal-group-tag]
  | 'send-targets' // "All", an iSCSI name, or empty
  | 'auth'; // authentication exchange values, interpreted by the auth code

export interface KeyDef {
  name: string;
  type: KeyType;
  syntax: ValueSyntax;
  use: KeyUse;
  scope: KeyScope;
  senders: KeySenders;
  stage: KeyStage;
  /** Default as it appears on the wire; undefined where the RFC gives none. */
  default?: string;
  /** Inclusive bounds for numerical values. */
  min?: number;
  max?: number;
  /** Values defined for list keys (and enumerated declaratives like SessionType). */
  values?: readonly string[];
  /** "Irrelevant when: SessionType=Discovery". */
  irrelevantInDiscovery: boolean;
  /** RFC 7143 sec. 13.25: the key was removed; the fixed answer a responder gives. */
  obsoleteAnswer?: 'Reject';
  /** Section of the RFC that defines the key. */
  ref: string;
}

/** 2**24 - 1: the upper bound of the data-length keys. */
export const MAX_DATA_LENGTH = 16777215;

/** Constants reserved by RFC 7143 sec. 6.2; proposing one of them as a value is a protocol error. */
export const RESERVED_VALUES: ReadonlySet<string> = new Set(['Reject', 'Irrelevant', 'NotUnderstood']);

const table: KeyDef[] = [
  // ---- RFC 7143 sec. 12: security keys ---------------------------------------------------
  {
    name: 'AuthMethod',
    type: 'list',
    syntax: 'list',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'security',
    default: 'None',
    values: ['KRB5', 'SRP', 'CHAP', 'None'],
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 12.1',
  },
  ...['CHAP_A', 'CHAP_I', 'CHAP_C', 'CHAP_N', 'CHAP_R'].map((name): KeyDef => ({
    name,
    type: 'declarative',
    syntax: 'auth',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'security',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 12.1.3',
  })),
  ...['SRP_U', 'SRP_GROUP', 'SRP_A', 'SRP_B', 'SRP_M', 'SRP_HM', 'SRP_s', 'TargetAuth'].map(
    (name): KeyDef => ({
      name,
      type: 'declarative',
      syntax: 'auth',
      use: 'IO',
      scope: 'CO',
      senders: 'both',
      stage: 'security',
      irrelevantInDiscovery: false,
      ref: 'RFC 7143 12.1.2',
    }),
  ),
  ...['KRB_AP_REQ', 'KRB_AP_REP'].map((name): KeyDef => ({
    name,
    type: 'declarative',
    syntax: 'auth',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'security',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 12.1.1',
  })),

  // ---- RFC 7143 sec. 13: operational keys -------------------------------------------------
  {
    name: 'HeaderDigest',
    type: 'list',
    syntax: 'list',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'operational',
    default: 'None',
    values: ['CRC32C', 'None'],
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.1',
  },
  {
    name: 'DataDigest',
    type: 'list',
    syntax: 'list',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'operational',
    default: 'None',
    values: ['CRC32C', 'None'],
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.1',
  },
  {
    name: 'MaxConnections',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '1',
    min: 1,
    max: 65535,
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.2',
  },
  {
    name: 'SendTargets',
    type: 'declarative',
    syntax: 'send-targets',
    use: 'FFPO',
    scope: 'SW',
    senders: 'initiator',
    stage: 'operational',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.3',
  },
  {
    // IO when sent by the initiator; the target sends it only in SendTargets responses.
    name: 'TargetName',
    type: 'declarative',
    syntax: 'iscsi-name',
    use: 'IO',
    scope: 'SW',
    senders: 'both',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.4',
  },
  {
    name: 'InitiatorName',
    type: 'declarative',
    syntax: 'iscsi-name',
    use: 'IO',
    scope: 'SW',
    senders: 'initiator',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.5',
  },
  {
    name: 'TargetAlias',
    type: 'declarative',
    syntax: 'local-name',
    use: 'ALL',
    scope: 'SW',
    senders: 'target',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.6',
  },
  {
    name: 'InitiatorAlias',
    type: 'declarative',
    syntax: 'local-name',
    use: 'ALL',
    scope: 'SW',
    senders: 'initiator',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.7',
  },
  {
    name: 'TargetAddress',
    type: 'declarative',
    syntax: 'address',
    use: 'ALL',
    scope: 'SW',
    senders: 'target',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.8',
  },
  {
    name: 'TargetPortalGroupTag',
    type: 'declarative',
    syntax: 'binary',
    use: 'IO',
    scope: 'SW',
    senders: 'target',
    stage: 'any',
    min: 0,
    max: 65535,
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.9',
  },
  {
    name: 'InitialR2T',
    type: 'boolean-or',
    syntax: 'boolean',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: 'Yes',
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.10',
  },
  {
    name: 'ImmediateData',
    type: 'boolean-and',
    syntax: 'boolean',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: 'Yes',
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.11',
  },
  {
    name: 'MaxRecvDataSegmentLength',
    type: 'declarative',
    syntax: 'numerical',
    use: 'ALL',
    scope: 'CO',
    senders: 'both',
    stage: 'operational',
    default: '8192',
    min: 512,
    max: MAX_DATA_LENGTH,
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.12',
  },
  {
    name: 'MaxBurstLength',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '262144',
    min: 512,
    max: MAX_DATA_LENGTH,
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.13',
  },
  {
    // Also irrelevant when InitialR2T=Yes and ImmediateData=No; MUST NOT exceed MaxBurstLength.
    name: 'FirstBurstLength',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '65536',
    min: 512,
    max: MAX_DATA_LENGTH,
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.14',
  },
  {
    name: 'DefaultTime2Wait',
    type: 'numerical-max',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '2',
    min: 0,
    max: 3600,
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.15',
  },
  {
    name: 'DefaultTime2Retain',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '20',
    min: 0,
    max: 3600,
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.16',
  },
  {
    name: 'MaxOutstandingR2T',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '1',
    min: 1,
    max: 65535,
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.17',
  },
  {
    name: 'DataPDUInOrder',
    type: 'boolean-or',
    syntax: 'boolean',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: 'Yes',
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.18',
  },
  {
    name: 'DataSequenceInOrder',
    type: 'boolean-or',
    syntax: 'boolean',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: 'Yes',
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.19',
  },
  {
    name: 'ErrorRecoveryLevel',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '0',
    min: 0,
    max: 2,
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.20',
  },
  {
    name: 'SessionType',
    type: 'declarative',
    syntax: 'text',
    use: 'LO',
    scope: 'SW',
    senders: 'initiator',
    stage: 'any',
    default: 'Normal',
    values: ['Discovery', 'Normal'],
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.21',
  },
  {
    name: 'TaskReporting',
    type: 'list',
    syntax: 'list',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: 'RFC3720',
    values: ['RFC3720', 'ResponseFence', 'FastAbort'],
    irrelevantInDiscovery: true,
    ref: 'RFC 7143 13.23',
  },
  {
    // RFC 7143 13.26 (from RFC 4850): a public extension key that every node may declare.
    name: 'X#NodeArchitecture',
    type: 'declarative',
    syntax: 'list',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'any',
    irrelevantInDiscovery: false,
    ref: 'RFC 7143 13.26',
  },
  {
    name: 'iSCSIProtocolLevel',
    type: 'numerical-min',
    syntax: 'numerical',
    use: 'LO',
    scope: 'SW',
    senders: 'both',
    stage: 'operational',
    default: '1',
    min: 0,
    max: 31,
    irrelevantInDiscovery: true,
    ref: 'RFC 7144 2.1',
  },

  // ---- RFC 7143 sec. 13.25: obsoleted keys (markers were removed) --------------------------
  ...['OFMarker', 'IFMarker'].map((name): KeyDef => ({
    name,
    type: 'boolean-and',
    syntax: 'boolean',
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'operational',
    default: 'No',
    irrelevantInDiscovery: false,
    obsoleteAnswer: 'Reject',
    ref: 'RFC 7143 13.25',
  })),
  ...['OFMarkInt', 'IFMarkInt'].map((name): KeyDef => ({
    name,
    type: 'numerical-min',
    syntax: 'text', // was a numeric-range "1~65535"
    use: 'IO',
    scope: 'CO',
    senders: 'both',
    stage: 'operational',
    default: '2048',
    irrelevantInDiscovery: false,
    obsoleteAnswer: 'Reject',
    ref: 'RFC 7143 13.25',
  })),
];

/** All known keys, by exact (case-sensitive) name. */
export const KEYS: ReadonlyMap<string, Readonly<KeyDef>> = new Map(
  table.map((k) => [k.name, Object.freeze(k)]),
);

export function lookupKey(name: string): Readonly<KeyDef> | undefined {
  return KEYS.get(name);
}

/** Private ("X-") or public ("X#") extension key format (RFC 7143 sec. 13.22, 6.2). */
export function isExtensionKey(name: string): boolean {
  return name.startsWith('X-') || name.startsWith('X#');
}

// ---- value codecs (RFC 7143 sec. 6.1) --------------------------------------------------------

const TWO_POW_64 = 1n << 64n;

/**
 * numerical-value: an unsigned integer < 2**64 as a decimal-constant (no leading zeros, except
 * "0" itself) or a hex-constant ("0x"/"0X" and one or more hex digits). Base64 is not a
 * numerical-value form. Returns undefined when the text is not a numerical-value.
 */
export function parseNumericalValue(text: string): bigint | undefined {
  let v: bigint;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) {
    v = BigInt('0x' + text.slice(2));
  } else if (/^(0|[1-9][0-9]*)$/.test(text)) {
    if (text.length > 20) return undefined;
    v = BigInt(text);
  } else {
    return undefined;
  }
  return v < TWO_POW_64 ? v : undefined;
}

/**
 * regular-binary-value: like a numerical-value but may also be a base64-constant
 * ("0b"/"0B" + base64, decoded big-endian); at most 64 bits.
 */
export function parseBinaryValue(text: string): bigint | undefined {
  if (/^0[bB]/.test(text)) {
    const b64 = text.slice(2);
    if (b64.length === 0 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
    const bytes = Buffer.from(b64, 'base64');
    if (bytes.length === 0 || bytes.length > 8) return undefined;
    let v = 0n;
    for (const b of bytes) v = (v << 8n) | BigInt(b);
    return v;
  }
  return parseNumericalValue(text);
}

/** boolean-value: exactly "Yes" or "No" (values are case-sensitive). */
export function parseBooleanValue(text: string): boolean | undefined {
  if (text === 'Yes') return true;
  if (text === 'No') return false;
  return undefined;
}

export function formatBoolean(v: boolean): 'Yes' | 'No' {
  return v ? 'Yes' : 'No';
}

/**
 * A numerical value of `def` within its range, as a JS number; undefined if malformed or
 * out of range.
 */
export function parseNumberInRange(def: Readonly<KeyDef>, text: string): number | undefined {
  const v = parseNumericalValue(text);
  if (v === undefined) return undefined;
  if (def.min !== undefined && v < BigInt(def.min)) return undefined;
  if (def.max !== undefined && v > BigInt(def.max)) return undefined;
  return Number(v);
}
