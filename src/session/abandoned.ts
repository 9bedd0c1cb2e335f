/**
 * Data transfers of tasks ended (by a TMF, a logout) while they still waited for Data-Out. The initiator may
 * answer their R2Ts after the end all the same (RFC 7143 sec. 4.2.3.3 even asks it to keep answering them after
 * a multi-task abort), so that Data-Out is expected: it is discarded without a word, never rejected. A Data-Out
 * that matches nothing ended here is still a protocol error, for the command engine to answer.
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

export class AbandonedTransfers {
  /** Target Transfer Tag of an R2T outstanding -> the ITT of its task. */
  private readonly r2ts = new Map<number, number>();
  /** ITTs of tasks whose unsolicited burst had not ended. */
  private readonly unsolicited = new Set<number>();

  add(task: ReceivingTask): void {
    for (const ttt of task.r2ts.keys()) this.r2ts.set(ttt, task.itt);
    if (!task.unsolicitedDone) this.unsolicited.add(task.itt);
    while (this.r2ts.size > CAP) this.r2ts.delete(this.r2ts.keys().next().value!);
    while (this.unsolicited.size > CAP) this.unsolicited.delete(this.unsolicited.values().next().value!);
  }

  /**
   * Whether a Data-Out belongs to an abandoned transfer (and is to be discarded); its final PDU closes the
   * transfer. Unsolicited data names its task by ITT alone: it is only the old task's while no new task has
   * taken the ITT (`ittInUse`). TTTs are never reused while remembered, so an R2T's data is matched by both.
   */
  late(itt: number, ttt: number, final: boolean, ittInUse: boolean): boolean {
    if (ttt !== RESERVED_TAG) {
      if (this.r2ts.get(ttt) !== itt) return false;
      if (final) this.r2ts.delete(ttt);
      return true;
    }
    if (ittInUse || !this.unsolicited.has(itt)) return false;
    if (final) this.unsolicited.delete(itt);
    return true;
  }
}
