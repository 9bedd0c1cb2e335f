/**
 * All tuning checks in one pass (`nodetgt tune`, the portal's periodic refresh for /metrics), and their
 * renderings: a table for people, Prometheus lines for machines.
 */
import type { SessionInfo } from '../admin/protocol';
import { STATUS_VALUE, type Probe, type TuningCheck } from './check';
import { connectionChecks, maxRttUs } from './connections';
import { bufferChecks, congestionCheck, governorCheck, offloadChecks, rxSpreadCheck } from './host';
import { interfaceChecks, portalInterfaces, type InterfaceFacts } from './interfaces';

export interface TuningInput {
  probe: Probe;
  /** The portals' listen addresses (a wildcard: every interface with an address). */
  portalHosts: readonly string[];
  /** Interfaces named by the operator (--interface): these instead of the portals'. */
  interfaces?: readonly string[];
  /** The running target's connections, or why they could not be had ('no target running'). */
  sessions: readonly SessionInfo[] | { error: string };
}

export interface TuningReport {
  checks: TuningCheck[];
  interfaces: InterfaceFacts[];
}

export async function runTuning(input: TuningInput): Promise<TuningReport> {
  const { probe, sessions } = input;
  const { names, checks } = portalInterfaces(probe, input.portalHosts, input.interfaces ?? []);
  const interfaces: InterfaceFacts[] = [];
  for (const name of names) {
    const r = await interfaceChecks(probe, name);
    checks.push(...r.checks);
    // Offloads and receive spread only for a real, non-loopback interface.
    if (!r.facts || r.facts.loopback) continue;
    interfaces.push(r.facts);
    checks.push(...(await offloadChecks(probe, name)), await rxSpreadCheck(probe, name));
  }
  checks.push(...(await connectionChecks(probe, sessions)));
  const rtt = 'error' in sessions ? undefined : maxRttUs(sessions);
  checks.push(...(await bufferChecks(probe, rtt)), await congestionCheck(probe), await governorCheck(probe));
  return { checks, interfaces };
}

/** `nodetgt tune` exits 1 when a check failed (warnings and unknowns do not fail it). */
export function exitCode(checks: readonly TuningCheck[]): number {
  return checks.some((c) => c.status === 'fail') ? 1 : 0;
}

const label = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** The gauge nodetgt_tuning_check{check,subject}: 0 ok, 1 warn, 2 fail, -1 unknown (STATUS_VALUE). */
/** One gauge value per (check, subject): 0 ok, 1 warn, 2 fail, -1 unknown; a repeat keeps the worst. */
export function tuningSeries(
  checks: readonly TuningCheck[],
): Array<{ labels: { check: string; subject: string }; value: number }> {
  const worst = new Map<string, { labels: { check: string; subject: string }; value: number }>();
  for (const c of checks) {
    const key = `${c.check}\u0000${c.subject}`;
    const v = STATUS_VALUE[c.status];
    const had = worst.get(key);
    if (!had) worst.set(key, { labels: { check: c.check, subject: c.subject }, value: v });
    else had.value = Math.max(had.value, v);
  }
  return [...worst.values()];
}

/** The same series as Prometheus text lines: the gauge's aggregation and label escaping, checked on their own. */
export function tuningMetricLines(checks: readonly TuningCheck[]): string[] {
  return [
    '# HELP nodetgt_tuning_check Host and path tuning checks (nodetgt tune): 0 ok, 1 warn, 2 fail, -1 unknown',
    '# TYPE nodetgt_tuning_check gauge',
    ...tuningSeries(checks).map(
      (s) =>
        `nodetgt_tuning_check{check="${label(s.labels.check)}",subject="${label(s.labels.subject)}"} ${s.value}`,
    ),
  ];
}
