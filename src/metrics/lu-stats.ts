/**
 * Per logical unit statistics in shared memory: commands by operation, bytes, check conditions by sense key,
 * reservation conflicts, and latency histograms (command arrival to status, and the backstore's own share).
 *
 * Every worker serves every LU, so each LU has one Float64 row per lane (a worker's counter row): a thread only
 * ever writes its own lane with plain stores, and the portal sums the lanes at scrape time (DESIGN.md "Counters
 * cost nothing"). The memory rides in LuSharedMemory, so an LU added live gets fresh zeroed rows everywhere.
 */

/** Lanes with their own rows; a worker on a higher counter row shares one (more than 63 workers is not a setup we serve). */
export const STAT_LANES = 64;

export const LU_OPS = ['read', 'write', 'flush', 'unmap', 'other'] as const;
export type LuOp = (typeof LU_OPS)[number];
/** Histograms are kept for these classes (flush and unmap are rare enough to go with "other"). */
export const HIST_OPS = ['read', 'write', 'other'] as const;
/** Indexes in HIST_OPS, for LuStats.backstore. */
export const HIST_READ = 0;
export const HIST_WRITE = 1;
export const HIST_OTHER = 2;

/** Upper bounds of the latency buckets in seconds: 5 µs (a READ answered from memory takes a few) to 2 s. */
export const LATENCY_BOUNDS = [
  5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
  500e-3, 1, 2,
] as const;
const BOUNDS_MS = LATENCY_BOUNDS.map((s) => s * 1000);
const NB = LATENCY_BOUNDS.length + 1; // the last bucket is +Inf
const HIST = NB + 1; // buckets, then the sum in seconds

// Offsets in a lane's row.
const CMD = 0; // LU_OPS.length commands
const BYTES_READ = 5;
const BYTES_WRITTEN = 6;
const RESV_CONFLICTS = 7;
const SENSE = 8; // 16 sense keys
const LATENCY = SENSE + 16;
const BACKSTORE = LATENCY + HIST_OPS.length * HIST;
export const LU_STAT_FIELDS = BACKSTORE + HIST_OPS.length * HIST;

/**
 * The lanes' rows, then one Int32 per lane set once a writer took the lane: a scrape sums only those (a lane
 * is a thread's counter row, and a few of the 64 are ever used), instead of reading 69 KB per LU.
 */
const LANES_BYTES = STAT_LANES * LU_STAT_FIELDS * 8;

export function allocateLuStats(): SharedArrayBuffer {
  return new SharedArrayBuffer(LANES_BYTES + STAT_LANES * 4);
}

/** SCSI operation code -> index in LU_OPS. */
const OP_OF = new Uint8Array(256).fill(4);
for (const c of [0x08, 0x28, 0xa8, 0x88, 0x7f]) OP_OF[c] = 0; // READ(6/10/12/16/32)
for (const c of [0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0x8e, 0x89, 0x9c]) OP_OF[c] = 1; // WRITE, WRITE AND VERIFY, CAW, WRITE ATOMIC
for (const c of [0x35, 0x91]) OP_OF[c] = 2; // SYNCHRONIZE CACHE(10/16)
OP_OF[0x42] = 3; // UNMAP
/** LU_OPS index -> histogram class. */
const HIST_OF = [0, 1, 2, 2, 2];

function bucket(ms: number): number {
  let i = 0;
  while (i < BOUNDS_MS.length && ms > BOUNDS_MS[i]) i++;
  return i;
}

/** One thread's writer for one LU. */
export class LuStats {
  private readonly v: Float64Array;
  constructor(sab: SharedArrayBuffer, lane: number) {
    const l = lane < STAT_LANES ? lane : 1 + (lane % (STAT_LANES - 1));
    this.v = new Float64Array(sab, l * LU_STAT_FIELDS * 8, LU_STAT_FIELDS);
    // Before any value is written: a lane is summed from the first scrape that sees this flag, and its values
    // never go back to zero (a thread taking the row later adds to them).
    Atomics.store(new Int32Array(sab, LANES_BYTES, STAT_LANES), l, 1);
  }

