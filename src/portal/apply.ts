/**
 * Applying a configuration change to the running target, on the portal thread: SIGHUP and the live
 * administration commands both come here (RunningTarget.applyConfig). One change at a time.
 *
 * The order keeps every failure before the point of no return and every initiator behind the workers:
 *  1. plan (src/portal/reload.ts): refused as a whole, or what changes;
 *  2. check and grow backing files of LUNs that grow (undone if a later step of this list fails);
 *  3. replay the cluster's WRITE ATOMIC records of RBD LUs whose target this gateway becomes the sole writer of
 *     (src/backstore/rbd-atomic.ts; refused if one cannot be applied); provision new LUs as start-up does
 *     (src/backstore/prepare.ts: sparse file, identity record; undone on failure), read their APTPL state, bring
 *     their WRITE ATOMIC journals to rest, give each its shared memory;
 *  4. the running configuration takes the change (a worker started from now on starts with it);
 *  5. every worker applies it (src/worker/live.ts) and answers;
 *  6. unit attentions: REPORTED LUNS DATA HAS CHANGED for the targets whose LUNs changed, CAPACITY DATA HAS
 *     CHANGED for resized LUs, ASYMMETRIC ACCESS STATE CHANGED (and INQUIRY DATA HAS CHANGED) for targets whose
 *     port groups changed, raised only now, so no initiator hears of a change its worker has not made;
 *  7. files of LUNs shrunk (forced) are cut down, now that no worker serves past the new end.
 */
import * as fs from 'node:fs';
import type { AuthConfig, Config, LunConfig, TargetConfig } from '../config/schema';
import { prepareBackingFiles } from '../backstore/prepare';
import { logAtomicRecovery, recoverAtomicJournals } from '../backstore/atomic-journal';
import { atomicLimitsShrink, journalAction, rbdLuns, recoverRbdLu } from '../backstore/rbd-atomic';
import { LU_FAULTS, LuFaultCounters, type CounterShared } from '../metrics/counters';
import { resetTargetTotals } from '../metrics/session-stats';
import { blockDeviceSize } from '../native';
import { loadPrState, seedPr } from '../scsi/pr-aptpl';
import { allocateLuShared, luInFlight, LuShared, UA, type LuSharedMemory } from '../scsi/lu-shared';
import { log } from '../util/log';
import type { ConfigResult, ConfigTask } from '../worker/task';
import { planChange, type ChangePlan } from './reload';

/** What a configuration change did. */
export interface ApplyReport {
  /** What changed live, one line each. */
  applied: string[];
  /** Differences that need a restart; never applied, not even in part. */
  needsRestart: string[];
  /** Set when nothing was applied, and why. */
  refused?: string;
}

export interface ApplyOptions {
  /** Remove LUNs (or targets) with commands in flight, and shrink LUNs. */
  force?: boolean;
  /**
   * Apply nothing when any difference needs a restart (the control socket's changes: the file is written only
   * when the running target took all of it, so the two never disagree). SIGHUP applies the live part anyway.
   */
  allOrNothing?: boolean;
}

/** RunningTarget.applyConfig, as the control socket's change handler receives it (src/portal/change.ts). */
export type ApplyConfig = (next: Config, opts?: ApplyOptions) => Promise<ApplyReport>;

export interface ApplyDeps {
  /** The running configuration: it takes each change in place (targets, discoveryAuth). */
  config: Config;
  /** Every LU's shared state by slot; the workers' start-up data holds this same array. */
  lus: Array<LuSharedMemory | undefined>;
  counters: CounterShared;
  /** Run the task on every worker; one answer per worker. */
  broadcast(task: ConfigTask): Promise<ConfigResult[]>;
}

/** How a LUN's backing store takes a new size. */
type Growth = { l: LunConfig; from: number; to: number; how: 'file' | 'none' };

function statSize(l: LunConfig): { bytes: number; device: boolean } {
  const fd = fs.openSync(l.path, 'r');
  try {
    const st = fs.fstatSync(fd);
    return st.isBlockDevice()
      ? { bytes: blockDeviceSize(fd), device: true }
      : { bytes: st.size, device: false };
  } finally {
    fs.closeSync(fd);
  }
}

