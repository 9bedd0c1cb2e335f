/**
 * The WRITE ATOMIC(16) redo journal of an RBD LU, kept in the Ceph cluster beside the image rather than on the
 * gateway's disk: a gateway that takes over after a failover must be able to roll a dead gateway's torn write
 * forward, and a gateway that comes back must not replay a stale local record over data written since through
 * another gateway.
 *
 * One RADOS object per (image, relative target port), `nodetgt.atomic.<image>.<port>`, in the image's pool and
 * namespace, holds one slot per worker lane (lane n at (n - 1) * SLOT_BYTES): the record of
 * src/backstore/atomic-journal.ts (64-byte header with magic, sequence, LBA, blocks, block size, CRC32C over
 * header and data; then the data). Writing a slot is one rados write, which the OSD applies whole or not at all;
 * clearing it is one write of a zero header. At most RBD_JOURNAL_LANES lanes, so the object stays near 64 MiB,
 * half of osd_max_object_size (128 MiB by default).
 *
 * Only a write that crosses an object boundary of the image needs the journal (src/scsi/atomic-write.ts): one
 * that stays inside one object is one OSD op already. The journal is offered only while this gateway is the
 * target's only writer (soleWriter in src/config/alua.ts), because replaying a record is right only if nobody
 * wrote its range since it was recorded: with two active gateways, another one may have, between a crash and the
 * replay. Replay (recoverRbdAtomicJournals, on the portal thread) runs before this gateway serves media commands:
 * at start-up when it is the sole writer, and at a live ALUA change that makes it so (src/portal/apply.ts); it
 * reads every port's object of the image, so that a new active gateway completes the old one's write.
 */
import type { Config, LunConfig, TargetConfig } from '../config/schema';
import { allPorts, isActive, localState, SINGLE_PORT, soleWriter, type AluaConfig } from '../config/alua';
import { RbdImage } from '../native/rbd';
import {
  checkRecordFits,
  crashNow,
  crashPoint,
  decodeJournal,
  encodeHeader,
  halfOf,
  HEADER_BYTES,
  recordDataBytes,
  type JournalRecord,
  type RecoveryAction,
} from './atomic-journal';
import type { RedoJournal } from './types';

/** Lanes (worker rows 1..64) with a slot: a worker on a higher lane offers only single-object atomic writes. */
export const RBD_JOURNAL_LANES = 64;
/** The largest record's data: MAXIMUM ATOMIC TRANSFER LENGTH is at most 1 MiB (src/scsi/lu.ts). */
export const RBD_RECORD_MAX = 1024 * 1024;
const SLOT_BYTES = RBD_RECORD_MAX + 4096;

/** The journal object of one image and one gateway (relative target port). */
export function atomicObjectName(image: string, port: number): string {
  return `nodetgt.atomic.${image}.${port}`;
}

function slotOffset(lane: number): number {
  if (!Number.isInteger(lane) || lane < 1 || lane > RBD_JOURNAL_LANES)
    throw new RangeError(`bad lane ${lane}`);
  return (lane - 1) * SLOT_BYTES;
}

/** One lane's slot in one gateway's journal object. Callers serialize its use (src/scsi/atomic-write.ts). */
export class RbdAtomicJournal implements RedoJournal {
  broken: string | null = null;
  readonly file: string;
  private readonly offset: number;
  // From the clock, as the file journal: increasing across restarts, comparable between gateways in logs.
  private seq = BigInt(Date.now()) * 1000n;

  constructor(
    private readonly image: RbdImage,
    readonly object: string,
    lane: number,
  ) {
    this.offset = slotOffset(lane);
    this.file = `rados object ${object} slot ${lane}`;
  }

  async append(lba: number, blocks: number, blockSize: number, data: readonly Buffer[]): Promise<bigint> {
    if (blocks * blockSize > RBD_RECORD_MAX) throw new RangeError(`record of ${blocks * blockSize} bytes`);
    const seq = ++this.seq;
    const header = encodeHeader({ seq, lba, blocks, blockSize }, data);
    if (crashPoint() === 'torn-journal') {
      // What no OSD does (a write is whole), but what a damaged object would hold: replay must discard it.
      await this.image.objWrite(this.object, this.offset, [header, ...halfOf(data)]);
      crashNow();
    }
    await this.image.objWrite(this.object, this.offset, [header, ...data]);
    return seq;
  }

