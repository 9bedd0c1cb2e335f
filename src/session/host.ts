/**
 * What the session layer needs of the worker it runs on, named here so that session/ never imports worker/
 * (DESIGN.md: a module lower in the house never imports one above it). src/worker/context.ts and
 * src/worker/targets.ts provide them.
 */
import type { Config, TargetConfig } from '../config/schema';
import type { CounterRow } from '../metrics/counters';
import type { LoginEnvironment, LoginOutcome } from '../login/login';
import type { LunView } from '../scsi/lun-view';
import type { Connection } from './connection';
import type { Session } from './session';
import type { BackstoreQueue } from './backpressure';
import type { SlabPool } from '../util/slab-pool';

/** The target a session is logged in to. */
export interface SessionTarget {
  readonly name: string;
  readonly config: TargetConfig;
  /** The LUNs this initiator sees of the target now (its host mappings). */
  viewFor(initiatorName: string): LunView;
}

/** The worker a connection is served by: its configuration, counters, and the decisions that span sessions. */
export interface ConnectionHost {
  readonly config: Config;
  readonly counters: CounterRow;
  /** The worker's queue to its backstores: past its high-water mark, sockets stop being read. */
  readonly backpressure: BackstoreQueue;
  /** The worker's receive slabs: a command retains the slab memory its CDB and data are views of. */
  readonly slabs: SlabPool;
  loginEnvironment(remoteAddress: string): LoginEnvironment;
  /** The last step of a successful login: the session the connection belongs to, or a login status. */
  completeLogin(conn: Connection, o: LoginOutcome): Session | number;
  /** Why the last completeLogin refused (for the log line of the refusal). */
  readonly lastRefusal: string;
  connectionClosed(conn: Connection): void;
  sendTargets(value: string, session: Session, conn: Connection): Array<[string, string]>;
  /** A login failed authentication from this address (the portal rate-limits it). */
  onAuthFailure(address: string): void;
  /** End a session: its connections close, its TSIH and its places under the limits are released. */
  endSession(s: Session): void;
  /** TARGET COLD RESET: every session of the target, on every worker, ends. */
  coldReset(targetName: string): void;
}
