/**
 * The state of one logical unit that every worker thread shares: one source of truth per LU, in shared memory.
 *
 * Every worker opens its own backstore descriptor and io_uring ring for an LU, but what the device server
 * remembers about the LU lives once, here, in a SharedArrayBuffer made by the portal thread at start-up and
 * handed to every worker (WorkerInit.lus, indexed by the LU's slot):
 *
 *   FLAGS        software write protect (SWP), medium absent (removable LUs), sanitize running / failed
 *   SANITIZE     the lane running a SANITIZE and its progress (0..65535), for every worker's NOT READY sense
 *   RESET_EPOCH  bumped by LOGICAL UNIT RESET / target reset: a task that began before the bump ends TASK ABORTED
 *   nexus slots  one per I_T nexus that has used the LU: pending unit attentions (one bit per condition) and
 *                PREVENT MEDIUM REMOVAL; claimed by the worker that serves the nexus, freed when it ends
 *   stripes      range locks for the atomic commands (COMPARE AND WRITE, ORWRITE): per stripe of the LBA space, a
 *                count of plain writes in flight per worker (lane) and an exclusive owner word
 *   PR area      persistent reservations and SPC-2 reservations as a JSON document behind a seqlock, changed
 *                under the LU's lock by whichever worker received the PERSISTENT RESERVE OUT / RESERVE command
 *   executing    per lane and per reset-epoch parity, the commands inside the device server (backstore I/O may
 *                be in flight): a reset or CLEAR TASK SET waits for the old epoch's count to reach 0 on every lane
 *                before its TMF Response, so no write of an aborted task lands after the response
 *   in flight    per lane, the commands addressed to the LU that have arrived and not been answered: a live
 *                removal of the LU is refused while any lane counts one (src/portal/apply.ts), and a worker
 *                closes its descriptor for a removed LU once its own lane is back to 0
 *
 * Hot path (READ/WRITE): at most one Atomics.load for unit attentions, one for reservations (PR_ACTIVE), one for
 * FLAGS, one Atomics.add/sub pair on the lane's in-flight word, and for a write one Atomics.add/sub pair per
 * stripe it covers plus a load of the stripe's owner word.
 * No message round-trip, no lock.
 *
 * Rare changes (MODE SELECT, PR OUT, RESERVE/RELEASE, resets) are made by the worker that received the command:
 * plain Atomics.or/and for flags and unit attentions, which need no lock, and for the PR document a short
 * synchronous critical section under PR_LOCK (no await inside it, so a holder never waits on its own event
 * loop). There is no owner thread to send messages to; the lock word is the single owner while held.
 *
 * Invariants
 *  - A unit attention condition is a bit in a nexus slot: it is established by setting the bit on every slot
 *    it is for (any thread) and reported by clearing it with Atomics.and on the nexus's own worker, so each
 *    nexus gets each condition once however many workers raise it.
 *  - A slot belongs to one I_T nexus for the life of the session on it (the session lives on one worker);
 *    its `claim` word is the lane (worker row) that claimed it, so the portal can free a dead worker's slots.
 *  - A plain write adds itself to writers[lane][stripe] for every stripe it touches, then checks each stripe's
 *    owner word; an atomic command takes the owner words (CAS, in ascending stripe order, so two atomic
 *    commands never deadlock), then waits for the writers of its stripes to drain. Atomics are sequentially
 *    consistent, so at least one side sees the other: a write never overlaps a COMPARE AND WRITE.
 *  - The PR document is written only under PR_LOCK, with PR_SEQ odd while it is being written; a reader whose
 *    two reads of PR_SEQ differ (or are odd) reads again. PR_ACTIVE is 0 exactly when the document holds no
 *    registration and no reservation, so the hot path can skip the reservation check with one load.
 *  - A dead worker's lane is released by the portal (releaseLane): its nexus slots, its writer counts, the
 *    stripe owner words, its in-flight count and the PR lock it held.
 */
