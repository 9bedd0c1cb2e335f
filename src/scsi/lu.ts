/**
 * A logical unit as one worker sees it: its own backstore handle (descriptor, io_uring ring) plus the
 * identity and the device server's state for the LU, which lives once for all workers in shared memory
 * (LuShared, src/scsi/lu-shared.ts: software write protect, prevent-removal and pending unit attentions per
 * I_T nexus, reservations, range locks, the reset epoch).
 */
import type { Backstore, RedoJournal } from '../backstore/types';
import { NullBackstore } from '../backstore/null';
import type { LuFaultCounters } from '../metrics/counters';
import type { LuStats } from '../metrics/lu-stats';
import { log } from '../util/log';
import type { Asc } from './constants';
import { FLAG_MEDIUM_ABSENT, FLAG_SWP, LuShared, UA, uaCondition } from './lu-shared';
import { BufferPool } from './bufpool';
import { TargetPortGroups } from './port-groups';
import { CopyResults } from './copy-results';
import { releaseSpc2 } from './reserve';
import type { SharedPrStore } from './pr-shared';

export interface LuIdentity {
  targetName: string;
  lun: number;
  /** Unit serial number (VPD 80h): generated as 16 upper-case hex digits, or the operator's. */
  serial: string;
  /** NAA designator for VPD 83h: 8 bytes (NAA 3h or 5h) or 16 (NAA 6h). */
  naa: Buffer;
  vendor: string;
  product: string;
  revision: string;
}

export const VENDOR = 'NODETGT';
export const PRODUCT = 'NODETGT-DISK';
export const PRODUCT_CD = 'NODETGT-CD';

/**
 * What the LU presents itself as: 'disk' is a direct-access block device (SBC, peripheral type 00h), 'cd' a
 * read-only CD/DVD device (MMC, type 05h) whose medium is an image file, as tgt's "cd" device type.
 */
export type LuType = 'disk' | 'cd';
export const REVISION = '0001';

/**
 * The identity of a provisioned LU (its provisioning record, src/backstore/prepare.ts): never derived from a path,
 * so that a blank disk made later at the same path is not taken for the old one.
 *
 * NAA format: nodetgt owns no IEEE company_id, so generated designators use NAA 3h "Locally Assigned" (SPC-4):
 * 4 bits NAA = 3h followed by 60 random bits. An operator may set 5h or 6h designators of their own.
 */
export function identityOf(
  targetName: string,
  lun: number,
  stored: { serial: string; naa: string },
  type: LuType = 'disk',
  names: { vendor?: string; product?: string; revision?: string } = {},
): LuIdentity {
  return {
    targetName,
    lun,
    serial: stored.serial,
    naa: Buffer.from(stored.naa, 'hex'),
    // The operator's INQUIRY names (the config's vendor, product, revision) where set; ours otherwise.
    vendor: names.vendor ?? VENDOR,
    product: names.product ?? (type === 'cd' ? PRODUCT_CD : PRODUCT),
    revision: names.revision ?? REVISION,
  };
}

