/**
 * The start-up report of the worker pool. The portal listens before its workers have opened their LUs (a login
 * meanwhile waits for its worker), so "portal listening" says nothing of what is served: this says it once every
 * worker has started, and names each LU that some worker could not open (its sessions there would get LOGICAL
 * UNIT NOT SUPPORTED; the worker logged why, and opens it again later when the error may pass).
 */
import type { AdminResult } from '../admin/protocol';
import type { Config } from '../config/schema';
import { log } from '../util/log';

export interface ReadyReport {
  workers: number;
  /** LUs the portal did not leave offline: each should be open on every worker. */
  lus: number;
  /** Of those, the ones some worker is not serving. */
  incomplete: Array<{ target: string; lun: number; workers: number }>;
}

export function readyReport(config: Config, answers: readonly AdminResult[]): ReadyReport {
  const served = new Map<string, number>();
  for (const a of answers)
    for (const l of a.luns ?? [])
      served.set(`${l.target}\n${l.lun}`, (served.get(`${l.target}\n${l.lun}`) ?? 0) + 1);
  const r: ReadyReport = { workers: answers.length, lus: 0, incomplete: [] };
  for (const t of config.targets)
    for (const l of t.luns) {
      if (l.offline !== undefined) continue; // reported by the portal already
      r.lus++;
      const n = served.get(`${t.name}\n${l.lun}`) ?? 0;
      if (n < answers.length) r.incomplete.push({ target: t.name, lun: l.lun, workers: n });
    }
  return r;
}

export function logReady(r: ReadyReport): void {
  for (const i of r.incomplete)
    log.error('LU not served by every worker', {
      target: i.target,
      lun: i.lun,
      servedBy: `${i.workers} of ${r.workers}`,
    });
  log.info('workers ready', { workers: r.workers, lus: r.lus, incomplete: r.incomplete.length });
}
