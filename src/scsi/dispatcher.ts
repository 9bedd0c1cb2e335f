/**
 * The device server's front door: LUN lookup, opcode lookup in the command table of the LU's device type
 * (disk: commands.ts, cd: mmc-commands.ts), the CDB reserved-bit check, unit attention handling, the NOT READY
 * answer of a removable LU without its medium, and turning refusals into CHECK CONDITION with fixed-format sense.
 */
import { aluaRefusal } from './alua';
import { Opcode, SenseKey, Status } from './constants';
import { CommandIndex, COMMANDS } from './commands';
import { inquiryAbsentLun } from './inquiry';
import type { LogicalUnit, LuType } from './lu';
import { LunView, type LunAccess } from './lun-view';
import { mediumNotPresent } from './medium';
import { MMC_COMMANDS } from './mmc-commands';
import {
  fixedSense,
  highestBit,
  internalFailure,
  invalidFieldInCdb,
  invalidOpcode,
  lunNotSupported,
  ScsiError,
} from './sense';
import { reservationConflict } from './reserve';
import { sanitizeGate } from './sanitize';
import { reportLuns, requestSenseAbsentLun } from './spc';
import type { CommandContext, CommandSpec, ScsiResult, ScsiTask } from './types';

export type { ScsiTask, ScsiResult } from './types';

const TASK_ABORTED: ScsiResult = Object.freeze({ status: Status.TASK_ABORTED });
const RESERVATION_CONFLICT: ScsiResult = Object.freeze({ status: Status.RESERVATION_CONFLICT });

function checkCondition(err: ScsiError): ScsiResult {
  return { status: Status.CHECK_CONDITION, sense: err.sense() };
}

/** Refuse bits outside the usage map (reserved, obsolete or unsupported fields) with a field pointer. */
function checkCdbBits(spec: CommandSpec, lu: LogicalUnit, cdb: Buffer): void {
  if (cdb.length < spec.cdbLength) throw invalidFieldInCdb(0, 7);
  const usage = spec.cdbMask ? spec.cdbMask(lu) : spec.usage(lu);
  for (let i = 1; i < spec.cdbLength; i++) {
    let allowed = usage[i];
    if (i === 1 && spec.serviceAction !== undefined) allowed |= 0x1f;
    const bad = cdb[i] & ~allowed;
    if (bad !== 0) throw invalidFieldInCdb(i, highestBit(bad));
  }
}

class Context implements CommandContext {
  readonly cdb: Buffer;
  readonly lu: LogicalUnit;
  constructor(
    readonly task: ScsiTask,
    private readonly access: LunAccess,
    private readonly view: LunView,
    private readonly disp: ScsiDispatcher,
  ) {
    this.cdb = task.cdb;
    this.lu = access.lu;
  }

  lunNumbers(): readonly number[] {
    return this.view.numbers();
  }

  get commands(): readonly CommandSpec[] {
    return this.disp.commandsFor(this.lu);
  }

  luByNaa(naa: Buffer): LogicalUnit | undefined {
    const lu = this.disp.luByNaa(naa);
    // A LU this nexus does not see is no copy target for it either.
    return lu && this.view.accessTo(lu) ? lu : undefined;
  }

  nexusReadOnly(lu: LogicalUnit): boolean {
    return lu === this.lu ? this.access.readOnly : (this.view.accessTo(lu)?.readOnly ?? false);
  }
}

export class ScsiDispatcher {
  private luns: Map<number, LogicalUnit>;
  /** Every LUN, writable: the view of a nexus no host mapping restricts (and of tasks that carry none). */
  private everything: LunView;
  private readonly index: CommandIndex;
  private readonly indexes: Record<LuType, CommandIndex>;
  /** Called for unexpected (non-SCSI) exceptions, which are answered with HARDWARE ERROR. */
  onInternalError: (err: unknown, task: ScsiTask) => void = (err) => {
    console.error('nodetgt: internal error in SCSI command', err);
  };

  constructor(luns: Map<number, LogicalUnit>, commands: readonly CommandSpec[] = COMMANDS) {
    this.luns = luns;
    this.everything = LunView.all(luns);
    this.index = new CommandIndex(commands);
    this.indexes = { disk: this.index, cd: new CommandIndex(MMC_COMMANDS) };
  }

  /**
   * A live configuration change (src/worker/live.ts): serve `lu` at LUN `lun` from now on, or no LU there.
   * Unit attentions are the caller's to raise, once every worker has the change.
   */
  putLun(lun: number, lu: LogicalUnit): void {
    this.luns.set(lun, lu);
    this.everything = LunView.all(this.luns);
  }

  /** The LU that served `lun`, now removed (see putLun). */
  deleteLun(lun: number): LogicalUnit | undefined {
    const lu = this.luns.get(lun);
    this.luns.delete(lun);
    this.everything = LunView.all(this.luns);
    return lu;
  }

