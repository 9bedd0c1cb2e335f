/**
 * Task management functions (RFC 7143 sec. 11.5/11.6, SAM-5 clause 7); TASK REASSIGN is erl2.ts's.
 *
 * Every function that ends tasks answers only once the backstore is done with them: the session's own tasks
 * through their executions (settled()), other nexuses' tasks (CLEAR TASK SET, resets) through the LU's
 * reset epoch, whose executing commands are counted on every worker (LuShared.settle). So no write of an
 * aborted task lands after the TMF Response.
 *
 * ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET and TARGET WARM/COLD RESET also wait for the issuing
 * session's Data-Out answering every R2T its affected tasks had outstanding (RFC 7143 sec. 4.2.3.3 a),
 * TaskReporting=RFC3720, the only value offered); that data is discarded (abandoned.ts). Third-party sessions'
 * R2Ts are not waited for (the RFC allows either). ABORT TASK is not a multi-task abort: it does not wait.
 */
import type { TaskMgmtRequest } from '../pdu/pdu';
import type { Pdu } from '../pdu/pdu';
import { decodeTaskMgmtRequest } from '../pdu/pdu';
import { encodeTaskMgmtResponse } from '../pdu/serializer';
import { TmfFunction, TmfResponse } from '../pdu/opcodes';
import { lunFromField } from '../scsi/lun';
import type { LogicalUnit } from '../scsi/lu';
import { log } from '../util/log';
import type { Connection } from './connection';
import { type Disposition, OK } from './disposition';
import { settled, type CommandEngine, type Task } from './command';
import { snLt } from './serial';
import { taskReassign, type TmfOutcome } from './erl2';

/**
 * How long a multi-task TMF waits for the issuing initiator's Data-Out before it answers anyway. The RFC sets no
 * bound (the initiator MUST answer its R2Ts), but an initiator that never does must not hold the TMF, the
 * session's logout or the shutdown forever. The data owed answers R2Ts already received, so it is normally in
 * flight within milliseconds; 5 s leaves a loaded host and a slow link room, and stays well below initiators'
 * own TMF timeouts (open-iscsi: 15 s for an abort, 30 s for a reset) so the answer comes before they escalate.
 * DefaultTime2Retain is no fit: it is about connection recovery, and initiators at ERL 0 negotiate it to 0.
 */
export const TMF_DATA_OUT_WAIT_MS = 5000;

/** A TMF Request: delivered in CmdSN order (at once when immediate), answered once the function is done. */
export function onTaskManagement(conn: Connection, pdu: Pdu): Disposition {
  const session = conn.session!;
  const req = decodeTaskMgmtRequest(pdu);
  const ok = session.deliver(req.cmdSN, req.immediate, () => {
    conn.ctx.counters.inc('tmfRequests');
    const done: Promise<void> = perform(conn, req)
      .then(
        (outcome) => {
          const o: TmfOutcome = typeof outcome === 'number' ? { response: outcome } : outcome;
          answer(conn, req, o.response);
          o.after?.(); // TASK REASSIGN: the new allegiance takes effect once the response is out (11.6)
        },
        (err: unknown) => {
          log.error('task management function failed', { peer: conn.peer, error: String(err) });
          answer(conn, req, TmfResponse.FunctionRejected);
        },
      )
      .finally(() => conn.tmfsInFlight.delete(done));
    conn.tmfsInFlight.add(done);
  });
  if (!ok) log.debug('TMF outside the CmdSN window ignored', { peer: conn.peer });
  return OK;
}

function answer(conn: Connection, req: TaskMgmtRequest, response: number): void {
  const session = conn.session!;
  if (response !== TmfResponse.FunctionComplete) {
    conn.ctx.counters.inc('tmfNotComplete');
    log.info('task management function not complete', {
      peer: conn.peer,
      function: req.function,
      response,
      referencedTaskTag: req.referencedTaskTag,
    });
  }
  conn.send(
    encodeTaskMgmtResponse({
      response,
      itt: req.itt,
      statSN: conn.nextStatSN(),
      expCmdSN: session.expCmdSN,
      maxCmdSN: session.maxCmdSN,
    }),
  );
  // TARGET COLD RESET: every connection to the target closes, this one included, once the response is out.
  const target = session.target?.name;
  if (req.function === TmfFunction.TargetColdReset && response === TmfResponse.FunctionComplete && target)
    setImmediate(() => conn.ctx.coldReset(target));
}

/**
 * The engines of the session's connections: a task may be on any of them (MC/S), or on a lost one waiting for
 * reassignment (ERL 2).
 */
function engines(conn: Connection): CommandEngine[] {
  const s = conn.session!;
  return [...s.connections.values(), ...s.allegiancePending].map((c) => c.commands);
}

/** The LU this nexus sees at the request's LUN, or undefined (masked by a host mapping, or none). */
function luOf(conn: Connection, req: TaskMgmtRequest): LogicalUnit | undefined {
  return conn.session!.luns?.get(lunFromField(req.lun))?.lu;
}

