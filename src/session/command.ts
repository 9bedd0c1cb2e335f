/**
 * The SCSI data path of one connection: immediate and unsolicited data, R2T sequences, Data-In segmentation,
 * residuals and status. Write data stays in the buffers it arrived in (slices) until the backstore has it;
 * read data goes out from the buffer io_uring filled.
 */
import type { Pdu } from '../pdu/pdu';
import { decodeScsiCommand, decodeDataOut, PduFormatError, bhsConsumedStatSN } from '../pdu/pdu';
import { encodeDataIn, encodeR2T, encodeScsiResponse, encodeSenseSegment } from '../pdu/serializer';
import { RejectReason, RESERVED_TAG } from '../pdu/opcodes';
import { decodeLun } from '../scsi/lun';
import type { ScsiResult } from '../scsi/types';
import type { LogicalUnit } from '../scsi/lu';
import { log } from '../util/log';
import { fixedSense } from '../scsi/sense';
import { SenseKey } from '../scsi/constants';
import type { Connection } from './connection';
import {
  type DataOutRecovery,
  beginRecovery,
  discardDataOut,
  orderedPieces,
  recoveryPending,
} from './dataout-recovery';
import { AbandonedTransfers } from './abandoned';
import { type Disposition, OK, fatal, refuse, reject } from './disposition';
import { StableMap } from '../util/stable-collections';

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const TASK_SET_FULL = 0x28;
/** ASC/ASCQ 4Bh/00h DATA PHASE ERROR: the Data-Out sequence of the command was broken. */
const DATA_PHASE_ERROR = [0x4b, 0x00] as const;
/** ASC/ASCQ 47h/05h PROTOCOL SERVICE CRC ERROR: a Data-Out PDU failed its data digest (RFC 7143 sec. 7.8). */
const PROTOCOL_SERVICE_CRC_ERROR = [0x47, 0x05] as const;

/**
 * Where a task is in its life. One state, not several flags, so that no combination can be half true:
 *  queued     arrived, waiting for its CmdSN turn (or out of the window, about to be dropped)
 *  receiving  delivered in CmdSN order; waiting for its Data-Out, or for room to send its answer
 *  running    handed to the SCSI layer: backstore I/O may be in flight until `execution` settles
 *  aborted    ended by a TMF, a logout or the connection's end while running; never answered, and still in
 *             the task table until `execution` settles (its ITT stays in use until then)
 *  done       answered or dropped, out of the task table
 */
export type TaskState = 'queued' | 'receiving' | 'running' | 'aborted' | 'done';

/**
 * Whether the task counts in session.inFlight (it holds the CmdSN window): delivered and not immediate, until
 * finish(). Derived from the state, so that no flag can disagree with it.
 */
function inWindow(task: Task): boolean {
  return (
    !task.immediate && (task.state === 'receiving' || task.state === 'running' || task.state === 'aborted')
  );
}

interface R2tState {
  offset: number;
  length: number;
  received: number;
  nextDataSN: number;
}

/**
 * The R2T table of every task until its first R2T (sendR2t gives it its own): most commands (READs, writes
 * with all their data immediate) never solicit any, and a Map per command is garbage on the hot path. Only ever
 * read, emptied or deleted from: nothing is set in it.
 */
const NO_R2TS: Map<number, R2tState> = new Map();
/** The same for the Data-Out pieces of a task that has none yet (every READ): onDataOut gives it its own. */
const NO_DATA: Buffer[] = [];
/** The execution of a command that finished at once (answered in the turn it started). */
const SETTLED: Promise<void> = Promise.resolve();

