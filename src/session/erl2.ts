/**
 * ErrorRecoveryLevel 2: connection recovery (RFC 7143 sec. 7.1.4, 7.2.2, 11.5.1). A connection that fails, or
 * is removed for recovery (Logout reason 2, or a login with its CID), does not take its session or its tasks
 * with it: the tasks stay "allegiance pending" for DefaultTime2Wait + DefaultTime2Retain seconds, their
 * results held, until a TASK REASSIGN on another connection of the session takes them over. When that time
 * passes, the tasks are aborted (their I/O awaited, never answered) and a session with no connection left ends.
 *
 * The failed connection object is what is kept: its command engine still holds the tasks (detached: it
 * answers nothing), and its ERL 1 log (recovery.ts) the statuses and Data-In the initiator never acknowledged,
 * so that a task completed before the failure can be answered again.
 */
import type { TaskMgmtRequest } from '../pdu/pdu';
import { bhsOpcode } from '../pdu/pdu';
import { replicaBhs } from '../pdu/serializer';
import { Opcode, TmfResponse } from '../pdu/opcodes';
import { log } from '../util/log';
import type { Connection } from './connection';
import type { Session } from './session';
import type { SentPdu } from './recovery';
import { snLt } from './serial';

/** Time2Retain timers of the connections waiting for reassignment (per worker thread, as the sessions are). */
const timers = new WeakMap<Connection, NodeJS.Timeout>();

/**
 * Tasks whose reassignment has been granted and whose TMF Response is not out yet: a second TASK REASSIGN for
 * one of them (in the same batch of PDUs) finds it allegiant to the connection that asked first.
 */
const reassigning = new WeakSet<object>();

/** What a TMF answers, and what runs once its response is sent (a reassignment takes effect only then). */
export interface TmfOutcome {
  response: number;
  after?: () => void;
}

/**
 * Called as `conn` closes: at ERL 2, unless the connection ended by a logout (reason 0 or 1) or the session
 * is gone, its tasks are kept for reassignment and true is returned; otherwise the caller aborts them.
 * DefaultTime2Retain 0 means the target keeps nothing (RFC 7143 13.16).
 */
export function holdForReassignment(conn: Connection): boolean {
  const s = conn.session;
  if (!s || s.ended || s.type !== 'Normal' || s.params.errorRecoveryLevel < 2) return false;
  if (conn.departure === 'logged-out' || s.params.defaultTime2Retain === 0) return false;
  conn.commands.detached = true;
  s.allegiancePending.add(conn);
  const seconds = s.params.defaultTime2Wait + s.params.defaultTime2Retain;
  const timer = setTimeout(() => expire(conn, s), seconds * 1000);
  timer.unref();
  timers.set(conn, timer);
  conn.ctx.counters.inc('cxnRecoveries');
  log.info('connection lost at ErrorRecoveryLevel 2: its tasks wait for reassignment', {
    ...conn.who(),
    departure: conn.departure,
    tasks: conn.commands.tasks.size,
    retainSeconds: seconds,
  });
  return true;
}

/** Time2Wait + Time2Retain passed with no reassignment: the tasks are aborted; an empty session ends. */
function expire(conn: Connection, s: Session): void {
  timers.delete(conn);
  if (!s.allegiancePending.delete(conn)) return;
  const tasks = conn.commands.abortAll();
  conn.ctx.counters.inc('taskReassignExpired', tasks.length);
  log.warn('Time2Retain passed: the tasks of the lost connection are aborted', {
    ...conn.who(),
    tasks: tasks.length,
  });
  if (!s.ended && s.connections.size === 0 && s.allegiancePending.size === 0) {
    log.warn('no connection came back within Time2Retain: the session ends', { tsih: s.tsih });
    conn.ctx.endSession(s);
  }
}

/** The session ends: what still waits for reassignment is aborted now. */
export function abandonPending(s: Session): void {
  for (const conn of s.allegiancePending) {
    clearTimeout(timers.get(conn));
    timers.delete(conn);
    conn.commands.abortAll();
  }
  s.allegiancePending.clear();
}

/** Whether a connection of CID `cid` of the session is waiting for its tasks to be reassigned. */
export function pendingCid(s: Session, cid: number): boolean {
  for (const c of s.allegiancePending) if (c.cid === cid) return true;
  return false;
}

