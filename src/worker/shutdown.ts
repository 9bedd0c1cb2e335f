/**
 * A worker's part of a graceful shutdown (the portal drives the steps, src/portal/shutdown.ts):
 *
 * - notify: connections still logging in are closed (they hold no session, and nothing they started can be
 *   lost); every session is asked to log out (Async Message, AsyncEvent 1, Parameter3 = the seconds left) on
 *   one connection in full feature phase (RFC 7143 11.9.1: the initiator then logs out the whole session or
 *   each connection). Sessions go on being served: a command that arrives, or a WRITE whose Data-Out arrives,
 *   before the initiator logs out or the deadline comes is executed and answered as usual.
 * - close (the deadline, a second signal, or every session gone): a session still open is told it is dropped
 *   (AsyncEvent 3) and ended; commands still unanswered go with it, unacknowledged (a WRITE still waiting for
 *   its data among them). Then every backstore of this worker is flushed (fdatasync), so that a write answered
 *   GOOD without FUA, still in the page cache, is on stable storage before the process exits.
 */
import type { Connection } from '../session/connection';
import { AsyncEvent } from '../pdu/opcodes';
import type { Backstore } from '../backstore/types';
import { log } from '../util/log';
import type { WorkerContext } from './context';
import type { ShutdownResult, ShutdownTask } from './task';

export class WorkerShutdown {
  /** Set by 'notify': a connection task that arrives after it is refused (its descriptor closed). */
  started = false;
  /** Every connection of this worker, logging in or not. */
  private readonly connections = new Set<Connection>();
  /** The commands in flight at 'notify', to count at 'close' those that ended meanwhile. */
  private inFlightAtNotice: Array<{ conn: Connection; itt: number; task: unknown }> = [];

  constructor(private readonly ctx: WorkerContext) {}

  track(conn: Connection): void {
    this.connections.add(conn);
    void conn.closed.then(() => this.connections.delete(conn));
  }

  async run(task: ShutdownTask): Promise<ShutdownResult> {
    const r: ShutdownResult = {
      worker: this.ctx.threadId,
      sessionsNotified: 0,
      loginsClosed: 0,
      commandsInFlight: 0,
      commandsDrained: 0,
      sessionsClosed: 0,
      commandsDropped: 0,
      flushed: 0,
      flushErrors: [],
    };
    if (task.step === 'notify') this.notify(r, task.logoutWithin ?? 0);
    else await this.close(r);
    return r;
  }

  private notify(r: ShutdownResult, seconds: number): void {
    this.started = true;
    for (const c of [...this.connections])
      if (c.phase === 'login') {
        c.close('target shutting down');
        r.loginsClosed++;
      }
    for (const c of this.connections)
      for (const [itt, task] of c.commands.tasks) this.inFlightAtNotice.push({ conn: c, itt, task });
    r.commandsInFlight = this.inFlightAtNotice.length;
    for (const s of this.ctx.sessions.all()) {
      if (s.ended) continue;
      const on = [...s.connections.values()].find((c) => c.phase === 'ffp');
      if (on?.sendAsyncEvent(AsyncEvent.LogoutRequest, { parameter3: Math.min(seconds, 0xffff) }))
        r.sessionsNotified++;
    }
  }

  private async close(r: ShutdownResult): Promise<void> {
    this.started = true;
    r.commandsDrained = this.inFlightAtNotice.filter(
      (x) => x.conn.phase === 'closed' || x.conn.commands.tasks.get(x.itt) !== x.task,
    ).length;
    for (const c of this.connections) if (c.phase !== 'closed') r.commandsDropped += c.commands.tasks.size;
    for (const s of this.ctx.sessions.all()) {
      if (s.ended) continue;
      // RFC 7143 11.9.1, AsyncEvent 3: Parameter1 is Time2Wait, Parameter2 Time2Retain (0: nothing kept).
      const on = [...s.connections.values()].find((c) => c.phase === 'ffp');
      on?.sendAsyncEvent(AsyncEvent.SessionDrop, { parameter1: s.params.defaultTime2Wait, parameter2: 0 });
      this.ctx.endSession(s);
      r.sessionsClosed++;
    }
    for (const c of [...this.connections]) c.close('target shutting down');
    await this.flushAll(r);
  }

  private async flushAll(r: ShutdownResult): Promise<void> {
    const stores = new Map<Backstore, string>();
    for (const t of this.ctx.targets.all()) t.retire();
    for (const t of this.ctx.targets.all())
      for (const [n, a] of t.scsi?.allLuns.entries() ?? [])
        if (!a.lu.backstore.readOnly) stores.set(a.lu.backstore, `target ${t.name} LUN ${n}`);
    await Promise.all(
      [...stores].map(([bs, what]) =>
        bs.flush().then(
          () => r.flushed++,
          (e: Error) => {
            log.error('shutdown: backstore flush failed', { lu: what, error: e.message });
            r.flushErrors.push(`${what}: ${e.message}`);
          },
        ),
      ),
    );
  }
}