import { allocateLuStats } from '../metrics/lu-stats';
import type { Asc } from './constants';
import { PrArea, PR_CAPACITY, releasePrLock } from './lu-pr-area';

export { PR_CAPACITY, PrCapacityError } from './lu-pr-area';

/** Unit attention conditions, one bit each; the lower the bit, the earlier it is reported. */
export const UA = {
  POWER_ON_RESET: 0,
  BUS_DEVICE_RESET: 1,
  I_T_NEXUS_LOSS: 2,
  RESERVATIONS_PREEMPTED: 3,
  RESERVATIONS_RELEASED: 4,
  REGISTRATIONS_PREEMPTED: 5,
  MODE_PARAMETERS_CHANGED: 6,
  CAPACITY_DATA_CHANGED: 7,
  REPORTED_LUNS_DATA_CHANGED: 8,
  INQUIRY_DATA_CHANGED: 9,
  MEDIUM_MAY_HAVE_CHANGED: 10,
  ASYMMETRIC_ACCESS_STATE_CHANGED: 11,
} as const;
export type UaCondition = (typeof UA)[keyof typeof UA];

/** ASC/ASCQ reported for each condition (SPC-4 annex D). */
export const UA_SENSE: readonly Asc[] = [
  [0x29, 0x00],
  [0x29, 0x03],
  [0x29, 0x07],
  [0x2a, 0x03],
  [0x2a, 0x04],
  [0x2a, 0x05],
  [0x2a, 0x01],
  [0x2a, 0x09],
  [0x3f, 0x0e],
  [0x3f, 0x03],
  [0x28, 0x00],
  [0x2a, 0x06],
];

/** The condition for an ASC/ASCQ pair, or undefined for one that is not a unit attention we raise. */
export function uaCondition(asc: Asc): UaCondition | undefined {
  const i = UA_SENSE.findIndex((a) => a[0] === asc[0] && a[1] === asc[1]);
  return i < 0 ? undefined : (i as UaCondition);
}

export const FLAG_SWP = 1 << 0;
export const FLAG_MEDIUM_ABSENT = 1 << 1;
/** A SANITIZE operation is running (owner: SANITIZE_OWNER); other commands get NOT READY. */
export const FLAG_SANITIZING = 1 << 2;
/** The last SANITIZE failed: the LU is in failure mode until a sanitize succeeds or EXIT FAILURE MODE. */
export const FLAG_SANITIZE_FAILED = 1 << 3;
/** The failed SANITIZE had AUSE = 1: EXIT FAILURE MODE may end failure mode. */
export const FLAG_SANITIZE_AUSE = 1 << 4;

/** Lanes are counter rows: 0 is the portal thread, 1..256 workers (src/metrics/counters.ts MAX_ROWS). */
export const MAX_LANES = 257;
/** I_T nexuses that can use one LU at once; a nexus beyond that gets no unit attentions (LogicalUnit.noteNexus logs it). */
export const MAX_NEXUS = 512;
/** Stripes of the LBA space for range locks; a stripe is STRIPE_BYTES of the medium, taken modulo NSTRIPES. */
export const NSTRIPES = 16;
export const STRIPE_BYTES = 1024 * 1024;

// Word offsets in the Int32Array.
const FLAGS = 0;
// Words 1-4: the PR document's active flag, seqlock, lock and length (lu-pr-area.ts).
const RESET_EPOCH = 5;
const SANITIZE_PROGRESS = 6;
const SANITIZE_OWNER = 7;
const HEADER_WORDS = 16;
const SLOT_WORDS = 8; // claim (lane + 1), hashA, hashB, ua bits, prevent, 3 spare
const SLOT_CLAIM = 0;
const SLOT_HASH_A = 1;
const SLOT_HASH_B = 2;
const SLOT_UA = 3;
const SLOT_PREVENT = 4;
const SLOTS_BASE = HEADER_WORDS;
const EXCL_BASE = SLOTS_BASE + MAX_NEXUS * SLOT_WORDS;
const WRITERS_BASE = EXCL_BASE + NSTRIPES;
const INFLIGHT_BASE = WRITERS_BASE + MAX_LANES * NSTRIPES;
const EXEC_BASE = INFLIGHT_BASE + MAX_LANES;
const TOTAL_WORDS = EXEC_BASE + MAX_LANES * 2;

