/**
 * The persistent reservation area of one LU's shared memory (lu-shared.ts): persistent reservations and SPC-2
 * reservations as one JSON document, read by every worker behind a seqlock and changed under a lock word by
 * whichever worker received the PERSISTENT RESERVE OUT / RESERVE command. Four words of the LU's header
 * describe it; the document's bytes have their own SharedArrayBuffer of PR_CAPACITY bytes.
 *
 * Invariants: the document is written only under PR_LOCK, with PR_SEQ odd while it is being written; a reader
 * whose two reads of PR_SEQ differ (or are odd) reads again. PR_ACTIVE is 0 exactly when the document holds no
 * registration and no reservation, so the hot path can skip the reservation check with one load.
 */

/** Bytes of JSON the PR document may take (about 100 registrations). */
export const PR_CAPACITY = 32 * 1024;

// Word offsets in the LU's Int32Array header (lu-shared.ts keeps words 1-4 for these).
const PR_ACTIVE = 1;
const PR_SEQ = 2;
const PR_LOCK = 3;
const PR_LEN = 4;

/** The PR document was too big for PR_CAPACITY: answered INSUFFICIENT REGISTRATION RESOURCES. */
export class PrCapacityError extends Error {
  constructor() {
    super('persistent reservation state does not fit');
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One thread's handle on the PR area; `lane` is the thread's row, its lock word value being lane + 1. */
export class PrArea {
  private cache: { seq: number; doc: unknown } | null = null;

  constructor(
    private readonly w: Int32Array,
    private readonly bytes: Uint8Array,
    private readonly lane: number,
  ) {}

  /** Hot path: true when some registration or reservation exists (the document must be consulted). */
  get active(): boolean {
    return Atomics.load(this.w, PR_ACTIVE) !== 0;
  }

  /** PRgeneration-independent change counter of the document (even when stable). */
  get seq(): number {
    return Atomics.load(this.w, PR_SEQ);
  }

  /**
   * The current PR document (whatever the PR module stores; null when none was ever written). Cached per
   * thread until the sequence number moves; the returned object must be treated as read-only.
   */
  document<T>(): T | null {
    for (;;) {
      const s1 = Atomics.load(this.w, PR_SEQ);
      if (this.cache && this.cache.seq === s1) return this.cache.doc as T | null;
      if (s1 & 1) continue; // a writer is in the middle of it
      const doc = this.readDoc();
      if (Atomics.load(this.w, PR_SEQ) !== s1) continue;
      this.cache = { seq: s1, doc };
      return doc as T | null;
    }
  }

  private readDoc(): unknown {
    const len = Atomics.load(this.w, PR_LEN);
    if (len === 0) return null;
    // Copy out before decoding: the bytes may change under us (the seqlock check then discards the result).
    const copy = this.bytes.slice(0, Math.min(len, PR_CAPACITY));
    try {
      return JSON.parse(decoder.decode(copy));
    } catch {
      return null; // torn read; the caller's sequence check retries
    }
  }

  /**
   * Change the PR document under the LU's lock. `fn` gets the current document and returns the new one (or
   * undefined to leave it) and a result; it runs synchronously, so it may persist the document (fsync) before
   * the change becomes visible. `active` says whether the new document holds anything the hot path must
   * check. Throws PrCapacityError (nothing changed) when the document does not fit.
   */
  update<D, R>(fn: (doc: D | null) => { doc?: D; active?: boolean; result: R }): R {
    this.lock();
    try {
      const seq = Atomics.load(this.w, PR_SEQ);
      const current = (this.cache && this.cache.seq === seq ? this.cache.doc : this.readDoc()) as D | null;
      const out = fn(current);
      if (out.doc === undefined) return out.result;
      const bytes = encoder.encode(JSON.stringify(out.doc));
      if (bytes.length > PR_CAPACITY) throw new PrCapacityError();
      Atomics.store(this.w, PR_SEQ, seq + 1);
      this.bytes.set(bytes, 0);
      Atomics.store(this.w, PR_LEN, bytes.length);
      Atomics.store(this.w, PR_ACTIVE, out.active ? 1 : 0);
      Atomics.store(this.w, PR_SEQ, seq + 2);
      this.cache = { seq: seq + 2, doc: out.doc };
      return out.result;
    } finally {
      this.unlock();
    }
  }

  private lock(): void {
    const me = this.lane + 1;
    for (;;) {
      const v = Atomics.compareExchange(this.w, PR_LOCK, 0, me);
      if (v === 0) return;
      if (v === me) throw new Error('PR lock taken twice by one thread');
      // Holders never await inside the section: a blocking wait is short. The portal thread never locks.
      Atomics.wait(this.w, PR_LOCK, v, 10);
    }
  }

  private unlock(): void {
    Atomics.store(this.w, PR_LOCK, 0);
    Atomics.notify(this.w, PR_LOCK);
  }
}

/** The portal's clean-up after a dead worker: the PR lock it held (`me`: its lane + 1), if it held it. */
export function releasePrLock(w: Int32Array, me: number): void {
  if (Atomics.load(w, PR_LOCK) !== me) return;
  // A PR change interrupted half way: the sequence number may be odd (a torn document). Keep the bytes as
  // they were only if the change never began.
  const seq = Atomics.load(w, PR_SEQ);
  if (seq & 1) Atomics.store(w, PR_SEQ, seq + 1);
  Atomics.store(w, PR_LOCK, 0);
  Atomics.notify(w, PR_LOCK);
}
