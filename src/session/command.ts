/**
 * The SCSI data path of one connection: immediate and unsolicited data, R2T sequences, Data-In segmentation,
 * residuals and status. Write data stays in the buffers it arrived in (slices) until the backstore has it;
 * read data goes out from the buffer io_uring filled.
 */
import type { Pdu } from '../pdu/pdu';
import { decodeScsiCommand, decodeDataOut, PduFormatError } from '../pdu/pdu';
import { encodeDataIn, encodeR2T, encodeScsiResponse, encodeSenseSegment } from '../pdu/serializer';
import { RejectReason, RESERVED_TAG } from '../pdu/opcodes';
import { decodeLun } from '../scsi/lun';
import type { ScsiResult } from '../scsi/types';
import type { LogicalUnit } from '../scsi/lu';
import { log } from '../util/log';
import { fixedSense } from '../scsi/sense';
import { SenseKey } from '../scsi/constants';
import type { Connection } from './connection';

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const TASK_SET_FULL = 0x28;
/** ASC/ASCQ 4Bh/00h DATA PHASE ERROR: the Data-Out sequence of the command was broken. */
const DATA_PHASE_ERROR = [0x4b, 0x00] as const;
/** ASC/ASCQ 47h/05h PROTOCOL SERVICE CRC ERROR: a Data-Out PDU failed its data digest (RFC 7143 sec. 7.8). */
const PROTOCOL_SERVICE_CRC_ERROR = [0x47, 0x05] as const;

interface R2tState {
  offset: number;
  length: number;
  received: number;
  nextDataSN: number;
}

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
  delivered: boolean;
  started: boolean;
  aborted: boolean;
  /**
   * The answer when the command must not execute: refused before any data was solicited (pre-check, no room
   * for its unsolicited data) or its data transfer went wrong. Sent once its data has stopped arriving.
   */
  failure: ScsiResult | null;
  /** Bytes of session.unsolicitedHeld this task reserved until it starts. */
  reserved: number;
  /** Bytes this READ counts in CommandEngine.readsPending until it is answered. */
  pendingIn: number;
  /** The LU's reset epoch when the command arrived (ScsiTask.epoch). */
  epoch: number;
  /**
   * The LU the command was addressed to on arrival, counted in flight there (ScsiDispatcher.enterLun) until
   * finish(); null when no LU served the LUN, or once finished.
   */
  lu: LogicalUnit | null;
  /** performance.now() on arrival: the LU's latency histogram measures from here to the status. */
  startMs: number;
}

export class CommandEngine {
  readonly tasks = new Map<number, Task>();
  private nextTtt = 1;
  /** Tasks ready to execute while the connection's socket is not draining (see Connection.sendBlocked). */
  private readonly deferred = new Set<Task>();
  /** EDTL of the READs executing: Data-In that will land in the send queue. */
  private readsPending = 0;

  constructor(private readonly conn: Connection) {}

  private protocolError(pdu: Pdu, why: string, task?: Task): void {
    log.warn('protocol error', { peer: this.conn.peer, why });
    this.conn.ctx.counters.inc('instSsnFormatErrors');
    this.conn.reject(RejectReason.ProtocolError, pdu.bhs);
    if (task) this.drop(task);
    // Error recovery level 0: a protocol error ends the connection once the Reject is on its way.
    setImmediate(() => this.conn.close(why));
  }

  onCommand(pdu: Pdu): void {
    const conn = this.conn;
    const session = conn.session!;
    const p = session.params;
    let cmd;
    try {
      cmd = decodeScsiCommand(pdu);
    } catch (e) {
      if (e instanceof PduFormatError) {
        conn.reject(RejectReason.InvalidPduField, pdu.bhs);
        return;
      }
      throw e;
    }
    if (this.tasks.has(cmd.itt)) {
      conn.reject(RejectReason.TaskInProgress, pdu.bhs);
      return;
    }
    const imm = pdu.data.length;
    if (imm > 0) {
      if (!cmd.write) return this.protocolError(pdu, 'immediate data on a command without W');
      if (!p.immediateData) return this.protocolError(pdu, 'immediate data with ImmediateData=No');
      if (imm > p.firstBurstLength) return this.protocolError(pdu, 'immediate data beyond FirstBurstLength');
      if (imm > cmd.expectedDataTransferLength) return this.protocolError(pdu, 'immediate data beyond EDTL');
    }
    if (!pdu.final && (p.initialR2T || !cmd.write))
      return this.protocolError(pdu, 'unsolicited Data-Out announced but not allowed');
    const edtl = cmd.expectedDataTransferLength;
    const lun = decodeLun(pdu.bhs.subarray(8, 16));
    let failure: ScsiResult | null = null;
    let wantData = 0;
    let reserved = 0;
    const unsolicitedLimit = p.initialR2T ? imm : Math.min(p.firstBurstLength, edtl);
    if (cmd.write) {
      // Validate before soliciting: a command that cannot execute gets no R2T and keeps none of its data.
      const admitted = session.dispatcher!.admitDataOut({ cdb: cmd.cdb, lun, view: session.luns });
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
      data: imm > 0 && wantData > 0 ? [imm > wantData ? pdu.data.subarray(0, wantData) : pdu.data] : [],
      unsolicitedDone: pdu.final,
      unsolicitedLimit,
      unsolicitedDataSN: 0,
      nextR2tOffset: 0,
      r2ts: new Map(),
      r2tSN: 0,
      delivered: false,
      started: false,
      aborted: false,
      failure,
      reserved,
      pendingIn: 0,
      epoch: lu?.shared.resetEpoch ?? 0,
      lu,
      startMs: performance.now(),
    };
    this.tasks.set(task.itt, task);
    const accepted = session.deliver(cmd.cmdSN, cmd.immediate, () => {
      task.delivered = true;
      if (!task.immediate) session.inFlight++;
      if (task.aborted) return this.finish(task);
      if (task.unsolicitedDone) this.sendR2ts(task);
      this.maybeStart(task);
    });
    if (!accepted) {
      // RFC 7143 sec. 4.2.2.1: a command outside the CmdSN window is silently ignored.
      this.finish(task);
      log.debug('command outside the CmdSN window ignored', { peer: conn.peer, cmdSN: cmd.cmdSN });
    }
  }