/** The shared memory of one LU: made once by the portal thread, passed to workers in workerData. */
export interface LuSharedMemory {
  words: SharedArrayBuffer;
  pr: SharedArrayBuffer;
  /** Per-lane statistics (src/metrics/lu-stats.ts); absent in unit tests that build the memory themselves. */
  stats?: SharedArrayBuffer;
}

export function allocateLuShared(): LuSharedMemory {
  return {
    words: new SharedArrayBuffer(TOTAL_WORDS * 4),
    pr: new SharedArrayBuffer(PR_CAPACITY),
    stats: allocateLuStats(),
  };
}

/** Two independent 32-bit FNV-1a hashes of an I_T nexus name (never 0, so 0 can mean "free"). */
export function nexusHash(nexus: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < nexus.length; i++) {
    const c = nexus.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
  }
  return [a | 1, b | 1];
}

/**
 * One thread's handle on an LU's shared state. `lane` is this thread's counter row (1..256 in a worker); a
 * private LuShared (no memory given, as in unit tests) has lane 1 of its own memory.
 */
export class LuShared {
  private readonly w: Int32Array;
  private readonly pr: PrArea;
  /** Nexus name -> slot index, for the nexuses this thread serves. */
  private readonly slots = new Map<string, number>();

  constructor(
    readonly memory: LuSharedMemory = allocateLuShared(),
    readonly lane = 1,
  ) {
    if (!Number.isInteger(lane) || lane < 0 || lane >= MAX_LANES) throw new RangeError(`bad lane ${lane}`);
    this.w = new Int32Array(memory.words);
    this.pr = new PrArea(this.w, new Uint8Array(memory.pr), lane);
  }

  // ---- flags ---------------------------------------------------------------------------------------------

  flag(bit: number): boolean {
    return (Atomics.load(this.w, FLAGS) & bit) !== 0;
  }

  /** Set or clear a flag; true if it changed. */
  setFlag(bit: number, on: boolean): boolean {
    const before = on ? Atomics.or(this.w, FLAGS, bit) : Atomics.and(this.w, FLAGS, ~bit);
    return ((before & bit) !== 0) !== on;
  }

  // ---- sanitize -----------------------------------------------------------------------------------------

  /** Claim the LU for a SANITIZE operation; false when one is already running (on any worker). */
  beginSanitize(): boolean {
    if (Atomics.compareExchange(this.w, SANITIZE_OWNER, 0, this.lane + 1) !== 0) return false;
    Atomics.store(this.w, SANITIZE_PROGRESS, 0);
    Atomics.or(this.w, FLAGS, FLAG_SANITIZING);
    return true;
  }

  /** PROGRESS INDICATION of the running sanitize: a fraction of 65536. */
  get sanitizeProgress(): number {
    return Atomics.load(this.w, SANITIZE_PROGRESS);
  }

  set sanitizeProgress(v: number) {
    Atomics.store(this.w, SANITIZE_PROGRESS, Math.max(0, Math.min(0xffff, Math.floor(v))));
  }

  /** The sanitize ended: success leaves failure mode; a failure enters it (AUSE as the command had it). */
  endSanitize(failed: boolean, ause: boolean): void {
    if (failed) {
      Atomics.or(this.w, FLAGS, FLAG_SANITIZE_FAILED | (ause ? FLAG_SANITIZE_AUSE : 0));
      if (!ause) Atomics.and(this.w, FLAGS, ~FLAG_SANITIZE_AUSE);
    } else {
      Atomics.and(this.w, FLAGS, ~(FLAG_SANITIZE_FAILED | FLAG_SANITIZE_AUSE));
    }
    Atomics.and(this.w, FLAGS, ~FLAG_SANITIZING);
    Atomics.store(this.w, SANITIZE_OWNER, 0);
  }

