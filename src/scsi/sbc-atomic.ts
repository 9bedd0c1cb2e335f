/**
 * SBC atomic read-modify-write commands: COMPARE AND WRITE (89h) and ORWRITE(16) (8Bh).
 *
 * Each runs inside the LU's range lock (LuShared.exclusive), which every worker's plain writes and atomic
 * commands respect: between the read and the write no other write from any session on any worker touches the
 * range, so two COMPARE AND WRITEs racing on one block never both succeed, and a WRITE never lands between a
 * compare and its write. Inside the lock the commands write with writeMedium(..., guarded = false).
 */
import {
  decodeBlockRange,
  firstDifference,
  gatherBytes,
  readU64,
  takeBytes,
  totalLength,
  SliceCursor,
} from './cdb';
import { AscQ, SenseKey } from './constants';
import type { LogicalUnit } from './lu';
import { GOOD, checkBlockTransfer, ioError, readMedium, requireWritable, writeMedium } from './sbc';
import { ScsiError, invalidFieldInCdb, lbaOutOfRange, miscompare } from './sense';
import type { CommandContext, ScsiResult } from './types';

const FUA = 0x08;

// ---- COMPARE AND WRITE -----------------------------------------------------------------------------------

/** LBA bytes 2-9, NUMBER OF LOGICAL BLOCKS byte 13. */
function cawRange(cdb: Buffer): { lba: number; blocks: number } {
  return { lba: readU64(cdb, 2), blocks: cdb[13] };
}

/** Data-Out: the verify instance then the write instance, one block count each. */
export function compareAndWriteDataOutLength(cdb: Buffer, lu: LogicalUnit): number {
  return 2 * cawRange(cdb).blocks * lu.blockSize;
}

/** Arrival check (and the first checks of exec): the count against MAXIMUM COMPARE AND WRITE LENGTH, the range. */
export function checkCompareAndWrite(cdb: Buffer, lu: LogicalUnit): void {
  const { lba, blocks } = cawRange(cdb);
  if (blocks > lu.limits.maxCompareAndWriteBlocks) {
    lu.badRequest('COMPARE AND WRITE longer than MAXIMUM COMPARE AND WRITE LENGTH', {
      blocks,
      max: lu.limits.maxCompareAndWriteBlocks,
    });
    throw invalidFieldInCdb(13, 7);
  }
  if (lba >= lu.numBlocks || lba + blocks > lu.numBlocks) throw lbaOutOfRange();
}

/**
 * SBC-3 COMPARE AND WRITE: read the blocks, compare them with the verify instance and, only when every byte
 * matches, write the write instance. A difference ends in MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION
 * with the offset of the first differing byte in INFORMATION, and nothing written. DPO needs no action;
 * FUA makes the write durable before GOOD.
 */
export async function compareAndWrite(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  checkCompareAndWrite(cdb, lu);
  const { lba, blocks } = cawRange(cdb);
  requireWritable(ctx, lu);
  const len = blocks * lu.blockSize;
  // Both instances are needed whole; an initiator that announces another Data-Out length has built a command
  // other than the one the CDB describes (libiscsi CompareAndWrite.InvalidDataOutSize; and 1.19's Simple,
  // which sends 256 blocks of data with the 8-bit count wrapped to 0).
  if (task.expectedLength !== 2 * len || totalLength(task.dataOut) < 2 * len) {
    lu.badRequest('COMPARE AND WRITE Data-Out length', { expected: 2 * len, edtl: task.expectedLength });
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_FIELD_IN_CDB);
  }
  if (blocks === 0) return GOOD; // SBC-3: no read, no compare, no write, not an error
  const cursor = new SliceCursor(task.dataOut);
  const verifyData = cursor.take(len);
  const writeData = cursor.take(len);
  const fua = (cdb[1] & FUA) !== 0;
  const bs = lu.blockSize;
  const store = lu.backstore;
  if (store.compareAndWrite) {
    // The store compares and writes in one operation (Ceph RBD: one RADOS op on the OSD), atomic against other
    // gateways too; the range lock still orders it with this process's own writes.
    const verify = gatherBytes(verifyData, len);
    const write = gatherBytes(writeData, len);
    let mismatch: number | null;
    try {
      mismatch = await lu.shared.exclusive(lba * bs, len, () =>
        store.compareAndWrite!(lba * bs, verify, write, fua),
      );
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EINVAL') {
        // A range the store cannot compare and write in one operation (beyond compareAndWriteMax).
        lu.badRequest('COMPARE AND WRITE the backstore cannot do atomically', { lba, blocks });
        throw invalidFieldInCdb(13, 7);
      }
      throw ioError(lu, 'write', e, lba);
    }
    if (mismatch !== null) throw miscompare(mismatch);
    return GOOD;
  }
  await lu.shared.exclusive(lba * bs, len, async () => {
    const medium = lu.pool.acquire(len);
    try {
      await readMedium(lu, lba, medium);
      let pos = 0;
      for (const piece of verifyData) {
        const d = firstDifference(medium.subarray(pos, pos + piece.length), piece);
        if (d >= 0) throw miscompare(pos + d);
        pos += piece.length;
      }
    } finally {
      lu.pool.release(medium);
    }
    await writeMedium(lu, lba, writeData, fua, false);
  });
  return GOOD;
}

// ---- ORWRITE(16) -------------------------------------------------------------------------------------------

/**
 * SBC-3 ORWRITE(16): each block of the range becomes (medium OR Data-Out), read and written under the range
 * lock. ORPROTECT is outside the usage map (no protection information), so non-zero values are refused by the
 * dispatcher. A transfer length of 0 is not an error.
 */
export async function orWrite(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  checkBlockTransfer(cdb, lu);
  const { lba, blocks } = decodeBlockRange(cdb);
  requireWritable(ctx, lu);
  const bs = lu.blockSize;
  // Only whole blocks received are written (EDTL < transfer length), as for WRITE.
  const n = Math.min(blocks, Math.floor(totalLength(task.dataOut) / bs));
  if (n === 0) return GOOD;
  const len = n * bs;
  const data = takeBytes(task.dataOut, len);
  const fua = (cdb[1] & FUA) !== 0;
  await lu.shared.exclusive(lba * bs, len, async () => {
    const medium = lu.pool.acquire(len);
    try {
      await readMedium(lu, lba, medium);
      let pos = 0;
      for (const piece of data) {
        for (let i = 0; i < piece.length; i++) medium[pos + i] |= piece[i];
        pos += piece.length;
      }
      await writeMedium(lu, lba, [medium], fua, false);
    } finally {
      lu.pool.release(medium);
    }
  });
  return GOOD;
}
