/**
 * The control socket's protocol (`nodetgt show sessions|targets|luns|accounts`, `nodetgt session close`): one JSON request per line
 * from the CLI, one JSON answer per line from the portal. Shared by the portal (src/portal/control.ts), the
 * workers (src/admin/worker-admin.ts) and the CLI, so all three read the same shapes.
 */

export type ShowWhat = 'sessions' | 'targets' | 'luns' | 'accounts';

export type ControlRequest = { op: 'show'; what: ShowWhat } | { op: 'session-close'; tsih: number };

export type ControlAnswer =
  | {
      ok: true;
      sessions?: SessionInfo[];
      targets?: TargetInfo[];
      luns?: LunInfo[];
      accounts?: AccountInfo[];
      closed?: number;
    }
  | { ok: false; error: string };

/** A configured target, as `nodetgt show targets` lists it. */
export interface TargetInfo {
  name: string;
  alias?: string;
  luns: number;
  /** Sessions logged in to it now (all workers). */
  sessions: number;
  aclInitiators: string[];
  aclNetworks: string[];
  /** 'none', 'chap' or 'mutual chap'. */
  auth: string;
}

/** A configured LU, as `nodetgt show luns` lists it: what the device server reports, or why it is offline. */
export interface LunInfo {
  target: string;
  lun: number;
  type: 'disk' | 'cd';
  backing: string;
  /** Capacity in bytes as READ CAPACITY reports it (0 when offline). */
  sizeBytes: number;
  blockSize: number;
  readOnly: boolean;
  thin: boolean;
  removable: boolean;
  serial: string;
  naa: string;
  /** Why it is not served; absent when served. */
  offline?: string;
}

/** A CHAP account (never its secret), as `nodetgt show accounts` lists it. */
export interface AccountInfo {
  /** The target, or '(discovery)'. */
  scope: string;
  user: string;
  direction: 'incoming' | 'outgoing';
}

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
  | { kind: 'admin'; op: 'sessions' }
  | { kind: 'admin'; op: 'luns' }
  | { kind: 'admin'; op: 'session-close'; tsih: number };

export interface AdminResult {
  worker: number;
  sessions?: SessionInfo[];
  /** What this worker's LUs report (size, write protect, ...). */
  luns?: Array<Omit<LunInfo, 'backing' | 'offline'>>;
  closed?: number;
}

/** The default control socket of a state directory. */
export function controlSocketPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, '')}/control.sock`;
}
