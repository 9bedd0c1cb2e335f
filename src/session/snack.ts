/**
 * SNACK Request (RFC 7143 11.16) at ErrorRecoveryLevel 1, answered from what recovery.ts kept:
 *  Data/R2T  resend Data-In by DataSN, or R2Ts by R2TSN, of one task
 *  Status    resend the PDUs that carried StatSN BegRun .. BegRun+RunLength-1
 *  DataACK   the initiator has the Data-In below BegRun: free it
 *  R-Data    resend all unacknowledged Data-In of a task, resegmented to the current MaxRecvDataSegmentLength,
 *            then a SCSI Response carrying the SNACK's tag (its last response must carry it)
 * A SNACK for what was never sent or was acknowledged already: Reject "Protocol Error" (11.16); for a bad
 * DataACK: "Invalid DataACK"; for what was sent but no longer kept (the memory cap): "SNACK Reject".
 */
import type { Pdu } from '../pdu/pdu';
import { decodeSnackRequest, decodeDataIn, type SnackRequest } from '../pdu/pdu';
import { encodeDataIn, encodeScsiResponse, replicaBhs } from '../pdu/serializer';
import { Opcode, RejectReason, SnackType, RESERVED_TAG, type RejectReasonValue } from '../pdu/opcodes';
import type { Connection } from './connection';
import type { DataInLog, SentPdu } from './recovery';
import { snAdd, snLt } from './serial';
import { type Disposition, OK, reject } from './disposition';

/** The numbers a run names, begRun..end (exclusive); RunLength 0 runs to `sent`, BegRun 0 too: from `first`. */
function run(req: SnackRequest, first: number, sent: number): { begin: number; end: number } | null {
  const begin = req.begRun === 0 && req.runLength === 0 ? first : req.begRun;
  const end = req.runLength === 0 ? sent : snAdd(begin, req.runLength);
  // Acknowledged already, never sent, or empty: none of it can be sent again.
  if (snLt(begin, first) || snLt(sent, end) || !snLt(begin, end)) return null;
  return { begin, end };
}

export function onSnack(conn: Connection, pdu: Pdu): Disposition {
  const recovery = conn.recovery!;
  const req = decodeSnackRequest(pdu);
  conn.ctx.counters.inc('snackRequests');
  const refuse = (reason: RejectReasonValue, why: string, next = 0): Disposition =>
    reject(reason, 'SNACK refused', { dataSN: next, detail: { type: req.type, itt: req.itt, why } });
  const resend = (p: SentPdu, snackTag?: number): void =>
    conn.send(replicaBhs(p.bhs, conn.expCmdSN, conn.maxCmdSN, snackTag), p.data, undefined, true);

  switch (req.type) {
    case SnackType.Status: {
      const r = run(req, conn.expStatSN, conn.statSN);
      if (!r) return refuse(RejectReason.ProtocolError, 'StatSN run not sent or acknowledged');
      const pdus: SentPdu[] = [];
      for (let sn = r.begin; sn !== r.end; sn = snAdd(sn, 1)) {
        const p = recovery.status.get(sn) ?? recovery.dataInWithStatus(sn);
        if (!p) return refuse(RejectReason.SnackReject, `status ${sn} no longer kept`);
        pdus.push(p);
      }
      for (const p of pdus) resend(p);
      return OK;
    }
    case SnackType.DataR2T: {
      const kept = recovery.reads.get(req.itt);
      if (kept) {
        const sent = snAdd(kept.firstDataSN, kept.pdus.length);
        const r = run(req, kept.firstDataSN, sent);
        if (!r) return refuse(RejectReason.ProtocolError, 'DataSN run not sent or acknowledged', sent);
        for (let sn = r.begin; sn !== r.end; sn = snAdd(sn, 1)) resend(kept.pdus[sn - kept.firstDataSN]!);
        return OK;
      }
      const r2ts = recovery.r2ts.get(req.itt);
      if (r2ts) {
        const sent = r2ts.size ? Math.max(...r2ts.keys()) + 1 : 0;
        const r = run(req, Math.min(...r2ts.keys()), sent);
        if (!r) return refuse(RejectReason.ProtocolError, 'R2TSN run not sent', sent);
        for (let sn = r.begin; sn !== r.end; sn = snAdd(sn, 1)) {
          const bhs = r2ts.get(sn);
          if (bhs) resend({ bhs, data: null });
        }
        return OK;
      }
      if (recovery.wasEvicted(req.itt)) return refuse(RejectReason.SnackReject, 'Data-In no longer kept');
      return refuse(RejectReason.ProtocolError, 'no Data-In or R2T sent for this task');
    }
    case SnackType.DataAck: {
      const kept = recovery.readByAckTtt(req.ttt);
      const sent = kept ? snAdd(kept.firstDataSN, kept.pdus.length) : 0;
      if (!kept || req.runLength !== 0 || snLt(req.begRun, kept.firstDataSN) || snLt(sent, req.begRun))
        return refuse(RejectReason.InvalidDataAck, 'DataACK for Data-In not sent or acknowledged');
      recovery.acknowledgeData(kept, req.begRun);
      return OK;
    }
    case SnackType.RData: {
      const kept = recovery.reads.get(req.itt);
      if (!kept || kept.statSN === null || req.begRun !== 0 || req.runLength !== 0) {
        if (recovery.wasEvicted(req.itt)) return refuse(RejectReason.SnackReject, 'Data-In no longer kept');
        return refuse(RejectReason.ProtocolError, 'R-Data SNACK for no completed READ');
      }
      resegment(conn, kept, req.ttt);
      return OK;
    }
    default:
      return refuse(RejectReason.InvalidPduField, 'unknown SNACK type');
  }
}

