/**
 * Counters in shared memory: each worker thread owns one row of a Float64Array over a SharedArrayBuffer
 * and increments plain slots (single writer, no messages); the portal thread sums the rows at scrape time.
 * Names follow the iSCSI-MIB (RFC 7147) where it has one.
 */
import { MAX_LUS } from '../config/schema';
import { allocateRuntimeShared } from './runtime';
import { createSessionStatsShared, type SessionStatsShared } from './session-stats';

export const COUNTERS = [
  // iscsiTgtLoginStatsTable
  'tgtLoginAccepts',
  'tgtLoginOtherFails',
  'tgtLoginRedirects',
  'tgtLoginAuthorizeFails',
  'tgtLoginAuthenticateFails',
  'tgtLoginNegotiateFails',
  // iscsiTgtLogoutStatsTable
  'tgtLogoutNormals',
  'tgtLogoutOthers',
  // iscsiInstSsnErrorStatsTable
  'instSsnDigestErrors',
  'instSsnCxnTimeoutErrors',
  'instSsnFormatErrors',
  // session traffic (iscsiSsnStatsTable, summed)
  'ssnCmdPDUs',
  'ssnRspPDUs',
  'ssnTxDataOctets',
  'ssnRxDataOctets',
  // our own
  'cxnActive',
  'cxnAccepted',
  'ssnActive',
  'rejectsSent',
  'pduDataCopiedBytes',
  'pduHeaderDigestsVerified',
  'pduDataDigestsVerified',
  'scsiCommands',
  'scsiReadBytes',
  'scsiWriteBytes',
  'scsiCheckConditions',
  'nopInPings',
  'tmfRequests',
  'tmfNotComplete',
  'tmfDataOutWaitExpired',
  // admission and containment (issue 7)
  'cxnRefused',
  'fdExhausted',
  'partialPduTimeouts',
  'workerDeaths',
  // administration (issue 9)
  'controlRequests',
  'controlRefused',
  // authentication (issue 9)
  'tgtLoginRateLimited',
  'authBlockedAddresses',
  // session and connection limits (limits.maxSessions, targets' maxSessions / maxConnections)
  'tgtLoginLimitRefusals',
  // multiple connections per session (src/session/mcs.ts)
  'tgtLoginNoSession',
  'tgtLoginTooManyConnections',
  'cxnReinstatements',
  'cxnLogoutCidNotFound',
  'ssnConnectionFailures',
  // error recovery level 1 (src/session/recovery.ts, snack.ts)
  'snackRequests',
  'recoveryR2ts',
  // error recovery level 2 (src/session/erl2.ts)
  'cxnRecoveries',
  'taskReassignments',
  'taskReassignRefusals',
  'taskReassignExpired',
  // memory and backpressure (src/util/slab-pool.ts, src/session/backpressure.ts)
  'readSlabBytes',
  'readSlabPooledBytes',
  'backstoreQueuedBytes',
  'readStopsBackstore',
] as const;

export type CounterName = (typeof COUNTERS)[number];
export const COUNTER_INDEX: Record<CounterName, number> = Object.fromEntries(
  COUNTERS.map((n, i) => [n, i]),
) as Record<CounterName, number>;

export const MAX_ROWS = 257; // row 0: the portal thread; rows 1..256: workers

export interface CounterShared {
  values: SharedArrayBuffer;
  claims: SharedArrayBuffer;
  /** Per logical unit fault counters (LU_FAULTS), one row per LU slot, added to with Atomics by any thread. */
  lu: SharedArrayBuffer;
  /** Per session slots and per target totals (src/metrics/session-stats.ts). */
  sessions: SessionStatsShared;
  /** Event-loop figures per counter row (src/metrics/runtime.ts). */
  runtime: SharedArrayBuffer;
}

/**
 * Faults of a logical unit's backing store, counted per LU. They are rare, so every thread adds to one shared
 * row per LU with Atomics instead of keeping a row per thread.
 * - readErrors, writeErrors, flushErrors, unmapErrors: the backstore failed that operation (EIO and the like);
 * - noSpace: a write or allocation failed with ENOSPC;
 * - shrunk: 1 once the backing file was found smaller than the LU's capacity (a gauge, not a count);
 * - badRequests: commands refused for a malformed request an initiator should never send (a PR OUT parameter
 *   list of the wrong length, an unknown XCOPY descriptor, a COMPARE AND WRITE over the maximum, ...).
 */
