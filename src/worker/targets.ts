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

export class TargetNode {
  /** Set by open(): the target's SCSI dispatcher over its LUNs in this thread. */
  scsi: ScsiDispatcher | null = null;
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
    this.scsi = new ScsiDispatcher(
      await openLuns(this.config, problems, this.counters, this.shared, this.ports),
    );
    return problems;
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
): Promise<LogicalUnit | null> {
  if (l.offline !== undefined) return null;
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
    const error = (e as Error).message;
    log.error('LU offline: cannot open its backing store', { target: t.name, lun: l.lun, error });
    problems.push(`target ${t.name} LUN ${l.lun}: cannot open its backing store: ${error}`);
    return null;
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
      const error = (e as Error).message;
      log.error('LU offline: cannot read its reservation state', { target: t.name, lun: l.lun, error });
      problems.push(`target ${t.name} LUN ${l.lun}: cannot read its reservation state: ${error}`);
      await bs.close().catch(() => undefined);
      return null;
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

/** The LUs of a target that can be served; one that cannot is left out, the others serve. */
async function openLuns(
  t: TargetConfig,
  problems: string[],
  counters?: CounterShared,
  shared?: LuSharedAccess,
  ports?: TargetPortGroups,
): Promise<Map<number, LogicalUnit>> {
  const luns = new Map<number, LogicalUnit>();
  for (const l of t.luns) {
    const lu = await openLu(t, l, problems, counters, shared, ports);
    if (lu) luns.set(l.lun, lu);
  }
  return luns;
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
    this.nodes.set(node.name, node);
  }

  /** A live change: stop serving this target (new logins no longer find it); returns it. */
  remove(name: string): TargetNode | undefined {
    const node = this.nodes.get(name);
    this.nodes.delete(name);
    return node;
  }
}
