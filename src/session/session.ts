/**
 * An iSCSI session on its worker: TSIH, the CmdSN window shared by all its connections (MC/S), and the
 * target it is logged in to. One session lives on one worker thread, so nothing here needs a lock.
 */
import type { SessionStats } from '../metrics/session-stats';
import type { NegotiatedParams } from '../login/negotiator';
import type { SessionTarget } from './host';
import type { ScsiDispatcher } from '../scsi/dispatcher';
import type { LunView } from '../scsi/lun-view';
import type { Connection } from './connection';
import { snAdd, snLe, snLt } from './serial';
import { StableSet } from '../util/stable-collections';

export type SessionType = 'Normal' | 'Discovery';

/** A command as Session.track() sees it: its execution, which settles (never rejects) once its I/O is over. */
export interface RunningCommand {
  execution: Promise<void> | null;
}

export class Session {
  readonly connections = new Map<number, Connection>();
  expCmdSN: number;
  /** Commands that arrived ahead of ExpCmdSN, waiting for the gap to fill. */
  private readonly waiting = new Map<number, () => void>();
  /** Non-immediate commands accepted and not yet completed: the part of the window in use. */
  inFlight = 0;
  ended = false;
  /** Immediate and unsolicited data bytes reserved by commands that are not executing yet. */
  unsolicitedHeld = 0;
  /** Connections whose socket stopped draining: while any does, the window does not open further. */
  private windowHolds = 0;
  private heldMaxCmdSN = 0;
  /** Date.now() at login (`nodetgt show sessions` reports the age). */
  readonly createdAt = Date.now();
  /**
   * The LUNs this I_T nexus sees and which it may only write (SessionTarget.viewFor): set at login, replaced when
   * the target's host mappings change. Undefined for a discovery session.
   */
  luns: LunView | undefined;
  /**
   * Executions of this session's commands (their backstore I/O) not yet settled, aborted ones included:
   * what a reinstatement of the session must wait for (RFC 7143 6.3.5).
   */
  private readonly running = new StableSet<RunningCommand>();
  /**
   * Set while this session reinstated one whose commands are still executing: no command of this session
   * starts until it resolves, so a write of the old session never lands after one of the new session.
   */
  startGate: Promise<void> | null = null;
  /** This session's row in the per-session statistics (src/metrics/session-stats.ts); null: none. */
  stats: SessionStats | null = null;
  /**
   * ErrorRecoveryLevel 2: connections lost (failed, or removed for recovery) whose tasks wait for a TASK
   * REASSIGN until Time2Wait + Time2Retain pass (src/session/erl2.ts). They are no longer in `connections`.
   */
  readonly allegiancePending = new Set<Connection>();

  constructor(
    readonly tsih: number,
    readonly initiatorName: string,
    readonly isid: string,
    readonly type: SessionType,
    readonly target: SessionTarget | null,
    readonly dispatcher: ScsiDispatcher | null,
    public params: NegotiatedParams,
    initialCmdSN: number,
    readonly queueDepth: number,
  ) {
    this.expCmdSN = initialCmdSN >>> 0;
  }

  /**
   * Count a command from the start of its execution (one that never rejects) until untrack(), which its engine
   * calls once the execution has settled (CommandEngine.finish): a Set add and delete per command, with no
   * promise reaction of its own.
   */
  track(command: RunningCommand): void {
    this.running.add(command);
  }

  untrack(command: RunningCommand): void {
    this.running.delete(command);
  }

  /** Resolves once every execution tracked so far has settled; null when none is pending. */
  quiesce(): Promise<void> | null {
    if (this.running.size === 0) return null;
    return Promise.all(Array.from(this.running, (c) => c.execution)).then(() => undefined);
  }

  /** Start no command until `done` resolves (session reinstatement). */
  holdCommandsUntil(done: Promise<void>): void {
    const gate = done.then(() => {
      if (this.startGate === gate) this.startGate = null;
    });
    this.startGate = gate;
  }

  /** RFC 7143 sec. 11.2.1.8: an ITT names one task of the session, whichever connection carries it. */
  taskInProgress(itt: number): boolean {
    for (const c of this.connections.values()) if (c.commands.tasks.has(itt)) return true;
    for (const c of this.allegiancePending) if (c.commands.tasks.has(itt)) return true;
    return false;
  }

  private nexusName: string | undefined;

  /**
   * I_T nexus identifier (SAM): initiator port (name + ISID) and target port. Built once: every command looks
   * it up in its LU's maps, and a string made anew each time would be hashed anew each time.
   */
  get nexus(): string {
    this.nexusName ??= `${this.initiatorName},i,0x${this.isid}|${this.target?.name ?? ''}`;
    return this.nexusName;
  }

  /**
   * The I_T nexus is gone (the session ended, or its logout is about to be answered): per-nexus state in the
   * logical units (unit attentions, PREVENT, SPC-2 reservations, copy results) goes with it. Harmless twice.
   */
  nexusLost(): void {
    const d = this.dispatcher;
    if (d) for (const n of d.lunNumbers()) d.getLun(n)?.nexusLost(this.nexus);
  }

  get maxCmdSN(): number {
    const open = snAdd(this.expCmdSN, Math.max(0, this.queueDepth - this.inFlight) - 1);
    if (this.windowHolds === 0) return open;
    // Held: no further than it was when the hold began (and never below ExpCmdSN - 1, an empty window).
    const empty = snAdd(this.expCmdSN, 0xffffffff);
    if (snLt(this.heldMaxCmdSN, empty)) return empty;
    return snLt(this.heldMaxCmdSN, open) ? this.heldMaxCmdSN : open;
  }

  /** Backpressure: a connection stopped draining; MaxCmdSN stays where it is until released. */
  holdWindow(): void {
    // Read the open window before counting the hold: with the hold counted, maxCmdSN would read the stale
    // heldMaxCmdSN and the window would collapse to empty (MaxCmdSN going backwards).
    if (this.windowHolds === 0) this.heldMaxCmdSN = this.maxCmdSN;
    this.windowHolds++;
  }

  /** Returns true when the window is open again and MaxCmdSN moved on while it was held. */
  releaseWindow(): boolean {
    if (this.windowHolds === 0) return false;
    const held = this.maxCmdSN;
    return --this.windowHolds === 0 && this.maxCmdSN !== held;
  }

  /**
   * RFC 7143 sec. 6.3: the CmdSN of a rejected non-immediate command is not considered received; the
   * initiator must plug the gap (send the command again, or abort it). True when `cmdSN` is such a gap:
   * in the window and not yet delivered.
   */
  isGap(cmdSN: number): boolean {
    return snLe(this.expCmdSN, cmdSN) && snLe(cmdSN, this.maxCmdSN) && !this.waiting.has(cmdSN);
  }

  /** Whether `cmdSN` has been delivered (ExpCmdSN moved past it). */
  passed(cmdSN: number): boolean {
    return snLt(cmdSN, this.expCmdSN);
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
    if (cmdSN === this.expCmdSN && (this.windowHolds === 0 || snLe(cmdSN, this.maxCmdSN))) {
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
  all(): Session[] {
    return [...this.byTsih.values()];
  }
}
