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

/**
 * What a scrape read of the session table, slot by slot, in arrays the reader overwrites at each read: the
 * exposition walks these (src/metrics/exposition.ts SessionMetric) instead of an object per session, so that a
 * scrape each second, which finds everything out of the CPU caches, reads a few contiguous arrays.
 */
export interface SessionSlots {
  /** The generation of the session shown in each slot; 0: none (free, being claimed, or changed while read). */
  readonly gen: Int32Array;
  /** The values read, SSN_FIELDS order, NF per slot (meaningful where gen is not 0). */
  readonly values: Float64Array;
  /** The labels of each slot's session: one frozen object for the session's life (decoded once). */
  readonly labels: ReadonlyArray<SessionLabels | undefined>;
  /** One past the last slot shown. */
  readonly end: number;
}

/**
 * The portal's reader: decodes each session's labels once (by slot and generation). The scan of the slot table
 * reads typed arrays only, except for a slot whose session is new.
 */
export class SessionStatsReader {
  /** The generation each slot's labels below were decoded for; 0: none. */
  private readonly decoded = new Int32Array(MAX_SESSION_SLOTS);
  private readonly out = {
    gen: new Int32Array(MAX_SESSION_SLOTS),
    values: new Float64Array(MAX_SESSION_SLOTS * NF),
    labels: new Array<SessionLabels | undefined>(MAX_SESSION_SLOTS).fill(undefined),
    end: 0,
  };
  constructor(private readonly shared: SessionStatsShared) {}

  read(): SessionSlots {
    const state = new Int32Array(this.shared.state);
    const values = new Float64Array(this.shared.values);
    const { gen: shown, values: out, labels } = this.out;
    let end = 0;
    for (let slot = 0; slot < MAX_SESSION_SLOTS; slot++) {
      // A plain read (most slots are free): the generation is read again with Atomics once the values are.
      const gen = state[slot + 1];
      shown[slot] = 0;
      if (gen <= 0) {
        if (gen === FREE && this.decoded[slot] !== 0) {
          this.decoded[slot] = 0;
          labels[slot] = undefined;
        }
        continue;
      }
      if (this.decoded[slot] !== gen) {
        const bytes = new Uint8Array(this.shared.labels, slot * LABEL_BYTES, LABEL_BYTES);
        const stop = bytes.indexOf(0);
        const [target = '', initiator = '', isid = ''] = decoder
          .decode(bytes.slice(0, stop < 0 ? LABEL_BYTES : stop))
          .split('\n');
        labels[slot] = Object.freeze({ target, initiator, isid });
        this.decoded[slot] = gen;
      }
      const o = slot * NF;
      for (let i = 0; i < NF; i++) out[o + i] = values[o + i];
      // Freed or reused while being read: left for the next scrape (its labels are decoded again then).
      if (Atomics.load(state, slot + 1) !== gen) {
        this.decoded[slot] = 0;
        continue;
      }
      shown[slot] = gen;
      end = slot + 1;
    }
    this.out.end = end;
    return this.out;
  }

  /** Totals of the sessions that ended, for a target slot, into `into` (SSN_FIELDS order). */
  ended(targetSlot: number, into: Float64Array): void {
    const t = new BigInt64Array(this.shared.targets, targetSlot * NF * 8, NF);
    for (let i = 0; i < NF; i++) into[i] = Number(Atomics.load(t, i));
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