export interface Task {
  itt: number;
  lunRaw: bigint;
  lun: number;
  cdb: Buffer;
  edtl: number;
  read: boolean;
  write: boolean;
  immediate: boolean;
  /** Bytes of Data-Out we need before executing: min(EDTL, what the CDB transfers). */
  wantData: number;
  received: number;
  data: Buffer[];
  unsolicitedDone: boolean;
  unsolicitedLimit: number;
  unsolicitedDataSN: number;
  nextR2tOffset: number;
  r2ts: Map<number, R2tState>;
  r2tSN: number;
  state: TaskState;
  /** The SCSI layer's work once running: settles (never rejects) when the backstore is done with it. */
  execution: Promise<void> | null;
  /**
   * The answer when the command must not execute: refused before any data was solicited (pre-check, no room
   * for its unsolicited data) or its data transfer went wrong. Sent once its data has stopped arriving.
   */
  failure: ScsiResult | null;
  /** Bytes of session.unsolicitedHeld this task reserved until it starts. */
  reserved: number;
  /** Bytes this READ counts in CommandEngine.readsPending until it is answered. */
  pendingIn: number;
  /** ErrorRecoveryLevel 1: Data-Out lost to a digest error and asked for again (null until the first loss). */
  recovery: DataOutRecovery | null;
  /** The LU's reset epoch when the command arrived (ScsiTask.epoch). */
  epoch: number;
  /**
   * The LU the command was addressed to on arrival, counted in flight there (ScsiDispatcher.enterLun) until
   * finish(); null when no LU served the LUN, or once finished.
   */
  lu: LogicalUnit | null;
  /** performance.now() on arrival: the LU's latency histogram measures from here to the status. */
  startMs: number;
  /**
   * The engine of the connection the task is allegiant to: its arrival's, until a TASK REASSIGN moves it
   * (ErrorRecoveryLevel 2, erl2.ts). Its delivery, execution and status go through this engine.
   */
  owner: CommandEngine;
  /** ERL 2: the result of a task that completed while its connection was gone, sent once it is reassigned. */
  held: ScsiResult | null;
  /** Bytes this task counts in the worker's BackstoreQueue while it runs. */
  queued: number;
}

export class CommandEngine {
  readonly tasks = new StableMap<number, Task>();
  private nextTtt = 1;
  /** Tasks ready to execute while the connection's socket is not draining (see Connection.sendBlocked). */
  private readonly deferred = new Set<Task>();
  /** EDTL of the READs executing: Data-In that will land in the send queue. */
  private readsPending = 0;
  /** The session's start gate this engine waits on (see Session.startGate), once however many tasks wait. */
  private gateWait: Promise<void> | null = null;
  /** Transfers of tasks ended while they waited for Data-Out. */
  private readonly abandoned = new AbandonedTransfers();

  constructor(private readonly conn: Connection) {}

  /** Error recovery level 0: a protocol error ends the connection once the Reject is on its way. */
  private protocolError(why: string, task?: Task): Disposition {
    if (task) this.drop(task);
    return fatal(why, { reject: RejectReason.ProtocolError });
  }

