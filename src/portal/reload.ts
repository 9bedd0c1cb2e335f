/**
 * What a configuration change (SIGHUP, or the CLI through RunningTarget.applyConfig) does to a running target:
 * the difference between the running configuration and the next one, decided without touching anything.
 * src/portal/apply.ts carries the plan out.
 *
 * Live: targets added or removed; LUNs added, removed, resized, or changed in any other way (path, type,
 * readOnly, blockSize, identity, ...), which is a removal and an addition of that LUN; each target's ACL, alias,
 * CHAP accounts and `alua` (its port groups' states: implicit ALUA); the discovery CHAP accounts. Refused as a whole (nothing applied) unless forced: removing
 * a LUN, or a target with LUNs, while a command is in flight on it; shrinking a LUN. Everything else that
 * differs (portals, workers, stateDir, limits, ...) is named as needing a restart and never applied, not even
 * in part; the live part is applied all the same.
 *
 * Slots: a LUN that stays keeps its slot (its counters and shared state); a new one gets a slot no live LU
 * holds, preferring slots never handed out before, so that a removed LU still draining on a worker never
 * shares its fault counters with a new one until all MAX_LUS slots have been used once.
 */
import { localState, type AluaConfig } from '../config/alua';
import {
  MAX_LUS,
  MAX_TARGETS,
  type AuthConfig,
  type Config,
  type LunConfig,
  type TargetConfig,
} from '../config/schema';

export interface PlanContext {
  /** Apply what is otherwise refused: removal with commands in flight, shrinking. */
  force: boolean;
  /** Commands in flight on the LU of this slot, all workers together. */
  inFlight(slot: number): number;
  /** The LU's capacity in bytes now (its configured size, or what its file or device holds). */
  capacity(l: LunConfig): number;
  /** Where the search for a free slot starts (one past the last slot handed out). */
  freshSlot: number;
}

export interface LunChange {
  target: string;
  /** Removals and resizes: the running LunConfig; additions: the new one (slot assigned, not provisioned). */
  lun: LunConfig;
}

