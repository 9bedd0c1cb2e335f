/**
 * Per session statistics (iscsiSsnStatsTable, iscsiSsnCxnErrorStatsTable) in a slot table in shared memory.
 *
 * A session lives on one worker, so its slot has a single writer: the worker claims a free slot at login
 * (compare-and-swap on the slot's state word), writes the session's labels (target, initiator, ISID) into the
 * slot's label bytes, then publishes a generation number; the hot path adds to plain Float64 slots. At logout
 * the session's totals are added to its target's row (Atomics, once per session) and the slot is freed, so the
 * per-session series disappear and per-target counters never go backwards. The portal reads a slot only while
 * its generation is the same before and after, and caches decoded labels by (slot, generation).
 */
import { MAX_TARGETS } from '../config/schema';

export const MAX_SESSION_SLOTS = 4096;
const LABEL_BYTES = 512;

export const SSN_FIELDS = [
  'cmdPdus',
  'rspPdus',
  'txDataOctets',
  'rxDataOctets',
  'digestErrors',
  'timeoutErrors',
  'connections',
] as const;
export type SsnField = (typeof SSN_FIELDS)[number];
const NF = SSN_FIELDS.length;
const [CMD, RSP, TX, RX, DIGEST, TIMEOUT, CXNS] = SSN_FIELDS.map((_, i) => i);
/** Fields that are levels, not totals: not added to the target's row at logout. */
const LEVELS = new Set<number>([CXNS]);

// State word values: 0 free, -1 being claimed or freed, > 0 the generation of the session using it.
const FREE = 0;
const BUSY = -1;

export interface SessionStatsShared {
  state: SharedArrayBuffer;
  values: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  /** Per target slot (TargetConfig.slot): totals of the sessions that ended, BigInt64, with Atomics. */
  targets: SharedArrayBuffer;
}

