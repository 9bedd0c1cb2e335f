/**
 * Data transfers of tasks ended (by a TMF, a logout) while they still waited for Data-Out. The initiator may
 * answer their R2Ts after the end all the same (RFC 7143 sec. 4.2.3.3 even asks it to keep answering them after
 * a multi-task abort), so that Data-Out is expected: it is discarded without a word, never rejected. A Data-Out
 * that matches nothing ended here is still a protocol error, for the command engine to answer.
 *
 * A multi-task TMF waits here (answered()) until the issuing initiator has ended every R2T of the tasks it
 * affected with its final Data-Out, as sec. 4.2.3.3 a) asks before the TMF Response.
 */
import { RESERVED_TAG } from '../pdu/opcodes';

/** Transfers remembered at most; the oldest are forgotten first (their data is long due by then). */
const CAP = 4096;

/** What the engine needs of a task to remember its transfers. */
export interface ReceivingTask {
  itt: number;
  r2ts: ReadonlyMap<number, unknown>;
  unsolicitedDone: boolean;
}

/** A TMF waiting for the TTTs in `left` to be answered. */
interface Waiter {
  left: Set<number>;
  done: () => void;
}

export class AbandonedTransfers {
  /** Target Transfer Tag of an R2T outstanding -> the ITT of its task. */
  private readonly r2ts = new Map<number, number>();
  /** ITTs of tasks whose unsolicited burst had not ended. */
  private readonly unsolicited = new Set<number>();
  private readonly waiters = new Set<Waiter>();

  add(task: ReceivingTask): void {
    for (const ttt of task.r2ts.keys()) this.r2ts.set(ttt, task.itt);
    if (!task.unsolicitedDone) this.unsolicited.add(task.itt);
    while (this.r2ts.size > CAP) this.close(this.r2ts.keys().next().value!);
    while (this.unsolicited.size > CAP) this.unsolicited.delete(this.unsolicited.values().next().value!);
  }

  /**
   * Resolves once each of these TTTs (those still remembered) has seen its final Data-Out, or was forgotten,
   * or release() was called. Unsolicited data is not waited for: the RFC asks for the answers to TTTs only.
   */
  answered(ttts: Iterable<number>): Promise<void> {
    const left = new Set([...ttts].filter((ttt) => this.r2ts.has(ttt)));
    if (left.size === 0) return Promise.resolve();
    return new Promise((done) => this.waiters.add({ left, done }));
  }

  /** Nothing more will come (the connection ended or logged out): every wait ends. */
  release(): void {
    for (const w of this.waiters) w.done();
    this.waiters.clear();
  }

  private close(ttt: number): void {
    this.r2ts.delete(ttt);
    for (const w of this.waiters) {
      if (!w.left.delete(ttt) || w.left.size > 0) continue;
      this.waiters.delete(w);
      w.done();
    }
  }

  /**
   * Whether a Data-Out belongs to an abandoned transfer (and is to be discarded); its final PDU closes the
   * transfer. Unsolicited data names its task by ITT alone: it is only the old task's while no new task has
   * taken the ITT (`ittInUse`). TTTs are never reused while remembered, so an R2T's data is matched by both.
   */
  late(itt: number, ttt: number, final: boolean, ittInUse: boolean): boolean {
    if (ttt !== RESERVED_TAG) {
      if (this.r2ts.get(ttt) !== itt) return false;
      if (final) this.close(ttt);
      return true;
    }
    if (ittInUse || !this.unsolicited.has(itt)) return false;
    if (final) this.unsolicited.delete(itt);
    return true;
  }
}
