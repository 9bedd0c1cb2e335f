/**
 * Sessions and connections counted over all workers, for `limits.maxSessions` and a target's `maxSessions` and
 * `maxConnections`. A session lives on one worker but a limit is the whole target's, so the counts sit in a
 * small Int32Array shared by every worker: a login adds itself with Atomics.add and, when that went over the
 * limit, takes itself out again and is refused. Two workers racing for the last place can both be refused,
 * never both admitted.
 *
 * Layout: [0] normal sessions in all; then per target (its index in config.targets at start-up, which a reload
 * cannot change) its sessions and its connections.
 */
import type { Config, TargetConfig } from '../config/schema';

export function createSessionLimitShared(config: Config): SharedArrayBuffer {
  return new SharedArrayBuffer((1 + 2 * config.targets.length) * 4);
}

export class SessionLimits {
  private readonly counts: Int32Array;
  private readonly index = new Map<string, number>();

  constructor(
    private readonly config: Config,
    shared: SharedArrayBuffer = createSessionLimitShared(config),
  ) {
    this.counts = new Int32Array(shared);
    config.targets.forEach((t, i) => this.index.set(t.name, i));
  }

  /** One more session on `t`, or why not (the counts are unchanged then). */
  takeSession(t: TargetConfig): string | null {
    const i = this.index.get(t.name);
    if (!this.take(0, this.config.limits.maxSessions))
      return `limits.maxSessions ${this.config.limits.maxSessions} reached`;
    if (i !== undefined && t.maxSessions !== undefined && !this.take(1 + 2 * i, t.maxSessions)) {
      Atomics.sub(this.counts, 0, 1);
      return `target maxSessions ${t.maxSessions} reached`;
    }
    return null;
  }

  releaseSession(t: TargetConfig): void {
    const i = this.index.get(t.name);
    Atomics.sub(this.counts, 0, 1);
    if (i !== undefined && t.maxSessions !== undefined) Atomics.sub(this.counts, 1 + 2 * i, 1);
  }

  /** One more connection on `t`, or why not. */
  takeConnection(t: TargetConfig): string | null {
    const i = this.index.get(t.name);
    if (i === undefined || t.maxConnections === undefined) return null;
    return this.take(2 + 2 * i, t.maxConnections)
      ? null
      : `target maxConnections ${t.maxConnections} reached`;
  }

  releaseConnection(t: TargetConfig): void {
    const i = this.index.get(t.name);
    if (i !== undefined && t.maxConnections !== undefined) Atomics.sub(this.counts, 2 + 2 * i, 1);
  }

  private take(slot: number, limit: number): boolean {
    if (Atomics.add(this.counts, slot, 1) < limit) return true;
    Atomics.sub(this.counts, slot, 1);
    return false;
  }
}