  /**
   * A command for `lun` arrived: it counts as in flight on that LU (LuShared.enter) until the caller calls
   * lu.shared.leave() when it is answered or dropped. Returns the LU, or null when none serves the LUN (for
   * this nexus: `view`).
   */
  enterLun(lun: number, view: LunView = this.everything): LogicalUnit | null {
    const lu = view.get(lun)?.lu;
    if (lu === undefined) return null;
    lu.shared.enter();
    return lu;
  }

  /** The command table this dispatcher serves to disk LUs. */
  get commands(): readonly CommandSpec[] {
    return this.index.commands;
  }

  /** The command table of this LU's device type (REPORT SUPPORTED OPERATION CODES reads it). */
  commandsFor(lu: LogicalUnit): readonly CommandSpec[] {
    return this.indexes[lu.type].commands;
  }

  /** Every LUN of the target, writable as each LU allows: the view of a nexus without a host mapping. */
  get allLuns(): LunView {
    return this.everything;
  }

  getLun(lun: number): LogicalUnit | undefined {
    return this.luns.get(lun);
  }

  /** The LU of this target with NAA designator `naa` (EXTENDED COPY target descriptors). */
  luByNaa(naa: Buffer): LogicalUnit | undefined {
    for (const lu of this.luns.values()) if (lu.identity.naa.equals(naa)) return lu;
    return undefined;
  }

  /** The LUN numbers currently configured, ascending. */
  lunNumbers(): number[] {
    return [...this.luns.keys()].sort((a, b) => a - b);
  }

  /**
   * Bytes of Data-Out the CDB itself asks for (WRITE: blocks x block size, UNMAP/MODE SELECT: parameter list
   * length, VERIFY with BYTCHK=0: 0); null for commands that never carry Data-Out, unknown opcodes and
   * absent LUNs.
   */
  dataOutLength(task: { cdb: Buffer; lun: number; view?: LunView }): number | null {
    const lu = (task.view ?? this.everything).get(task.lun)?.lu;
    if (!lu) return null;
    const spec = this.indexes[lu.type].lookup(task.cdb);
    if (!spec || spec === 'bad-sa' || !spec.dataOutLength) return null;
    if (task.cdb.length < spec.cdbLength) return null;
    return spec.dataOutLength(task.cdb, lu);
  }

  /**
   * The checks a command carrying Data-Out gets on arrival, before any R2T is sent or any of its data kept:
   * LUN, opcode, CDB length, the target port's asymmetric access state (a standby gateway solicits no data for a
   * write it will refuse; only when no unit attention is pending for `nexus`, which execute reports first) and
   * the command's own pre-check (range, transfer length). Returns the sense data of the CHECK CONDITION to answer
   * with, or the bytes of Data-Out the command will use (dataOutLength).
   */
  admitDataOut(task: {
    cdb: Buffer;
    lun: number;
    view?: LunView;
    nexus?: string;
  }): { sense: Buffer } | { dataOut: number } {
    const cdb = task.cdb;
    try {
      const lu = (task.view ?? this.everything).get(task.lun)?.lu;
      if (!lu) {
        const op = cdb[0];
        if (op === Opcode.INQUIRY || op === Opcode.REPORT_LUNS || op === Opcode.REQUEST_SENSE)
          return { dataOut: 0 };
        throw lunNotSupported();
      }
      const spec = this.specFor(lu, cdb);
      if (cdb.length < spec.cdbLength) throw invalidFieldInCdb(0, 7);
      if (task.nexus !== undefined && !lu.hasUnitAttention(task.nexus)) {
        const inaccessible = aluaRefusal(lu.ports.localState, spec);
        if (inaccessible) throw inaccessible;
      }
      spec.precheck?.(cdb, lu);
      return { dataOut: spec.dataOutLength?.(cdb, lu) ?? 0 };
    } catch (e) {
      if (e instanceof ScsiError) return { sense: e.sense() };
      throw e;
    }
  }

  /** The command this CDB names on this LU, or the ScsiError for an opcode or service action it does not offer. */
  private specFor(lu: LogicalUnit, cdb: Buffer): CommandSpec {
    const spec = this.indexes[lu.type].lookup(cdb);
    if (spec === undefined) throw invalidOpcode();
    if (spec === 'bad-sa') {
      lu.badRequest('unknown service action', { opcode: cdb[0], serviceAction: cdb[1] & 0x1f });
      throw invalidFieldInCdb(1, 4);
    }
    // A service action this LU does not offer is an invalid SERVICE ACTION field, not an unknown opcode.
    if (spec.available && !spec.available(lu))
      throw spec.serviceAction === undefined ? invalidOpcode() : invalidFieldInCdb(1, 4);
    return spec;
  }

