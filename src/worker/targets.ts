/**
 * A worker's view of the configured targets: LUNs are opened on first use in this thread (each worker has
 * its own descriptors and its own io_uring ring), then shared by every session of the target on this worker.
 */
import type { Config, LunConfig, TargetConfig } from '../config/schema';
import type { Backstore } from '../backstore/types';
import { openFileBackstore } from '../backstore/file';
import { openNullBackstore } from '../backstore/null';
import { openRbdBackstore, RbdBackstore } from '../backstore/rbd';
import { SharedPrStore } from '../scsi/pr-shared';
import { LogicalUnit, identityOf } from '../scsi/lu';
import { ScsiDispatcher } from '../scsi/dispatcher';
import { aclAllows } from '../config/acl';
import { hostFor, hostReadOnly } from '../config/hosts';
import { LunView, type LunAccess } from '../scsi/lun-view';
import { LuFaultCounters, type CounterShared } from '../metrics/counters';
import { LuStats, timeBackstore } from '../metrics/lu-stats';
import { log } from '../util/log';
import { LuShared, type LuSharedMemory } from '../scsi/lu-shared';
import { TargetPortGroups } from '../scsi/port-groups';

/** Where this thread finds each LU's shared state (by LunConfig.slot) and its lane in it. */
export interface LuSharedAccess {
  memory: Array<LuSharedMemory | undefined>;
  lane: number;
}

/**
 * Errors that may pass on their own (a cluster that did not answer in time, or not yet): an LU that failed to open
 * with one is opened again later (TargetNode.reopenLater) instead of staying offline on this worker until restart.
 */
const TRANSIENT = new Set([
  'ETIMEDOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTCONN',
  'ESHUTDOWN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAGAIN',
  'EBUSY',
  'EINTR',
  'EIO',
]);
/** First and longest wait before opening such an LU again (doubling in between). */
const REOPEN_FIRST_MS = 1000;
const REOPEN_MAX_MS = 60_000;

function transient(e: unknown): boolean {
  return TRANSIENT.has((e as NodeJS.ErrnoException).code ?? '');
}

export class TargetNode {
  /** Set by open(): the target's SCSI dispatcher over its LUNs in this thread. */
  scsi: ScsiDispatcher | null = null;
  /** LUs waiting to be opened again here after a transient failure, by LUN. */
  private readonly reopening = new Map<number, NodeJS.Timeout>();
  private retired = false;
  /** Told when an LU opened again comes online here (WorkerContext: nexuses, views). */
  onLuOnline: (node: TargetNode, lu: LogicalUnit) => void = () => undefined;
  /** The target's port groups (implicit ALUA) in this thread, shared by its LUs; see setConfig. */
  readonly ports: TargetPortGroups;
  constructor(
    public config: TargetConfig,
    readonly counters?: CounterShared,
    readonly shared?: LuSharedAccess,
  ) {
    this.ports = new TargetPortGroups(config.alua);
  }

  /** A live change: the target's configuration now, its port groups' states included (every LU sees them). */
  setConfig(config: TargetConfig): void {
    this.config = config;
    this.ports.update(config.alua);
    // Whether an RBD LU journals atomic writes across its objects follows the states (LogicalUnit.clusterJournal).
    if (this.scsi)
      for (const n of this.scsi.allLuns.numbers()) this.scsi.allLuns.get(n)!.lu.refreshAtomicLimits();
  }

  get name(): string {
    return this.config.name;
  }

  allows(initiatorName: string, address: string): boolean {
    return aclAllows(this.config.acl, initiatorName, address);
  }

  /**
   * What an initiator sees of this target under the current `hosts` mappings: a session takes it at login and
   * again when the mappings change (WorkerContext.refreshLunViews). Unmapped initiators see every LUN.
   */
  viewFor(initiatorName: string): LunView {
    const all = this.scsi!.allLuns;
    const host = hostFor(this.config.hosts, initiatorName);
    if (!host) return all;
    const map = new Map<number, LunAccess>();
    for (const [n, a] of all.entries())
      if (!host.luns || host.luns.includes(n)) map.set(n, { lu: a.lu, readOnly: hostReadOnly(host, n) });
    return new LunView(map);
  }