  onCommand(pdu: Pdu): Disposition {
    const conn = this.conn;
    const session = conn.session!;
    const p = session.params;
    let cmd;
    try {
      cmd = decodeScsiCommand(pdu);
    } catch (e) {
      if (e instanceof PduFormatError) return refuse(RejectReason.InvalidPduField, e.message);
      throw e;
    }
    // The ITT is unique per session (taskInProgress looks at every connection); with this connection alone in
    // the session, as is usual, its own table is the session's.
    const alone =
      session.connections.size === 1 &&
      session.allegiancePending.size === 0 &&
      session.connections.get(conn.cid) === conn;
    if (alone ? this.tasks.has(cmd.itt) : session.taskInProgress(cmd.itt)) {
      // RFC 7143 11.2.1.8: the ITT names a task of the session that is still in progress.
      return reject(RejectReason.TaskInProgress, 'command with the ITT of a task in progress', {
        detail: { itt: cmd.itt },
      });
    }
    const imm = pdu.data.length;
    if (imm > 0) {
      if (!cmd.write) return this.protocolError('immediate data on a command without W');
      if (!p.immediateData) return this.protocolError('immediate data with ImmediateData=No');
      if (imm > p.firstBurstLength) return this.protocolError('immediate data beyond FirstBurstLength');
      if (imm > cmd.expectedDataTransferLength) return this.protocolError('immediate data beyond EDTL');
    }
    if (!pdu.final && (p.initialR2T || !cmd.write))
      return this.protocolError('unsolicited Data-Out announced but not allowed');
    const edtl = cmd.expectedDataTransferLength;
    const lun = decodeLun(pdu.bhs, 8);
    let failure: ScsiResult | null = null;
    let wantData = 0;
    let reserved = 0;
    const unsolicitedLimit = p.initialR2T ? imm : Math.min(p.firstBurstLength, edtl);
    if (cmd.write) {
      // Validate before soliciting: a command that cannot execute gets no R2T and keeps none of its data.
      const admitted = session.dispatcher!.admitDataOut({
        cdb: cmd.cdb,
        lun,
        view: session.luns,
        nexus: session.nexus,
      });
      if ('sense' in admitted) failure = { status: CHECK_CONDITION, sense: admitted.sense };
      // Solicit only what the command will use; unsolicited data is accepted up to EDTL and the excess dropped.
      else wantData = Math.min(edtl, admitted.dataOut);
      // Immediate and unsolicited data waits (for CmdSN order, for the rest of the burst) in memory: bounded
      // per session. Past the bound the command gets TASK SET FULL; its data is still read, and dropped.
      reserved = imm > 0 || !pdu.final ? Math.min(unsolicitedLimit, wantData) : 0;
      if (reserved > 0 && session.unsolicitedHeld + reserved > conn.ctx.config.maxUnsolicitedBytes) {
        failure = { status: TASK_SET_FULL };
        wantData = 0;
        reserved = 0;
      }
      session.unsolicitedHeld += reserved;
    }
    const lu = session.dispatcher?.enterLun(lun, session.luns) ?? null;
    const task: Task = {
      itt: cmd.itt,
      lunRaw: cmd.lun,
      lun,
      cdb: cmd.cdb,
      edtl,
      read: cmd.read,
      write: cmd.write,
      immediate: cmd.immediate,
      wantData,
      received: imm,
      data: imm > 0 && wantData > 0 ? [imm > wantData ? pdu.data.subarray(0, wantData) : pdu.data] : NO_DATA,
      unsolicitedDone: pdu.final,
      unsolicitedLimit,
      unsolicitedDataSN: 0,
      nextR2tOffset: 0,
      r2ts: NO_R2TS,
      r2tSN: 0,
      state: 'queued',
      execution: null,
      failure,
      reserved,
      pendingIn: 0,
      recovery: null,
      epoch: lu?.shared.resetEpoch ?? 0,
      lu,
      startMs: performance.now(),
      owner: this,
      held: null,
      queued: 0,
    };
    // The CDB and the data are views of the receive slab: it is not reused before finish() lets them go.
    const slabs = conn.ctx.slabs;
    slabs.retain(task.cdb);
    if (task.data.length) slabs.retain(task.data[0]);
    this.tasks.set(task.itt, task);
    const accepted = session.deliver(cmd.cmdSN, cmd.immediate, () => {
      if (task.state !== 'queued') return; // ended while it waited for its turn
      task.state = 'receiving';
      if (inWindow(task)) {
        session.inFlight++;
      }
      // Its connection may have failed, and the task been reassigned, while it waited (ERL 2).
      if (task.unsolicitedDone) task.owner.sendR2ts(task);
      task.owner.maybeStart(task);
    });
    if (!accepted) {
      // RFC 7143 sec. 4.2.2.1: a command outside the CmdSN window is silently ignored.
      this.finish(task);
      log.debug('command outside the CmdSN window ignored', { peer: conn.peer, cmdSN: cmd.cmdSN });
    }
    return OK;
  }

