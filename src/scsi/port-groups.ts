/**
 * The target port groups of a target as one worker sees them (implicit ALUA, SPC-4 5.15): this gateway's group,
 * its relative target port, and every group's asymmetric access state, from the target's `alua` configuration
 * (src/config/alua.ts). One object per target per worker, shared by all the target's LUs on that worker; a live
 * configuration change updates it in place (src/worker/live.ts), so every LU reads the new states at once.
 *
 * The states are configuration, the same for every LU of the target; they need no shared memory: every worker
 * receives the same change, and the unit attention ASYMMETRIC ACCESS STATE CHANGED is raised by the portal only
 * once every worker has it (src/portal/apply.ts).
 */
import {
  localState,
  soleWriter,
  type AluaConfig,
  type AluaGroupConfig,
  type AluaState,
} from '../config/alua';

/** ASYMMETRIC ACCESS STATE codes (SPC-4 6.37, REPORT TARGET PORT GROUPS). */
export const ACCESS_STATE_CODE: Readonly<Record<AluaState, number>> = {
  'active-optimized': 0x0,
  'active-non-optimized': 0x1,
  standby: 0x2,
  unavailable: 0x3,
  transitioning: 0xf,
};

/** STATUS CODE of a target port group descriptor. */
export const STATUS_NONE = 0x00;
/** The state was altered by implicit asymmetric logical unit access behavior (here: a live configuration change). */
export const STATUS_ALTERED_IMPLICITLY = 0x02;

export class TargetPortGroups {
  private settings: AluaConfig | null = null;
  private state: AluaState = 'active-optimized';
  /** Groups whose state a live change has altered since this worker started. */
  private readonly altered = new Set<number>();

  constructor(settings?: AluaConfig) {
    this.update(settings);
  }

  /** The target's `alua` now (undefined: the target has none, TPGS = 00b). */
  update(next: AluaConfig | undefined): void {
    const before = this.settings;
    if (before && next)
      for (const g of next.groups) {
        const was = before.groups.find((x) => x.id === g.id);
        if (was && was.state !== g.state) this.altered.add(g.id);
      }
    this.settings = next ?? null;
    this.state = localState(next);
  }

  /** ALUA is configured: INQUIRY reports TPGS = 01b and REPORT TARGET PORT GROUPS is offered. */
  get enabled(): boolean {
    return this.settings !== null;
  }

  /** This gateway's asymmetric access state (active/optimized when the target has no ALUA). */
  get localState(): AluaState {
    return this.state;
  }

  /** This gateway's target port group, or undefined without ALUA. */
  get localGroup(): number | undefined {
    return this.settings?.localGroup;
  }

  /** This gateway's relative target port identifier, or undefined without ALUA. */
  get relativePort(): number | undefined {
    return this.settings?.port;
  }

  /** This gateway is the only one that may write the target's LUs (no ALUA, or the only active port). */
  get soleWriter(): boolean {
    return soleWriter(this.settings ?? undefined);
  }

  /** Every group, in configuration order (empty without ALUA). */
  get groups(): readonly AluaGroupConfig[] {
    return this.settings?.groups ?? [];
  }

  /** STATUS CODE for the group's descriptor. */
  statusOf(group: number): number {
    return this.altered.has(group) ? STATUS_ALTERED_IMPLICITLY : STATUS_NONE;
  }
}
