/**
 * NOP-Out and NOP-In (RFC 7143 sec. 11.18-11.19) on one connection: the answer to an initiator's ping, and the
 * target's own keepalive, a NOP-In ping after nopInInterval seconds of silence that must be answered within
 * nopInTimeout seconds or the connection goes.
 */
import type { Pdu } from '../pdu/pdu';
import { decodeNopOut } from '../pdu/pdu';
import { encodeNopIn } from '../pdu/serializer';
import { RESERVED_TAG } from '../pdu/opcodes';
import { log } from '../util/log';
import type { Connection } from './connection';
import { type Disposition, OK } from './disposition';

export class Keepalive {
  /** Date.now() when the connection last received bytes. */
  lastRx = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private outstanding: { ttt: number; sentAt: number } | null = null;

  constructor(private readonly conn: Connection) {}

  /** The target's keepalive (its own or the global one); a discovery session has the global one. */
  private settings(): { nopInInterval: number; nopInTimeout: number } {
    return this.conn.session?.target?.config ?? this.conn.ctx.config;
  }

  /** Start pinging (in full feature phase). */
  arm(): void {
    const interval = this.settings().nopInInterval * 1000;
    if (interval <= 0) return;
    const tick = Math.min(interval, 1000);
    this.timer = setInterval(() => this.tick(interval), tick);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(interval: number): void {
    const conn = this.conn;
    if (conn.phase !== 'ffp' || !conn.session) return;
    const now = Date.now();
    if (conn.readStops !== 0) {
      // Not reading: an answer may be waiting unread, and no ping is needed to know the peer is busy.
      if (this.outstanding) this.outstanding.sentAt = now;
      return;
    }
    if (this.outstanding) {
      if (now - this.outstanding.sentAt > this.settings().nopInTimeout * 1000) {
        conn.ctx.counters.inc('instSsnCxnTimeoutErrors');
        conn.session?.stats?.timeoutError();
        log.warn('no answer to NOP-In: dropping the connection', conn.who());
        conn.close('nop timeout');
      }
      return;
    }
    if (now - this.lastRx < interval) return;
    const ttt = conn.nextTargetTag();
    this.outstanding = { ttt, sentAt: now };
    conn.ctx.counters.inc('nopInPings');
    conn.send(
      encodeNopIn({
        itt: RESERVED_TAG,
        ttt,
        statSN: conn.statSN,
        expCmdSN: conn.session.expCmdSN,
        maxCmdSN: conn.session.maxCmdSN,
      }),
    );
  }

  /** A NOP-Out: the answer to our ping, or a ping of the initiator's, answered in CmdSN order. */
  onNopOut(pdu: Pdu): Disposition {
    const conn = this.conn;
    const req = decodeNopOut(pdu);
    const session = conn.session!;
    if (req.itt === RESERVED_TAG) {
      // An answer to our NOP-In ping (or an unsolicited NOP-Out that wants no answer).
      if (this.outstanding && req.ttt === this.outstanding.ttt) this.outstanding = null;
      return OK;
    }
    const data = pdu.data.length ? Buffer.from(pdu.data.subarray(0, conn.maxSendDataSegment)) : null;
    const ok = session.deliver(req.cmdSN, req.immediate, () =>
      conn.send(
        encodeNopIn({
          lun: req.lun,
          itt: req.itt,
          ttt: RESERVED_TAG,
          statSN: conn.nextStatSN(),
          expCmdSN: session.expCmdSN,
          maxCmdSN: session.maxCmdSN,
        }),
        data,
      ),
    );
    if (!ok) log.debug('NOP-Out outside the CmdSN window ignored', { peer: conn.peer });
    return OK;
  }
}
