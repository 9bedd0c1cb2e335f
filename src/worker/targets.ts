/**
 * A worker's view of the configured targets: LUNs are opened on first use in this thread (each worker has
 * its own descriptors and its own io_uring ring), then shared by every session of the target on this worker.
 */
import type { Config, LunConfig, TargetConfig } from '../config/schema';
import type { Backstore } from '../backstore/types';
import { openFileBackstore } from '../backstore/file';
import { openNullBackstore } from '../backstore/null';
import { LogicalUnit, identityOf } from '../scsi/lu';
import { ScsiDispatcher } from '../scsi/dispatcher';
import { aclAllows } from '../portal/acl';
import { LuFaultCounters, type CounterShared } from '../metrics/counters';
import { log } from '../util/log';
import { LuShared, type LuSharedMemory } from '../scsi/lu-shared';

/** Where this thread finds each LU's shared state (by LunConfig.slot) and its lane in it. */
export interface LuSharedAccess {
  memory: LuSharedMemory[];
  lane: number;
}

export class TargetNode {
  /** Set by open(): the target's SCSI dispatcher over its LUNs in this thread. */
  scsi: ScsiDispatcher | null = null;
  constructor(
    public config: TargetConfig,
    private readonly counters?: CounterShared,
    private readonly shared?: LuSharedAccess,
  ) {}

  get name(): string {
    return this.config.name;
  }

  allows(initiatorName: string, address: string): boolean {
    return aclAllows(this.config.acl, initiatorName, address);
  }

  /** Open the LUNs in this thread (each worker has its own descriptors and io_uring ring). */
  async open(): Promise<void> {
    this.scsi = new ScsiDispatcher(await openLuns(this.config, this.counters, this.shared));
  }
}

// A file is opened as it is: creating it is provisioning's work (src/backstore/prepare.ts), done once at
// start-up, so that a file gone since is never re-created blank here.
async function openBackstore(l: LunConfig): Promise<Backstore> {
  // A null backstore is never a cd (the config refuses it), so its block size is 512 or 4096.
  if (l.backstore === 'null')
    return openNullBackstore({ size: l.size!, blockSize: l.blockSize === 4096 ? 4096 : 512 });
  return openFileBackstore({ path: l.path, readOnly: l.readOnly, direct: l.direct, blockSize: l.blockSize });
}

/** The LUs of a target that can be served; one that cannot is logged by name and left out, the others serve. */
async function openLuns(
  t: TargetConfig,
  counters?: CounterShared,
  shared?: LuSharedAccess,
): Promise<Map<number, LogicalUnit>> {
  const luns = new Map<number, LogicalUnit>();
  for (const l of t.luns) {
    if (l.offline !== undefined) continue; // reported once by the portal at start-up
    if (l.identity === undefined) throw new Error(`target ${t.name} LUN ${l.lun} was not provisioned`);
    let bs: Backstore;
    try {
      bs = await openBackstore(l);
    } catch (e) {
      log.error('LU offline: cannot open its backing store', {
        target: t.name,
        lun: l.lun,
        error: (e as Error).message,
      });
      continue;
    }
    const faults = counters ? new LuFaultCounters(counters, l.slot) : undefined;
    const mem = shared?.memory[l.slot];
    const luShared = mem ? new LuShared(mem, shared!.lane) : undefined;
    const identity = identityOf(t.name, l.lun, l.identity, l.type, l);
    luns.set(
      l.lun,
      new LogicalUnit(bs, identity, {
        faults,
        shared: luShared,
        type: l.type,
        removable: l.removable,
        prFile: l.prFile,
        atomicJournalDir: l.atomicJournalDir,
      }),
    );
  }
  return luns;
}

export class TargetRegistry {
  private readonly nodes = new Map<string, TargetNode>();
  constructor(config: Config, counters?: CounterShared, shared?: LuSharedAccess) {
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
  /** A reload's live part: each named target's ACL and alias (logins from now on see them). */
  applyLive(targets: ReadonlyArray<Pick<TargetConfig, 'name' | 'acl' | 'alias'>>): void {
    for (const t of targets) {
      const node = this.nodes.get(t.name);
      if (node) node.config = { ...node.config, acl: t.acl, alias: t.alias };
    }
  }
}
