/**
 * Graceful shutdown, as the portal thread drives it (SIGTERM to `nodetgt serve`; the workers' side is
 * src/worker/shutdown.ts):
 *
 * 1. stop accepting: the listeners close, connections still sending their first Login PDU are closed;
 * 2. notify: every worker closes its connections still logging in and asks each session to log out within
 *    `shutdownTimeout` seconds (Async Message, AsyncEvent 1, Parameter3); commands go on being served;
 * 3. wait until every connection has ended (the sessions logged out), the deadline, or now() (a second
 *    signal), whichever comes first;
 * 4. close: every worker ends what is left and flushes its backstores (fdatasync), also when cut short:
 *    a write answered GOOD must not be lost because the operator was in a hurry.
 */
import { log } from '../util/log';
import type { ShutdownResult, ShutdownTask } from '../worker/task';

export interface ShutdownDeps {
  /** Close the listeners and the connections the portal still holds; returns how many of those. */
  stopAccepting(): number;
  /** Run the task on every worker; one answer per worker. */
  askWorkers(task: ShutdownTask): Promise<ShutdownResult[]>;
  /** Resolves once no connection is served any more. */
  idle(): Promise<void>;
  /** Release the rest (worker pool, servers, timers). */
  release(): Promise<void>;
}

/** The workers' counts summed (ShutdownResult), and why the wait ended. */
export interface ShutdownReport extends Omit<ShutdownResult, 'worker'> {
  /** Every session gone, the deadline, or a second signal. */
  ended: 'idle' | 'deadline' | 'forced';
}

const sum = (rs: ShutdownResult[], k: Exclude<keyof ShutdownResult, 'flushErrors'>) =>
  rs.reduce((n, r) => n + r[k], 0);

export class Shutdown {
  readonly done: Promise<ShutdownReport>;
  private cut!: () => void;
  private readonly cutShort = new Promise<'forced'>((resolve) => (this.cut = () => resolve('forced')));

  constructor(
    private readonly deps: ShutdownDeps,
    private readonly timeoutSeconds: number,
  ) {
    this.done = this.run();
  }

  /** Stop waiting: close what is left at once (still flushing the backstores). */
  now(): void {
    this.cut();
  }

  private async run(): Promise<ShutdownReport> {
    const d = this.deps;
    const started = Date.now();
    const portalLogins = d.stopAccepting();
    let notified: ShutdownResult[] = [];
    let ended: ShutdownReport['ended'] = 'idle';
    if (this.timeoutSeconds > 0) {
      notified = await d.askWorkers({ kind: 'shutdown', step: 'notify', logoutWithin: this.timeoutSeconds });
      log.info('shutdown: not accepting connections, sessions asked to log out', {
        sessionsNotified: sum(notified, 'sessionsNotified'),
        loginsClosed: portalLogins + sum(notified, 'loginsClosed'),
        commandsInFlight: sum(notified, 'commandsInFlight'),
        seconds: this.timeoutSeconds,
      });
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => {
        timer = setTimeout(() => resolve('deadline'), this.timeoutSeconds * 1000);
      });
      ended = await Promise.race([d.idle().then(() => 'idle' as const), deadline, this.cutShort]);
      clearTimeout(timer);
    } else ended = 'forced';
    const closed = await d.askWorkers({ kind: 'shutdown', step: 'close' });
    const report: ShutdownReport = {
      ended,
      sessionsNotified: sum(notified, 'sessionsNotified'),
      loginsClosed: portalLogins + sum(notified, 'loginsClosed'),
      commandsInFlight: sum(notified, 'commandsInFlight'),
      commandsDrained: sum(closed, 'commandsDrained'),
      sessionsClosed: sum(closed, 'sessionsClosed'),
      commandsDropped: sum(closed, 'commandsDropped'),
      flushed: sum(closed, 'flushed'),
      flushErrors: closed.flatMap((r) => r.flushErrors),
    };
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (ended === 'idle') log.info('shutdown: every session has ended', { seconds });
    else
      log.warn(
        ended === 'deadline'
          ? 'shutdown: deadline reached, closing the sessions still open'
          : 'shutdown: closing at once',
        { seconds, sessionsOpen: report.sessionsClosed, commandsDropped: report.commandsDropped },
      );
    log.info('shutdown: backstores flushed', {
      flushed: report.flushed,
      failed: report.flushErrors.length,
      commandsDrained: report.commandsDrained,
    });
    await d.release();
    return report;
  }
}
