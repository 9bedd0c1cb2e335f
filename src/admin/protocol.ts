/**
 * The control socket's protocol (`nodetgt show sessions|targets|luns|accounts`, `nodetgt session close`,
 * `nodetgt log-level`, and the changes `nodetgt target|lun|acl|account ...`): one JSON request per line
 * from the CLI, one JSON answer per line from the portal. Shared by the portal (src/portal/control.ts), the
 * workers (src/worker/admin.ts) and the CLI, so all three read the same shapes.
 */

export type ShowWhat = 'sessions' | 'targets' | 'luns' | 'accounts';

export type ControlRequest =
  | { op: 'show'; what: ShowWhat }
  | { op: 'session-close'; tsih: number }
  /** `nodetgt log-level LEVEL`: the level of every thread from now on; without a level, only the answer. */
  | { op: 'log-level'; level?: string }
  | ChangeRequest;

/**
 * A change to the configuration: edited into the config file as the operator wrote it, validated, applied
 * to the running target, then written back (src/portal/change.ts). `force` lets a change that would cut off
 * sessions or data go ahead; `saveOnly` writes the file without applying anything (for the next start).
 */
export interface ChangeRequest {
  op: 'change';
  change: ConfigChange;
  force?: boolean;
  saveOnly?: boolean;
}

/** Where an account is bound: a target's auth, or discovery's (the top-level discoveryAuth). */
export type AuthScope = { target: string } | { discovery: true };

/** One edit of the configuration, as `nodetgt target|lun|acl|account` asks for it. */
export type ConfigChange =
  | { kind: 'target-add'; target: string; alias?: string }
  | { kind: 'target-remove'; target: string }
  | {
      kind: 'lun-add';
      target: string;
      /** Absent: the lowest number the target does not use. */
      lun?: number;
      /** A file or block device (absolute), or absent for a null backstore. */
      path?: string;
      /** As the config accepts it ('10G', '512MiB', ...); required for a null backstore. */
      size?: string;
      readOnly?: boolean;
      blockSize?: number;
      /** The unit serial number (required on an ALUA target: the same on every gateway). */
      serial?: string;
    }
  | { kind: 'lun-remove'; target: string; lun: number }
  | { kind: 'lun-resize'; target: string; lun: number; size: string }
  | { kind: 'acl-add' | 'acl-remove'; target: string; initiator?: string; network?: string }
  /** The secret travels only on the control socket (0600, peer-checked) and into the file: never echoed. */
  | { kind: 'account-add'; user: string; secret: string }
  | { kind: 'account-remove'; user: string }
  | { kind: 'account-bind' | 'account-unbind'; user: string; scope: AuthScope; outgoing?: boolean }
  /** A target port group's asymmetric access state (implicit ALUA: the operator, or a cluster manager, decides). */
  | { kind: 'alua-state'; target: string; group: number; state: string };

/** What became of a change. */
export interface ChangeOutcome {
  /** What the edit did, in words ("LUN 2 added to iqn..."). */
  summary: string;
  /** What the running target took live. */
  applied: string[];
  /** What only a restart would apply (the file is then not written, unless saveOnly). */
  needsRestart: string[];
  /** Why the running target would not take it (nothing applied, nothing written). */
  refused?: string;
  /** The file written back, or why none was ("not persisted: no config file"). */
  persisted: { file: string } | { not: string };
  /** For the operator, never containing a secret (e.g. a short CHAP secret, an open target). */
  warnings: string[];
}

export type ControlAnswer =
  | {
      ok: true;
      sessions?: SessionInfo[];
      targets?: TargetInfo[];
      luns?: LunInfo[];
      accounts?: AccountInfo[];
      closed?: number;
      change?: ChangeOutcome;
      /** The level before a `log-level` request and the level now. */
      logLevel?: { was: string; now: string };
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
  /** Implicit ALUA: each target port group and its state, this gateway's marked '*' ("1:active-optimized* 2:standby"). */
  alua?: string;
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
  /** The target, '(discovery)', or '(unbound)' for a stored account no auth names. */
  scope: string;
  user: string;
  /** 'stored' for an unbound account of the `accounts` store. */
  direction: 'incoming' | 'outgoing' | 'stored';
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
  /** This end's address:port (which interface serves the connection). */
  local?: string;
  /** The kernel's TCP_INFO of the connection (`nodetgt tune` checks its MSS against the interface MTU). */
  tcp?: ConnectionTcp;
  /** Why `tcp` is absent (the socket could not be asked). */
  tcpError?: string;
}

/** The fields of TCP_INFO `nodetgt show sessions` and `nodetgt tune` report, as the kernel gives them. */
export interface ConnectionTcp {
  pmtu: number;
  sndMss: number;
  rcvMss: number;
  advMss: number;
  rttUs: number;
  totalRetrans: number;
  /** TCP timestamps negotiated: each segment carries 12 bytes of options, so the MSS is 12 less. */
  timestamps: boolean;
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