async function perform(conn: Connection, req: TaskMgmtRequest): Promise<number | TmfOutcome> {
  switch (req.function) {
    case TmfFunction.AbortTask:
      return abortTask(conn, req);
    case TmfFunction.AbortTaskSet:
    case TmfFunction.ClearTaskSet:
    case TmfFunction.LogicalUnitReset: {
      const lu = luOf(conn, req);
      if (!lu) return TmfResponse.LunDoesNotExist;
      const lun = lunFromField(req.lun);
      const hit = abortOwn(conn, (t) => t.lun === lun);
      // ABORT TASK SET: this session's tasks only. CLEAR TASK SET (TST = 000b: one task set) and LU RESET:
      // every nexus's, on every worker, through the reset epoch; only the reset raises 29h/03h.
      let left: number | null = null;
      if (req.function === TmfFunction.ClearTaskSet) left = lu.clearTaskSet();
      else if (req.function === TmfFunction.LogicalUnitReset) left = lu.reset();
      await Promise.all([
        settled(hit.flatMap((h) => h.tasks)),
        dataOutAnswered(conn, req, hit),
        left === null ? undefined : lu.shared.settle(left),
      ]);
      return TmfResponse.FunctionComplete;
    }
    case TmfFunction.TargetWarmReset:
    case TmfFunction.TargetColdReset: {
      // The target as this nexus sees it: LUs masked from it by a host mapping are not its to reset.
      const hit = abortOwn(conn, () => true);
      const lus = [...(conn.session!.luns?.entries() ?? [])].map(([, a]) => a.lu);
      const left = lus.map((lu) => lu.reset());
      await Promise.all([
        settled(hit.flatMap((h) => h.tasks)),
        dataOutAnswered(conn, req, hit),
        ...lus.map((lu, i) => lu.shared.settle(left[i])),
      ]);
      return TmfResponse.FunctionComplete;
    }
    case TmfFunction.ClearAca:
      // No ACA is ever established (NormACA = 0 in INQUIRY, a NACA bit is refused in the CDB): the task
      // manager does not implement CLEAR ACA, SAM-5's FUNCTION REJECTED, which iSCSI reports as response 5.
      return luOf(conn, req) ? TmfResponse.TmfNotSupported : TmfResponse.LunDoesNotExist;
    case TmfFunction.TaskReassign:
      return taskReassign(conn, req);
    default:
      return TmfResponse.TmfNotSupported;
  }
}

/** The session's tasks `pred` picks, aborted, by the engine (connection) that holds them. */
function abortOwn(conn: Connection, pred: (t: Task) => boolean): Array<{ e: CommandEngine; tasks: Task[] }> {
  return engines(conn).map((e) => ({ e, tasks: e.abortWhere(pred) }));
}

/**
 * RFC 7143 sec. 4.2.3.3 a): the issuing initiator's answers to the currently valid TTTs of the affected tasks,
 * on whichever connection of the session holds them, up to TMF_DATA_OUT_WAIT_MS; past it, answered anyway,
 * logged and counted.
 */
async function dataOutAnswered(
  conn: Connection,
  req: TaskMgmtRequest,
  hit: ReadonlyArray<{ e: CommandEngine; tasks: Task[] }>,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), TMF_DATA_OUT_WAIT_MS);
  });
  const all = Promise.all(hit.map(({ e, tasks }) => e.dataOutAnswered(tasks)));
  const outcome = await Promise.race([all, bound]);
  clearTimeout(timer);
  if (outcome !== 'expired') return;
  conn.ctx.counters.inc('tmfDataOutWaitExpired');
  log.warn('TMF answered without the Data-Out still owed for the R2Ts of the tasks it ended', {
    peer: conn.peer,
    function: req.function,
    waitedMs: TMF_DATA_OUT_WAIT_MS,
  });
}

/**
 * ABORT TASK (RFC 7143 11.6.1): a task found is aborted, its I/O awaited, and never answered. Not found: when
 * its RefCmdSN is in the CmdSN window, not yet received and below the TMF's own CmdSN, the command was lost
 * on the way (a digest error, a Reject): the CmdSN counts as received, so the commands behind it go on, and
 * the function is complete. Otherwise (typically: it completed, and its CmdSN left the window) the task
 * does not exist. A command that completes while the TMF is on its way is thus answered once: by its status,
 * then "Task does not exist"; or by the TMF alone.
 */
async function abortTask(conn: Connection, req: TaskMgmtRequest): Promise<number> {
  const session = conn.session!;
  for (const e of engines(conn)) {
    const task = e.abort(req.referencedTaskTag);
    if (task) {
      await settled([task]);
      return TmfResponse.FunctionComplete;
    }
  }
  if (snLt(req.refCmdSN, req.cmdSN) && session.isGap(req.refCmdSN)) {
    session.deliver(req.refCmdSN, false, () => undefined);
    return TmfResponse.FunctionComplete;
  }
  return TmfResponse.TaskDoesNotExist;
}