  invalidate(): Promise<void> {
    return this.image.objWrite(this.object, this.offset, [Buffer.alloc(HEADER_BYTES)]);
  }
}

// ---- replay ------------------------------------------------------------------------------------------------

export interface RbdReplayTarget {
  blockSize: number;
  /** Capacity in blocks: a record beyond it is not this LU's. */
  numBlocks: number;
}

/** One slot's record at rest: null when idle. Throws when a complete record cannot be applied (it is kept). */
async function replaySlot(
  image: RbdImage,
  object: string,
  lane: number,
  lu: RbdReplayTarget,
  discard: boolean,
): Promise<RecoveryAction | null> {
  const off = slotOffset(lane);
  const file = `rados object ${object} slot ${lane}`;
  const head = await image.objRead(object, off, HEADER_BYTES);
  if (head === null || head.length === 0 || head.subarray(0, 8).every((b) => b === 0)) return null;
  const len = recordDataBytes(head);
  const buf =
    len > 0 && len <= RBD_RECORD_MAX
      ? ((await image.objRead(object, off, HEADER_BYTES + len)) ?? head)
      : head;
  const d = decodeJournal(buf);
  const clear = () => image.objWrite(object, off, [Buffer.alloc(HEADER_BYTES)]);
  if (d.kind === 'idle') return null;
  if (d.kind === 'torn') {
    await clear();
    return { file, outcome: 'discarded', why: d.why };
  }
  const r: JournalRecord = d.record;
  if (discard) {
    await clear();
    return { file, outcome: 'discarded', why: STALE, record: r };
  }
  checkRecordFits(file, r, lu);
  await image.writev(r.lba * r.blockSize, [d.data]);
  await image.flush();
  await clear();
  return { file, outcome: 'applied', record: r };
}

const STALE =
  'complete, but another gateway may have written its range since (this gateway was not the sole writer when ' +
  'it began to serve)';

/**
 * Bring the records of an image's journal objects to rest: a complete one is written in place (then cleared),
 * or with `discard` only cleared; a torn one cleared. All lanes of every port in `ports`, or only `lane`.
 * Records pending at the same time never overlap (each was written inside its range lock by the one writer of
 * the time), so the order does not matter; they are reported in the order they were read.
 */
export async function replayRbdJournals(
  image: RbdImage,
  imageName: string,
  ports: readonly number[],
  lu: RbdReplayTarget,
  opts: { lane?: number; discard?: boolean } = {},
): Promise<RecoveryAction[]> {
  const out: RecoveryAction[] = [];
  const lane = opts.lane;
  if (lane !== undefined && lane > RBD_JOURNAL_LANES) return out;
  for (const port of ports) {
    const object = atomicObjectName(imageName, port);
    const size = await image.objSize(object);
    if (size === null) continue;
    const lanes =
      lane !== undefined
        ? [lane]
        : Array.from({ length: Math.min(RBD_JOURNAL_LANES, Math.ceil(size / SLOT_BYTES)) }, (_, i) => i + 1);
    for (const n of lanes) {
      const a = await replaySlot(image, object, n, lu, opts.discard === true);
      if (a) out.push(a);
    }
  }
  return out;
}

// ---- when (the portal thread) ------------------------------------------------------------------------------------

/** Whether this gateway serves media commands under `alua` (always without ALUA). */
function serving(alua: AluaConfig | undefined): boolean {
  return isActive(localState(alua));
}

/**
 * What to do with a target's pending records when its port groups go from `before` (null: this gateway did not
 * serve the target yet: start-up, a new target or LU) to `after`, before a worker serves in the new state:
 *  - it begins to serve as the sole writer: 'replay' (the only writer since the records were made is the one
 *    that made them, which is gone or fenced, as the README's failover asks);
 *  - it begins to serve beside another active gateway: 'discard', since the other one may already have written
 *    a record's range, and a later replay would overwrite newer data;
 *  - it was serving beside others and becomes the sole writer: 'discard', for the same reason (it has served);
 *  - otherwise nothing: it does not serve, or nothing changed for the journal.
 * A discarded complete record leaves its write as torn as the crash left it: the price of a failover that made
 * another gateway active before the old one was taken out of the active groups.
 */
