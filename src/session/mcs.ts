/**
 * Multiple connections per session (MC/S, RFC 7143 sec. 4.2 and 6.3): the rules for a connection that joins an
 * existing session (a login with its TSIH), for a CID used again (connection reinstatement), and for a
 * connection that leaves. The worker context applies them; the session state itself lives in session.ts.
 */
import type { CounterRow } from '../metrics/counters';
import { LoginStatus } from '../pdu/opcodes';
import type { LoginOutcome } from '../login/login';
import { log } from '../util/log';
import type { Connection } from './connection';
import type { Session } from './session';

/**
 * Sessions whose logout (reason 0) has been answered: their connections are closing, and no connection may join
 * them any more. Per worker thread, as the sessions are.
 */
const loggedOut = new WeakSet<Session>();

export function markLoggedOut(s: Session): void {
  loggedOut.add(s);
}

/** Whether a connection may still join `s`: it exists, has not ended and is not being logged out. */
export function joinable(s: Session | undefined): s is Session {
  return !!s && !s.ended && !loggedOut.has(s);
}

export interface JoinRefusal {
  status: number;
  reason: string;
}

/**
 * Why a non-leading login cannot join `s` (the session its TSIH names on this worker), or null. The login
 * phase checked the same at its first PDU; this is checked again at its end, since the session may have ended
 * or filled up while the connection negotiated.
 */
export function joinRefusal(s: Session | undefined, o: LoginOutcome): JoinRefusal | null {
  if (!joinable(s) || s.initiatorName !== o.initiatorName || s.isid !== o.isid)
    return {
      status: LoginStatus.SessionDoesNotExist,
      reason: `no session with TSIH ${o.tsih} for this initiator`,
    };
  if ((s.target?.name ?? null) !== o.targetName)
    return { status: LoginStatus.SessionDoesNotExist, reason: `session ${o.tsih} is not on ${o.targetName}` };
  if (!hasRoom(s, o.cid))
    return {
      status: LoginStatus.TooManyConnections,
      reason: `session ${o.tsih} has its MaxConnections=${s.params.maxConnections}`,
    };
  return null;
}

/** Whether connection `cid` fits under the session's MaxConnections (a CID in use is replaced, not added). */
export function hasRoom(s: Session, cid: number): boolean {
  const others = s.connections.has(cid) ? s.connections.size - 1 : s.connections.size;
  return others < s.params.maxConnections;
}

/**
 * Connection reinstatement (RFC 7143 sec. 6.3.4): a login with the CID of a connection still in the session
 * logs that connection out implicitly. Below ErrorRecoveryLevel 2 its tasks are terminated; at 2 they wait for
 * a TASK REASSIGN (erl2.ts). The session goes on with the new connection.
 */
export function replaceConnection(old: Connection, counters: CounterRow): void {
  log.info('connection reinstatement: the old connection with this CID is logged out', {
    peer: old.peer,
    tsih: old.session?.tsih,
    cid: old.cid,
    tasks: old.commands.tasks.size,
  });
  counters.inc('cxnReinstatements');
  old.departure = 'replaced';
  old.close('connection reinstatement');
}

/**
 * Whether the session must end now that `conn` has left it. Below ErrorRecoveryLevel 2 (no connection
 * recovery; ERL 1 recovers only within a connection, RFC 7143 sec. 7.15) the only recovery is session recovery: a connection that fails (drops, times out, breaks the protocol) takes the whole session
 * with it, the other connections included. One that logged out or was replaced does not; the session ends with
 * its last connection all the same.
 */
export function sessionEndsWith(s: Session, conn: Connection, counters: CounterRow): boolean {
  // A replaced connection's successor is added at once (WorkerContext.completeLogin), even to an empty session.
  if (conn.departure === 'replaced') return false;
  // ERL 2: its tasks wait for reassignment, and the session for a connection (erl2.ts ends it if none comes).
  if (s.allegiancePending.has(conn)) return false;
  if (s.connections.size === 0) return true;
  if (conn.departure !== 'dropped' || s.params.errorRecoveryLevel > 1) return false;
  log.warn('connection failed below ErrorRecoveryLevel 2: its session ends with it', {
    peer: conn.peer,
    tsih: s.tsih,
    cid: conn.cid,
    others: [...s.connections.keys()].join(','),
  });
  counters.inc('ssnConnectionFailures');
  return true;
}

/** The MC/S login statuses each have their own counter, on top of the iSCSI-MIB's login failure counts. */
export function countLoginRefusal(c: CounterRow, status: number): void {
  if (status === LoginStatus.SessionDoesNotExist) c.inc('tgtLoginNoSession');
  else if (status === LoginStatus.TooManyConnections) c.inc('tgtLoginTooManyConnections');
}
