/**
 * Text Request and Response (RFC 7143 sec. 11.10-11.11) in full feature phase: SendTargets, and renegotiation
 * of the keys that may change after login through the login's negotiator (sec. 6.6). An answer longer than
 * the initiator's MaxRecvDataSegmentLength goes in pieces, each asked for by a Text Request with our TTT.
 */
import type { Pdu, TextRequest } from '../pdu/pdu';
import { decodeTextRequest } from '../pdu/pdu';
import { encodeTextResponse } from '../pdu/serializer';
import { RejectReason, RESERVED_TAG } from '../pdu/opcodes';
import type { Negotiator } from '../login/negotiator';
import { parseTextData, encodeTextData } from '../login/text';
import type { Connection } from './connection';
import { type Disposition, OK, refuse } from './disposition';

export class TextExchange {
  /** The rest of a long answer, sent when the initiator asks for it with this ITT and TTT. */
  private pending: { itt: number; ttt: number; rest: Buffer } | null = null;

  constructor(
    private readonly conn: Connection,
    private readonly negotiator: () => Negotiator,
  ) {}

  onText(pdu: Pdu): Disposition {
    const conn = this.conn;
    const req = decodeTextRequest(pdu);
    conn.session!.deliver(req.cmdSN, req.immediate, () => conn.dispose(pdu.bhs, this.answer(req, pdu)));
    return OK;
  }

  private answer(req: TextRequest, pdu: Pdu): Disposition {
    const conn = this.conn;
    const session = conn.session!;
    let body: Buffer;
    if (this.pending && req.ttt === this.pending.ttt && req.itt === this.pending.itt) {
      body = this.pending.rest; // continuation of a long answer
    } else {
      this.pending = null;
      const parsed = parseTextData(pdu.data);
      if (parsed.error) return refuse(RejectReason.ProtocolError, 'malformed text data');
      const answer: Array<[string, string]> = [];
      const others: Array<[string, string]> = [];
      for (const [k, v] of parsed.pairs) {
        if (k === 'SendTargets') answer.push(...conn.ctx.sendTargets(v, session, conn));
        else others.push([k, v]);
      }
      if (others.length) {
        // Renegotiation in full feature phase goes through the login's negotiator (RFC 7143 sec. 6.6).
        const n = this.negotiator();
        const r = n.process(others, 'ffp');
        if (r.failure) return refuse(RejectReason.ProtocolError, 'text negotiation failed');
        answer.push(...r.response);
        conn.maxSendDataSegment = n.result().initiatorMaxRecvDataSegmentLength;
      }
      body = encodeTextData(answer);
    }
    const max = conn.maxSendDataSegment;
    const more = body.length > max;
    const ttt = more ? conn.nextTargetTag() : RESERVED_TAG;
    this.pending = more ? { itt: req.itt, ttt, rest: body.subarray(max) } : null;
    conn.send(
      encodeTextResponse({
        final: !more,
        continue: more,
        lun: req.lun,
        itt: req.itt,
        ttt,
        statSN: conn.nextStatSN(),
        expCmdSN: session.expCmdSN,
        maxCmdSN: session.maxCmdSN,
      }),
      more ? body.subarray(0, max) : body.length ? body : null,
    );
    return OK;
  }
}
