/**
 * Drops connections that hold a PDU partly received for too long (a client dribbling a PDU a byte at a
 * time holds its buffers and its place forever otherwise). The parser stays free of clocks: after each read
 * the worker notes whether a PDU is in progress and since when; one timer per worker sweeps them.
 */
import type { PduParser } from '../pdu/parser';
import type { CounterRow } from '../metrics/counters';
import { log } from '../util/log';

export interface Watched {
  readonly parser: PduParser;
  readonly peer: string;
  /** True while the target itself does not read the socket: the rest of a PDU may be waiting in it. */
  readonly readingStopped?: boolean;
  close(reason: string): void;
}

interface State {
  /** Date.now() when the PDU in progress began (as far as reads show), or 0 when none is. */
  since: number;
  boundaries: number;
}

export class PartialPduWatch {
  private readonly states = new Map<Watched, State>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly counters: CounterRow,
  ) {}

  /** Start watching; the function returned is to be called after each read the parser has taken. */
  add(c: Watched): () => void {
    const s: State = { since: 0, boundaries: c.parser.pduBoundaries };
    this.states.set(c, s);
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), Math.min(1000, Math.max(50, this.timeoutMs / 4)));
      this.timer.unref();
    }
    return () => this.afterRead(c.parser, s);
  }

  remove(c: Watched): void {
    this.states.delete(c);
    if (this.states.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private afterRead(p: PduParser, s: State): void {
    if (p.idle) s.since = 0;
    else if (s.since === 0 || p.pduBoundaries !== s.boundaries) s.since = Date.now();
    s.boundaries = p.pduBoundaries;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [c, s] of this.states) {
      if (s.since !== 0 && c.readingStopped) s.since = now; // the wait is ours, not the client's
      if (s.since === 0 || now - s.since <= this.timeoutMs) continue;
      this.counters.inc('partialPduTimeouts');
      this.counters.inc('instSsnCxnTimeoutErrors');
      log.warn('partial PDU held past the timeout: dropping the connection', {
        peer: c.peer,
        heldMs: now - s.since,
        timeoutMs: this.timeoutMs,
      });
      this.remove(c);
      c.close('partial PDU timeout');
    }
  }
}
