/**
 * SBC-4 WRITE ATOMIC(16) (9Ch): all of the blocks are written, or none, as any reader sees them, even across a
 * kill -9 of the target or a crash of the host.
 *
 * - Against other commands: the whole write runs in LuShared.exclusive over its range, which no plain write
 *   and no other atomic command on any worker overlaps; a read may still see the range mid-way only across
 *   its own stripes' writes, as for COMPARE AND WRITE.
 * - Against a crash: the redo journal of src/backstore/atomic-journal.ts: record durable, data written in place
 *   with FUA, record cleared. Start-up (the portal thread, before workers serve) replays a complete record and
 *   discards a torn one. Each worker has its own journal file per LU and runs its atomic writes to an LU one at
 *   a time (the journal holds one record); the journal is taken before the range, so that two atomic writes
 *   of one worker never wait on each other's ranges while holding the journal.
 *
 * - On an RBD LU ('cluster'): a write inside one RADOS object is one OSD op and needs no journal; one across
 *   objects takes the same steps with the lane's slot of the journal object in the cluster
 *   (src/backstore/rbd-atomic.ts), offered only while this gateway is the target's sole writer; the portal
 *   replays (or, where another gateway may have written since, discards) records before this gateway serves.
 *
 * Limits (Block Limits VPD): MAXIMUM ATOMIC TRANSFER LENGTH 1 MiB of blocks; ATOMIC ALIGNMENT and ATOMIC
 * TRANSFER LENGTH GRANULARITY the physical block (LuLimits.atomicUnitBlocks says why); no atomic boundaries:
 * a non-zero ATOMIC BOUNDARY is outside the usage map and refused by the dispatcher with INVALID FIELD IN CDB.
 */
import { AtomicJournal, crashNow, crashPoint, halfOf, laneJournalPath } from '../backstore/atomic-journal';
import { checkRange, readU64, takeBytes, totalLength } from './cdb';
import { AscQ, SenseKey } from './constants';
import type { RedoJournal } from '../backstore/types';
import type { LogicalUnit } from './lu';
import { GOOD, ioError, requireWritable, writeMedium } from './sbc';
import { ScsiError, invalidFieldInCdb } from './sense';
import type { CommandContext, ScsiResult } from './types';

const FUA = 0x08;

/** LBA bytes 2-9, TRANSFER LENGTH bytes 12-13 (bytes 10-11 are ATOMIC BOUNDARY). */
function atomicRange(cdb: Buffer): { lba: number; blocks: number } {
  return { lba: readU64(cdb, 2), blocks: cdb.readUInt16BE(12) };
}

export function writeAtomicDataOutLength(cdb: Buffer, lu: LogicalUnit): number {
  return atomicRange(cdb).blocks * lu.blockSize;
}

/**
 * Arrival check and the first checks of exec: the range, then the length against MAXIMUM ATOMIC TRANSFER LENGTH,
 * the LBA against ATOMIC ALIGNMENT and the length against ATOMIC TRANSFER LENGTH GRANULARITY (SBC-4 WRITE ATOMIC).
 */
export function checkWriteAtomic(cdb: Buffer, lu: LogicalUnit): void {
  const { lba, blocks } = atomicRange(cdb);
  checkRange(lu.numBlocks, lba, blocks);
  const l = lu.limits;
  let field: number | undefined;
  if (blocks > l.maxAtomicTransferBlocks) field = 12;
  else if (lba % l.atomicUnitBlocks !== 0) field = 2;
  else if (blocks % l.atomicUnitBlocks !== 0) field = 12;
  if (field === undefined) return;
  lu.badRequest('WRITE ATOMIC outside the Block Limits atomic maximum, alignment or granularity', {
    lba,
    blocks,
    max: l.maxAtomicTransferBlocks,
    unit: l.atomicUnitBlocks,
  });
  throw invalidFieldInCdb(field, 7);
}

/** A worker's journal of one LU and the queue its atomic writes take turns in. */
interface Lane {
  journal: RedoJournal;
  tail: Promise<void>;
}
const lanes = new WeakMap<LogicalUnit, Lane>();

/**
 * The lane of `journal` (this worker's on the LU). A cluster journal may change at a live ALUA change (another
 * relative target port): the new one takes its turn after the old one's last write.
 */
