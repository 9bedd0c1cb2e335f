/** What the portal thread hands to a worker: the start-up data once, then one task per connection. */
import { BroadcastChannel } from 'node:worker_threads';
import type { AuthConfig, Config, TargetConfig } from '../config/schema';
import type { CounterShared } from '../metrics/counters';
import type { RoutingShared } from './routing';
import type { AdmissionShared, Ticket } from './pending-logins';
import type { LuSharedMemory } from '../scsi/lu-shared';
import type { AdminTask } from '../admin/protocol';

export interface WorkerInit {
  config: Config;
  counters: CounterShared;
  routing: RoutingShared;
  admission: AdmissionShared;
  /** Each LU's shared state, indexed by LunConfig.slot. */
  lus: Array<LuSharedMemory | undefined>;
  /** Session and connection counts over all workers (src/worker/session-limits.ts). */
  sessionLimits?: SharedArrayBuffer;
  /** Name suffix of the channel authentication failures are reported on (src/portal/auth-limit.ts). */
  authChannel: string;
  /** The log level and format every thread follows (src/util/log.ts logSettings). */
  log?: SharedArrayBuffer;
}

/**
 * The channel a running target's workers report failed authentications on, for the portal to count
 * (src/portal/auth-limit.ts); the id keeps targets in one process apart.
 */
export function authFailureChannel(id: string): BroadcastChannel {
  return new BroadcastChannel(`nodetgt:auth-failures:${id}`);
}

export interface ConnectionTask {
  kind: 'connection';
  /** A duplicate of the accepted socket's descriptor: the worker's once it has claimed it (fdClaim). */
  fd: number;
  /**
   * Who closes `fd`, decided once (Atomics.compareExchange on slot 0, in shared memory): FD_WORKER when the
   * worker takes it (its socket, or its error path, closes it), FD_PORTAL when the portal takes it back because
   * the task failed before the worker got to it. Whoever wins closes it; the other never touches it.
   */
  fdClaim: Int32Array;
  /** Bytes the portal already read (the first Login PDU and anything after it). */
  initial: Uint8Array;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** The pending-login slot this connection holds until its login ends. */
  ticket?: Ticket;
  /** Date.now() by which the login must be complete. */
  loginDeadline?: number;
}

/**
 * A live configuration change, the same for every worker (planned in src/portal/reload.ts, sent by
 * src/portal/apply.ts, applied by src/worker/live.ts). Removals come before additions, so a LUN that changed
 * (removed and added again) never has two LUs at once. Applying a task twice changes nothing the second time.
 */
export interface ConfigTask {
  kind: 'config';
  /** Existing targets whose configuration changed (ACL, alias, CHAP, LUN list): their whole new config. */
  targets: TargetConfig[];
  /** Present when the discovery CHAP accounts changed; null: no authentication any more. */
  discoveryAuth?: AuthConfig | null;
  /** Targets to serve from now on, LUNs provisioned (identity, slot). */
  addTargets?: TargetConfig[];
  /** Targets to stop serving: their sessions on the worker are closed. */
  removeTargets?: string[];
  /** LUNs of existing targets to stop serving. */
  removeLuns?: Array<{ target: string; lun: number }>;
  /** LUNs of existing targets to serve from now on (`lun` is the target's new LunConfig for it). */
  addLuns?: Array<{ target: string; lun: number }>;
  /** New capacities (bytes) of LUNs that stay. */
  resizeLuns?: Array<{ target: string; lun: number; size: number }>;
  /** The shared state of every LU added (by a new target or a new LUN), by its slot. */
  lus?: Array<{ slot: number; memory: LuSharedMemory }>;
}

/** A worker's answer to a ConfigTask. */
export interface ConfigResult {
  worker: number;
  /** What could not be applied on this worker (an LU it could not open or resize), for the report. */
  errors: string[];
  /** Sessions closed on this worker because their target was removed, by target. */
  sessionsClosed: Record<string, number>;
}

/**
 * Test only: the worker throws an uncaught exception (or exits) from inside, as a bug would. Honoured only
 * when NODETGT_TEST_HOOKS=1 is in the environment the worker started with; otherwise logged and ignored.
 */
export interface TestKillTask {
  kind: 'test-kill';
  how: 'throw' | 'exit';
}

/** FdClaim values (ConnectionTask.fdClaim). */
export const FD_UNCLAIMED = 0;
export const FD_WORKER = 1;
export const FD_PORTAL = 2;

/**
 * Graceful shutdown, sent to every worker (src/worker/shutdown.ts). 'notify': close the connections still
 * logging in, stop taking new ones, and ask every session to log out within `logoutWithin` seconds (Async
 * Message, AsyncEvent 1); sessions go on being served meanwhile. 'close': end whatever is left (a session
 * still open is told it is dropped, AsyncEvent 3), then flush every backstore of the worker.
 */
export interface ShutdownTask {
  kind: 'shutdown';
  step: 'notify' | 'close';
  logoutWithin?: number;
}

/** A worker's answer to a ShutdownTask (the counts of its step; the others are 0). */
export interface ShutdownResult {
  worker: number;
  /** notify: sessions sent the logout request. */
  sessionsNotified: number;
  /** notify: connections closed while still logging in. */
  loginsClosed: number;
  /** notify: commands received and not yet answered. */
  commandsInFlight: number;
  /** close: of the commands in flight at notify, those that ended since (answered, or ended by a logout). */
  commandsDrained: number;
  /** close: sessions still open, ended now. */
  sessionsClosed: number;
  /** close: commands still unanswered, dropped with their connection (never acknowledged). */
  commandsDropped: number;
  /** close: backstores flushed (fdatasync). */
  flushed: number;
  /** close: backstores whose flush failed, with why. */
  flushErrors: string[];
}

export type WorkerTask = ConnectionTask | ConfigTask | TestKillTask | AdminTask | ShutdownTask;

/** The routing hint the portal attaches to a task (read by the pool's load balancer). */
export interface RouteHint {
  /** threadId of the worker that must serve this connection, or 0 for "least loaded". */
  threadId: number;
  /** InitiatorName + ISID, to remember where this session went. */
  key: string | null;
  /** Set by the load balancer: the worker that took the task. */
  chosen: number;
  /** False for a task that is not a connection (a control request, a reload): not counted per worker. */
  connection?: boolean;
}