  /**
   * Open the LUNs in this thread (each worker has its own descriptors and io_uring ring). Returns what could not
   * be opened here (logged too); an LU the portal left offline is not counted (the portal reported it).
   */
  async open(): Promise<string[]> {
    const problems: string[] = [];
    const luns = new Map<number, LogicalUnit>();
    for (const l of this.config.luns) {
      const lu = await openLu(this.config, l, problems, this.counters, this.shared, this.ports, this);
      if (lu) luns.set(l.lun, lu);
    }
    this.scsi = new ScsiDispatcher(luns);
    return problems;
  }

  /**
   * `l` failed to open here for a reason that may pass: try again after `delayMs` (doubling up to a minute while
   * it keeps failing so), for as long as the target serves that LU (same LUN and slot) and this node is in use.
   * Until then this worker's sessions get LOGICAL UNIT NOT SUPPORTED for it, as at start-up.
   */
  reopenLater(l: LunConfig, delayMs = REOPEN_FIRST_MS): void {
    if (this.retired || this.reopening.has(l.lun)) return;
    const timer = setTimeout(() => void this.reopen(l, delayMs), delayMs);
    timer.unref();
    this.reopening.set(l.lun, timer);
  }

  private async reopen(l: LunConfig, delayMs: number): Promise<void> {
    const wanted = () =>
      !this.retired &&
      this.scsi !== null &&
      this.scsi.getLun(l.lun) === undefined &&
      this.config.luns.some((x) => x.lun === l.lun && x.slot === l.slot);
    this.reopening.delete(l.lun);
    if (!wanted()) return;
    const lu = await openLu(this.config, l, [], this.counters, this.shared, this.ports, {
      reopenLater: (again) => this.reopenLater(again, Math.min(delayMs * 2, REOPEN_MAX_MS)),
    });
    if (!lu) return;
    if (!wanted()) {
      // Changed meanwhile (removed live, or this worker is stopping): not served after all.
      await lu.backstore.close().catch(() => undefined);
      return;
    }
    this.scsi!.putLun(l.lun, lu);
    log.info('LU online: its backing store opened on a later try', { target: this.name, lun: l.lun });
    this.onLuOnline(this, lu);
  }

  /** No longer in use (removed live, or the worker stops): nothing is opened again for it. */
  retire(): void {
    this.retired = true;
    for (const t of this.reopening.values()) clearTimeout(t);
    this.reopening.clear();
  }
}

// A file is opened as it is: creating it is provisioning's work (src/backstore/prepare.ts), done once at
// start-up, so that a file gone since is never re-created blank here. An RBD image is created here, by
// whichever worker comes first, when the config says `create` (librbd refuses a second creation).
async function openBackstore(
  l: LunConfig,
  onPrNotify?: (id: bigint, err: number) => void,
): Promise<Backstore> {
  if (l.backstore === 'rbd') {
    const r = l.rbd!;
    return openRbdBackstore({
      pool: r.pool,
      image: r.image,
      namespace: r.namespace,
      cephConf: r.cephConf,
      clientId: r.clientId,
      createSize: r.create ? l.size : undefined,
      size: l.size,
      readOnly: l.readOnly,
      blockSize: l.blockSize === 4096 ? 4096 : 512,
      cache: r.cache,
      opTimeout: r.opTimeout,
      onPrNotify,
    });
  }
  // A null backstore is never a cd (the config refuses it), so its block size is 512 or 4096.
  if (l.backstore === 'null')
    return openNullBackstore({ size: l.size!, blockSize: l.blockSize === 4096 ? 4096 : 512 });
  return openFileBackstore({ path: l.path, readOnly: l.readOnly, direct: l.direct, blockSize: l.blockSize });
}

/**
 * Open one provisioned LU in this thread; null when it cannot be served: the portal left it offline (and
 * reported it), or its backing store would not open here (logged, and added to `problems`).
 */
