/**
 * Operational keys an operator sets globally (`params`) or per target (`targets[].params`), as IET's
 * per-target keys and tgt's per-target params do; the target's values win over the global ones, and those over
 * nodetgt's own (DEFAULT_TARGET_OFFER). Ranges are RFC 7143 sec. 13's, narrowed to what nodetgt implements.
 */
import { DEFAULT_TARGET_OFFER, type DigestName, type TargetOffer } from '../login/negotiator';
import { MAX_DATA_LENGTH } from '../login/keys';
import { asObject, checkKeys, fail } from './validate';

/** The keys as written in the config (RFC key names, so they read as in the RFC and in IET and tgt). */
export interface TargetParams {
  MaxConnections?: number;
  InitialR2T?: boolean;
  ImmediateData?: boolean;
  MaxRecvDataSegmentLength?: number;
  MaxBurstLength?: number;
  FirstBurstLength?: number;
  MaxOutstandingR2T?: number;
  /** The digests the target accepts, in its order of preference: "CRC32C" alone requires one. */
  HeaderDigest?: DigestName[];
  DataDigest?: DigestName[];
  ErrorRecoveryLevel?: number;
  DefaultTime2Wait?: number;
  DefaultTime2Retain?: number;
}

type NumericKey =
  | 'MaxConnections'
  | 'MaxRecvDataSegmentLength'
  | 'MaxBurstLength'
  | 'FirstBurstLength'
  | 'MaxOutstandingR2T'
  | 'ErrorRecoveryLevel'
  | 'DefaultTime2Wait'
  | 'DefaultTime2Retain';

/**
 * RFC 7143 sec. 13 ranges. ErrorRecoveryLevel: every level is implemented (1: digest recovery within a
 * connection and SNACK, src/session/recovery.ts; 2: connection recovery and TASK REASSIGN, src/session/erl2.ts).
 */
const RANGES: Record<NumericKey, [number, number]> = {
  MaxConnections: [1, 65535],
  MaxRecvDataSegmentLength: [512, MAX_DATA_LENGTH],
  MaxBurstLength: [512, MAX_DATA_LENGTH],
  FirstBurstLength: [512, MAX_DATA_LENGTH],
  MaxOutstandingR2T: [1, 65535],
  ErrorRecoveryLevel: [0, 2],
  DefaultTime2Wait: [0, 3600],
  DefaultTime2Retain: [0, 3600],
};
const BOOLEANS = ['InitialR2T', 'ImmediateData'] as const;
const DIGESTS = ['HeaderDigest', 'DataDigest'] as const;
export const PARAM_KEYS: readonly string[] = [...Object.keys(RANGES), ...BOOLEANS, ...DIGESTS];

/** "CRC32C,None", "None,CRC32C", "CRC32C" (required) or "None" (refused). */
function parseDigests(v: unknown, key: string, where: string): DigestName[] {
  const list = typeof v === 'string' ? v.split(',').map((s) => s.trim()) : [];
  const ok =
    list.length > 0 &&
    list.every((d) => d === 'CRC32C' || d === 'None') &&
    new Set(list).size === list.length;
  if (!ok) fail(where, `'${key}' must be "CRC32C,None", "None,CRC32C", "CRC32C" (required) or "None"`);
  return list as DigestName[];
}

/**
 * One `params` object, over `base` (the global params, for a target's). FirstBurstLength above
 * MaxBurstLength is refused where both are set here or inherited (RFC 7143 13.14: it MUST NOT exceed it).
 */
export function normalizeParams(raw: unknown, where: string, base: TargetParams = {}): TargetParams {
  if (raw === undefined) return { ...base };
  const o = asObject(raw, where);
  checkKeys(o, PARAM_KEYS, where);
  const out: TargetParams = { ...base };
  for (const [key, [min, max]] of Object.entries(RANGES) as Array<[NumericKey, [number, number]]>) {
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      fail(where, `'${key}' must be an integer from ${min} to ${max}`);
    out[key] = v;
  }
  for (const key of BOOLEANS) {
    const v = o[key];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') fail(where, `'${key}' must be true or false`);
    out[key] = v;
  }
  for (const key of DIGESTS) if (o[key] !== undefined) out[key] = parseDigests(o[key], key, where);
  const offer = offerFor(out);
  if (out.FirstBurstLength !== undefined && out.FirstBurstLength > offer.maxBurstLength)
    fail(
      where,
      `'FirstBurstLength' ${out.FirstBurstLength} exceeds MaxBurstLength ${offer.maxBurstLength} ` +
        '(RFC 7143 13.14: it must not)',
    );
  return out;
}

/**
 * The offer the negotiator makes with these params. A MaxBurstLength set below nodetgt's FirstBurstLength
 * lowers FirstBurstLength with it, since the operator named only the one.
 */
export function offerFor(p: TargetParams): TargetOffer {
  const d = DEFAULT_TARGET_OFFER;
  const maxBurstLength = p.MaxBurstLength ?? d.maxBurstLength;
  return {
    ...d,
    headerDigest: p.HeaderDigest ?? d.headerDigest,
    dataDigest: p.DataDigest ?? d.dataDigest,
    maxConnections: p.MaxConnections ?? d.maxConnections,
    initialR2T: p.InitialR2T ?? d.initialR2T,
    immediateData: p.ImmediateData ?? d.immediateData,
    maxRecvDataSegmentLength: p.MaxRecvDataSegmentLength ?? d.maxRecvDataSegmentLength,
    maxBurstLength,
    firstBurstLength: p.FirstBurstLength ?? Math.min(d.firstBurstLength, maxBurstLength),
    maxOutstandingR2T: p.MaxOutstandingR2T ?? d.maxOutstandingR2T,
    errorRecoveryLevel: p.ErrorRecoveryLevel ?? d.errorRecoveryLevel,
    defaultTime2Wait: p.DefaultTime2Wait ?? d.defaultTime2Wait,
    defaultTime2Retain: p.DefaultTime2Retain ?? d.defaultTime2Retain,
  };
}
