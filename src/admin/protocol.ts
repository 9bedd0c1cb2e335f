/**
 * The control socket's protocol (`nodetgt show sessions`, `nodetgt session close`): one JSON request per line
 * from the CLI, one JSON answer per line from the portal. Shared by the portal (src/portal/control.ts), the
 * workers (src/admin/worker-admin.ts) and the CLI, so all three read the same shapes.
 */

export type ControlRequest = { op: 'show'; what: 'sessions' } | { op: 'session-close'; tsih: number };

export type ControlAnswer =
  { ok: true; sessions?: SessionInfo[]; closed?: number } | { ok: false; error: string };

/** One connection of a session, as `nodetgt show sessions` lists it (a session with MC/S has several rows). */
export interface SessionInfo {
  target: string;
  tsih: number;
  isid: string;
  initiator: string;
  type: 'Normal' | 'Discovery';
  cid: number;
  peer: string;
  /** The connection's phase: login, ffp (full feature), logout, closed. */
  state: string;
  headerDigest: 'CRC32C' | 'None';
  dataDigest: 'CRC32C' | 'None';
  /** The initiator's MaxRecvDataSegmentLength (what the target may send) and the target's own. */
  maxRecvDataSegmentLength: { initiator: number; target: number };
  maxBurstLength: number;
  /** threadId of the worker serving it. */
  worker: number;
  /** Seconds since the session was created. */
  ageSeconds: number;
  bytesIn: number;
  bytesOut: number;
}

/** A task the portal sends to one worker (WorkerTask kind 'admin'); the worker answers with AdminResult. */
export type AdminTask =
  { kind: 'admin'; op: 'sessions' } | { kind: 'admin'; op: 'session-close'; tsih: number };

export interface AdminResult {
  worker: number;
  sessions?: SessionInfo[];
  closed?: number;
}

/** The default control socket of a state directory. */
export function controlSocketPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, '')}/control.sock`;
}