  // ---- reset epoch -----------------------------------------------------------------------------------------

  get resetEpoch(): number {
    return Atomics.load(this.w, RESET_EPOCH);
  }

  /** Move the epoch on; returns the epoch it had (the one whose executing commands settle() waits for). */
  bumpResetEpoch(): number {
    return Atomics.add(this.w, RESET_EPOCH, 1);
  }

  private execAt(lane: number, epoch: number): number {
    return EXEC_BASE + lane * 2 + (epoch & 1);
  }

  /**
   * A command of `epoch` enters the device server. Counted before the epoch is checked, so that a reset on
   * another thread either sees the count or is seen here (Atomics are sequentially consistent). False when
   * the epoch has moved: the command was aborted and must not run.
   */
  beginExec(epoch: number): boolean {
    const at = this.execAt(this.lane, epoch);
    Atomics.add(this.w, at, 1);
    if (Atomics.load(this.w, RESET_EPOCH) === epoch) return true;
    Atomics.sub(this.w, at, 1);
    return false;
  }

  endExec(epoch: number): void {
    Atomics.sub(this.w, this.execAt(this.lane, epoch), 1);
  }

  /**
   * Resolves once no command of `epoch` (already left behind by a bump) executes on any lane. Commands of
   * the new epoch count under the other parity, so they cannot hold this up; a command two epochs old
   * shares the parity and is waited for too, which only makes the wait longer, never wrong.
   */
  async settle(epoch: number): Promise<void> {
    const busy = () => {
      for (let lane = 0; lane < MAX_LANES; lane++)
        if (Atomics.load(this.w, this.execAt(lane, epoch)) > 0) return true;
      return false;
    };
    for (let spin = 0; busy(); spin++) {
      if (spin < 4) await new Promise<void>((r) => setImmediate(r));
      else await new Promise<void>((r) => setTimeout(r, 1));
    }
  }

  // ---- commands in flight -----------------------------------------------------------------------------

  /** A command addressed to the LU arrived on this lane (paired with leave() when it is answered). */
  enter(): void {
    Atomics.add(this.w, INFLIGHT_BASE + this.lane, 1);
  }

  leave(): void {
    Atomics.sub(this.w, INFLIGHT_BASE + this.lane, 1);
  }

  /** Commands in flight on this thread's lane. */
  get laneInFlight(): number {
    return Atomics.load(this.w, INFLIGHT_BASE + this.lane);
  }

  // ---- I_T nexus slots: unit attentions, prevent removal ---------------------------------------------

  /** The slot of a nexus this thread serves, claimed on first use; -1 when every slot is taken. */
  slotOf(nexus: string): number {
    const known = this.slots.get(nexus);
    if (known !== undefined) return known;
    const [ha, hb] = nexusHash(nexus);
    for (let i = 0; i < MAX_NEXUS; i++) {
      const base = SLOTS_BASE + i * SLOT_WORDS;
      if (Atomics.compareExchange(this.w, base + SLOT_CLAIM, 0, this.lane + 1) !== 0) continue;
      Atomics.store(this.w, base + SLOT_UA, 0);
      Atomics.store(this.w, base + SLOT_PREVENT, 0);
      Atomics.store(this.w, base + SLOT_HASH_B, hb);
      Atomics.store(this.w, base + SLOT_HASH_A, ha);
      this.slots.set(nexus, i);
      return i;
    }
    return -1;
  }

  /** The nexus is gone (session ended): free its slot, dropping its unit attentions and PREVENT. */
  releaseNexus(nexus: string): void {
    const i = this.slots.get(nexus);
    if (i === undefined) return;
    this.slots.delete(nexus);
    this.freeSlot(i);
  }

  private freeSlot(i: number): void {
    const base = SLOTS_BASE + i * SLOT_WORDS;
    Atomics.store(this.w, base + SLOT_HASH_A, 0);
    Atomics.store(this.w, base + SLOT_HASH_B, 0);
    Atomics.store(this.w, base + SLOT_PREVENT, 0);
    Atomics.store(this.w, base + SLOT_UA, 0);
    Atomics.store(this.w, base + SLOT_CLAIM, 0);
  }