/**
 * TASK REASSIGN (RFC 7143 11.5.1, answers per 11.6.1). Below ERL 2 allegiance reassignment is not supported
 * (4; an ITT naming no task of the session: 1, as before). At ERL 2: a task of a live connection is still
 * allegiant (3); a task of a lost connection is taken over by `conn` once the response is sent (0); one that
 * completed there and whose status was never acknowledged has its status (and, for a READ, its Data-In from
 * ExpDataSN on) sent again on `conn` (0); anything else does not exist (1).
 */
export function taskReassign(conn: Connection, req: TaskMgmtRequest): TmfOutcome {
  const s = conn.session!;
  const itt = req.referencedTaskTag;
  const c = conn.ctx.counters;
  const live = [...s.connections.values()].some((l) => l.commands.tasks.has(itt));
  if (s.params.errorRecoveryLevel < 2) {
    c.inc('taskReassignRefusals');
    const known = live || [...s.allegiancePending].some((p) => p.commands.tasks.has(itt));
    return {
      response: known ? TmfResponse.TaskAllegianceReassignmentNotSupported : TmfResponse.TaskDoesNotExist,
    };
  }
  if (live) return { response: TmfResponse.TaskStillAllegiant };
  for (const old of s.allegiancePending) {
    const task = old.commands.tasks.get(itt);
    if (task && reassigning.has(task)) return { response: TmfResponse.TaskStillAllegiant };
    if (task && task.state !== 'aborted' && task.state !== 'done') {
      c.inc('taskReassignments');
      reassigning.add(task);
      return {
        response: TmfResponse.FunctionComplete,
        after: () => {
          reassigning.delete(task);
          // The session may have ended, or the task been aborted, while the response was on its way.
          if (conn.phase !== 'ffp' || task.owner !== old.commands || task.state === 'done') return;
          old.commands.surrender(task);
          conn.commands.adopt(task);
          log.info('task reassigned', { ...conn.who(), itt, fromCid: old.cid, state: task.state });
          release(s, old);
        },
      };
    }
    const resend = completedAnswer(old, itt, req.expDataSN);
    if (resend) {
      c.inc('taskReassignments');
      return {
        response: TmfResponse.FunctionComplete,
        after: () => {
          if (conn.phase !== 'ffp') return;
          sendAgain(conn, resend);
          log.info('status of a reassigned task sent again', { ...conn.who(), itt, fromCid: old.cid });
        },
      };
    }
  }
  return { response: TmfResponse.TaskDoesNotExist };
}

/** A lost connection with no task left to reassign needs no keeping (its unacknowledged statuses aside). */
function release(s: Session, old: Connection): void {
  if (old.commands.tasks.size > 0) return;
  const kept = old.recovery;
  if (kept && (kept.status.size > 0 || kept.reads.size > 0)) return;
  clearTimeout(timers.get(old));
  timers.delete(old);
  s.allegiancePending.delete(old);
}

/**
 * The PDUs of a task that completed on the lost connection and whose status was not acknowledged: a READ's
 * Data-In from `expDataSN` on with its status, or the SCSI Response. Null when nothing is kept for the ITT.
 */
function completedAnswer(old: Connection, itt: number, expDataSN: number): SentPdu[] | null {
  const kept = old.recovery;
  if (!kept) return null;
  const read = kept.reads.get(itt);
  if (read && read.statSN !== null) {
    let skip = 0;
    while (skip < read.pdus.length - 1 && snLt((read.firstDataSN + skip) >>> 0, expDataSN)) skip++;
    const pdus = read.pdus.slice(skip);
    if (read.response) pdus.push(read.response);
    kept.reads.delete(itt);
    return pdus;
  }
  for (const [sn, p] of kept.status)
    if (bhsOpcode(p.bhs) === Opcode.ScsiResponse && p.bhs.readUInt32BE(16) === itt >>> 0) {
      kept.status.delete(sn);
      return [p];
    }
  return null;
}

/**
 * Send a completed task's PDUs again on its new connection. The one that carries the status takes a StatSN of
 * this connection (StatSN is per connection); ExpCmdSN and MaxCmdSN are today's.
 */
function sendAgain(conn: Connection, pdus: readonly SentPdu[]): void {
  for (const p of pdus) {
    const bhs = replicaBhs(p.bhs, conn.expCmdSN, conn.maxCmdSN);
    const status = bhsOpcode(bhs) === Opcode.ScsiResponse || (bhs[1] & 0x01) !== 0;
    if (status) bhs.writeUInt32BE(conn.nextStatSN() >>> 0, 24);
    conn.send(bhs, p.data, undefined, !status);
  }
}