/** The capacity an LU serves now: its configured size, or what its file or device holds (whole blocks). */
function capacityOf(l: LunConfig): number {
  if (l.size !== undefined || l.backstore !== 'file' || l.offline !== undefined) return l.size ?? 0;
  try {
    const { bytes } = statSize(l);
    return bytes - (bytes % l.blockSize);
  } catch {
    return 0; // gone since start-up: planGrowth says why when it matters
  }
}

/**
 * Decide how each resize reaches the medium, refusing what nodetgt must not do: write a read-only LUN's file,
 * or serve more than a device holds.
 */
function planGrowth(plan: ChangePlan): Growth[] | string {
  const out: Growth[] = [];
  for (const { target, lun: l, from, to } of plan.resizeLuns) {
    const where = `LUN ${l.lun} of ${target}`;
    if (l.backstore === 'rbd' && l.offline === undefined)
      return `${where}: an rbd LUN is not resized live (resize the image with 'rbd resize', then restart)`;
    if (l.backstore === 'null' || l.offline !== undefined) {
      out.push({ l, from, to, how: 'none' });
      continue;
    }
    let st: { bytes: number; device: boolean };
    try {
      st = statSize(l);
    } catch (e) {
      return `${where}: ${(e as Error).message}`;
    }
    if (st.device) {
      if (st.bytes < to) return `${where}: the device holds ${st.bytes} bytes, less than ${to}`;
      out.push({ l, from, to, how: 'none' });
    } else if (l.readOnly) {
      // A read-only LUN's file is the operator's to change: a new size must be what the file holds already.
      if (st.bytes !== to)
        return `${where} is read-only: nodetgt does not resize its file, which holds ${st.bytes} bytes, not ${to}`;
      out.push({ l, from, to, how: 'none' });
    } else out.push({ l, from, to, how: 'file' });
  }
  return out;
}

export class ConfigApplier {
  private queue: Promise<unknown> = Promise.resolve();
  /** One past the last slot handed out: new LUs get slots never used before while there are any. */
  private freshSlot: number;

  constructor(private readonly deps: ApplyDeps) {
    let max = -1;
    for (const t of deps.config.targets) for (const l of t.luns) max = Math.max(max, l.slot);
    this.freshSlot = max + 1;
  }

