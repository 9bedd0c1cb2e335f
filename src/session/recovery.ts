/**
 * What a connection keeps at ErrorRecoveryLevel 1 so that a SNACK (RFC 7143 11.16) can be answered: the PDUs
 * that consumed a StatSN until ExpStatSN acknowledges them, the Data-In of each READ until its status is
 * acknowledged or a DataACK frees it, and the R2Ts of each WRITE while it receives data. Nothing here at ERL 0.
 *
 * Memory is bounded: past RETAIN_CAP bytes of kept data the oldest tasks' Data-In is forgotten, past
 * STATUS_CAP responses the oldest response; a SNACK for them is then refused with "SNACK Reject" (sent, but
 * no longer kept).
 */
import { bhsConsumedStatSN, bhsOpcode } from '../pdu/pdu';
import { Opcode } from '../pdu/opcodes';
import { snLt } from './serial';

/** Bytes of Data-In payload one connection keeps for retransmission at most. */
export const RETAIN_CAP = 32 * 1024 * 1024;
/** Responses kept unacknowledged at most (an initiator that never advances ExpStatSN must not grow the map). */
export const STATUS_CAP = 4096;

export interface SentPdu {
  bhs: Buffer;
  data: Buffer | null;
}

/** The Data-In of one READ (one ITT), in DataSN order from `firstDataSN`. */
export interface DataInLog {
  itt: number;
  lunRaw: bigint;
  /** DataSN of pdus[0]: lower ones were acknowledged by a DataACK (or the log was trimmed by one). */
  firstDataSN: number;
  pdus: SentPdu[];
  /** Offset of pdus[0]'s data in the task's Data-In buffer. */
  firstOffset: number;
  /** The StatSN of the task's status once sent (in the last Data-In, or a SCSI Response in `response`). */
  statSN: number | null;
  /** The SCSI Response PDU when the status did not travel in the last Data-In. */
  response: SentPdu | null;
  /** The Target Transfer Tag of Data-In PDUs with the A bit (a DataACK names the task by it). */
  ackTtt: number;
  bytes: number;
}

export class RecoveryLog {
  /** PDUs that consumed a StatSN, in StatSN order (Status SNACK). */
  readonly status = new Map<number, SentPdu>();
  readonly reads = new Map<number, DataInLog>();
  private readonly byAckTtt = new Map<number, DataInLog>();
  /** R2Ts of a task by R2TSN (R2T SNACK), kept while the task is in the command engine. */
  readonly r2ts = new Map<number, Map<number, Buffer>>();
  /** ITTs of READs forgotten for the memory cap (bounded like `reads`). */
  private readonly evicted = new Set<number>();
  private bytes = 0;
  private nextAckTtt = 1;

  /**
   * Every PDU sent (but retransmissions): keep the ones that consumed a StatSN until acknowledged. A Data-In
   * with status is not kept here: its READ's log has it (dataInWithStatus).
   */
  sent(bhs: Buffer, data: Buffer | readonly Buffer[] | null): void {
    if (bhsOpcode(bhs) === Opcode.DataIn) return;
    const sn = bhsConsumedStatSN(bhs);
    if (sn === null) return;
    this.status.set(sn, { bhs, data: data === null || Buffer.isBuffer(data) ? data : Buffer.concat(data) });
    if (this.status.size > STATUS_CAP) this.status.delete(this.status.keys().next().value!);
  }

  /** Start the log of a READ's Data-In (replacing what an earlier task with the same ITT left). */
  beginRead(itt: number, lunRaw: bigint): DataInLog {
    this.dropRead(itt);
    this.evicted.delete(itt);
    const log: DataInLog = {
      itt,
      lunRaw,
      firstDataSN: 0,
      pdus: [],
      firstOffset: 0,
      statSN: null,
      response: null,
      ackTtt: this.nextAckTtt,
      bytes: 0,
    };
    this.nextAckTtt = this.nextAckTtt >= 0x7fffffff ? 1 : this.nextAckTtt + 1;
    this.reads.set(itt, log);
    this.byAckTtt.set(log.ackTtt, log);
    return log;
  }

  addDataIn(log: DataInLog, pdu: SentPdu): void {
    log.pdus.push(pdu);
    const n = pdu.data ? pdu.data.length : 0;
    log.bytes += n;
    this.bytes += n;
    this.enforceCap(log);
  }

  sentR2T(itt: number, r2tSN: number, bhs: Buffer): void {
    let m = this.r2ts.get(itt);
    if (!m) this.r2ts.set(itt, (m = new Map()));
    m.set(r2tSN, bhs);
  }

  /** The Data-In PDU that carried status `statSN`, if its READ is still kept. */
  dataInWithStatus(statSN: number): SentPdu | undefined {
    for (const log of this.reads.values())
      if (log.statSN === statSN && !log.response) return log.pdus[log.pdus.length - 1];
    return undefined;
  }

  readByAckTtt(ttt: number): DataInLog | undefined {
    return this.byAckTtt.get(ttt);
  }

  /** Data-In payload no longer held (R-Data SNACK re-adds what it resends). */
  releaseBytes(n: number): void {
    this.bytes -= n;
  }

  /** Whether this ITT's Data-In was kept once and forgotten for the memory cap. */
  wasEvicted(itt: number): boolean {
    return this.evicted.has(itt);
  }

  /** DataACK: the Data-In below `dataSN` arrived; its memory is freed. */
  acknowledgeData(log: DataInLog, dataSN: number): void {
    while (log.pdus.length && snLt(log.firstDataSN, dataSN)) {
      const p = log.pdus.shift()!;
      const n = p.data ? p.data.length : 0;
      log.bytes -= n;
      this.bytes -= n;
      log.firstOffset += n;
      log.firstDataSN = (log.firstDataSN + 1) >>> 0;
    }
  }

  /** ExpStatSN from the initiator: every status below it, and the Data-In of those tasks, arrived. */
  acknowledge(expStatSN: number): void {
    for (const sn of this.status.keys()) {
      if (!snLt(sn, expStatSN)) break;
      this.status.delete(sn);
    }
    for (const log of this.reads.values()) {
      if (log.statSN === null || !snLt(log.statSN, expStatSN)) break;
      this.dropRead(log.itt);
    }
  }

  private dropRead(itt: number): void {
    const log = this.reads.get(itt);
    if (!log) return;
    this.reads.delete(itt);
    this.byAckTtt.delete(log.ackTtt);
    this.bytes -= log.bytes;
  }

  /** Forget the oldest READs (never the one being written) until the kept data fits the cap again. */
  private enforceCap(current: DataInLog): void {
    for (const log of this.reads.values()) {
      if (this.bytes <= RETAIN_CAP) return;
      if (log === current) continue;
      this.dropRead(log.itt);
      this.evicted.add(log.itt);
      if (this.evicted.size > 4096) this.evicted.delete(this.evicted.values().next().value!);
    }
  }
}