export function journalAction(
  before: AluaConfig | undefined | null,
  after: AluaConfig | undefined,
): 'replay' | 'discard' | null {
  if (!serving(after)) return null;
  if (before === null || !serving(before)) return soleWriter(after) ? 'replay' : 'discard';
  return !soleWriter(before) && soleWriter(after) ? 'discard' : null;
}

/**
 * True when atomic writes across objects stop being offered on a gateway that keeps serving (the sole writer
 * gets company): Block Limits shrink to 4 KiB under a host that may have read 1 MiB, so the portal raises
 * INQUIRY DATA HAS CHANGED. Limits that grow (a failover to this gateway) are not announced beyond the
 * ASYMMETRIC ACCESS STATE CHANGED the change raises anyway: the old, smaller limits stay valid; and a gateway that
 * stops serving refuses media commands whatever its limits.
 */
export function atomicLimitsShrink(before: AluaConfig | undefined, after: AluaConfig | undefined): boolean {
  return serving(after) && soleWriter(before) && !soleWriter(after);
}

// ---- every RBD LU of a configuration (the portal thread) -------------------------------------------------------

export interface RbdRecoveryReport {
  target: string;
  lun: number;
  actions: RecoveryAction[];
  /** Set when a complete record could not be applied: the LU must not be served. */
  error?: string;
}

/** Bring one RBD LU's journal objects to rest through an image opened for the purpose on this thread. */
export async function recoverRbdLu(
  t: TargetConfig,
  l: LunConfig,
  opts: { lane?: number; discard?: boolean } = {},
): Promise<RecoveryAction[]> {
  const r = l.rbd!;
  let image: RbdImage;
  try {
    image = await RbdImage.open({
      conf: r.cephConf,
      client: r.clientId,
      pool: r.pool,
      namespace: r.namespace,
      image: r.image,
      opTimeout: r.opTimeout,
    });
  } catch (e) {
    // No image yet (a worker creates it): nothing was ever written to it, so there is no record to replay.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  try {
    const bytes = Math.min(image.stat().size, l.size ?? Infinity);
    const numBlocks = Math.floor(bytes / l.blockSize);
    // A dead worker's lane: only this gateway's object holds its slot. Otherwise every gateway's.
    const ports = opts.lane === undefined ? allPorts(t.alua) : [t.alua?.port ?? SINGLE_PORT];
    return await replayRbdJournals(image, r.image, ports, { blockSize: l.blockSize, numBlocks }, opts);
  } finally {
    await image.close().catch(() => undefined);
  }
}

/** The served RBD disk LUs of a target. */
export function rbdLuns(t: TargetConfig): LunConfig[] {
  return t.luns.filter((l) => l.backstore === 'rbd' && l.type === 'disk' && l.offline === undefined);
}

/**
 * On the portal thread before any worker serves: at start-up (no `lane`), bring the records of every RBD LU to
 * rest as journalAction(null, alua) says; with `lane`, replay one dead worker's slot where this gateway is the
 * sole writer (its lane still holds the ranges). With `offlineOnError`, an LU whose complete record cannot be
 * applied is taken offline: serving it would show a write the crash left torn.
 */
export async function recoverRbdAtomicJournals(
  config: Config,
  opts: { lane?: number; offlineOnError?: boolean } = {},
): Promise<RbdRecoveryReport[]> {
  const out: RbdRecoveryReport[] = [];
  for (const t of config.targets) {
    const action =
      opts.lane !== undefined ? (soleWriter(t.alua) ? 'replay' : null) : journalAction(null, t.alua);
    if (action === null) continue;
    for (const l of rbdLuns(t)) {
      try {
        const actions = await recoverRbdLu(t, l, { lane: opts.lane, discard: action === 'discard' });
        if (actions.length > 0) out.push({ target: t.name, lun: l.lun, actions });
      } catch (e) {
        const why = `WRITE ATOMIC journal replay (cluster) failed: ${(e as Error).message}`;
        if (opts.offlineOnError) l.offline = `${why}; the LU is not served: repair the cause and restart`;
        out.push({ target: t.name, lun: l.lun, actions: [], error: why });
      }
    }
  }
  return out;
}