  /** Return a pooled Data-In buffer (ScsiResult.pooled) once it has been sent. */
  releaseDataIn(buf: Buffer): void {
    // Once per READ: no Set of the pools seen (LUs mostly share one pool; asking it again costs a WeakSet lookup).
    for (const lu of this.luns.values()) {
      if (lu.pool.releaseIfOwned(buf)) return;
    }
  }

  /**
   * Run a command. The result comes as a value, with no promise and no event-loop turn, when the command
   * finished at once (a READ or WRITE the backstore served from memory, most commands that touch no medium),
   * else as a promise: no async function, since every await and async frame is a promise per command on the
   * hot path. Never throws, never rejects: failures are answered with CHECK CONDITION.
   */
  execute(task: ScsiTask): ScsiResult | Promise<ScsiResult> {
    const view = task.view ?? this.everything;
    try {
      // The one lookup a command makes: the nexus's view holds the LU and this nexus's access to it. An LU
      // removed or replaced live since the command arrived is not the one it was addressed to.
      const access = view.get(task.lun);
      if (!access || (task.lu !== undefined && task.lu !== access.lu)) return this.absentLun(task, view);
      const lu = access.lu;
      // A reset since the command arrived (while it waited for CmdSN order or its Data-Out): it was aborted
      // and never runs; the unit attention stays for the next command.
      const epoch = task.epoch ?? lu.shared.resetEpoch;
      if (!lu.shared.beginExec(epoch)) return TASK_ABORTED;
      // From here the command counts as executing in its epoch (LuShared.beginExec) until endExec.
      let out: ScsiResult | Promise<ScsiResult>;
      try {
        out = this.run(task, access, view);
      } catch (e) {
        lu.shared.endExec(epoch);
        throw e;
      }
      if (!(out instanceof Promise)) return this.ended(lu, epoch, out);
      return out.then(
        (result) => this.ended(lu, epoch, result),
        (e: unknown) => {
          lu.shared.endExec(epoch);
          return this.caught(e, task);
        },
      );
    } catch (e) {
      return this.caught(e, task);
    }
  }

  /** The checks before a command runs, in SPC-4's order, then its own exec. */
  private run(task: ScsiTask, access: LunAccess, view: LunView): ScsiResult | Promise<ScsiResult> {
    const lu = access.lu;
    const cdb = task.cdb;
    lu.noteNexus(task.nexus);
    const spec = this.specFor(lu, cdb);
    if (!spec.ignoresUnitAttention) {
      const ua = lu.takeUnitAttention(task.nexus);
      if (ua) return { status: Status.CHECK_CONDITION, sense: fixedSense(SenseKey.UNIT_ATTENTION, ua) };
    }
    // The target port's asymmetric access state (alua.ts), after the unit attention (so a host hears of a
    // state change first) and before reservations, as LIO orders them.
    const inaccessible = aluaRefusal(lu.ports.localState, spec);
    if (inaccessible) throw inaccessible;
    // After the unit attention (SPC-4 5.14: a pending one ends every command but INQUIRY, REPORT LUNS and
    // REQUEST SENSE, so a preempted nexus hears of it before meeting the reservation), before the command
    // is processed.
    if (lu.shared.prActive && reservationConflict(lu, spec, cdb, task.nexus)) return RESERVATION_CONFLICT;
    const sanitizing = sanitizeGate(lu, spec);
    if (sanitizing) throw sanitizing;
    checkCdbBits(spec, lu, cdb);
    if (lu.removable && !spec.withoutMedium && !lu.mediumPresent) throw mediumNotPresent();
    return spec.exec(new Context(task, access, view, this));
  }

  /** The command's exec is over: its result, unless a reset came while it ran (TAS = 1: TASK ABORTED). */
  private ended(lu: LogicalUnit, epoch: number, result: ScsiResult): ScsiResult {
    const reset = lu.shared.resetEpoch !== epoch;
    lu.shared.endExec(epoch);
    if (!reset) return result;
    if (result.pooled && result.dataIn) lu.pool.release(result.dataIn);
    return TASK_ABORTED;
  }

  private caught(e: unknown, task: ScsiTask): ScsiResult {
    if (e instanceof ScsiError) return checkCondition(e);
    this.onInternalError(e, task);
    return checkCondition(internalFailure());
  }

  /**
   * SPC-4: with no logical unit behind the LUN (none configured, or masked from this nexus) only INQUIRY,
   * REPORT LUNS and REQUEST SENSE work; REPORT LUNS lists what this nexus sees.
   */
  private absentLun(task: ScsiTask, view: LunView): ScsiResult {
    const cdb = task.cdb;
    switch (cdb[0]) {
      case Opcode.INQUIRY:
        if ((cdb[1] & 0x01) !== 0) throw lunNotSupported();
        return inquiryAbsentLun(cdb);
      case Opcode.REPORT_LUNS:
        return reportLuns(cdb, view.numbers());
      case Opcode.REQUEST_SENSE:
        return requestSenseAbsentLun(cdb);
      default:
        throw lunNotSupported();
    }
  }
}