  /** A Data-Out PDU; `corrupt` when its data failed the digest (already Rejected): counted, not kept. */
  onDataOut(pdu: Pdu, corrupt = false): void {
    const d = decodeDataOut(pdu);
    const task = this.tasks.get(d.itt);
    if (!task || task.started) {
      log.warn('Data-Out for an unknown task', { peer: this.conn.peer, itt: d.itt });
      this.conn.ctx.counters.inc('instSsnFormatErrors');
      this.conn.reject(RejectReason.InvalidPduField, pdu.bhs);
      return;
    }
    const len = pdu.data.length;
    let r2t: R2tState | undefined;
    let dataSN: number;
    if (d.ttt === RESERVED_TAG) {
      if (task.unsolicitedDone) return this.protocolError(pdu, 'unsolicited Data-Out after the F bit', task);
      if (d.bufferOffset + len > task.unsolicitedLimit)
        return this.protocolError(pdu, 'unsolicited data beyond FirstBurstLength', task);
      dataSN = task.unsolicitedDataSN++;
    } else {
      r2t = task.r2ts.get(d.ttt);
      // The data of the R2T it should answer would never come: the task could not end.
      if (!r2t) return this.protocolError(pdu, 'Data-Out with an unknown Target Transfer Tag', task);
      dataSN = r2t.nextDataSN++;
      if (d.bufferOffset + len > r2t.offset + r2t.length)
        return this.protocolError(pdu, 'Data-Out beyond the R2T', task);
      r2t.received += len;
    }
    // DataPDUInOrder and DataSequenceInOrder are Yes: data arrives at increasing offsets, back to back.
    if (d.bufferOffset !== task.received) return this.protocolError(pdu, 'Data-Out out of order', task);
    if (task.received + len > task.edtl) return this.protocolError(pdu, 'Data-Out beyond EDTL', task);
    if (d.dataSN !== dataSN && !task.failure) {
      // ERL 0 cannot ask for the PDU again: the command fails once its data has stopped arriving.
      log.warn('unexpected DataSN', { peer: this.conn.peer, itt: task.itt, got: d.dataSN, expected: dataSN });
      this.conn.ctx.counters.inc('instSsnFormatErrors');
      task.failure = {
        status: CHECK_CONDITION,
        sense: fixedSense(SenseKey.ABORTED_COMMAND, DATA_PHASE_ERROR),
      };
    }
    if (corrupt && !task.failure)
      task.failure = {
        status: CHECK_CONDITION,
        sense: fixedSense(SenseKey.ABORTED_COMMAND, PROTOCOL_SERVICE_CRC_ERROR),
      };
    if (len && task.received < task.wantData && !task.failure) {
      const keep = Math.min(len, task.wantData - task.received);
      task.data.push(keep === len ? pdu.data : pdu.data.subarray(0, keep));
    }
    task.received += len;
    if (d.final) {
      if (r2t) {
        if (r2t.received !== r2t.length) return this.protocolError(pdu, 'R2T sequence ended early', task);
        task.r2ts.delete(d.ttt);
      } else {
        task.unsolicitedDone = true;
      }
      if (task.delivered) this.sendR2ts(task);
    }
    this.maybeStart(task);
  }

  /** Keep up to MaxOutstandingR2T sequences of at most MaxBurstLength requested. */
  private sendR2ts(task: Task): void {
    const conn = this.conn;
    const session = conn.session!;
    const p = session.params;
    if (task.nextR2tOffset === 0) task.nextR2tOffset = task.received;
    while (task.nextR2tOffset < task.wantData && task.r2ts.size < p.maxOutstandingR2T) {
      const length = Math.min(p.maxBurstLength, task.wantData - task.nextR2tOffset);
      const ttt = this.nextTtt;
      this.nextTtt = this.nextTtt >= 0x7fffffff ? 1 : this.nextTtt + 1;
      task.r2ts.set(ttt, { offset: task.nextR2tOffset, length, received: 0, nextDataSN: 0 });
      conn.send(
        encodeR2T({
          lun: task.lunRaw,
          itt: task.itt,
          ttt,
          statSN: conn.statSN,
          expCmdSN: session.expCmdSN,
          maxCmdSN: session.maxCmdSN,
          r2tSN: task.r2tSN++,
          bufferOffset: task.nextR2tOffset,
          desiredDataTransferLength: length,
        }),
      );
      task.nextR2tOffset += length;
    }
  }