  /**
   * Establish a unit attention condition for every nexus using the LU, except `except`; or, with `only`, for
   * just the nexuses named there (e.g. the registrants whose registrations were preempted).
   */
  establish(cond: UaCondition, opts: { except?: string; only?: readonly string[] } = {}): void {
    const bit = 1 << cond;
    const skip = opts.except !== undefined ? nexusHash(opts.except) : null;
    const only = opts.only?.map(nexusHash);
    for (let i = 0; i < MAX_NEXUS; i++) {
      const base = SLOTS_BASE + i * SLOT_WORDS;
      if (Atomics.load(this.w, base + SLOT_CLAIM) === 0) continue;
      const ha = Atomics.load(this.w, base + SLOT_HASH_A);
      const hb = Atomics.load(this.w, base + SLOT_HASH_B);
      if (ha === 0) continue;
      if (skip && skip[0] === ha && skip[1] === hb) continue;
      if (only && !only.some((h) => h[0] === ha && h[1] === hb)) continue;
      Atomics.or(this.w, base + SLOT_UA, bit);
    }
  }

  /** Hot path: is any unit attention pending for this nexus? (one Map lookup, one load) */
  hasUnitAttention(nexus: string): boolean {
    const i = this.slots.get(nexus);
    return i !== undefined && Atomics.load(this.w, SLOTS_BASE + i * SLOT_WORDS + SLOT_UA) !== 0;
  }

  /** Report (and clear) the highest-priority unit attention pending for this nexus. */
  takeUnitAttention(nexus: string): Asc | undefined {
    const i = this.slots.get(nexus);
    if (i === undefined) return undefined;
    const at = SLOTS_BASE + i * SLOT_WORDS + SLOT_UA;
    for (;;) {
      const bits = Atomics.load(this.w, at);
      if (bits === 0) return undefined;
      const cond = 31 - Math.clz32(bits & -bits); // lowest set bit
      if (Atomics.compareExchange(this.w, at, bits, bits & ~(1 << cond)) === bits) return UA_SENSE[cond];
    }
  }

  /** Drop pending conditions of this nexus (e.g. those a reset supersedes). */
  clearUnitAttention(nexus: string, cond: UaCondition): void {
    const i = this.slots.get(nexus);
    if (i !== undefined) Atomics.and(this.w, SLOTS_BASE + i * SLOT_WORDS + SLOT_UA, ~(1 << cond));
  }

  /** Clear one pending condition of this nexus; true if it was pending (GET EVENT STATUS reports it so). */
  takeCondition(nexus: string, cond: UaCondition): boolean {
    const i = this.slots.get(nexus);
    if (i === undefined) return false;
    const bit = 1 << cond;
    return (Atomics.and(this.w, SLOTS_BASE + i * SLOT_WORDS + SLOT_UA, ~bit) & bit) !== 0;
  }

  setPrevent(nexus: string, prevent: boolean): void {
    const i = this.slotOf(nexus);
    if (i >= 0) Atomics.store(this.w, SLOTS_BASE + i * SLOT_WORDS + SLOT_PREVENT, prevent ? 1 : 0);
  }

  /** Some nexus (on any worker) has PREVENT MEDIUM REMOVAL in effect. */
  get removalPrevented(): boolean {
    for (let i = 0; i < MAX_NEXUS; i++) {
      const base = SLOTS_BASE + i * SLOT_WORDS;
      if (Atomics.load(this.w, base + SLOT_CLAIM) !== 0 && Atomics.load(this.w, base + SLOT_PREVENT) !== 0)
        return true;
    }
    return false;
  }

  /** Clear PREVENT for every nexus (LOGICAL UNIT RESET). */
  clearAllPrevent(): void {
    for (let i = 0; i < MAX_NEXUS; i++) Atomics.store(this.w, SLOTS_BASE + i * SLOT_WORDS + SLOT_PREVENT, 0);
  }