  /**
   * A Data-Out PDU; `corrupt` when its data failed the digest (already Rejected): counted, not kept. At ERL 0
   * the task then fails; at ERL 1 the data is asked for again (dataout-recovery.ts).
   */
  onDataOut(pdu: Pdu, corrupt = false): Disposition {
    const d = decodeDataOut(pdu);
    if (this.abandoned.late(d.itt, d.ttt, d.final, this.tasks.has(d.itt))) {
      log.debug('Data-Out of an aborted task discarded', { peer: this.conn.peer, itt: d.itt, ttt: d.ttt });
      return OK;
    }
    const task = this.tasks.get(d.itt);
    if (!task || (task.state !== 'queued' && task.state !== 'receiving'))
      return reject(RejectReason.InvalidPduField, 'Data-Out for an unknown task', { detail: { itt: d.itt } });
    const len = pdu.data.length;
    let r2t: R2tState | undefined;
    let dataSN: number;
    if (d.ttt === RESERVED_TAG) {
      if (task.unsolicitedDone) return this.protocolError('unsolicited Data-Out after the F bit', task);
      if (d.bufferOffset + len > task.unsolicitedLimit)
        return this.protocolError('unsolicited data beyond FirstBurstLength', task);
      dataSN = task.unsolicitedDataSN++;
    } else {
      r2t = task.r2ts.get(d.ttt);
      // The data of the R2T it should answer would never come: the task could not end.
      if (!r2t) return this.protocolError('Data-Out with an unknown Target Transfer Tag', task);
      dataSN = r2t.nextDataSN++;
      if (d.bufferOffset + len > r2t.offset + r2t.length)
        return this.protocolError('Data-Out beyond the R2T', task);
    }
    const rec = task.recovery;
    // DataPDUInOrder and DataSequenceInOrder are Yes: data arrives at increasing offsets, back to back; once
    // data was lost, back to back within its sequence (the recovery R2T's data comes after later sequences).
    const expected = !rec ? task.received : r2t ? r2t.offset + r2t.received : (rec.discard?.next ?? -1);
    if (r2t) r2t.received += len;
    const discarding = rec?.discard?.ttt === d.ttt;
    if (d.bufferOffset !== expected && !discarding) return this.protocolError('Data-Out out of order', task);
    if (d.bufferOffset + len > task.edtl) return this.protocolError('Data-Out beyond EDTL', task);
    if (d.dataSN !== dataSN && !task.failure) {
      // ERL 0 cannot ask for the PDU again: the command fails once its data has stopped arriving.
      log.warn('unexpected DataSN', { peer: this.conn.peer, itt: task.itt, got: d.dataSN, expected: dataSN });
      this.conn.ctx.counters.inc('instSsnFormatErrors');
      task.failure = {
        status: CHECK_CONDITION,
        sense: fixedSense(SenseKey.ABORTED_COMMAND, DATA_PHASE_ERROR),
      };
    }
    const recover = corrupt && !task.failure && this.conn.recovery !== null;
    if (corrupt && !recover && !task.failure)
      task.failure = {
        status: CHECK_CONDITION,
        sense: fixedSense(SenseKey.ABORTED_COMMAND, PROTOCOL_SERVICE_CRC_ERROR),
      };
    if (recover || discarding) {
      const r = (task.recovery ??= beginRecovery(task.data));
      r.discard ??= { ttt: d.ttt, from: d.bufferOffset, next: d.bufferOffset };
      if (!discardDataOut(r, d.bufferOffset, len, d.final))
        return this.protocolError('Data-Out out of order', task);
    } else {
      if (len && d.bufferOffset < task.wantData && !task.failure) {
        const keep = Math.min(len, task.wantData - d.bufferOffset);
        if (task.data === NO_DATA) task.data = [];
        task.data.push(keep === len ? pdu.data : pdu.data.subarray(0, keep));
        this.conn.ctx.slabs.retain(pdu.data);
        rec?.offsets.push(d.bufferOffset);
      }
      task.received += len;
    }
    if (d.final) {
      if (r2t) {
        if (r2t.received !== r2t.length) return this.protocolError('R2T sequence ended early', task);
        task.r2ts.delete(d.ttt);
      } else {
        task.unsolicitedDone = true;
        // The R2Ts for the rest start after the unsolicited burst, whatever part of it was lost.
        if (task.recovery && task.nextR2tOffset === 0) task.nextR2tOffset = d.bufferOffset + len;
      }
      if (task.state === 'receiving') this.sendR2ts(task);
    }
    this.maybeStart(task);
    return OK;
  }