export interface LogicalUnitOptions {
  /** Largest READ/WRITE/VERIFY a single command may ask for (Block Limits VPD). Default 16 MiB. */
  maxTransferBytes?: number;
  /** Optimal transfer length hint (Block Limits VPD). Default 1 MiB. */
  optimalTransferBytes?: number;
  /** MEDIUM ROTATION RATE of VPD B1h: 1 = non-rotating (solid state). Default 1. */
  rotationRate?: number;
  /** MAXIMUM UNMAP LBA COUNT. Default 1 Mi blocks. */
  maxUnmapBlocks?: number;
  /** MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. Default 256. */
  maxUnmapDescriptors?: number;
  /**
   * MAXIMUM WRITE SAME LENGTH (blocks). Default 65535: longer ranges take several commands, and a WRITE SAME
   * never covers more than a plain READ of the same range could check.
   */
  maxWriteSameBlocks?: number;
  /** RELATIVE TARGET PORT IDENTIFIER reported in VPD 83h when the target has no ALUA. Default 1. */
  relativeTargetPort?: number;
  /** The target's port groups on this worker (implicit ALUA), shared by its LUs; default: no ALUA. */
  ports?: TargetPortGroups;
  /** Where Data-In buffers come from (shared per worker). */
  pool?: BufferPool;
  /** This LU's fault counters (metrics); none in unit tests. */
  faults?: LuFaultCounters;
  /** This thread's writer of the LU's statistics (src/metrics/lu-stats.ts); none in unit tests. */
  stats?: LuStats;
  /** This thread's handle on the LU's shared state; a private one when not given (unit tests). */
  shared?: LuShared;
  /** Device type; default 'disk'. A 'cd' LU is always removable and needs a read-only backstore. */
  type?: LuType;
  /** A disk whose medium can be ejected and loaded (INQUIRY RMB = 1). Default false; ignored for 'cd'. */
  removable?: boolean;
  /** Where the persistent reservation state is kept while APTPL is in effect (src/scsi/pr-aptpl.ts); none: not kept. */
  prFile?: string;
  /** Reservations kept in the storage cluster for every gateway (src/scsi/pr-shared.ts), instead of prFile. */
  prStore?: SharedPrStore;
  /**
   * The WRITE ATOMIC(16) journal directory (src/backstore/atomic-journal.ts). Given: the command is offered,
   * journaled. Not given: offered only on the null backstore (nothing is stored, so nothing can be torn).
   */
  atomicJournalDir?: string;
}

/** The backstore operation behind a fault. */
export type IoOp = 'read' | 'write' | 'flush' | 'unmap';

export interface LuLimits {
  maxTransferBlocks: number;
  optimalTransferBlocks: number;
  /**
   * Logical blocks per physical block (a power of two, at least 1): the backstore's physical block (the
   * file system's block for a file) over the logical block size. READ CAPACITY(16) reports it as LBPPBE;
   * Block Limits reports it as OPTIMAL TRANSFER LENGTH GRANULARITY and OPTIMAL UNMAP GRANULARITY.
   */
  granularityBlocks: number;
  /** MAXIMUM COMPARE AND WRITE LENGTH (blocks, 1..255). */
  maxCompareAndWriteBlocks: number;
  /** MAXIMUM ATOMIC TRANSFER LENGTH (blocks); 0 where WRITE ATOMIC(16) is not offered. */
  maxAtomicTransferBlocks: number;
  /**
   * ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY (blocks): the physical block (granularityBlocks).
   * An atomic write then covers whole physical blocks, so a host crash in the middle of a device's
   * read-modify-write of a physical block (512e) can only hurt blocks its journal record holds and replays.
   */
  atomicUnitBlocks: number;
  maxUnmapBlocks: number;
  maxUnmapDescriptors: number;
  maxWriteSameBlocks: number;
  rotationRate: number;
  relativeTargetPort: number;
}

const sharedPool = new BufferPool();

/** Logical blocks per physical block: 1 unless the backstore reports a larger power-of-two physical block. */
function physicalBlocks(logical: number, physical: number | undefined): number {
  if (physical === undefined || physical <= logical || (physical & (physical - 1)) !== 0) return 1;
  return Math.min(physical / logical, 1 << 15); // LBPPBE is a 4-bit exponent
}

