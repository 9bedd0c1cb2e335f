/**
 * What a configuration reload (SIGHUP) can change in a running target, and what it cannot yet.
 *
 * Applied live, on every worker, without dropping a session: each existing target's ACL (who may log in from
 * now on; sessions already logged in stay), alias, CHAP accounts and host mappings (sessions logged in take on
 * their new LUN view at once), discovery's CHAP accounts, and the account store (which serves only to be named
 * by those). Everything else that differs (targets or LUNs added,
 * removed or changed, portals, workers, limits, ...) is named as needing a restart, never applied halfway.
 */
import type { AuthConfig, Config, TargetConfig } from '../config/schema';

/** What a target takes live: logins from now on see it. */
export type LiveTargetSettings = Pick<TargetConfig, 'name' | 'acl' | 'alias' | 'auth' | 'hosts'>;

export interface ReloadPlan {
  /** Per target name: its new ACL, alias, auth and host mappings, to hand to every worker. */
  live: LiveTargetSettings[];
  /** Discovery's new CHAP accounts (null: none any more), when they changed. */
  discoveryAuth?: AuthConfig | null;
  /** What changed live, for the log. */
  applied: string[];
  /** Differences a restart is needed for. */
  needsRestart: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The LU fields a reload compares: not those start-up fills in (identity, slot, files beside it, offline). */
function lunShape(t: TargetConfig): unknown {
  return t.luns.map((l) => ({
    ...l,
    identity: undefined,
    slot: undefined,
    offline: undefined,
    prFile: undefined,
    atomicJournalDir: undefined,
  }));
}

/** A portal asking for port 0 got one from the kernel at start, which the running config holds: the same. */
function portalsAsRunning(running: Config['portals'], next: Config['portals']): Config['portals'] {
  return next.map((p, i) =>
    p.port === 0 && running[i]?.host === p.host ? { ...p, port: running[i].port } : p,
  );
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
    const aclChanged = !same(old.acl, t.acl);
    const aliasChanged = old.alias !== t.alias;
    const authChanged = !same(old.auth, t.auth);
    const hostsChanged = !same(old.hosts ?? [], t.hosts ?? []);
    if (aclChanged || aliasChanged || authChanged || hostsChanged) {
      plan.live.push({ name, acl: t.acl, alias: t.alias, auth: t.auth, hosts: t.hosts });
      if (aclChanged) plan.applied.push(`target ${name}: acl`);
      if (aliasChanged) plan.applied.push(`target ${name}: alias`);
      if (authChanged) plan.applied.push(`target ${name}: CHAP accounts`);
      if (hostsChanged) plan.applied.push(`target ${name}: hosts`);
    }
  }
  if (!same(current.discoveryAuth, next.discoveryAuth)) {
    plan.discoveryAuth = next.discoveryAuth ?? null;
    plan.applied.push('discovery: CHAP accounts');
  }
  if (!same(current.accounts ?? [], next.accounts ?? [])) plan.applied.push('account store');
  const { targets: _a, discoveryAuth: _c, accounts: _e, ...restNow } = current;
  const {
    targets: _b,
    discoveryAuth: _d,
    accounts: _f,
    ...restNext
  } = {
    ...next,
    portals: portalsAsRunning(current.portals, next.portals),
  };
  for (const k of Object.keys({ ...restNow, ...restNext }) as Array<keyof typeof restNow>)
    if (!same(restNow[k], restNext[k])) plan.needsRestart.push(`${k} changed`);
  return plan;
}