  /**
   * A command answered: `startMs` is performance.now() at its arrival; status and sense as sent.
   * Called once per command on the hot path: a few plain stores.
   */
  command(
    opcode: number,
    status: number,
    sense: Buffer | undefined,
    bytesIn: number,
    bytesOut: number,
    startMs: number,
  ): void {
    const v = this.v;
    const op = OP_OF[opcode];
    v[CMD + op]++;
    if (bytesIn) v[BYTES_READ] += bytesIn;
    if (bytesOut) v[BYTES_WRITTEN] += bytesOut;
    if (status === 0x18) v[RESV_CONFLICTS]++;
    else if (status === 0x02 && sense && sense.length > 2) v[SENSE + (sense[2] & 0x0f)]++;
    this.observe(LATENCY + HIST_OF[op] * HIST, performance.now() - startMs);
  }

  /** A backstore operation of class `hist` (index in HIST_OPS) took `ms`. */
  backstore(hist: number, ms: number): void {
    this.observe(BACKSTORE + hist * HIST, ms);
  }

  private observe(base: number, ms: number): void {
    this.v[base + bucket(ms)]++;
    this.v[base + NB] += ms / 1000;
  }
}

/** The backstore operations timed (the shape of src/backstore/types.ts Backstore; metrics sits below it). */
export interface TimedBackstore {
  flush: () => Promise<void>;
  unmap: (...a: never[]) => Promise<void>;
}

/**
 * Time the backstore's flush and unmap (from the call, which submits to io_uring, to the completion) into the
 * LU's backstore histogram: the instance's methods are wrapped, so the LU and the backstore code stay as they are.
 * READ and WRITE are timed by the SCSI layer's readMedium/writeMedium (src/scsi/sbc.ts) around the await they make
 * anyway: wrapped here they cost every I/O a promise reaction and a closure.
 */
export function timeBackstore(bs: TimedBackstore, stats: LuStats): void {
  const timed = <A extends unknown[]>(fn: (...a: A) => Promise<void>, hist: number) => {
    const f = fn.bind(bs);
    return (...a: A): Promise<void> => {
      const t0 = performance.now();
      const done = () => stats.backstore(hist, performance.now() - t0);
      const p = f(...a);
      p.then(done, done);
      return p;
    };
  };
  bs.flush = timed(bs.flush, HIST_OTHER);
  bs.unmap = timed(bs.unmap, HIST_OTHER);
}

export interface Histogram {
  /** Cumulative counts per bound, then +Inf. */
  cumulative: number[];
  sum: number;
  count: number;
}

export interface LuStatsTotals {
  commands: Record<LuOp, number>;
  bytesRead: number;
  bytesWritten: number;
  reservationConflicts: number;
  /** Check conditions by sense key 0..15. */
  senseKeys: number[];
  latency: Histogram[];
  backstore: Histogram[];
}

function histogram(sum: Float64Array, base: number): Histogram {
  const cumulative: number[] = [];
  let n = 0;
  for (let i = 0; i < NB; i++) cumulative.push((n += sum[base + i]));
  return { cumulative, sum: sum[base + NB], count: n };
}

/** The LU's statistics summed over every lane a writer took (read at scrape time by the portal thread). */
export function readLuStats(sab: SharedArrayBuffer): LuStatsTotals {
  const all = new Float64Array(sab, 0, STAT_LANES * LU_STAT_FIELDS);
  const used = new Int32Array(sab, LANES_BYTES, STAT_LANES);
  const sum = new Float64Array(LU_STAT_FIELDS);
  for (let l = 0; l < STAT_LANES; l++) {
    if (Atomics.load(used, l) === 0) continue;
    const o = l * LU_STAT_FIELDS;
    for (let i = 0; i < LU_STAT_FIELDS; i++) sum[i] += all[o + i];
  }
  return {
    commands: Object.fromEntries(LU_OPS.map((op, i) => [op, sum[CMD + i]])) as Record<LuOp, number>,
    bytesRead: sum[BYTES_READ],
    bytesWritten: sum[BYTES_WRITTEN],
    reservationConflicts: sum[RESV_CONFLICTS],
    senseKeys: Array.from(sum.subarray(SENSE, SENSE + 16)),
    latency: HIST_OPS.map((_, h) => histogram(sum, LATENCY + h * HIST)),
    backstore: HIST_OPS.map((_, h) => histogram(sum, BACKSTORE + h * HIST)),
  };
}
