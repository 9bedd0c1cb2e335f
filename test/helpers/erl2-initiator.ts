/**
 * Connection recovery at ErrorRecoveryLevel 2 from the initiator's side (RFC 7143 sec. 7.1.4, 7.2): a
 * connection is killed as a failure would kill it, removed for recovery (Logout reason 2) from a connection
 * that still works, and each of its outstanding tasks is reassigned there with TASK REASSIGN. A task the target
 * says does not exist never reached it: its command is sent again (same ITT and CmdSN, RFC 7143 sec. 7.2.1).
 */
import { TmfFunction } from '../../src/pdu/opcodes';
import { decodeLogoutResponse } from '../../src/pdu/pdu';
import type { ScsiTask, TestInitiator } from './initiator';
import type { McsSession } from './mcs-initiator';

export interface Reassignment {
  task: ScsiTask;
  /** The TMF response: 0 reassigned, 1 unknown to the target (then retried). */
  response: number;
  /** How many R2Ts the task had received before it moved (r2tLog entries after it are the new connection's). */
  r2tsBefore: number;
}

/**
 * TASK REASSIGN each task on `via` (ExpDataSN: what arrived of it). With `resume` the tasks send their data on
 * R2T again without the test's help (holdData off). Throws on any answer but 0 or 1.
 */
export async function reassignTasks(
  via: TestInitiator,
  tasks: readonly ScsiTask[],
  o: { resume?: boolean } = {},
): Promise<Reassignment[]> {
  const out: Reassignment[] = [];
  for (const task of tasks) {
    if (task.isOver) continue;
    const r2tsBefore = task.r2tLog.length;
    if (o.resume ?? true) task.holdData = false;
    // Expected here before the request goes: the target continues the task right after its response.
    via.adoptTask(task);
    const r = await via.tmf(TmfFunction.TaskReassign, {
      referencedTaskTag: task.itt,
      expDataSN: task.expDataSN,
    });
    if (r.response === 1) via.retryTask(task);
    else if (r.response !== 0) {
      via.disownTask(task);
      throw new Error(`TASK REASSIGN of ITT 0x${task.itt.toString(16)}: response ${r.response}`);
    }
    out.push({ task, response: r.response, r2tsBefore });
  }
  return out;
}

/** Logout reason 2 (remove the connection for recovery) for `cid`, sent on `via`; returns the Logout Response. */
export async function removeForRecovery(
  via: TestInitiator,
  cid: number,
): Promise<{ response: number; time2Wait: number; time2Retain: number }> {
  const p = await via.logout({ reason: 2, cid });
  const r = decodeLogoutResponse(p);
  return { response: r.response, time2Wait: r.time2Wait, time2Retain: r.time2Retain };
}

/**
 * Connection `cid` of the session fails (its socket destroyed); it is removed for recovery and its tasks are
 * reassigned to connection `to`, which with `join` is a new connection logged in to the session first.
 * Returns what each reassignment answered.
 */
export async function recoverConnection(
  s: McsSession,
  cid: number,
  to: number,
  o: { resume?: boolean; join?: boolean } = {},
): Promise<Reassignment[]> {
  const tasks = s.conn(cid).abandon();
  s.forget(cid);
  if (o.join) {
    const j = await s.join(to);
    if (j.status !== 0) throw new Error(`login of CID ${to}: status 0x${j.status.toString(16)}`);
  }
  const via = s.conn(to);
  const lo = await removeForRecovery(via, cid);
  if (lo.response !== 0) throw new Error(`Logout reason 2 for CID ${cid}: response ${lo.response}`);
  return reassignTasks(via, tasks, o);
}