export class LogicalUnit {
  readonly blockSize: number;
  private blocks: number;
  readonly limits: LuLimits;
  readonly pool: BufferPool;
  /** The LU's state shared by every worker (see lu-shared.ts). */
  readonly shared: LuShared;
  /** EXTENDED COPY results held for RECEIVE COPY RESULTS (this worker's nexuses; see copy-results.ts). */
  readonly copyResults = new CopyResults();
  readonly type: LuType;
  /** INQUIRY RMB: the medium can be ejected and loaded (START STOP UNIT with LOEJ). */
  readonly removable: boolean;
  /** The APTPL file of this LU (LogicalUnitOptions.prFile). */
  readonly prFile?: string;
  /** LogicalUnitOptions.prStore: set for an LU whose reservations several gateways share. */
  readonly prStore?: SharedPrStore;
  /**
   * How WRITE ATOMIC(16) is offered: through the journal in atomicJournalDir; 'trivial' on the null backstore,
   * which stores nothing (every read returns zeros, so no reader can see part of a write); 'store' where the
   * backstore applies a write of up to atomicWriteMax whole by itself; 'cluster' where it also applies longer
   * writes whole when they fit one of its objects (appliesWhole) and keeps a redo journal for the others
   * (redoJournal; RBD: one RADOS op, and the journal in the cluster), which is used only while this gateway is
   * the target's sole writer (clusterJournal), else it is offered as 'store'; null: not offered.
   */
  readonly atomicWrites: 'journal' | 'trivial' | 'store' | 'cluster' | null;
  readonly atomicJournalDir?: string;
  private readonly faults?: LuFaultCounters;
  /** Commands, bytes, sense keys and latency of this LU, written by the session layer as commands end. */
  readonly stats?: LuStats;
  /** The target's port groups and this gateway's access state (src/scsi/port-groups.ts). */
  readonly ports: TargetPortGroups;

  constructor(
    readonly backstore: Backstore,
    readonly identity: LuIdentity,
    opts: LogicalUnitOptions = {},
  ) {
    const bs = backstore.blockSize;
    if (!Number.isInteger(bs) || bs < 512 || (bs & (bs - 1)) !== 0) throw new Error(`bad block size ${bs}`);
    if (backstore.sizeBytes % bs !== 0) throw new Error('backstore size is not a multiple of the block size');
    this.blockSize = bs;
    this.blocks = backstore.sizeBytes / bs;
    const blocks = (bytes: number) => Math.max(1, Math.floor(bytes / bs));
    this.limits = {
      maxTransferBlocks: blocks(opts.maxTransferBytes ?? 16 * 1024 * 1024),
      optimalTransferBlocks: blocks(opts.optimalTransferBytes ?? 1024 * 1024),
      granularityBlocks: physicalBlocks(bs, backstore.physicalBlockSize),
      // At most 128 KiB compared (255 blocks of 512 bytes, 32 of 4096): the compare buffer and the write are
      // held under the range lock, which stops every other write to the stripes it covers.
      // A store that compares and writes by itself may take less (librbd: 512 bytes, so 0 for 4096-byte blocks,
      // and then every COMPARE AND WRITE is refused rather than made non-atomic across gateways).
      maxCompareAndWriteBlocks: Math.min(
        255,
        blocks(128 * 1024),
        backstore.compareAndWriteMax === undefined ? 255 : Math.floor(backstore.compareAndWriteMax / bs),
      ),
      maxAtomicTransferBlocks: 0,
      atomicUnitBlocks: 0,
      maxUnmapBlocks: opts.maxUnmapBlocks ?? 1024 * 1024,
      maxUnmapDescriptors: opts.maxUnmapDescriptors ?? 256,
      maxWriteSameBlocks: opts.maxWriteSameBlocks ?? 0xffff,
      rotationRate: opts.rotationRate ?? 1,
      relativeTargetPort: opts.relativeTargetPort ?? 1,
    };
    this.pool = opts.pool ?? sharedPool;
    this.faults = opts.faults;
    this.stats = opts.stats;
    this.shared = opts.shared ?? new LuShared();
    this.ports = opts.ports ?? new TargetPortGroups();
    this.type = opts.type ?? 'disk';
    this.removable = this.type === 'cd' || opts.removable === true;
    if (this.type === 'cd' && !backstore.readOnly) throw new Error('a cd LU needs a read-only backstore');
    this.prFile = opts.prFile;
    this.prStore = opts.prStore;
    this.atomicJournalDir = opts.atomicJournalDir;
    const nullStore = backstore instanceof NullBackstore;
    const whole = backstore.atomicWriteMax !== undefined && backstore.atomicWriteMax >= bs;
    this.atomicWrites =
      this.type !== 'disk'
        ? null
        : opts.atomicJournalDir !== undefined
          ? 'journal'
          : nullStore
            ? 'trivial'
            : whole && backstore.redoJournal !== undefined && backstore.appliesWhole !== undefined
              ? 'cluster'
              : whole
                ? 'store'
                : null;
    this.refreshAtomicLimits();
    backstore.onFault = (e) => this.ioFault(null, e);
  }

