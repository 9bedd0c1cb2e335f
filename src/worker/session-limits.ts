/**
 * Sessions and connections counted over all workers, for `limits.maxSessions` and a target's `maxSessions` and
 * `maxConnections`. A session lives on one worker but a limit is the whole target's, so the counts sit in a
 * small Int32Array shared by every worker: a login adds itself with Atomics.add and, when that went over the
 * limit, takes itself out again and is refused. Two workers racing for the last place can both be refused,
 * never both admitted.
 *
 * Layout: [0] normal sessions in all; then per target, in its row (TargetConfig.slot: kept through live changes,
 * a fresh one for a target added live), its sessions and its connections.
 */
import { MAX_TARGETS, type Config, type TargetConfig } from '../config/schema';

export function createSessionLimitShared(): SharedArrayBuffer {
  return new SharedArrayBuffer((1 + 2 * MAX_TARGETS) * 4);
}

export class SessionLimits {
  private readonly counts: Int32Array;

  constructor(
    private readonly config: Config,
    shared: SharedArrayBuffer = createSessionLimitShared(),
  ) {
    this.counts = new Int32Array(shared);
  }

  // Every session and connection is counted in its target's row whether or not a limit is set, so that a limit
  // set or changed live counts right from then on and a release always matches its take.

  /** One more session on `t`, or why not (the counts are unchanged then). */
  takeSession(t: TargetConfig): string | null {
    if (!this.take(0, this.config.limits.maxSessions))
      return `limits.maxSessions ${this.config.limits.maxSessions} reached`;
    if (!this.take(1 + 2 * t.slot, t.maxSessions ?? Infinity)) {
      Atomics.sub(this.counts, 0, 1);
      return `target maxSessions ${t.maxSessions} reached`;
    }
    return null;
  }

  releaseSession(t: TargetConfig): void {
    Atomics.sub(this.counts, 0, 1);
    Atomics.sub(this.counts, 1 + 2 * t.slot, 1);
  }

  /** One more connection on `t`, or why not. */
  takeConnection(t: TargetConfig): string | null {
    return this.take(2 + 2 * t.slot, t.maxConnections ?? Infinity)
      ? null
      : `target maxConnections ${t.maxConnections} reached`;
  }

  releaseConnection(t: TargetConfig): void {
    Atomics.sub(this.counts, 2 + 2 * t.slot, 1);
  }

  private take(slot: number, limit: number): boolean {
    if (Atomics.add(this.counts, slot, 1) < limit) return true;
    Atomics.sub(this.counts, slot, 1);
    return false;
  }
}
