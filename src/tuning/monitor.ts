/**
 * The running target's side of the tuning checks: one pass at start-up (a warning when a portal's interface is
 * 10GbE or faster at a standard MTU), then, when /metrics is served, a pass every minute whose result the
 * scrape reads. Scrapes never wait on it: reading /sys, /proc and running ethtool takes tens of milliseconds,
 * and the connections' TCP_INFO costs a round trip to every worker.
 */
import type { SessionInfo } from '../admin/protocol';
import { log } from '../util/log';
import { hostProbe, type Probe } from './check';
import { JUMBO_MTU, JUMBO_SPEED, type InterfaceFacts } from './interfaces';
import { runTuning, tuningSeries } from './run';
import type { TuningCheck } from './check';

export const TUNING_REFRESH_MS = 60_000;

/** Start-up warnings: interfaces of a portal fast enough for jumbo frames but without them. */
export function jumboWarnings(interfaces: readonly InterfaceFacts[]): string[] {
  return interfaces
    .filter(
      (f) => f.speed !== undefined && f.speed >= JUMBO_SPEED && f.mtu !== undefined && f.mtu < JUMBO_MTU,
    )
    .map(
      (f) =>
        `portal interface ${f.name} runs at ${f.speed} Mb/s with MTU ${f.mtu}: jumbo frames (MTU ${JUMBO_MTU}) ` +
        `cut the segments per 1 MiB read about sixfold (ip link set dev ${f.name} mtu ${JUMBO_MTU}, on the ` +
        'initiators and switch ports too; see nodetgt tune)',
    );
}

export class TuningMonitor {
  private checks: readonly TuningCheck[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly portalHosts: () => string[],
    private readonly sessions: () => Promise<SessionInfo[]>,
    private readonly probe: Probe = hostProbe(),
  ) {}

  /** The first pass (with its warnings), then a refresh every `periodMs` if given. */
  async start(periodMs?: number): Promise<void> {
    const interfaces = await this.refresh();
    for (const w of jumboWarnings(interfaces)) log.warn(w);
    if (periodMs !== undefined) {
      this.timer = setInterval(() => void this.refresh(), periodMs);
      this.timer.unref();
    }
  }

  /**
   * The nodetgt_tuning_check series of the last pass, for the metrics endpoint: the same array (and label
   * objects) at every scrape until the next pass (with 1,000 connections, one check each, building it again at
   * each scrape was most of a scrape's snapshot).
   */
  series(): ReturnType<typeof tuningSeries> {
    if (this.seriesOf !== this.checks) {
      this.seriesOf = this.checks;
      this.seriesMemo = tuningSeries(this.checks);
    }
    return this.seriesMemo;
  }
  private seriesOf: readonly TuningCheck[] | undefined;
  private seriesMemo: ReturnType<typeof tuningSeries> = [];

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async refresh(): Promise<InterfaceFacts[]> {
    // A pass still under way (a slow ethtool, a busy worker) is not started twice.
    if (this.running) {
      await this.running;
      return [];
    }
    let facts: InterfaceFacts[] = [];
    this.running = (async () => {
      try {
        const sessions = await this.sessions().catch((e: Error) => ({ error: e.message }));
        const report = await runTuning({ probe: this.probe, portalHosts: this.portalHosts(), sessions });
        this.checks = report.checks;
        facts = report.interfaces;
      } catch (e) {
        log.warn('tuning checks failed', { error: (e as Error).message });
      }
    })();
    await this.running;
    this.running = null;
    return facts;
  }
}
