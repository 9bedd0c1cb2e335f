/**
 * A worker's view of the configured targets: LUNs are opened on first use in this thread (each worker has
 * its own descriptors and its own io_uring ring), then shared by every session of the target on this worker.
 */
import type { Config, LunConfig, TargetConfig } from '../config/schema';
import type { Backstore } from '../backstore/types';
import { openFileBackstore } from '../backstore/file';
import { openNullBackstore } from '../backstore/null';
import { LogicalUnit, makeIdentity } from '../scsi/lu';
import { ScsiDispatcher } from '../scsi/dispatcher';
import { aclAllows } from '../portal/acl';

export class TargetNode {
  /** Set by open(): the target's SCSI dispatcher over its LUNs in this thread. */
  scsi: ScsiDispatcher | null = null;
  constructor(public config: TargetConfig) {}

  get name(): string {
    return this.config.name;
  }

  allows(initiatorName: string, address: string): boolean {
    return aclAllows(this.config.acl, initiatorName, address);
  }

  /** Open the LUNs in this thread (each worker has its own descriptors and io_uring ring). */
  async open(): Promise<void> {
    this.scsi = new ScsiDispatcher(await openLuns(this.config));
  }
}

async function openBackstore(l: LunConfig): Promise<Backstore> {
  if (l.backstore === 'null') return openNullBackstore({ size: l.size!, blockSize: l.blockSize });
  return openFileBackstore({ path: l.path, readOnly: l.readOnly, direct: l.direct, blockSize: l.blockSize });
}

async function openLuns(t: TargetConfig): Promise<Map<number, LogicalUnit>> {
  const luns = new Map<number, LogicalUnit>();
  try {
    for (const l of t.luns) {
      const bs = await openBackstore(l);
      luns.set(
        l.lun,
        new LogicalUnit(bs, makeIdentity(t.name, l.lun, l.backstore === 'null' ? 'null' : l.path)),
      );
    }
  } catch (e) {
    await Promise.all([...luns.values()].map((lu) => lu.backstore.close().catch(() => undefined)));
    throw e;
  }
  return luns;
}

export class TargetRegistry {
  private readonly nodes = new Map<string, TargetNode>();
  constructor(config: Config) {
    for (const t of config.targets) this.nodes.set(t.name, new TargetNode(t));
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
}