  /**
   * The redo journal of this worker's lane for atomic writes of a 'cluster' store that cross its objects, or
   * undefined when they are not offered now: another gateway may write the LU too (two active port groups, or
   * a group with several ports), so replaying a record after a crash could overwrite newer data (see
   * src/backstore/rbd-atomic.ts), or the lane has no slot.
   */
  get clusterJournal(): RedoJournal | undefined {
    if (this.atomicWrites !== 'cluster' || !this.ports.soleWriter) return undefined;
    return this.backstore.redoJournal!(this.relativeTargetPort, this.shared.lane);
  }

  /**
   * ATOMIC limits (Block Limits VPD) for the way atomic writes are offered now. Called at construction and after
   * a live change of the target's port groups (src/worker/targets.ts), which may turn a 'cluster' store's
   * journal on or off: the portal raises INQUIRY DATA HAS CHANGED when they shrink (atomicLimitsShrink).
   */
  refreshAtomicLimits(): void {
    const l = this.limits;
    const blocks = (bytes: number) => Math.max(1, Math.floor(bytes / this.blockSize));
    if (this.atomicWrites === null) {
      l.atomicUnitBlocks = l.maxAtomicTransferBlocks = 0;
    } else if (this.atomicWrites === 'store' || (this.atomicWrites === 'cluster' && !this.clusterJournal)) {
      // Aligned to its own length, a write of at most atomicWriteMax stays inside what the store applies whole.
      l.atomicUnitBlocks = l.maxAtomicTransferBlocks = blocks(this.backstore.atomicWriteMax!);
    } else {
      // 1 MiB per atomic write: the record is written twice (journal, then in place) and held in the range lock.
      const unit = l.granularityBlocks;
      const max = Math.min(l.maxTransferBlocks, blocks(1024 * 1024));
      l.atomicUnitBlocks = unit;
      l.maxAtomicTransferBlocks = max - (max % unit);
    }
  }

  /**
   * The RELATIVE TARGET PORT IDENTIFIER of the port commands arrive through: this gateway's, under ALUA (each
   * gateway is one port of the target), else the single port's.
   */
  get relativeTargetPort(): number {
    return this.ports.relativePort ?? this.limits.relativeTargetPort;
  }

  /** Capacity in logical blocks (READ CAPACITY); changes only by resize(). */
  get numBlocks(): number {
    return this.blocks;
  }