  /**
   * Keep up to MaxOutstandingR2T sequences of at most MaxBurstLength requested; recovery R2Ts for lost data
   * first (they replace the sequences they repair, so they are not held to the limit).
   */
  private sendR2ts(task: Task): void {
    const p = this.conn.session!.params;
    for (const lost of task.recovery?.lost.splice(0) ?? []) {
      this.conn.ctx.counters.inc('recoveryR2ts');
      this.sendR2t(task, lost.offset, lost.length);
    }
    if (task.nextR2tOffset === 0) task.nextR2tOffset = task.received;
    while (task.nextR2tOffset < task.wantData && task.r2ts.size < p.maxOutstandingR2T) {
      const length = Math.min(p.maxBurstLength, task.wantData - task.nextR2tOffset);
      this.sendR2t(task, task.nextR2tOffset, length);
      task.nextR2tOffset += length;
    }
  }

  private sendR2t(task: Task, offset: number, length: number): void {
    const conn = this.conn;
    const session = conn.session!;
    const ttt = this.nextTtt;
    this.nextTtt = this.nextTtt >= 0x7fffffff ? 1 : this.nextTtt + 1;
    if (task.r2ts === NO_R2TS) task.r2ts = new Map();
    task.r2ts.set(ttt, { offset, length, received: 0, nextDataSN: 0 });
    const r2tSN = task.r2tSN++;
    const bhs = encodeR2T({
      lun: task.lunRaw,
      itt: task.itt,
      ttt,
      statSN: conn.statSN,
      expCmdSN: session.expCmdSN,
      maxCmdSN: session.maxCmdSN,
      r2tSN,
      bufferOffset: offset,
      desiredDataTransferLength: length,
    });
    conn.recovery?.sentR2T(task.itt, r2tSN, bhs);
    conn.send(bhs);
  }

  private maybeStart(task: Task): void {
    if (task.state !== 'receiving' || !task.unsolicitedDone) return;
    if (task.received < task.wantData || task.r2ts.size > 0 || recoveryPending(task.recovery)) return;
    const conn = this.conn;
    const session = conn.session!;
    // A reinstated session's commands may still be writing: nothing of this session starts before they end.
    const gate = session.startGate;
    if (gate) {
      this.deferred.add(task);
      if (this.gateWait !== gate) {
        this.gateWait = gate;
        void gate.then(() => {
          if (this.gateWait === gate) this.gateWait = null;
          this.resumeDeferred();
        });
      }
      return;
    }
    // Backpressure: what this command would send has nowhere to go yet; and the Data-In being read for this
    // connection is bounded (16 x the send high-water mark, at least one command) so that a client that does
    // not read cannot make the target fill memory before its socket stops draining.
    const readCap = 16 * conn.ctx.config.sendHighWater;
    if (
      !task.failure &&
      (conn.sendBlocked || (task.read && this.readsPending > 0 && this.readsPending + task.edtl > readCap))
    ) {
      this.deferred.add(task);
      return;
    }
    if (task.read && !task.failure) {
      task.pendingIn = task.edtl;
      this.readsPending += task.edtl;
    }
    task.state = 'running';
    this.unreserve(task);
    if (task.failure) {
      this.respond(task, task.failure);
      return;
    }
    const queued = task.read ? task.edtl : task.received;
    if (queued > 0) {
      task.queued = queued;
      conn.ctx.backpressure.add(queued);
      conn.ctx.counters.inc('backstoreQueuedBytes', queued);
    }
    const scsi = session.dispatcher!;
    conn.ctx.counters.inc('scsiCommands');
    let out: ScsiResult | Promise<ScsiResult>;
    try {
      out = scsi.execute({
        lun: task.lun,
        cdb: task.cdb,
        expectedLength: task.edtl,
        readFlag: task.read,
        writeFlag: task.write,
        dataOut: task.recovery ? orderedPieces(task.recovery, task.data) : task.data,
        nexus: session.nexus,
        epoch: task.epoch,
        view: session.luns,
        lu: task.lu,
      });
    } catch (err) {
      out = Promise.reject(err as Error);
    }
    if (!(out instanceof Promise)) {
      // Finished at once (a READ or WRITE served from memory): answered in this turn, with no promise.
      task.execution = SETTLED;
      this.settled(task, out);
      return;
    }
    task.execution = out.then(
      (result) => this.settled(task, result),
      (err: Error) => this.failed(task, 'SCSI command failed', err.stack ?? String(err)),
    );
    session.track(task);
  }

