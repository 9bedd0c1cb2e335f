/**
 * Admission: how many connections the target holds, how many of them are still logging in (globally and per
 * source address), and a few descriptors held back so the process can act when it runs out of them.
 *
 * A pending login occupies a slot of a small Int32Array shared with the workers, from accept until the
 * connection leaves the login phase. The slot holds a generation number: the worker frees it with
 * compareExchange when the login ends, the portal when the connection's task ends (which also covers a worker
 * that died), and neither can free a slot that has since been given to another connection.
 */
import * as fs from 'node:fs';
import type { LimitsConfig } from '../config/schema';
import type { AdmissionShared, Ticket } from '../worker/pending-logins';

export class Admission {
  private readonly slots: Int32Array;
  private readonly slotAddress: string[];
  private gen = 0;
  /** Connections admitted and not yet ended (before and after the hand-over). */
  total = 0;

  constructor(
    private readonly limits: LimitsConfig,
    shared: AdmissionShared,
  ) {
    this.slots = new Int32Array(shared.pending);
    this.slotAddress = new Array<string>(this.slots.length).fill('');
  }

  /** A ticket, or why the connection is refused. O(maxPendingLogins): small, and only at accept. */
  admit(address: string): Ticket | string {
    if (this.total >= this.limits.maxConnections) return 'too many connections';
    let free = -1;
    let fromAddress = 0;
    for (let i = 0; i < this.slots.length; i++) {
      if (Atomics.load(this.slots, i) === 0) {
        if (free < 0) free = i;
      } else if (this.slotAddress[i] === address) fromAddress++;
    }
    if (free < 0) return 'too many pending logins';
    if (fromAddress >= this.limits.maxPendingLoginsPerAddress)
      return 'too many pending logins from this address';
    this.gen = this.gen >= 0x7fffffff ? 1 : this.gen + 1;
    Atomics.store(this.slots, free, this.gen);
    this.slotAddress[free] = address;
    this.total++;
    return { slot: free, gen: this.gen };
  }

  /** The connection is gone: its pending slot (if still held) and its place in the total are freed. */
  end(t: Ticket): void {
    Atomics.compareExchange(this.slots, t.slot, t.gen, 0);
    this.total--;
  }

  pendingCount(): number {
    let n = 0;
    for (let i = 0; i < this.slots.length; i++) if (Atomics.load(this.slots, i) !== 0) n++;
    return n;
  }
}

export function isFdExhaustion(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** The soft RLIMIT_NOFILE of this process (Linux), or Infinity when it cannot be read. */
export function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/**
 * Descriptors opened at start and given back one at a time when the process runs out, so that it can still
 * log, answer a scrape, start a replacement worker; taken again once descriptors are free.
 */
export class FdReserve {
  private readonly fds: number[] = [];
  constructor(private readonly size: number) {
    this.refill();
  }
  get held(): number {
    return this.fds.length;
  }
  /** Give one back; true if there was one. */
  release(): boolean {
    const fd = this.fds.pop();
    if (fd === undefined) return false;
    fs.closeSync(fd);
    return true;
  }
  /** Take back what was given; stops quietly at the first failure (still out of descriptors). */
  refill(): void {
    while (this.fds.length < this.size) {
      try {
        this.fds.push(fs.openSync('/dev/null', 'r'));
      } catch {
        return;
      }
    }
  }
  close(): void {
    while (this.release());
  }
}