export async function openLu(
  t: TargetConfig,
  l: LunConfig,
  problems: string[],
  counters?: CounterShared,
  shared?: LuSharedAccess,
  ports?: TargetPortGroups,
  retry?: Pick<TargetNode, 'reopenLater'>,
): Promise<LogicalUnit | null> {
  if (l.offline !== undefined) return null;
  /** Log, count in `problems`, and have `retry` open it again later when the error may pass. */
  const offline = (why: string, e: unknown): null => {
    const error = (e as Error).message;
    const again = retry !== undefined && transient(e);
    log.error(`LU offline: ${why}`, {
      target: t.name,
      lun: l.lun,
      error,
      ...(again ? { retry: 'later' } : {}),
    });
    problems.push(`target ${t.name} LUN ${l.lun}: ${why}: ${error}`);
    if (again) retry.reopenLater(l);
    return null;
  };
  if (l.identity === undefined) throw new Error(`target ${t.name} LUN ${l.lun} was not provisioned`);
  let bs: Backstore;
  // The reservation store of an rbd LU hears the notifies of its object through the backstore's watch.
  let prStore: SharedPrStore | undefined;
  const pending: Array<[bigint, number]> = [];
  const onPrNotify = (id: bigint, err: number): void => {
    if (prStore) prStore.onNotify(id, err);
    else pending.push([id, err]);
  };
  try {
    bs = await openBackstore(l, onPrNotify);
  } catch (e) {
    return offline('cannot open its backing store', e);
  }
  const faults = counters ? new LuFaultCounters(counters, l.slot) : undefined;
  const mem = shared?.memory[l.slot];
  const luShared = mem ? new LuShared(mem, shared!.lane) : new LuShared();
  const stats = mem?.stats ? new LuStats(mem.stats, shared!.lane) : undefined;
  if (stats) timeBackstore(bs, stats);
  if (bs instanceof RbdBackstore) {
    const store = new SharedPrStore(luShared, bs.image, { target: t.name, lun: l.lun });
    try {
      await store.refresh();
    } catch (e) {
      await bs.close().catch(() => undefined);
      return offline('cannot read its reservation state', e);
    }
    prStore = store;
    for (const [id, err] of pending.splice(0)) store.onNotify(id, err);
  }
  return new LogicalUnit(bs, identityOf(t.name, l.lun, l.identity, l.type, l), {
    faults,
    stats,
    shared: luShared,
    type: l.type,
    removable: l.removable,
    prFile: l.prFile,
    prStore,
    atomicJournalDir: l.atomicJournalDir,
    ports,
  });
}

export class TargetRegistry {
  private readonly nodes = new Map<string, TargetNode>();
  constructor(
    config: Config,
    readonly counters?: CounterShared,
    readonly shared?: LuSharedAccess,
  ) {
    for (const t of config.targets) this.nodes.set(t.name, new TargetNode(t, counters, shared));
  }
  /** Told when an LU that failed to open here comes online on a later try (TargetNode.reopenLater). */
  set onLuOnline(fn: (node: TargetNode, lu: LogicalUnit) => void) {
    this.luOnline = fn;
    for (const n of this.nodes.values()) n.onLuOnline = fn;
  }
  private luOnline: (node: TargetNode, lu: LogicalUnit) => void = () => undefined;
  get(name: string): TargetNode | undefined {
    return this.nodes.get(name.toLowerCase());
  }
  async openAll(): Promise<void> {
    for (const n of this.nodes.values()) await n.open();
  }
  all(): TargetNode[] {
    return [...this.nodes.values()];
  }
  /** A live change: serve this target (its LUs opened already) from now on. */
  add(node: TargetNode): void {
    node.onLuOnline = this.luOnline;
    this.nodes.set(node.name, node);
  }

  /** A live change: stop serving this target (new logins no longer find it); returns it. */
  remove(name: string): TargetNode | undefined {
    const node = this.nodes.get(name);
    this.nodes.delete(name);
    node?.retire();
    return node;
  }
}