function laneOf(lu: LogicalUnit, journal: () => RedoJournal, cluster?: RedoJournal): Lane {
  let l = lanes.get(lu);
  if (!l) lanes.set(lu, (l = { journal: cluster ?? journal(), tail: Promise.resolve() }));
  else if (cluster !== undefined && l.journal !== cluster)
    lanes.set(lu, (l = { journal: cluster, tail: l.tail }));
  return l;
}

/** Run fn after every atomic write this worker queued before it on the LU (one journal record at a time). */
function inTurn<T>(lane: Lane, fn: () => Promise<T>): Promise<T> {
  const run = lane.tail.then(fn);
  lane.tail = run.then(
    () => undefined,
    () => undefined,
  );
  return run;
}

export async function writeAtomic16(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  checkWriteAtomic(cdb, lu);
  const { lba, blocks } = atomicRange(cdb);
  requireWritable(ctx, lu);
  if (blocks === 0) return GOOD;
  const bs = lu.blockSize;
  const len = blocks * bs;
  // All or nothing: a Data-Out shorter than the CDB's range cannot be written as one atomic write.
  if (totalLength(task.dataOut) < len) {
    lu.badRequest('WRITE ATOMIC Data-Out shorter than its transfer length', {
      expected: len,
      received: totalLength(task.dataOut),
    });
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_FIELD_IN_CDB);
  }
  const data = takeBytes(task.dataOut, len);
  const dir = lu.atomicJournalDir;
  let lane: Lane | undefined;
  if (lu.atomicWrites === 'journal' && dir !== undefined)
    lane = laneOf(lu, () => new AtomicJournal(laneJournalPath(dir, lu.shared.lane)));
  else if (lu.atomicWrites === 'cluster' && !lu.backstore.appliesWhole!(lba * bs, len)) {
    const journal = lu.clusterJournal;
    // Not reached while the limits follow clusterJournal (checkWriteAtomic above refuses such a write first);
    // kept so that a crossing write is never sent unjournaled.
    if (journal === undefined) {
      lu.badRequest('WRITE ATOMIC across objects while another gateway may write the LU', { lba, blocks });
      throw invalidFieldInCdb(12, 7);
    }
    lane = laneOf(lu, () => journal, journal);
  }
  if (lane === undefined) {
    // The null backstore: nothing is stored, so the write is whole by construction. A store that applies it
    // whole by itself (RBD inside one object): one write, inside the range lock against this process's other
    // commands.
    await lu.shared.exclusive(lba * bs, len, () => writeMedium(lu, lba, data, (cdb[1] & FUA) !== 0, false));
    return GOOD;
  }
  const l = lane;
  await inTurn(l, () => lu.shared.exclusive(lba * bs, len, () => journaled(lu, l.journal, lba, data)));
  return GOOD;
}

/** Steps (a) to (c) of the journal protocol, inside the range lock. */
async function journaled(
  lu: LogicalUnit,
  journal: RedoJournal,
  lba: number,
  data: readonly Buffer[],
): Promise<void> {
  const blocks = totalLength(data) / lu.blockSize;
  if (journal.broken !== null) {
    throw ioError(
      lu,
      'write',
      new Error(`atomic write journal ${journal.file} unusable: ${journal.broken}`),
      lba,
    );
  }
  try {
    await journal.append(lba, blocks, lu.blockSize, data);
  } catch (e) {
    // Nothing was written in place: the command fails whole. A record that might still become durable would
    // be replayed at start-up over later writes, so it is cleared; if even that fails the lane stops here.
    await journal.invalidate().catch((e2: Error) => {
      journal.broken ??= `record could not be cleared after a failed append: ${e2.message}`;
    });
    throw ioError(lu, 'write', e, lba);
  }
  const crash = crashPoint();
  if (crash === 'after-journal') crashNow();
  if (crash === 'mid-write') {
    await writeMedium(lu, lba, halfOf(data), true, false);
    crashNow();
  }
  try {
    // FUA: the data in place is durable before the record that could replay it is cleared.
    await writeMedium(lu, lba, data, true, false);
  } catch (e) {
    // The record stays valid and is replayed at the next start (an RBD LU's: also when another gateway takes
    // over); this lane's journal is not reused before that.
    journal.broken = `in-place write failed, record kept for replay at start-up: ${(e as Error).message}`;
    throw e;
  }
  try {
    await journal.invalidate();
  } catch (e) {
    journal.broken = `record could not be cleared: ${(e as Error).message}`;
    throw ioError(lu, 'write', e, lba);
  }
}
