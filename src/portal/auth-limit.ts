/**
 * Per-address limit on authentication failures: workers report each failed CHAP login over a BroadcastChannel,
 * the portal thread counts them per source address, and once an address reaches the limit within the window its
 * new logins are refused at hand-over for a while. Sessions already logged in are not touched.
 */
import type { LimitsConfig } from '../config/schema';

/** Addresses tracked at most: past it the oldest entry goes (a flood of addresses cannot grow the map). */
const MAX_TRACKED = 65536;

interface Entry {
  /** Failure times within the window, oldest first; never more than the limit. */
  times: number[];
  blockedUntil: number;
}

export class AuthFailureLimiter {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly blockMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  static fromLimits(l: LimitsConfig): AuthFailureLimiter {
    return new AuthFailureLimiter(
      l.authFailuresPerAddress,
      l.authFailureWindow * 1000,
      l.authBlockTime * 1000,
    );
  }

  /** Record one failure; true when it makes the address blocked (the moment worth a log line). */
  failed(address: string): boolean {
    const t = this.now();
    let e = this.entries.get(address);
    if (e)
      this.entries.delete(address); // re-inserted below: the map stays in order of last failure
    else e = { times: [], blockedUntil: 0 };
    this.entries.set(address, e);
    if (this.entries.size > MAX_TRACKED) this.entries.delete(this.entries.keys().next().value as string);
    if (e.blockedUntil > t) return false;
    e.times = e.times.filter((x) => t - x < this.windowMs);
    e.times.push(t);
    if (e.times.length < this.limit) return false;
    e.times = [];
    e.blockedUntil = t + this.blockMs;
    return true;
  }

  blocked(address: string): boolean {
    const e = this.entries.get(address);
    return !!e && e.blockedUntil > this.now();
  }

  /** Addresses blocked now (the metrics gauge); drops entries with nothing left to remember. */
  blockedCount(): number {
    const t = this.now();
    let n = 0;
    for (const [a, e] of this.entries) {
      if (e.blockedUntil > t) n++;
      else if (e.times.every((x) => t - x >= this.windowMs)) this.entries.delete(a);
    }
    return n;
  }
}