export interface ChangePlan {
  /** What changes live, for the report. */
  applied: string[];
  /** Differences a restart is needed for. */
  needsRestart: string[];
  /** Why nothing is applied (only needsRestart is then meaningful). */
  refused?: string;
  /** The running configuration's targets after the change, in the order of the next configuration. */
  targets: TargetConfig[];
  /** The discovery CHAP accounts after the change, when they changed. */
  discoveryAuth?: { value: AuthConfig | undefined };
  /** Existing targets whose configuration changed in any way (the workers get their new one). */
  changedTargets: string[];
  addTargets: TargetConfig[];
  removeTargets: TargetConfig[];
  addLuns: LunChange[];
  removeLuns: LunChange[];
  resizeLuns: Array<LunChange & { from: number; to: number }>;
  /** Existing targets whose set of LUs changed: their LUs get REPORTED LUNS DATA HAS CHANGED. */
  lunSetChanged: string[];
  /** Existing targets whose port groups' states changed: their LUs get ASYMMETRIC ACCESS STATE CHANGED. */
  accessStatesChanged: string[];
  /** Existing targets whose port groups changed otherwise (TPGS, VPD 83h): INQUIRY DATA HAS CHANGED. */
  portGroupsChanged: string[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Fields set at start-up, never by the operator: they are not part of what a change compares. */
function operatorLun(l: LunConfig): Partial<LunConfig> {
  const { slot: _s, identity: _i, offline: _o, prFile: _p, atomicJournalDir: _a, ...rest } = l;
  return rest;
}

/** The operator's fields of a LUN that differ between two configurations (size included). */
export function lunDifferences(a: LunConfig, b: LunConfig): string[] {
  const x = operatorLun(a) as Record<string, unknown>;
  const y = operatorLun(b) as Record<string, unknown>;
  return [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((k) => !same(x[k], y[k])).sort();
}

/** A port 0 in the next configuration is the port the kernel chose at start-up: the same portal. */
function samePortals(now: Config['portals'], next: Config['portals']): boolean {
  return (
    now.length === next.length &&
    now.every((p, i) => p.host === next[i].host && (p.port === next[i].port || next[i].port === 0))
  );
}

function globalChanges(current: Config, next: Config): string[] {
  const out: string[] = [];
  // The account store only feeds the targets' and discovery's auth, compared there.
  const { targets: _a, discoveryAuth: _b, accounts: _e, ...restNow } = current;
  const { targets: _c, discoveryAuth: _d, accounts: _f, ...restNext } = next;
  for (const k of Object.keys({ ...restNow, ...restNext }) as Array<keyof typeof restNow>) {
    if (k === 'portals' ? samePortals(restNow.portals, restNext.portals) : same(restNow[k], restNext[k]))
      continue;
    out.push(`${k} changed`);
  }
  return out;
}

/** Hands out slots no live holder has, from `fresh` on, wrapping around at `size`. */
class SlotAllocator {
  private at: number;
  constructor(
    private readonly taken: Set<number>,
    fresh: number,
    private readonly size: number,
  ) {
    this.at = ((fresh % size) + size) % size;
  }
  next(): number | null {
    for (let i = 0; i < this.size; i++) {
      const s = (this.at + i) % this.size;
      if (this.taken.has(s)) continue;
      this.taken.add(s);
      this.at = (s + 1) % this.size;
      return s;
    }
    return null;
  }
}

/** A new LU as the next configuration describes it, before provisioning: none of the running one's state. */
function freshLun(l: LunConfig, slot: number): LunConfig {
  return { ...(operatorLun(l) as LunConfig), slot };
}

/** A plan that changes nothing (yet). */
function emptyPlan(needsRestart: string[], targets: TargetConfig[]): ChangePlan {
  return {
    applied: [],
    needsRestart,
    targets,
    changedTargets: [],
    addTargets: [],
    removeTargets: [],
    addLuns: [],
    removeLuns: [],
    resizeLuns: [],
    lunSetChanged: [],
    accessStatesChanged: [],
    portGroupsChanged: [],
  };
}

/** What a change of a target's `alua` changes for its initiators: the access states, the rest of the layout. */
function aluaChange(
  a: AluaConfig | undefined,
  b: AluaConfig | undefined,
): { states: boolean; layout: boolean } {
  const states = (c: AluaConfig | undefined) => (c?.groups ?? []).map((g) => [g.id, g.state]);
  const layout = (c: AluaConfig | undefined) =>
    c && [c.localGroup, c.port, c.groups.map((g) => [g.id, g.ports, g.preferred])];
  return {
    states:
      localState(a) !== localState(b) || (a !== undefined && b !== undefined && !same(states(a), states(b))),
    layout: !same(layout(a), layout(b)),
  };
}

export function planChange(current: Config, next: Config, ctx: PlanContext): ChangePlan {
  const needsRestart = globalChanges(current, next);
  const plan = emptyPlan(needsRestart, []);
  const refuse = (why: string): ChangePlan => ({ ...emptyPlan(needsRestart, current.targets), refused: why });
  const now = new Map(current.targets.map((t) => [t.name, t]));
  const then = new Map(next.targets.map((t) => [t.name, t]));
  const busy = (l: LunConfig) => !ctx.force && l.offline === undefined && ctx.inFlight(l.slot) > 0;
  const inFlightRefusal = (t: string, l: LunConfig) => `LUN ${l.lun} of ${t} has I/O in flight`;

  // Slots of the LUs that stay, and of those leaving in this change (they may still be draining).
  const taken = new Set<number>();
  for (const t of current.targets) for (const l of t.luns) taken.add(l.slot);
  const slots = new SlotAllocator(taken, ctx.freshSlot, MAX_LUS);
  // Rows of the session counts: a target that stays keeps its row; a new one takes one after the highest held
  // (a removed target's sessions may still be giving theirs back).
  const rows = new Set(current.targets.map((t) => t.slot));
  const targetRows = new SlotAllocator(rows, Math.max(-1, ...rows) + 1, MAX_TARGETS);
  const newSlot = (): number | null => slots.next();
  const tooMany = `more than ${MAX_LUS} LUs in all`;

  for (const [name, old] of now) {
    if (then.has(name)) continue;
    for (const l of old.luns) if (busy(l)) return refuse(inFlightRefusal(name, l));
    plan.removeTargets.push(old);
    plan.applied.push(`target ${name} removed`);
  }
  for (const t of next.targets) {
    const old = now.get(t.name);
    if (!old) {
      const luns: LunConfig[] = [];
      for (const l of t.luns) {
        const slot = newSlot();
        if (slot === null) return refuse(tooMany);
        luns.push(freshLun(l, slot));
      }
      const row = targetRows.next();
      if (row === null) return refuse(`more than ${MAX_TARGETS} targets`);
      const added: TargetConfig = { ...t, luns, slot: row };
      plan.addTargets.push(added);
      plan.targets.push(added);
      plan.applied.push(
        `target ${t.name} added (${luns.length ? `LUNs ${luns.map((l) => l.lun).join(', ')}` : 'no LUNs'})`,
      );
      continue;
    }
    const before = plan.applied.length;
    const luns: LunConfig[] = [];
    const was = new Map(old.luns.map((l) => [l.lun, l]));
    let setChanged = false;
    for (const l of t.luns) {
      const o = was.get(l.lun);
      if (!o) {
        const slot = newSlot();
        if (slot === null) return refuse(tooMany);
        const added = freshLun(l, slot);
        luns.push(added);
        plan.addLuns.push({ target: t.name, lun: added });
        plan.applied.push(`target ${t.name}: LUN ${l.lun} added`);
        setChanged = true;
        continue;
      }
      const diff = lunDifferences(o, l);
      if (diff.length === 0) {
        luns.push(o);
        continue;
      }
      if (diff.length === 1 && diff[0] === 'size') {
        const kept = { ...o, size: l.size };
        luns.push(kept);
        // A size no longer given: the LU stays as large as its file.
        if (l.size === undefined) continue;
        const from = ctx.capacity(o);
        if (from === l.size) continue;
        if (l.size < from && !ctx.force)
          return refuse(
            `LUN ${l.lun} of ${t.name}: shrinking it from ${from} to ${l.size} bytes would drop data (force to apply)`,
          );
        plan.resizeLuns.push({ target: t.name, lun: kept, from, to: l.size });
        plan.applied.push(`target ${t.name}: LUN ${l.lun} resized from ${from} to ${l.size} bytes`);
        continue;
      }
      // Any other change is a new LU at that LUN: the old one goes, the new one is provisioned and comes.
      if (busy(o)) return refuse(inFlightRefusal(t.name, o));
      const slot = newSlot();
      if (slot === null) return refuse(tooMany);
      const added = freshLun(l, slot);
      luns.push(added);
      plan.removeLuns.push({ target: t.name, lun: o });
      plan.addLuns.push({ target: t.name, lun: added });
      plan.applied.push(`target ${t.name}: LUN ${l.lun} replaced (${diff.join(', ')} changed)`);
      setChanged = true;
    }
    const staying = new Set(t.luns.map((l) => l.lun));
    for (const o of old.luns) {
      if (staying.has(o.lun)) continue;
      if (busy(o)) return refuse(inFlightRefusal(t.name, o));
      plan.removeLuns.push({ target: t.name, lun: o });
      plan.applied.push(`target ${t.name}: LUN ${o.lun} removed`);
      setChanged = true;
    }
    if (!same(old.acl, t.acl)) plan.applied.push(`target ${t.name}: acl`);
    if (old.alias !== t.alias) plan.applied.push(`target ${t.name}: alias`);
    if (!same(old.auth, t.auth)) plan.applied.push(`target ${t.name}: auth`);
    if (!same(old.hosts ?? [], t.hosts ?? [])) plan.applied.push(`target ${t.name}: hosts`);
    if (!same(old.alua, t.alua)) {
      const c = aluaChange(old.alua, t.alua);
      const local = t.alua?.groups.find((g) => g.id === t.alua!.localGroup);
      plan.applied.push(
        `target ${t.name}: alua${local ? ` (this gateway's group ${local.id} is ${local.state})` : ' removed'}`,
      );
      if (c.states) plan.accessStatesChanged.push(t.name);
      if (c.layout) plan.portGroupsChanged.push(t.name);
    }
    // Login keys, keepalive and limits: taken by the logins from now on (sessions keep what they negotiated).
    for (const k of ['params', 'nopInInterval', 'nopInTimeout', 'maxSessions', 'maxConnections'] as const)
      if (!same(old[k], t[k])) plan.applied.push(`target ${t.name}: ${k} (new logins)`);
    const updated: TargetConfig = { ...t, luns, slot: old.slot };
    plan.targets.push(updated);
    if (plan.applied.length > before || !same(old.luns, luns)) plan.changedTargets.push(t.name);
    if (setChanged) plan.lunSetChanged.push(t.name);
  }
  if (!same(current.discoveryAuth, next.discoveryAuth)) {
    plan.discoveryAuth = { value: next.discoveryAuth };
    plan.applied.push('discoveryAuth');
  }
  if (!same(current.accounts ?? [], next.accounts ?? [])) plan.applied.push('account store');
  return plan;
}