  /** The execution settled: answer through the engine the task is allegiant to now (ERL 2 may have moved it). */
  private settled(task: Task, result: ScsiResult): void {
    try {
      task.owner.respond(task, result);
    } catch (err) {
      // A throw while answering: the connection goes; the execution itself has settled.
      this.failed(task, 'answering a SCSI command failed', String(err));
    }
  }

  private failed(task: Task, what: string, error: string): void {
    log.error(what, { peer: this.conn.peer, error });
    this.finish(task);
    this.conn.close('internal error');
  }

  private respond(task: Task, result: ScsiResult): void {
    const conn = this.conn;
    if (task.pendingIn) {
      this.readsPending -= task.pendingIn;
      task.pendingIn = 0;
      if (this.deferred.size && !conn.sendBlocked) setImmediate(() => this.resumeDeferred());
    }
    if (task.state === 'aborted') return this.finish(task);
    if (conn.phase === 'closed') {
      // ERL 2: the status waits for the task's reassignment to another connection (or for Time2Retain to pass).
      if (this.detached) task.held = result;
      else this.finish(task);
      return;
    }
    const session = conn.session!;
    const c = conn.ctx.counters;
    let data = result.dataIn ?? null;
    let overflow = false;
    let underflow = false;
    let residual = 0;
    if (task.read || (data && data.length)) {
      const produced = data ? data.length : 0;
      const room = task.read ? task.edtl : 0;
      if (produced > room) {
        overflow = true;
        residual = produced - room;
        data = data!.subarray(0, room);
      } else if (produced < room) {
        underflow = true;
        residual = room - produced;
      }
    } else if (task.write) {
      const needed =
        session.dispatcher!.dataOutLength({ cdb: task.cdb, lun: task.lun, view: session.luns }) ?? 0;
      if (needed > task.edtl) {
        overflow = true;
        // A refused WRITE may ask for far more than 4 GiB: the field has 32 bits.
        residual = Math.min(needed - task.edtl, 0xffffffff);
      } else if (needed < task.edtl) {
        underflow = true;
        residual = task.edtl - needed;
      }
    } else if (task.edtl > 0) {
      underflow = true;
      residual = task.edtl;
    }
    if (result.status !== GOOD) c.inc('scsiCheckConditions');
    task.lu?.stats?.command(
      task.cdb[0],
      result.status,
      result.sense,
      data ? data.length : 0,
      task.write ? task.received : 0,
      task.startMs,
    );
    let dataSN = 0;
    // ERL 1: the Data-In and the status are kept for SNACKs (recovery.ts). The pooled buffer is then not
    // returned to its pool: the log holds it until acknowledged, and the GC takes it after.
    const kept = data && data.length ? (conn.recovery?.beginRead(task.itt, task.lunRaw) ?? null) : null;
    if (data && data.length) {
      c.inc('scsiReadBytes', data.length);
      const max = conn.maxSendDataSegment;
      const withStatus = result.status === GOOD && !result.sense;
      const release =
        result.pooled && result.dataIn && !kept
          ? () => session.dispatcher!.releaseDataIn(result.dataIn!)
          : undefined;
      // Data-In sequences of at most MaxBurstLength (RFC 7143 sec. 13.14), each ended by the F bit; a PDU never
      // straddles two of them. DataSN runs on across the sequences.
      const burst = session.params.maxBurstLength;
      for (let off = 0; off < data.length;) {
        const seqEnd = Math.min(data.length, (Math.floor(off / burst) + 1) * burst);
        const end = Math.min(off + max, seqEnd);
        const last = end === data.length;
        const status = last && withStatus;
        // ERL 1: a sequence that ends without status asks for a DataACK, so its data can be freed early.
        const ack = kept !== null && end === seqEnd && !status;
        const statSN = status ? conn.nextStatSN() : 0;
        const bhs = encodeDataIn({
          final: end === seqEnd,
          ack,
          statusPresent: status,
          status: status ? result.status : 0,
          residualOverflow: status && overflow,
          residualUnderflow: status && underflow,
          residualCount: status ? residual : 0,
          lun: task.lunRaw,
          itt: task.itt,
          ttt: ack ? kept.ackTtt : RESERVED_TAG,
          statSN,
          expCmdSN: session.expCmdSN,
          maxCmdSN: session.maxCmdSN,
          dataSN: dataSN++,
          bufferOffset: off,
        });
        // A READ answered in one PDU sends its buffer as it is: no view to make.
        const piece = off === 0 && end === data.length ? data : data.subarray(off, end);
        if (kept) {
          conn.recovery!.addDataIn(kept, { bhs, data: piece });
          if (status) kept.statSN = statSN;
        }
        conn.send(bhs, piece, last ? release : undefined);
        off = end;
      }
      if (withStatus) return this.finish(task);
    }
    if (task.write) c.inc('scsiWriteBytes', task.received);
    const response = {
      bhs: encodeScsiResponse({
        response: 0,
        status: result.status,
        residualOverflow: overflow,
        residualUnderflow: underflow,
        residualCount: residual,
        itt: task.itt,
        statSN: conn.nextStatSN(),
        expCmdSN: session.expCmdSN,
        maxCmdSN: session.maxCmdSN,
        expDataSN: task.read ? dataSN : task.r2tSN,
      }),
      data: result.sense ? encodeSenseSegment(result.sense) : null,
    };
    if (kept) {
      kept.response = response;
      kept.statSN = bhsConsumedStatSN(response.bhs);
    }
    conn.send(response.bhs, response.data);
    this.finish(task);
  }

