/**
 * An iSCSI session on its worker: TSIH, the CmdSN window shared by all its connections (MC/S), and the
 * target it is logged in to. One session lives on one worker thread, so nothing here needs a lock.
 */
import type { NegotiatedParams } from '../login/negotiator';
import type { TargetNode } from '../worker/targets';
import type { ScsiDispatcher } from '../scsi/dispatcher';
import type { Connection } from './connection';
import { snAdd, snLe, snLt } from './serial';

export type SessionType = 'Normal' | 'Discovery';

export class Session {
  readonly connections = new Map<number, Connection>();
  expCmdSN: number;
  /** Commands that arrived ahead of ExpCmdSN, waiting for the gap to fill. */
  private readonly waiting = new Map<number, () => void>();
  /** Non-immediate commands accepted and not yet completed: the part of the window in use. */
  inFlight = 0;
  ended = false;

  constructor(
    readonly tsih: number,
    readonly initiatorName: string,
    readonly isid: string,
    readonly type: SessionType,
    readonly target: TargetNode | null,
    readonly dispatcher: ScsiDispatcher | null,
    public params: NegotiatedParams,
    initialCmdSN: number,
    readonly queueDepth: number,
  ) {
    this.expCmdSN = initialCmdSN >>> 0;
  }

  /** I_T nexus identifier (SAM): initiator port (name + ISID) and target port. */
  get nexus(): string {
    return `${this.initiatorName},i,0x${this.isid}|${this.target?.name ?? ''}`;
  }

  get maxCmdSN(): number {
    return snAdd(this.expCmdSN, Math.max(0, this.queueDepth - this.inFlight) - 1);
  }

  /**
   * Deliver a command in CmdSN order. Immediate commands run at once and do not advance ExpCmdSN.
   * Returns false when the CmdSN is outside the window: RFC 7143 says such a command is silently ignored.
   */
  deliver(cmdSN: number, immediate: boolean, run: () => void): boolean {
    if (immediate) {
      run();
      return true;
    }
    if (cmdSN === this.expCmdSN) {
      this.expCmdSN = snAdd(this.expCmdSN, 1);
      run();
      for (let next = this.waiting.get(this.expCmdSN); next; next = this.waiting.get(this.expCmdSN)) {
        this.waiting.delete(this.expCmdSN);
        this.expCmdSN = snAdd(this.expCmdSN, 1);
        next();
      }
      return true;
    }
    if (snLt(this.expCmdSN, cmdSN) && snLe(cmdSN, this.maxCmdSN) && !this.waiting.has(cmdSN)) {
      this.waiting.set(cmdSN, run);
      return true;
    }
    return false;
  }

  /** Drop queued commands (connection or session going away). */
  clearWaiting(): void {
    this.waiting.clear();
  }
}

/** Sessions of one worker, by TSIH and by (InitiatorName, ISID, target) for reinstatement. */
export class SessionTable {
  private readonly byTsih = new Map<number, Session>();
  add(s: Session): void {
    this.byTsih.set(s.tsih, s);
  }
  remove(s: Session): void {
    if (this.byTsih.get(s.tsih) === s) this.byTsih.delete(s.tsih);
  }
  get(tsih: number): Session | undefined {
    return this.byTsih.get(tsih);
  }
  find(initiatorName: string, isid: string, targetName: string | null): Session | undefined {
    for (const s of this.byTsih.values())
      if (s.initiatorName === initiatorName && s.isid === isid && (s.target?.name ?? null) === targetName)
        return s;
    return undefined;
  }
  get size(): number {
    return this.byTsih.size;
  }
}
