/**
 * What the copy manager keeps of EXTENDED COPY commands for RECEIVE COPY RESULTS: per I_T nexus and list
 * identifier, the copy status and the failed segment details (the sense data of a failed command).
 *
 * Kept per worker on the LU object: an I_T nexus is one session, and a session lives on one worker, so every
 * command of the nexus (the copy and the RECEIVE COPY RESULTS asking about it) reaches this same object.
 * Entries die with the nexus (nexusLost), with a logical unit reset on any worker (they carry the reset epoch
 * they were made in), once reported, and when a nexus holds more than HELD_LISTS (the oldest goes first).
 */

/** Lists held per I_T nexus before the oldest is discarded (the copy manager "needs the resources"). */
export const HELD_LISTS = 16;

export interface HeldCopy {
  /** The LU's reset epoch when the copy started: a reset since then discards the entry. */
  epoch: number;
  running: boolean;
  /** Hold the results after completion (LIST ID USAGE 00b). */
  hold: boolean;
  segmentsProcessed: number;
  bytesCopied: number;
  /** The copy ended in CHECK CONDITION (COPY STATUS: completed with errors). */
  failed: boolean;
  /** Its sense data for FAILED SEGMENT DETAILS; null after success, or once those were reported. */
  failure: Buffer | null;
  /** COPY STATUS already reported (its data is discarded then; failure details may remain). */
  statusTaken: boolean;
}

export class CopyResults {
  private readonly byNexus = new Map<string, Map<number, HeldCopy>>();

  /** The entry for a list identifier, if held and not from before a reset. */
  get(nexus: string, listId: number, epoch: number): HeldCopy | undefined {
    const m = this.byNexus.get(nexus);
    const e = m?.get(listId);
    if (e === undefined || e.epoch === epoch) return e;
    m!.delete(listId);
    return undefined;
  }

  /** Start tracking a copy (replacing what was held under its list identifier). */
  start(nexus: string, listId: number, epoch: number, hold: boolean): HeldCopy {
    let m = this.byNexus.get(nexus);
    if (m === undefined) this.byNexus.set(nexus, (m = new Map()));
    m.delete(listId);
    if (m.size >= HELD_LISTS) {
      for (const [id, e] of m)
        if (!e.running) {
          m.delete(id);
          break;
        }
    }
    const entry: HeldCopy = {
      epoch,
      running: true,
      hold,
      segmentsProcessed: 0,
      bytesCopied: 0,
      failed: false,
      failure: null,
      statusTaken: false,
    };
    m.set(listId, entry);
    return entry;
  }

  /** The copy ended: keep it for RECEIVE COPY RESULTS when asked to, else forget it. */
  finish(nexus: string, listId: number, entry: HeldCopy): void {
    entry.running = false;
    if (!entry.hold) this.discard(nexus, listId, entry);
  }

  /** Forget an entry (if it is still the one held under that list identifier). */
  discard(nexus: string, listId: number, entry: HeldCopy): void {
    const m = this.byNexus.get(nexus);
    if (m?.get(listId) !== entry) return;
    m.delete(listId);
    if (m.size === 0) this.byNexus.delete(nexus);
  }

  nexusLost(nexus: string): void {
    this.byNexus.delete(nexus);
  }
}