  /** Start the tasks held back while the socket was not draining. */
  resumeDeferred(): void {
    const ready = [...this.deferred];
    this.deferred.clear();
    for (const t of ready) if (t.state === 'receiving') this.maybeStart(t); // defers itself again if blocked
  }

  private unreserve(task: Task): void {
    if (task.reserved === 0) return;
    const session = this.conn.session;
    if (session) session.unsolicitedHeld = Math.max(0, session.unsolicitedHeld - task.reserved);
    task.reserved = 0;
  }

  private finish(task: Task): void {
    if (task.state === 'done') return;
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt);
    // Called once the task's I/O has settled (a running task is finished only by respond()): nothing reads its
    // slab memory any more.
    const ctx = this.conn.ctx;
    ctx.slabs.release(task.cdb);
    for (let i = 0; i < task.data.length; i++) ctx.slabs.release(task.data[i]);
    if (task.queued > 0) {
      ctx.backpressure.done(task.queued);
      ctx.counters.inc('backstoreQueuedBytes', -task.queued);
      task.queued = 0;
    }
    this.conn.recovery?.r2ts.delete(task.itt);
    if (task.lu !== null) {
      task.lu.shared.leave();
      task.lu = null;
    }
    this.deferred.delete(task);
    this.unreserve(task);
    const session = this.conn.session;
    if (session) {
      if (task.execution !== null) session.untrack(task);
      if (inWindow(task) && session.inFlight > 0) session.inFlight--;
    }
    task.state = 'done';
  }

  /** End a task without an answer; a running one stays in the table until its execution settles. */
  private drop(task: Task): void {
    if (task.held) {
      // Completed while its connection was gone (ERL 2): its I/O is over, its status is never sent.
      task.held = null;
      this.finish(task);
    } else if (task.state === 'running') task.state = 'aborted';
    else if (task.state !== 'aborted' && task.state !== 'done') this.finish(task);
  }

  /**
   * End a task for a TMF, a logout or the connection's end. One still receiving leaves its transfers behind:
   * their Data-Out may still come, and is discarded (abandoned.ts).
   */
  private abandon(task: Task): void {
    if (task.state === 'queued' || task.state === 'receiving') this.abandoned.add(task);
    this.drop(task);
  }

  /** Abort one task (TMF): its response, if any, is suppressed. Returns it, or undefined if none has the ITT. */
  abort(itt: number): Task | undefined {
    const task = this.tasks.get(itt);
    if (task) this.abandon(task);
    return task;
  }

  /** Abort the tasks `pred` picks (those of one LUN, or all); returns them. */
  abortWhere(pred: (t: Task) => boolean): Task[] {
    const hit = [...this.tasks.values()].filter(pred);
    for (const t of hit) this.abandon(t);
    return hit;
  }

  abortAll(): Task[] {
    return this.abortWhere(() => true);
  }

  // ---- ErrorRecoveryLevel 2: connection allegiance (erl2.ts decides; the task's state changes here) ----------

  /**
   * Set when this engine's connection failed at ERL 2 and its tasks wait for a TASK REASSIGN: a task that
   * completes meanwhile keeps its result (Task.held) instead of being answered on the dead connection.
   */
  detached = false;

  /** Give up `task` to another connection's engine (TASK REASSIGN): it leaves this engine's bookkeeping. */
  surrender(task: Task): void {
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt);
    this.deferred.delete(task);
    this.conn.recovery?.r2ts.delete(task.itt);
    if (task.pendingIn) {
      this.readsPending -= task.pendingIn;
      task.pendingIn = 0;
    }
  }

  /**
   * Take over `task`, whose connection failed (TASK REASSIGN, RFC 7143 sec. 7.2.2), and continue it from where it
   * is: a WRITE still receiving gets R2Ts for the data it lacks (the received data is a prefix, as DataPDUInOrder
   * and DataSequenceInOrder are Yes; the old connection's R2Ts and unsolicited burst are over); a completed task
   * sends the status it held; a running one answers here when done; a queued one is delivered here.
   */
  adopt(task: Task): void {
    task.owner = this;
    this.tasks.set(task.itt, task);
    if (task.state === 'queued' || task.state === 'receiving') {
      task.r2ts.clear();
      task.unsolicitedDone = true;
      if (task.recovery) {
        // Digest recovery was in progress: its pieces are not a prefix. Ask for all the data again.
        task.recovery = null;
        task.data = [];
        task.received = 0;
      }
      task.nextR2tOffset = task.received;
      if (task.state === 'queued') return; // R2Ts once delivered, from here (Task.owner)
      this.sendR2ts(task);
      this.maybeStart(task);
    } else if (task.state === 'running' && task.held) {
      const result = task.held;
      task.held = null;
      this.respond(task, result);
    }
  }

  /** Resolves once the R2Ts these aborted tasks had outstanding got their final Data-Out (or releaseDataWaits). */
  dataOutAnswered(tasks: readonly Task[]): Promise<void> {
    return this.abandoned.answered(tasks.flatMap((t) => [...t.r2ts.keys()]));
  }

  /** No more Data-Out will come on this connection (closed, logged out): TMFs stop waiting for it. */
  releaseDataWaits(): void {
    this.abandoned.release();
  }
}

/** Resolves once the backstore is done with every one of these tasks (aborted tasks' I/O included). */
export function settled(tasks: readonly Task[]): Promise<void> {
  return Promise.all(tasks.map((t) => t.execution)).then(() => undefined);
}
