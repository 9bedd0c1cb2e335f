/**
 * What a configuration reload (SIGHUP) can change in a running target, and what it cannot yet.
 *
 * Applied live, on every worker, without dropping a session: each existing target's ACL (who may log in from
 * now on; sessions already logged in stay) and alias. Everything else that differs (targets or LUNs added,
 * removed or changed, portals, workers, limits, ...) is named as needing a restart, never applied halfway.
 */
import type { Config, TargetConfig } from '../config/schema';

export interface ReloadPlan {
  /** Per target name: its new ACL and alias, to hand to every worker. */
  live: Array<Pick<TargetConfig, 'name' | 'acl' | 'alias'>>;
  /** What changed live, for the log. */
  applied: string[];
  /** Differences a restart is needed for. */
  needsRestart: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The LU fields a reload compares (identity and slot are assigned at start and not part of the file). */
function lunShape(t: TargetConfig): unknown {
  return t.luns.map((l) => ({ ...l, identity: undefined, slot: undefined, offline: undefined }));
}

export function planReload(current: Config, next: Config): ReloadPlan {
  const plan: ReloadPlan = { live: [], applied: [], needsRestart: [] };
  const now = new Map(current.targets.map((t) => [t.name, t]));
  const then = new Map(next.targets.map((t) => [t.name, t]));
  for (const name of then.keys()) if (!now.has(name)) plan.needsRestart.push(`target ${name} added`);
  for (const name of now.keys()) if (!then.has(name)) plan.needsRestart.push(`target ${name} removed`);
  for (const [name, t] of then) {
    const old = now.get(name);
    if (!old) continue;
    if (!same(lunShape(old), lunShape(t))) plan.needsRestart.push(`target ${name}: LUNs changed`);
    for (const k of ['params', 'nopInInterval', 'nopInTimeout', 'maxSessions', 'maxConnections'] as const)
      if (!same(old[k], t[k])) plan.needsRestart.push(`target ${name}: ${k} changed`);
    const aclChanged = !same(old.acl, t.acl);
    const aliasChanged = old.alias !== t.alias;
    if (aclChanged || aliasChanged) {
      plan.live.push({ name, acl: t.acl, alias: t.alias });
      if (aclChanged) plan.applied.push(`target ${name}: acl`);
      if (aliasChanged) plan.applied.push(`target ${name}: alias`);
    }
  }
  const { targets: _a, ...restNow } = current;
  const { targets: _b, ...restNext } = next;
  for (const k of Object.keys({ ...restNow, ...restNext }) as Array<keyof typeof restNow>)
    if (!same(restNow[k], restNext[k])) plan.needsRestart.push(`${k} changed`);
  return plan;
}
