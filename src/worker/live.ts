/**
 * A worker's half of a live configuration change (ConfigTask: planned by src/portal/reload.ts, provisioned and
 * sent by src/portal/apply.ts). What can fail or wait (opening new LUs) is done first; the change then becomes
 * visible in one synchronous step, so no command and no login on this worker ever sees half of it. A removed LU
 * is closed in the background once the commands addressed to it on this worker have been answered.
 *
 * Unit attentions (REPORTED LUNS DATA HAS CHANGED, CAPACITY DATA HAS CHANGED) are not raised here: the portal
 * raises them once every worker has the change, so that no initiator hears of a change its worker has not made.
 */
import type { LuSharedMemory } from '../scsi/lu-shared';
import type { LogicalUnit } from '../scsi/lu';
import { log } from '../util/log';
import type { WorkerContext } from './context';
import type { ConfigResult, ConfigTask } from './task';
import { openLu, TargetNode } from './targets';

/** How often a removed LU checks whether the commands addressed to it here have all been answered. */
const DRAIN_POLL_MS = 10;

export async function applyConfigTask(ctx: WorkerContext, task: ConfigTask): Promise<ConfigResult> {
  const reg = ctx.targets;
  const errors: string[] = [];
  const memory: Array<LuSharedMemory | undefined> = reg.shared?.memory ?? [];
  for (const { slot, memory: m } of task.lus ?? []) memory[slot] = m;
  const changed = new Map(task.targets.map((t) => [t.name, t]));
  /**
   * The LUN of the target is already served here as the new configuration has it: same slot (the portal never
   * gives a live LU's slot to another).
   */
  const current = (target: string, lun: number): boolean => {
    const want = changed.get(target)?.luns.find((x) => x.lun === lun);
    const have = reg.get(target)?.config.luns.find((x) => x.lun === lun);
    return want !== undefined && have !== undefined && want.slot === have.slot;
  };

  // 1. Open what is new; nothing visible changes yet. A task seen twice (a worker that started with the new
  // configuration and was still sent the change) finds it all in place already.
  const newNodes: TargetNode[] = [];
  for (const t of task.addTargets ?? []) {
    if (reg.get(t.name)) continue;
    const node = new TargetNode(t, reg.counters, reg.shared);
    errors.push(...(await node.open()));
    newNodes.push(node);
  }
  const newLus: Array<{ node: TargetNode; lun: number; lu: LogicalUnit }> = [];
  for (const a of task.addLuns ?? []) {
    const node = reg.get(a.target);
    const t = changed.get(a.target);
    const l = t?.luns.find((x) => x.lun === a.lun);
    if (!node?.scsi || !t || !l || current(a.target, a.lun)) continue;
    const lu = await openLu(t, l, errors, reg.counters, reg.shared, node.ports, node);
    if (lu) newLus.push({ node, lun: a.lun, lu });
  }

  // 2. The change, in one step: removals first, so a LUN removed and added again never has two LUs at once.
  const sessionsClosed: Record<string, number> = {};
  for (const name of task.removeTargets ?? []) {
    const node = reg.get(name);
    if (!node) continue;
    const n = ctx.endTargetSessions(name);
    sessionsClosed[name] = n;
    reg.remove(name);
    for (const lun of node.scsi?.lunNumbers() ?? []) retire(node.scsi!.deleteLun(lun)!);
    if (n > 0)
      log.info('target removed: its sessions on this worker are closed', { target: name, sessions: n });
  }
  for (const node of newNodes) reg.add(node);
  for (const r of task.removeLuns ?? []) {
    if (current(r.target, r.lun)) continue;
    const lu = reg.get(r.target)?.scsi?.deleteLun(r.lun);
    if (lu) retire(lu);
  }
  for (const { node, lun, lu } of newLus) {
    node.scsi!.putLun(lun, lu);
    // Sessions already logged in are I_T nexuses of the new LU too: unit attentions raised on it reach them.
    for (const s of ctx.sessions.all()) if (s.target === node && !s.ended) lu.noteNexus(s.nexus);
  }
  for (const r of task.resizeLuns ?? []) {
    const lu = reg.get(r.target)?.scsi?.getLun(r.lun);
    if (!lu) continue;
    try {
      lu.resize(r.size);
    } catch (e) {
      log.error('LU resize failed', { target: r.target, lun: r.lun, error: (e as Error).message });
      errors.push(`target ${r.target} LUN ${r.lun}: resize: ${(e as Error).message}`);
    }
  }
  for (const t of task.targets) {
    const node = reg.get(t.name);
    if (node) node.setConfig(t);
  }
  // Sessions see the target through their host mapping's view (src/scsi/lun-view.ts): rebuilt from the LUNs and
  // mappings now served, with REPORTED LUNS DATA HAS CHANGED for a nexus whose view changed.
  ctx.refreshLunViews(task.targets.map((t) => t.name));
  if (task.discoveryAuth === null) delete ctx.config.discoveryAuth;
  else if (task.discoveryAuth !== undefined) ctx.config.discoveryAuth = task.discoveryAuth;
  return { worker: ctx.threadId, errors, sessionsClosed };
}

/** A removed LU: its descriptor (and journal, ring use) goes once the commands addressed to it here are done. */
function retire(lu: LogicalUnit): void {
  const { targetName: target, lun } = lu.identity;
  void (async () => {
    while (lu.shared.laneInFlight > 0) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    await lu.backstore.close();
    log.debug('removed LU closed', { target, lun });
  })().catch((e: Error) => log.warn('closing a removed LU failed', { target, lun, error: e.message }));
}
