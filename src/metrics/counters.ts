/**
 * Counters in shared memory: each worker thread owns one row of a Float64Array over a SharedArrayBuffer
 * and increments plain slots (single writer, no messages); the portal thread sums the rows at scrape time.
 * Names follow the iSCSI-MIB (RFC 7147) where it has one.
 */
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
] as const;

export type CounterName = (typeof COUNTERS)[number];
export const COUNTER_INDEX: Record<CounterName, number> = Object.fromEntries(
  COUNTERS.map((n, i) => [n, i]),
) as Record<CounterName, number>;

export const MAX_ROWS = 257; // row 0: the portal thread; rows 1..256: workers

export interface CounterShared {
  values: SharedArrayBuffer;
  claims: SharedArrayBuffer;
}

export function createCounterShared(): CounterShared {
  return {
    values: new SharedArrayBuffer(MAX_ROWS * COUNTERS.length * 8),
    claims: new SharedArrayBuffer(MAX_ROWS * 4),
  };
}

/** One thread's row of counters. */
export class CounterRow {
  readonly v: Float64Array;
  constructor(
    shared: CounterShared,
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
