/**
 * Logout (RFC 7143 sec. 11.14-11.15) on a session of one or several connections (MC/S). Whom a Logout
 * Request ends and what it is answered are decided here; the connection only carries the exchange out.
 */
import type { Pdu } from '../pdu/pdu';
import { decodeLogoutRequest, type LogoutRequest } from '../pdu/pdu';
import { encodeLogoutResponse } from '../pdu/serializer';
import { LogoutReason, LogoutResponseCode, RejectReason } from '../pdu/opcodes';
import { log } from '../util/log';
import type { Connection } from './connection';
import { type Disposition, OK, refuse } from './disposition';
import type { Session } from './session';
import { markLoggedOut } from './mcs';
import { settled } from './command';
import { pendingCid } from './erl2';

/** What a Logout Request does: the response code, and which connections end gracefully after it. */
export interface LogoutDecision {
  response: number;
  /** Connections of the session that end (the requesting one included when it is among them). */
  ending: Connection[];
  /** Reason 2 at ERL 2: the ending connection's tasks are kept for reassignment, not terminated. */
  recovery?: boolean;
}

/**
 * Decide a logout for `conn` (the connection the request arrived on). Null for an unknown reason code.
 * - reason 0 (close the session): every connection of the session ends;
 * - reason 1 (close the connection): the connection of the request's CID ends, the others go on; a CID not in
 *   the session is answered 1 (CID not found);
 * - reason 2 (remove the connection for recovery): at ErrorRecoveryLevel 2 the connection of the CID ends and
 *   its tasks wait for a TASK REASSIGN (erl2.ts); a CID already lost and waiting so is answered 0 as well.
 *   Below ERL 2 the answer is 2 (connection recovery is not supported) and nothing ends.
 */
export function decideLogout(
  session: Session,
  conn: Connection,
  reason: number,
  cid: number,
): LogoutDecision | null {
  switch (reason) {
    case LogoutReason.CloseSession:
      return { response: LogoutResponseCode.Success, ending: [...session.connections.values()] };
    case LogoutReason.CloseConnection: {
      const target = cid === conn.cid ? conn : session.connections.get(cid);
      if (!target) return { response: LogoutResponseCode.CidNotFound, ending: [] };
      return { response: LogoutResponseCode.Success, ending: [target] };
    }
    case LogoutReason.RemoveConnectionForRecovery: {
      if (session.params.errorRecoveryLevel < 2)
        return { response: LogoutResponseCode.ConnectionRecoveryNotSupported, ending: [] };
      const target = cid === conn.cid ? conn : session.connections.get(cid);
      if (target) return { response: LogoutResponseCode.Success, ending: [target], recovery: true };
      if (pendingCid(session, cid))
        return { response: LogoutResponseCode.Success, ending: [], recovery: true };
      return { response: LogoutResponseCode.CidNotFound, ending: [] };
    }
    default:
      return null;
  }
}

/**
 * A Logout Request received in full feature phase, delivered in CmdSN order like any other request. From its
 * arrival the connection it closes dispatches nothing more (Connection.afterLogout). Once delivered, the
 * commands of the connections it ends are terminated and their backstore I/O awaited, and the task management
 * functions that arrived before it are answered, before the Logout Response goes (RFC 7143 11.14).
 */
export function handleLogout(conn: Connection, pdu: Pdu): Disposition {
  const req = decodeLogoutRequest(pdu);
  const session = conn.session!;
  const closesThis =
    req.reasonCode === LogoutReason.CloseSession ||
    (req.cid === conn.cid &&
      (req.reasonCode === LogoutReason.CloseConnection ||
        (req.reasonCode === LogoutReason.RemoveConnectionForRecovery &&
          session.params.errorRecoveryLevel >= 2)));
  if (closesThis) conn.phase = 'logout';
  session.deliver(req.cmdSN, req.immediate, () => {
    const d = decideLogout(session, conn, req.reasonCode, req.cid);
    if (d === null)
      conn.dispose(
        pdu.bhs,
        refuse(RejectReason.InvalidPduField, 'unknown logout reason code', { reason: req.reasonCode }),
      );
    else void logout(conn, session, req, d);
  });
  return OK;
}

async function logout(
  conn: Connection,
  session: Session,
  req: LogoutRequest,
  d: LogoutDecision,
): Promise<void> {
  const c = conn.ctx.counters;
  c.inc(d.response === LogoutResponseCode.Success ? 'tgtLogoutNormals' : 'tgtLogoutOthers');
  if (d.response === LogoutResponseCode.CidNotFound) c.inc('cxnLogoutCidNotFound');
  // Marked before anything closes: a connection that ends by logout does not take the session with it
  // (src/worker/context.ts connectionClosed), unlike one that fails.
  for (const e of d.ending) e.departure = d.recovery ? 'recovery' : 'logged-out';
  if (req.reasonCode === LogoutReason.CloseSession && d.response === LogoutResponseCode.Success)
    markLoggedOut(session);
  // Removed for recovery: the tasks are kept (the connection's close hands them to erl2.ts), not ended.
  const ended = d.recovery ? [] : d.ending.flatMap((e) => e.commands.abortAll());
  // No Data-Out is awaited from a connection going away: a TMF waiting for it answers now.
  for (const e of d.ending) e.commands.releaseDataWaits();
  // ERL 0: the tasks of a connection logged out from another one are terminated, not reassigned.
  for (const e of d.ending) if (e !== conn) e.close(`logged out by CID ${conn.cid}`);
  await settled(ended);
  await Promise.all(d.ending.flatMap((e) => [...e.tmfsInFlight]));
  if (conn.phase === 'closed') return;
  // A session that ends with this response loses its I_T nexus now, not when its socket closes: a reservation it
  // held (RESERVE(6)) is released before the initiator can hear "logged out" and another nexus, maybe served by
  // another worker, ask for it. (src/worker/context.ts endSession does it again when the session goes: harmless.)
  const endsSession =
    d.response === LogoutResponseCode.Success &&
    !d.recovery &&
    (req.reasonCode === LogoutReason.CloseSession ||
      (session.params.errorRecoveryLevel === 0 &&
        [...session.connections.values()].every((c) => d.ending.includes(c))));
  if (endsSession) session.nexusLost();
  conn.send(
    encodeLogoutResponse({
      response: d.response,
      itt: req.itt,
      statSN: conn.nextStatSN(),
      expCmdSN: session.expCmdSN,
      maxCmdSN: session.maxCmdSN,
      // RFC 7143 11.15.2-3: how long to wait before reassigning, and how long the tasks are kept.
      ...(d.recovery
        ? { time2Wait: session.params.defaultTime2Wait, time2Retain: session.params.defaultTime2Retain }
        : {}),
    }),
  );
  const fields = { peer: conn.peer, tsih: session.tsih, cid: conn.cid, reason: req.reasonCode };
  if (d.response === LogoutResponseCode.Success)
    log.info('logout', { ...fields, closing: d.ending.map((e) => e.cid).join(',') });
  else log.warn('logout refused', { ...fields, requestedCid: req.cid, response: d.response });
  if (d.ending.includes(conn)) {
    // The response goes out first: the initiator closes its side once it has it.
    conn.phase = 'logout';
    conn.flushHeld();
    conn.socket.end();
    setTimeout(() => conn.close('logout'), 2000).unref();
  }
}