  // ---- range locks -----------------------------------------------------------------------------------------

  /** The distinct stripes a byte range touches, ascending. */
  private stripes(offset: number, length: number): number[] {
    const first = Math.floor(offset / STRIPE_BYTES);
    const last = Math.floor((offset + Math.max(1, length) - 1) / STRIPE_BYTES);
    if (last - first + 1 >= NSTRIPES) return Array.from({ length: NSTRIPES }, (_, i) => i);
    const out: number[] = [];
    for (let s = first; s <= last; s++) out.push(s % NSTRIPES);
    return out.sort((a, b) => a - b);
  }

  private writerAt(lane: number, stripe: number): number {
    return WRITERS_BASE + lane * NSTRIPES + stripe;
  }

  /**
   * Run a plain write over [offset, offset + length) bytes so that it never overlaps an atomic command on
   * the same range (see the invariants above). Waits only while such a command holds one of its stripes.
   */
  guardWrite<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    return this.guardWriteNow(offset, length, fn) as Promise<T>;
  }

  /**
   * guardWrite for a write that may finish at once (Backstore.writeNow): undefined when fn returned undefined
   * (done, the guard let go already), else a promise that settles once fn's has and the guard is let go.
   */
  guardWriteNow<T>(offset: number, length: number, fn: () => Promise<T> | undefined): Promise<T> | undefined {
    // Hot path: a write inside one stripe with no atomic command on it: two atomics and no extra promise.
    const first = Math.floor(offset / STRIPE_BYTES);
    if (first === Math.floor((offset + Math.max(1, length) - 1) / STRIPE_BYTES)) {
      const s = first % NSTRIPES;
      const at = this.writerAt(this.lane, s);
      Atomics.add(this.w, at, 1);
      if (Atomics.load(this.w, EXCL_BASE + s) === 0) {
        let p: Promise<T> | undefined;
        try {
          p = fn();
        } catch (e) {
          Atomics.sub(this.w, at, 1);
          throw e;
        }
        if (p === undefined) {
          Atomics.sub(this.w, at, 1);
          return undefined;
        }
        return p.then(
          (r) => {
            Atomics.sub(this.w, at, 1);
            return r;
          },
          (e: unknown) => {
            Atomics.sub(this.w, at, 1);
            throw e;
          },
        );
      }
      Atomics.sub(this.w, at, 1);
    }
    return this.guardWriteSlow(offset, length, fn);
  }

  private async guardWriteSlow<T>(
    offset: number,
    length: number,
    fn: () => Promise<T> | undefined,
  ): Promise<T> {
    const stripes = this.stripes(offset, length);
    for (;;) {
      for (const s of stripes) Atomics.add(this.w, this.writerAt(this.lane, s), 1);
      let blocked = -1;
      for (const s of stripes)
        if (Atomics.load(this.w, EXCL_BASE + s) !== 0) {
          blocked = s;
          break;
        }
      if (blocked < 0) break;
      for (const s of stripes) Atomics.sub(this.w, this.writerAt(this.lane, s), 1);
      await this.waitWhile(EXCL_BASE + blocked, (v) => v !== 0);
    }
    try {
      return (await fn()) as T; // undefined: fn finished at once (T is void then)
    } finally {
      for (const s of stripes) Atomics.sub(this.w, this.writerAt(this.lane, s), 1);
    }
  }

  /**
   * Run an atomic command (COMPARE AND WRITE, ORWRITE, ...) over a byte range: no plain write and no other
   * atomic command touches its stripes until fn settles. fn does its own writes without guardWrite.
   */
  async exclusive<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    const stripes = this.stripes(offset, length);
    const me = this.lane + 1;
    const held: number[] = [];
    try {
      for (const s of stripes) {
        while (Atomics.compareExchange(this.w, EXCL_BASE + s, 0, me) !== 0)
          await this.waitWhile(EXCL_BASE + s, (v) => v !== 0);
        held.push(s);
      }
      for (const s of stripes)
        for (let lane = 0; lane < MAX_LANES; lane++) {
          const at = this.writerAt(lane, s);
          while (Atomics.load(this.w, at) > 0) await this.waitWhile(at, (v) => v > 0);
        }
      return await fn();
    } finally {
      for (const s of held) {
        Atomics.store(this.w, EXCL_BASE + s, 0);
      }
    }
  }

  /**
   * Wait, without blocking the event loop, until cond(word) is false: a few turns of the loop, then 1 ms polls.
   * Polling, not Atomics.waitAsync: a waitAsync timeout was seen never to fire in a worker thread whose loop had
   * nothing else to do (Node 20), and the waits here are rare and short (one atomic command's I/O).
   */
  private async waitWhile(at: number, cond: (v: number) => boolean): Promise<void> {
    for (let spin = 0; cond(Atomics.load(this.w, at)); spin++) {
      if (spin < 4) await new Promise<void>((r) => setImmediate(r));
      else await new Promise<void>((r) => setTimeout(r, 1));
    }
  }

  // ---- persistent reservation document (lu-pr-area.ts) -------------------------------------------------

  /** Hot path: true when some registration or reservation exists (the document must be consulted). */
  get prActive(): boolean {
    return this.pr.active;
  }

  /** PRgeneration-independent change counter of the document (even when stable). */
  get prSeq(): number {
    return this.pr.seq;
  }

  /** The current PR document (PrArea.document): read-only, null when none was ever written. */
  prDocument<T>(): T | null {
    return this.pr.document<T>();
  }

  /** Change the PR document under the LU's lock (PrArea.update); throws PrCapacityError when it does not fit. */
  updatePr<D, R>(fn: (doc: D | null) => { doc?: D; active?: boolean; result: R }): R {
    return this.pr.update(fn);
  }
}