export const LU_FAULTS = [
  'readErrors',
  'writeErrors',
  'flushErrors',
  'unmapErrors',
  'noSpace',
  'shrunk',
  'badRequests',
] as const;
export type LuFault = (typeof LU_FAULTS)[number];
/** LU slots: config.targets[].luns[].slot numbers the LUs from 0. */
export const MAX_LU_SLOTS = MAX_LUS;

export function createCounterShared(): CounterShared {
  return {
    values: new SharedArrayBuffer(MAX_ROWS * COUNTERS.length * 8),
    claims: new SharedArrayBuffer(MAX_ROWS * 4),
    lu: new SharedArrayBuffer(MAX_LU_SLOTS * LU_FAULTS.length * 8),
    sessions: createSessionStatsShared(),
    runtime: allocateRuntimeShared(MAX_ROWS),
  };
}

/** One LU's fault counters. */
export class LuFaultCounters {
  private readonly v: BigInt64Array;
  constructor(shared: CounterShared, slot: number) {
    if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_LU_SLOTS) throw new RangeError(`LU slot ${slot}`);
    this.v = new BigInt64Array(shared.lu, slot * LU_FAULTS.length * 8, LU_FAULTS.length);
  }
  inc(fault: LuFault): void {
    Atomics.add(this.v, LU_FAULTS.indexOf(fault), 1n);
  }
  set(fault: LuFault, value: number): void {
    Atomics.store(this.v, LU_FAULTS.indexOf(fault), BigInt(value));
  }
  get(fault: LuFault): number {
    return Number(Atomics.load(this.v, LU_FAULTS.indexOf(fault)));
  }
}

/** The fault counters of one LU slot, by name. */
export function readLuFaults(shared: CounterShared, slot: number): Record<LuFault, number> {
  const c = new LuFaultCounters(shared, slot);
  return Object.fromEntries(LU_FAULTS.map((f) => [f, c.get(f)])) as Record<LuFault, number>;
}

/** One thread's row of counters. */
export class CounterRow {
  readonly v: Float64Array;
  constructor(
    readonly shared: CounterShared,
    readonly row: number,
  ) {
    this.v = new Float64Array(shared.values, row * COUNTERS.length * 8, COUNTERS.length);
  }
  inc(name: CounterName, by = 1): void {
    this.v[COUNTER_INDEX[name]] += by;
  }
  get(name: CounterName): number {
    return this.v[COUNTER_INDEX[name]];
  }
}

/** Claim a free worker row (1..MAX_ROWS-1) for the calling thread. */
export function claimRow(shared: CounterShared, threadId: number): CounterRow {
  const claims = new Int32Array(shared.claims);
  for (let i = 1; i < MAX_ROWS; i++) {
    if (Atomics.compareExchange(claims, i, 0, threadId) === 0 || Atomics.load(claims, i) === threadId) {
      return new CounterRow(shared, i);
    }
  }
  throw new Error('no free counter row');
}

/**
 * Give back the row of a worker thread that is gone: its totals are added to `heir` (so sums never go
 * backwards), its gauges are dropped (what they counted is gone with the thread), and the row is freed.
 * Only call this once the thread has exited: a row has a single writer.
 */
export function releaseRow(
  shared: CounterShared,
  threadId: number,
  heir: CounterRow,
  gauges: ReadonlySet<CounterName>,
): number {
  const claims = new Int32Array(shared.claims);
  for (let i = 1; i < MAX_ROWS; i++) {
    if (Atomics.load(claims, i) !== threadId) continue;
    const row = new CounterRow(shared, i);
    COUNTERS.forEach((n, k) => {
      if (!gauges.has(n)) heir.inc(n, row.v[k]);
    });
    row.v.fill(0);
    Atomics.store(claims, i, 0);
    return i;
  }
  return 0;
}

/** Sum of every row, and per-row values for rows in use. */
export function readCounters(shared: CounterShared): {
  total: Record<CounterName, number>;
  rows: Array<{ row: number; threadId: number; values: Record<CounterName, number> }>;
} {
  const claims = new Int32Array(shared.claims);
  const all = new Float64Array(shared.values);
  const total = Object.fromEntries(COUNTERS.map((n) => [n, 0])) as Record<CounterName, number>;
  const rows: Array<{ row: number; threadId: number; values: Record<CounterName, number> }> = [];
  for (let r = 0; r < MAX_ROWS; r++) {
    if (r > 0 && Atomics.load(claims, r) === 0) continue;
    const values = {} as Record<CounterName, number>;
    COUNTERS.forEach((n, i) => {
      values[n] = all[r * COUNTERS.length + i];
      total[n] += values[n];
    });
    rows.push({ row: r, threadId: Atomics.load(claims, r), values });
  }
  return { total, rows };
}