/** A SCSI Response with the status (and residual) a READ's last Data-In carried, and its StatSN. */
function statusAsResponse(kept: DataInLog, lastBhs: Buffer, conn: Connection): SentPdu {
  const pdu: Pdu = {
    bhs: lastBhs,
    ahs: null,
    data: Buffer.alloc(0),
    opcode: Opcode.DataIn,
    immediate: false,
    final: true,
    itt: kept.itt,
    dataLength: 0,
  };
  const s = decodeDataIn(pdu);
  const bhs = encodeScsiResponse({
    status: s.status,
    residualOverflow: s.residualOverflow,
    residualUnderflow: s.residualUnderflow,
    residualCount: s.residualCount,
    itt: kept.itt,
    statSN: s.statSN,
    expCmdSN: conn.expCmdSN,
    maxCmdSN: conn.maxCmdSN,
  });
  return { bhs, data: null };
}

/**
 * R-Data SNACK: the unacknowledged Data-In again, cut to today's MaxRecvDataSegmentLength within the same
 * MaxBurstLength sequences, numbered on from the first unacknowledged DataSN and without status; then the
 * status as a SCSI Response with the SNACK Tag and the task's StatSN (a retransmission, not a new status).
 */
function resegment(conn: Connection, kept: DataInLog, snackTag: number): void {
  const session = conn.session!;
  const recovery = conn.recovery!;
  const old = kept.pdus;
  const data = Buffer.concat(old.map((p) => p.data ?? Buffer.alloc(0)));
  const response = kept.response ?? statusAsResponse(kept, old[old.length - 1]!.bhs, conn);
  const bytes = kept.bytes;
  kept.pdus = [];
  kept.bytes = 0;
  recovery.releaseBytes(bytes);
  const burst = session.params.maxBurstLength;
  const max = conn.maxSendDataSegment;
  let dataSN = kept.firstDataSN;
  for (let at = 0; at < data.length;) {
    const off = kept.firstOffset + at;
    const seqEnd = (Math.floor(off / burst) + 1) * burst;
    const end = Math.min(off + max, seqEnd, kept.firstOffset + data.length);
    const bhs = encodeDataIn({
      final: end === seqEnd || end === kept.firstOffset + data.length,
      lun: kept.lunRaw,
      itt: kept.itt,
      ttt: RESERVED_TAG,
      expCmdSN: session.expCmdSN,
      maxCmdSN: session.maxCmdSN,
      dataSN,
      bufferOffset: off,
    });
    dataSN = snAdd(dataSN, 1);
    const piece = data.subarray(at, end - kept.firstOffset);
    recovery.addDataIn(kept, { bhs, data: piece });
    conn.send(bhs, piece, undefined, true);
    at = end - kept.firstOffset;
  }
  const bhs = replicaBhs(response.bhs, session.expCmdSN, session.maxCmdSN, snackTag);
  bhs.writeUInt32BE(dataSN >>> 0, 36); // ExpDataSN: the Data-In now numbered up to dataSN
  kept.response = { bhs, data: response.data };
  conn.send(bhs, response.data, undefined, true);
}