/** Commands in flight on the LU, all lanes (workers) together. */
export function luInFlight(memory: LuSharedMemory): number {
  const w = new Int32Array(memory.words);
  let n = 0;
  for (let lane = 0; lane < MAX_LANES; lane++) n += Atomics.load(w, INFLIGHT_BASE + lane);
  return n;
}

/**
 * The portal thread's clean-up after a worker died: everything its lane held in this LU. Its in-flight writes
 * are gone, its atomic commands will never release, and its sessions (nexuses) no longer exist.
 */
export function releaseLane(memory: LuSharedMemory, lane: number): void {
  const w = new Int32Array(memory.words);
  const me = lane + 1;
  for (let i = 0; i < MAX_NEXUS; i++) {
    const base = SLOTS_BASE + i * SLOT_WORDS;
    if (Atomics.load(w, base + SLOT_CLAIM) !== me) continue;
    for (const k of [SLOT_HASH_A, SLOT_HASH_B, SLOT_PREVENT, SLOT_UA]) Atomics.store(w, base + k, 0);
    Atomics.store(w, base + SLOT_CLAIM, 0);
  }
  if (Atomics.load(w, SANITIZE_OWNER) === me) {
    // Its sanitize stopped half way: the medium is neither as it was nor sanitized. Failure mode, with an
    // exit allowed (the failure was ours, not the medium's).
    Atomics.or(w, FLAGS, FLAG_SANITIZE_FAILED | FLAG_SANITIZE_AUSE);
    Atomics.and(w, FLAGS, ~FLAG_SANITIZING);
    Atomics.store(w, SANITIZE_OWNER, 0);
  }
  Atomics.store(w, INFLIGHT_BASE + lane, 0);
  Atomics.store(w, EXEC_BASE + lane * 2, 0);
  Atomics.store(w, EXEC_BASE + lane * 2 + 1, 0);
  for (let s = 0; s < NSTRIPES; s++) {
    Atomics.store(w, WRITERS_BASE + lane * NSTRIPES + s, 0);
    Atomics.compareExchange(w, EXCL_BASE + s, me, 0);
  }
  releasePrLock(w, me);
}