  /** Apply `next` once the changes before it are done. */
  apply(next: Config, opts: ApplyOptions = {}): Promise<ApplyReport> {
    const run = this.queue.then(() => this.applyNow(next, opts));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(next: Config, opts: ApplyOptions): Promise<ApplyReport> {
    const { config, lus, counters } = this.deps;
    const plan = planChange(config, next, {
      force: opts.force === true,
      inFlight: (slot) => {
        const m = lus[slot];
        return m ? luInFlight(m) : 0;
      },
      capacity: capacityOf,
      freshSlot: this.freshSlot,
    });
    const needsRestart = plan.needsRestart;
    if (plan.refused !== undefined) return { applied: [], needsRestart, refused: plan.refused };
    if (opts.allOrNothing && needsRestart.length) return { applied: [], needsRestart };
    if (plan.applied.length === 0 && plan.changedTargets.length === 0) return { applied: [], needsRestart };

    const growth = planGrowth(plan);
    if (typeof growth === 'string') return { applied: [], needsRestart, refused: growth };
    const journals = await this.replayForSoleWriter(plan);
    if (typeof journals === 'string') return { applied: [], needsRestart, refused: journals };
    const grown: Growth[] = [];
    const undoGrowth = async () => {
      for (const g of grown) await fs.promises.truncate(g.l.path, g.from).catch(() => undefined);
    };
    const added = this.newLus(plan);
    try {
      for (const g of growth)
        if (g.how === 'file' && g.to > g.from) {
          grown.push(g);
          await fs.promises.truncate(g.l.path, g.to);
        }
      await this.provision(added, plan);
    } catch (e) {
      await undoGrowth();
      return { applied: [], needsRestart, refused: (e as Error).message };
    }

    // The running configuration takes the change; removed LUs' slots are free again (new ones come first).
    const lunsBefore = new Map(config.targets.map((t) => [t.name, new Set(t.luns.map((l) => l.lun))]));
    for (const r of [...plan.removeLuns.map((c) => c.lun), ...plan.removeTargets.flatMap((t) => t.luns)])
      delete lus[r.slot];
    const memory: Array<{ slot: number; memory: LuSharedMemory }> = [];
    for (const { l, memory: m } of added) {
      lus[l.slot] = m;
      memory.push({ slot: l.slot, memory: m });
      this.freshSlot = Math.max(this.freshSlot, l.slot + 1);
    }
    // A new target's row of session totals may be a removed target's: its series start from zero.
    for (const t of plan.addTargets) resetTargetTotals(counters.sessions, t.slot);
    config.targets = plan.targets;
    if (plan.discoveryAuth) setDiscoveryAuth(config, plan.discoveryAuth.value);
    // The account store only feeds the auth above: it follows the file once what it feeds is live.
    config.accounts = next.accounts;

    const applied = [...plan.applied];
    for (const { l, target } of added)
      if (l.offline !== undefined) applied.push(`target ${target}: LUN ${l.lun} is offline: ${l.offline}`);
    const byName = new Map(plan.targets.map((t) => [t.name, t]));
    let answers: ConfigResult[] = [];
    try {
      answers = await this.deps.broadcast({
        kind: 'config',
        targets: plan.changedTargets.map((n) => byName.get(n)!),
        ...(plan.discoveryAuth ? { discoveryAuth: plan.discoveryAuth.value ?? null } : {}),
        addTargets: plan.addTargets,
        removeTargets: plan.removeTargets.map((t) => t.name),
        removeLuns: plan.removeLuns.map((c) => ({ target: c.target, lun: c.lun.lun })),
        addLuns: plan.addLuns.map((c) => ({ target: c.target, lun: c.lun.lun })),
        resizeLuns: plan.resizeLuns.map((c) => ({ target: c.target, lun: c.lun.lun, size: c.to })),
        lus: memory,
      });
    } catch (e) {
      // A worker died under the change; its replacement starts from the configuration as it is now.
      log.error('a worker failed while applying a configuration change', { error: (e as Error).message });
      applied.push(`a worker failed during the change (${(e as Error).message}); its replacement has it`);
    }
    for (const e of new Set(answers.flatMap((a) => a.errors))) {
      log.error('configuration change: not applied on a worker', { problem: e });
      applied.push(`not applied on a worker: ${e}`);
    }
    for (const t of plan.removeTargets) {
      const closed = answers.reduce((n, a) => n + (a.sessionsClosed[t.name] ?? 0), 0);
      log.info('target removed', { target: t.name, sessionsClosed: closed });
    }

    // Every worker has the change: now initiators may hear of it.
    for (const name of plan.lunSetChanged) {
      const had = lunsBefore.get(name)!;
      for (const l of byName.get(name)!.luns) {
        const m = lus[l.slot];
        // A LUN number new to the target has no nexus that knew it; one whose LU was replaced has.
        if (m && had.has(l.lun)) new LuShared(m, 0).establish(UA.REPORTED_LUNS_DATA_CHANGED);
      }
    }
    for (const { lun: l } of plan.resizeLuns) {
      const m = lus[l.slot];
      if (m) new LuShared(m, 0).establish(UA.CAPACITY_DATA_CHANGED);
    }
    // Implicit ALUA: a group's state changed by configuration is a change for every I_T nexus of every LU.
    const everyLu = (names: string[], ua: (typeof UA)[keyof typeof UA]) => {
      for (const name of names)
        for (const l of byName.get(name)!.luns) {
          const m = lus[l.slot];
          if (m) new LuShared(m, 0).establish(ua);
        }
    };
    everyLu(plan.accessStatesChanged, UA.ASYMMETRIC_ACCESS_STATE_CHANGED);
    everyLu(plan.portGroupsChanged, UA.INQUIRY_DATA_CHANGED);
    // Block Limits of their RBD LUs shrank with it: atomic writes across objects are no longer offered.
    for (const l of journals.limitsChanged) {
      const m = lus[l.slot];
      if (m) new LuShared(m, 0).establish(UA.INQUIRY_DATA_CHANGED);
    }
    for (const g of growth)
      if (g.how === 'file' && g.to < g.from)
        await fs.promises.truncate(g.l.path, g.to).catch((e: Error) => {
          log.error('shrinking a backing file failed', { path: g.l.path, error: e.message });
          applied.push(
            `LUN ${g.l.lun}: its file ${g.l.path} could not be cut to ${g.to} bytes: ${e.message}`,
          );
        });
    return { applied, needsRestart };
  }

  /**
   * Step 3 for RBD LUs (src/backstore/rbd-atomic.ts), before anything changes: where the change makes this
   * gateway begin to serve a target (or its added RBD LUs), or its sole writer, bring every port's WRITE ATOMIC
   * records of them to rest as journalAction says, before a worker serves in the new state; a record that
   * cannot be applied refuses the change. Returns the RBD LUs whose atomic limits shrink with the change.
   */
  private async replayForSoleWriter(plan: ChangePlan): Promise<{ limitsChanged: LunConfig[] } | string> {
    const before = new Map(this.deps.config.targets.map((t) => [t.name, t]));
    const added = new Set([...plan.addTargets.flatMap((t) => t.luns), ...plan.addLuns.map((c) => c.lun)]);
    const limitsChanged: LunConfig[] = [];
    for (const t of plan.targets) {
      const was = before.get(t.name);
      const changed = journalAction(was === undefined ? null : was.alua, t.alua);
      const fresh = journalAction(null, t.alua);
      if (was !== undefined && atomicLimitsShrink(was.alua, t.alua))
        limitsChanged.push(...rbdLuns(t).filter((l) => !added.has(l)));
      for (const l of rbdLuns(t)) {
        const action = added.has(l) ? fresh : changed;
        if (action === null) continue;
        try {
          const actions = await recoverRbdLu(t, l, { discard: action === 'discard' });
          logAtomicRecovery([{ target: t.name, lun: l.lun, actions }]);
        } catch (e) {
          return `target ${t.name} LUN ${l.lun}: WRITE ATOMIC journal replay (cluster) failed: ${(e as Error).message}`;
        }
      }
    }
    return { limitsChanged };
  }

  /** The LUs this change adds (new targets' and new LUNs'), each with new shared memory. */
  private newLus(plan: ChangePlan): Array<{ target: string; l: LunConfig; memory: LuSharedMemory }> {
    return [
      ...plan.addTargets.flatMap((t) => t.luns.map((l) => ({ target: t.name, l }))),
      ...plan.addLuns.map((c) => ({ target: c.target, l: c.lun })),
    ].map((x) => ({ ...x, memory: allocateLuShared() }));
  }

  /**
   * Provision the new LUs as start-up does: files, identities, APTPL state, journals. Throws (having undone
   * what prepareBackingFiles made) when one cannot be provisioned.
   */
  private async provision(
    added: Array<{ target: string; l: LunConfig; memory: LuSharedMemory }>,
    plan: ChangePlan,
  ): Promise<void> {
    if (added.length === 0) return;
    const { config, counters } = this.deps;
    const targets: TargetConfig[] = [];
    for (const { target, l } of added) {
      let t = targets.find((x) => x.name === target);
      if (!t) {
        const base = plan.targets.find((x) => x.name === target)!;
        t = { ...base, luns: [] };
        targets.push(t);
      }
      t.luns.push(l);
    }
    const sub: Config = { ...config, targets };
    for (const r of await prepareBackingFiles(sub))
      if (r.state === 'offline') log.error('LU offline', { target: r.target, lun: r.lun, reason: r.reason });
      else if (r.state !== 'ready')
        log.info(`LU ${r.state}`, { target: r.target, lun: r.lun, serial: r.serial });
    const bySlot = new Map(added.map((a) => [a.l.slot, a.memory]));
    for (const r of loadPrState(sub))
      if (r.error !== undefined) log.error('LU offline', { target: r.target, lun: r.lun, reason: r.error });
      else if (r.doc !== null) seedPr(bySlot.get(r.slot)!, r.doc);
    for (const r of recoverAtomicJournals(sub))
      if (r.error !== undefined)
        log.error('WRITE ATOMIC journal recovery failed', { target: r.target, lun: r.lun, reason: r.error });
    // A slot used before starts its fault counters from zero.
    for (const { l } of added) {
      const c = new LuFaultCounters(counters, l.slot);
      for (const f of LU_FAULTS) c.set(f, 0);
    }
  }
}

function setDiscoveryAuth(config: Config, auth: AuthConfig | undefined): void {
  if (auth === undefined) delete config.discoveryAuth;
  else config.discoveryAuth = auth;
}
