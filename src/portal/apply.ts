/**
 * Applying a whole new configuration to the running target (`RunningTarget.applyConfig`), as the control
 * socket's changes (`nodetgt target|lun|acl|account`) ask for it.
 *
 * PROVISIONAL: the engine that adds, removes and resizes targets and LUNs live on every worker is being built
 * separately and replaces `provisionalApply`; the types are the contract both sides code against. Until then
 * this does what a SIGHUP reload does (src/portal/reload.ts): ACLs, aliases and CHAP accounts live, and
 * everything else reported as needing a restart.
 */
import type { Config } from '../config/schema';
import { planReload, type ReloadPlan } from './reload';

export interface ApplyReport {
  /** What changed live. */
  applied: string[];
  /** What differs and only a restart would apply. */
  needsRestart: string[];
  /** Why nothing was applied (e.g. a LUN in use, without force). */
  refused?: string;
}

export type ApplyConfig = (next: Config, opts?: { force?: boolean }) => Promise<ApplyReport>;

/**
 * All or nothing: a configuration with any difference that needs a restart is not applied at all, so that a
 * caller who then declines to save it leaves the running target exactly as it was.
 */
export async function provisionalApply(
  current: Config,
  next: Config,
  applyLive: (plan: ReloadPlan) => Promise<void>,
): Promise<ApplyReport> {
  const plan = planReload(current, next);
  if (plan.needsRestart.length) return { applied: [], needsRestart: plan.needsRestart };
  await applyLive(plan);
  return { applied: plan.applied, needsRestart: [] };
}
