/** Task management functions (RFC 7143 sec. 11.5) at error recovery level 0. */
import type { TaskMgmtRequest } from '../pdu/pdu';
import { TmfFunction, TmfResponse } from '../pdu/opcodes';
import { lunFromField } from '../scsi/lun';
import type { Connection } from './connection';

export function handleTaskManagement(conn: Connection, req: TaskMgmtRequest): number {
  const session = conn.session!;
  const all = [...session.connections.values()];
  switch (req.function) {
    case TmfFunction.AbortTask: {
      for (const c of all) if (c.commands.abort(req.referencedTaskTag)) return TmfResponse.FunctionComplete;
      // RFC 7143 sec. 11.5.1: a task never received (its command was rejected or lost) whose RefCmdSN is in
      // the window is considered received: the gap is plugged and the commands behind it go on.
      if (session.isGap(req.refCmdSN)) {
        session.deliver(req.refCmdSN, false, () => undefined);
        return TmfResponse.FunctionComplete;
      }
      return TmfResponse.TaskDoesNotExist;
    }
    case TmfFunction.AbortTaskSet:
    case TmfFunction.ClearTaskSet:
    case TmfFunction.LogicalUnitReset: {
      const lun = lunFromField(req.lun);
      // A LUN masked from this nexus does not exist for it (its host mapping): no reset of another's LU.
      const lu = session.luns?.get(lun)?.lu;
      if (req.function === TmfFunction.LogicalUnitReset && session.luns && !lu)
        return TmfResponse.LunDoesNotExist;
      for (const c of all) c.commands.abortWhere((t) => t.lun === lun);
      if (req.function === TmfFunction.LogicalUnitReset) lu?.reset();
      return TmfResponse.FunctionComplete;
    }
    case TmfFunction.TargetWarmReset:
    case TmfFunction.TargetColdReset: {
      // This session's tasks end here; every other session's (on any worker) sees the LUs' reset epochs move.
      for (const c of all) c.commands.abortAll();
      // The target as this nexus sees it: LUs masked from it by a host mapping are not its to reset.
      for (const [, a] of session.luns?.entries() ?? []) a.lu.reset();
      const target = session.target?.name;
      // Cold: then every connection to the target closes, this one included, once the response is queued.
      if (req.function === TmfFunction.TargetColdReset && target)
        setImmediate(() => conn.ctx.coldReset(target));
      return TmfResponse.FunctionComplete;
    }
    case TmfFunction.TaskReassign:
      return TmfResponse.TaskAllegianceReassignmentNotSupported;
    case TmfFunction.ClearAca:
    default:
      return TmfResponse.TmfNotSupported;
  }
}