  private maybeStart(task: Task): void {
    if (!task.delivered || task.started || !task.unsolicitedDone) return;
    if (task.received < task.wantData || task.r2ts.size > 0) return;
    const conn = this.conn;
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
    task.started = true;
    const session = conn.session!;
    this.unreserve(task);
    if (task.failure) {
      this.respond(task, task.failure);
      return;
    }
    const scsi = session.dispatcher!;
    conn.ctx.counters.inc('scsiCommands');
    scsi
      .execute({
        lun: task.lun,
        cdb: task.cdb,
        expectedLength: task.edtl,
        readFlag: task.read,
        writeFlag: task.write,
        dataOut: task.data,
        nexus: session.nexus,
        epoch: task.epoch,
        view: session.luns,
        lu: task.lu,
      })
      .then(
        (result) => this.respond(task, result),
        (err: Error) => {
          log.error('SCSI command failed', { peer: conn.peer, error: err.stack ?? String(err) });
          this.finish(task);
          conn.close('internal error');
        },
      );
  }

  private respond(task: Task, result: ScsiResult): void {
    const conn = this.conn;
    if (task.pendingIn) {
      this.readsPending -= task.pendingIn;
      task.pendingIn = 0;
      if (this.deferred.size && !conn.sendBlocked) setImmediate(() => this.resumeDeferred());
    }
    if (task.aborted || conn.phase === 'closed') return this.finish(task);
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
    if (data && data.length) {
      c.inc('scsiReadBytes', data.length);
      const max = conn.maxSendDataSegment;
      const withStatus = result.status === GOOD && !result.sense;
      const release =
        result.pooled && result.dataIn ? () => session.dispatcher!.releaseDataIn(result.dataIn!) : undefined;
      // Data-In sequences of at most MaxBurstLength (RFC 7143 sec. 13.14), each ended by the F bit; a PDU never
      // straddles two of them. DataSN runs on across the sequences.
      const burst = session.params.maxBurstLength;
      for (let off = 0; off < data.length;) {
        const seqEnd = Math.min(data.length, (Math.floor(off / burst) + 1) * burst);
        const end = Math.min(off + max, seqEnd);
        const last = end === data.length;
        const status = last && withStatus;
        conn.send(
          encodeDataIn({
            final: end === seqEnd,
            statusPresent: status,
            status: status ? result.status : 0,
            residualOverflow: status && overflow,
            residualUnderflow: status && underflow,
            residualCount: status ? residual : 0,
            lun: task.lunRaw,
            itt: task.itt,
            ttt: RESERVED_TAG,
            statSN: status ? conn.nextStatSN() : 0,
            expCmdSN: session.expCmdSN,
            maxCmdSN: session.maxCmdSN,
            dataSN: dataSN++,
            bufferOffset: off,
          }),
          data.subarray(off, end),
          last ? release : undefined,
        );
        off = end;
      }
      if (withStatus) return this.finish(task);
    }
    if (task.write) c.inc('scsiWriteBytes', task.received);
    conn.send(
      encodeScsiResponse({
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
      result.sense ? encodeSenseSegment(result.sense) : null,
    );
    this.finish(task);
  }

  /** Start the tasks held back while the socket was not draining. */
  resumeDeferred(): void {
    const ready = [...this.deferred];
    this.deferred.clear();
    for (const t of ready) if (!t.aborted) this.maybeStart(t); // defers itself again if blocked again
  }

  private unreserve(task: Task): void {
    if (task.reserved === 0) return;
    const session = this.conn.session;
    if (session) session.unsolicitedHeld = Math.max(0, session.unsolicitedHeld - task.reserved);
    task.reserved = 0;
  }

  private finish(task: Task): void {
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt);
    if (task.lu !== null) {
      task.lu.shared.leave();
      task.lu = null;
    }
    this.deferred.delete(task);
    this.unreserve(task);
    if (task.delivered && !task.immediate) {
      const session = this.conn.session;
      if (session && session.inFlight > 0) session.inFlight--;
    }
    task.delivered = false;
  }

  private drop(task: Task): void {
    task.aborted = true;
    if (!task.started) this.finish(task);
  }

  /** Abort one task (TMF): its response, if any, is suppressed. Returns whether it existed. */
  abort(itt: number): boolean {
    const task = this.tasks.get(itt);
    if (!task) return false;
    this.drop(task);
    return true;
  }

  /** Abort every task, or those of one LUN. */
  abortWhere(pred: (t: Task) => boolean): number {
    let n = 0;
    for (const t of [...this.tasks.values()]) {
      if (!pred(t)) continue;
      this.drop(t);
      n++;
    }
    return n;
  }

  abortAll(): void {
    this.abortWhere(() => true);
  }
}