  /**
   * A live resize (src/portal/apply.ts): the backing store has been grown, or will be shrunk, to `sizeBytes` by
   * the portal; from now on this worker serves that capacity. Whoever resizes raises CAPACITY DATA HAS CHANGED.
   * Throws when the backstore cannot take that size (it keeps the old one).
   */
  resize(sizeBytes: number): void {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % this.blockSize !== 0)
      throw new RangeError(
        `size ${sizeBytes} is not a positive multiple of the block size ${this.blockSize}`,
      );
    if (!this.backstore.resize) throw new Error('this backstore cannot be resized');
    this.backstore.resize(sizeBytes);
    this.blocks = sizeBytes / this.blockSize;
  }

  /**
   * A backstore operation failed (op), or the backstore found a fault by itself (op null): count it for this LU
   * and log it (the logger rate-limits repeated lines). ENOSPC, and EDQUOT (a Ceph pool's quota reached), count as
   * noSpace instead of an error of the operation; a backing file that shrank ('ESHRUNK') also sets the shrunk gauge.
   */
  ioFault(op: IoOp | null, e: unknown): void {
    const code = (e as { code?: unknown } | null)?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT') this.faults?.inc('noSpace');
    else if (op !== null) this.faults?.inc(`${op}Errors`);
    if (code === 'ESHRUNK') this.faults?.set('shrunk', 1);
    log.error(code === 'ESHRUNK' ? 'backing file shrank under the LU' : 'backstore I/O error', {
      target: this.identity.targetName,
      lun: this.identity.lun,
      op: op ?? 'size check',
      error: e instanceof Error ? e.message : String(e),
    });
  }

  /**
   * A command refused for a malformed request (the caller throws the ScsiError with the sense): counted for
   * this LU (badRequests) and logged (rate-limited by the logger). Not for ordinary refusals such as a read
   * past the end, which initiators make on purpose.
   */
  badRequest(what: string, detail: Record<string, unknown> = {}): void {
    this.faults?.inc('badRequests');
    log.warn(`refused: ${what}`, { target: this.identity.targetName, lun: this.identity.lun, ...detail });
  }

  /** SWP bit of the Control mode page: while set, the medium is write protected (for every worker). */
  get softwareWriteProtect(): boolean {
    return this.shared.flag(FLAG_SWP);
  }

  set softwareWriteProtect(on: boolean) {
    this.shared.setFlag(FLAG_SWP, on);
  }

  /** Writes are refused: the backstore is read-only or SWP is set. */
  get writeProtected(): boolean {
    return this.backstore.readOnly || this.softwareWriteProtect;
  }

  /** The medium is loaded (always, for a LU that is not removable); shared by every worker. */
  get mediumPresent(): boolean {
    return !this.shared.flag(FLAG_MEDIUM_ABSENT);
  }

  /** Logical block provisioning management enabled (LBPME): UNMAP and WRITE SAME with UNMAP are offered. */
  get thinProvisioned(): boolean {
    return this.backstore.thinProvisioned;
  }

  // ---- I_T nexus state (shared by every worker) --------------------------------------------------------

  /** Remember an I_T nexus so that later unit attentions reach it. */
  noteNexus(nexus: string): void {
    if (this.shared.slotOf(nexus) < 0)
      // Every slot is taken (MAX_NEXUS I_T nexuses on this LU): this one is served but hears no unit attention.
      log.warn('LU has no slot left for another I_T nexus: it gets no unit attentions', {
        target: this.identity.targetName,
        lun: this.identity.lun,
        nexus,
      });
  }

  /** Establish a unit attention for every I_T nexus using the LU (on any worker) except `except`. */
  establishUnitAttention(asc: Asc, except?: string): void {
    const cond = uaCondition(asc);
    if (cond === undefined) throw new Error(`no unit attention condition for ${asc[0]}/${asc[1]}`);
    this.shared.establish(cond, { except });
  }

  /** Remove and return the unit attention to report next to this nexus. */
  takeUnitAttention(nexus: string): Asc | undefined {
    return this.shared.takeUnitAttention(nexus);
  }

  hasUnitAttention(nexus: string): boolean {
    return this.shared.hasUnitAttention(nexus);
  }

  setPreventRemoval(nexus: string, prevent: boolean): void {
    this.shared.setPrevent(nexus, prevent);
  }

  get removalPrevented(): boolean {
    return this.shared.removalPrevented;
  }

  /**
   * LOGICAL UNIT RESET (SAM-5): drop prevent-removal state and the SPC-2 reservation, tell every nexus on every
   * worker, and end the tasks in progress (they see the reset epoch move and complete with TASK ABORTED).
   * Persistent reservations stay. Returns the epoch left behind (see LuShared.settle).
   */
  reset(): number {
    this.shared.clearAllPrevent();
    releaseSpc2(this);
    const before = this.shared.bumpResetEpoch();
    this.shared.establish(UA.BUS_DEVICE_RESET);
    return before;
  }

  /**
   * CLEAR TASK SET with TST = 000b (one task set for every I_T nexus) and TAS = 1 (the control mode page):
   * every nexus's tasks end, other nexuses' with TASK ABORTED status, so no unit attention (SAM-5 5.6). The
   * caller ends its own nexus's tasks silently. Returns the epoch left behind (see LuShared.settle).
   */
  clearTaskSet(): number {
    return this.shared.bumpResetEpoch();
  }

  /** The I_T nexus is gone (logout, connection loss): forget its state; its SPC-2 reservation ends. */
  nexusLost(nexus: string): void {
    this.copyResults.nexusLost(nexus);
    releaseSpc2(this, nexus);
    this.shared.releaseNexus(nexus);
  }
}