export function createSessionStatsShared(): SessionStatsShared {
  return {
    // Word 0 of the state is the generation counter; slot i uses word i + 1.
    state: new SharedArrayBuffer((MAX_SESSION_SLOTS + 1) * 4),
    values: new SharedArrayBuffer(MAX_SESSION_SLOTS * NF * 8),
    labels: new SharedArrayBuffer(MAX_SESSION_SLOTS * LABEL_BYTES),
    targets: new SharedArrayBuffer(MAX_TARGETS * NF * 8),
  };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A type, not an interface: it is a label set as prom-client takes one (a string index signature). */
export type SessionLabels = {
  target: string;
  initiator: string;
  isid: string;
};

/** A session's writer; made by claimSessionStats at login, released once at logout. */
export class SessionStats {
  private v: Float64Array;
  private released = false;
  constructor(
    private readonly shared: SessionStatsShared,
    readonly slot: number,
    private readonly targetSlot: number,
  ) {
    this.v = new Float64Array(shared.values, slot * NF * 8, NF);
  }
  rx(dataLength: number): void {
    this.v[CMD]++;
    this.v[RX] += dataLength;
  }
  tx(dataLength: number): void {
    this.v[RSP]++;
    this.v[TX] += dataLength;
  }
  digestError(): void {
    this.v[DIGEST]++;
  }
  timeoutError(): void {
    this.v[TIMEOUT]++;
  }
  setConnections(n: number): void {
    this.v[CXNS] = n;
  }

  /** Logout: the totals go to the target's row and the slot is free again (its series vanish). */
  release(): void {
    if (this.released) return;
    this.released = true;
    const state = new Int32Array(this.shared.state);
    Atomics.store(state, this.slot + 1, BUSY);
    if (this.targetSlot >= 0 && this.targetSlot < MAX_TARGETS) {
      const t = new BigInt64Array(this.shared.targets, this.targetSlot * NF * 8, NF);
      for (let i = 0; i < NF; i++) if (!LEVELS.has(i)) Atomics.add(t, i, BigInt(this.v[i]));
    }
    this.v.fill(0);
    // A late add (a response sent after the end) must not land in the slot once another session has it.
    this.v = new Float64Array(NF);
    Atomics.store(state, this.slot + 1, FREE);
  }
}

/** Claim a slot for a new session; null when the table is full (the session then has no series of its own). */
export function claimSessionStats(
  shared: SessionStatsShared,
  labels: SessionLabels,
  targetSlot: number,
): SessionStats | null {
  const state = new Int32Array(shared.state);
  // Start the search at a varying place so that workers do not all race for the first free slots.
  const start = (Atomics.load(state, 0) >>> 0) % MAX_SESSION_SLOTS;
  for (let k = 0; k < MAX_SESSION_SLOTS; k++) {
    const slot = (start + k) % MAX_SESSION_SLOTS;
    if (Atomics.compareExchange(state, slot + 1, FREE, BUSY) !== FREE) continue;
    const bytes = new Uint8Array(shared.labels, slot * LABEL_BYTES, LABEL_BYTES);
    bytes.fill(0);
    const enc = encoder.encode(`${labels.target}\n${labels.initiator}\n${labels.isid}`);
    bytes.set(enc.subarray(0, LABEL_BYTES));
    new Float64Array(shared.values, slot * NF * 8, NF).fill(0);
    // Generations are positive and never repeat soon, so a reader can tell a reused slot from the same session.
    const gen = (Atomics.add(state, 0, 1) & 0x3fffffff) + 1;
    Atomics.store(state, slot + 1, gen);
    return new SessionStats(shared, slot, targetSlot);
  }
  return null;
}

export interface SessionRow {
  /** The same object at every scrape while the session lives (decoded once): the labels of its series. */
  labels: SessionLabels;
  /** SSN_FIELDS order; the same array at every scrape while the session lives, overwritten by each read. */
  values: Float64Array;
  /** The exposition's series of the session (src/metrics/series.ts), kept here for the session's life. */
  series?: unknown;
}

/**
 * The portal's reader: decodes each session's labels once (by slot and generation). The scan of the slot table
 * touches only two arrays per free slot (no map lookup): with 1,000 sessions in 4,096 slots most are free.
 */
export class SessionStatsReader {
  /** The generation each row below was made for; 0: none. */
  private readonly gens = new Int32Array(MAX_SESSION_SLOTS);
  private readonly rows: Array<SessionRow | undefined> = new Array<SessionRow | undefined>(MAX_SESSION_SLOTS);
  constructor(private readonly shared: SessionStatsShared) {}

  sessions(): SessionRow[] {
    const state = new Int32Array(this.shared.state);
    const values = new Float64Array(this.shared.values);
    const out: SessionRow[] = [];
    for (let slot = 0; slot < MAX_SESSION_SLOTS; slot++) {
      const gen = Atomics.load(state, slot + 1);
      if (gen <= 0) {
        if (gen === FREE && this.gens[slot] !== 0) {
          this.gens[slot] = 0;
          this.rows[slot] = undefined;
        }
        continue;
      }
      let row = this.rows[slot];
      if (!row || this.gens[slot] !== gen) {
        const bytes = new Uint8Array(this.shared.labels, slot * LABEL_BYTES, LABEL_BYTES);
        const end = bytes.indexOf(0);
        const [target = '', initiator = '', isid = ''] = decoder
          .decode(bytes.slice(0, end < 0 ? LABEL_BYTES : end))
          .split('\n');
        row = { labels: Object.freeze({ target, initiator, isid }), values: new Float64Array(NF) };
        this.rows[slot] = row;
        this.gens[slot] = gen;
      }
      const o = slot * NF;
      for (let i = 0; i < NF; i++) row.values[i] = values[o + i];
      // Freed or reused while being read: leave it for the next scrape.
      if (Atomics.load(state, slot + 1) !== gen) continue;
      out.push(row);
    }
    return out;
  }

  /** Totals of the sessions that ended, for a target slot. */
  ended(targetSlot: number): Record<SsnField, number> {
    const t = new BigInt64Array(this.shared.targets, targetSlot * NF * 8, NF);
    return Object.fromEntries(SSN_FIELDS.map((f, i) => [f, Number(Atomics.load(t, i))])) as Record<
      SsnField,
      number
    >;
  }
}

/**
 * A target row taken by a target added live starts from zero: the row may have been a removed target's, whose
 * ended sessions' totals it still holds (src/portal/apply.ts calls this before any worker serves the new
 * target, and a removed target's sessions have given their totals back by the time its removal is answered).
 */
export function resetTargetTotals(shared: SessionStatsShared, targetSlot: number): void {
  const t = new BigInt64Array(shared.targets, targetSlot * NF * 8, NF);
  for (let i = 0; i < NF; i++) Atomics.store(t, i, 0n);
}
