/**
 * SBC-3 block commands: READ CAPACITY, READ, WRITE, VERIFY, WRITE AND VERIFY, PRE-FETCH,
 * SYNCHRONIZE CACHE, WRITE SAME, UNMAP, GET LBA STATUS. The atomic commands are in sbc-atomic.ts, SANITIZE in
 * sanitize.ts, READ DEFECT DATA in sbc-defect.ts.
 *
 * Data path rules: a READ fills one pooled buffer straight from the backstore; a WRITE hands the received
 * Data-Out slices to the backstore as they are (trimmed with subarray, never concatenated). When the
 * initiator sent less than the CDB asks for (EDTL < transfer length), only the whole blocks received are
 * written, as the iSCSI residual rules expect; the iSCSI layer reports the residual.
 */
import { AscQ, Opcode, SenseKey, Status } from './constants';
import {
  SliceCursor,
  checkRange,
  decodeBlockRange,
  firstDifference,
  gatherBytes,
  readU64,
  takeBytes,
  totalLength,
  writeU64,
} from './cdb';
import type { MappingExtent } from '../backstore/types';
import { HIST_READ, HIST_WRITE } from '../metrics/lu-stats';
import type { IoOp, LogicalUnit } from './lu';
import {
  ScsiError,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  lbaOutOfRange,
  miscompare,
  parameterListLengthError,
} from './sense';
import type { CommandContext, ScsiResult } from './types';

export const GOOD: ScsiResult = Object.freeze({ status: Status.GOOD });

/** How much medium is read per step when verifying or reading back (keeps memory and latency bounded). */
const CHUNK_BYTES = 1024 * 1024;

// ---- backstore calls with SCSI error mapping ---------------------------------------------------------

/**
 * Errors of a store reached over a network (Ceph RBD): the storage cannot be talked to, so the medium is not
 * what failed. ESHUTDOWN is Ceph's EBLOCKLISTED (this client was fenced); ETIMEDOUT an OSD or mon that did
 * not answer within the op timeout.
 */
const COMMUNICATION_ERRORS: ReadonlySet<unknown> = new Set([
  'ESHUTDOWN',
  'ENOTCONN',
  'ECONNREFUSED',
  'ECONNRESET',
]);

/** A backstore failure as the sense it ends in; every one is counted and logged by the LU. */
export function ioError(lu: LogicalUnit, op: IoOp, e: unknown, lba: number): ScsiError {
  if (e instanceof ScsiError) return e;
  lu.ioFault(op, e);
  const write = op !== 'read';
  const err = e as { code?: unknown; errno?: unknown } | null;
  const code = err?.code;
  // EDQUOT (122) has no name in Node's error map: a pool quota reached is a full pool to the initiator.
  if (write && (code === 'ENOSPC' || code === 'EDQUOT' || err?.errno === -122)) {
    return new ScsiError(SenseKey.DATA_PROTECT, AscQ.SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
  }
  if (code === 'ETIMEDOUT')
    return new ScsiError(SenseKey.HARDWARE_ERROR, AscQ.LOGICAL_UNIT_COMMUNICATION_TIMEOUT, {
      information: lba,
    });
  if (COMMUNICATION_ERRORS.has(code))
    return new ScsiError(SenseKey.HARDWARE_ERROR, AscQ.LOGICAL_UNIT_COMMUNICATION_FAILURE, {
      information: lba,
    });
  return new ScsiError(SenseKey.MEDIUM_ERROR, write ? AscQ.WRITE_ERROR : AscQ.UNRECOVERED_READ_ERROR, {
    information: lba,
  });
}

/*
 * readMedium and writeMedium time the backstore's own share of a READ or WRITE into the LU's backstore histogram
 * (lu-stats.ts) here, around the wait they make anyway: a wrapper around the backstore's method would add a
 * promise reaction to every I/O (timeBackstore wraps only the rarer flush and unmap). The ...Now forms finish
 * at once where the backstore can (Backstore.readNow, writeNow), answering undefined, with no promise made.
 */

const DONE: Promise<void> = Promise.resolve();

export function readMedium(lu: LogicalUnit, lba: number, into: Buffer): Promise<void> {
  try {
    return readMediumNow(lu, lba, into) ?? DONE;
  } catch (e) {
    return Promise.reject(e);
  }
}

export function readMediumNow(lu: LogicalUnit, lba: number, into: Buffer): Promise<void> | undefined {
  const stats = lu.stats;
  const t0 = stats ? performance.now() : 0;
  const store = lu.backstore;
  let p: Promise<void> | undefined;
  try {
    p = store.readNow ? store.readNow(lba * lu.blockSize, into) : store.read(lba * lu.blockSize, into);
  } catch (e) {
    if (stats) stats.backstore(HIST_READ, performance.now() - t0);
    throw ioError(lu, 'read', e, lba);
  }
  if (p === undefined) {
    if (stats) stats.backstore(HIST_READ, performance.now() - t0);
    return undefined;
  }
  return p.then(
    () => {
      if (stats) stats.backstore(HIST_READ, performance.now() - t0);
    },
    (e: unknown) => {
      if (stats) stats.backstore(HIST_READ, performance.now() - t0);
      throw ioError(lu, 'read', e, lba);
    },
  );
}

/**
 * Write to the medium. Plain writes go through the LU's range guard, so that they never overlap an atomic
 * command (COMPARE AND WRITE, ...) on any worker; an atomic command, which holds the range exclusively
 * already, passes guarded = false.
 */
export function writeMedium(
  lu: LogicalUnit,
  lba: number,
  data: readonly Buffer[],
  fua: boolean,
  guarded = true,
): Promise<void> {
  try {
    return writeMediumNow(lu, lba, data, fua, guarded) ?? DONE;
  } catch (e) {
    return Promise.reject(e);
  }
}

export function writeMediumNow(
  lu: LogicalUnit,
  lba: number,
  data: readonly Buffer[],
  fua: boolean,
  guarded = true,
): Promise<void> | undefined {
  const offset = lba * lu.blockSize;
  const stats = lu.stats;
  const store = lu.backstore;
  // From the backstore call, after any wait for the range guard.
  let t0 = -1;
  const submit = (): Promise<void> | undefined => {
    if (stats) t0 = performance.now();
    return store.writeNow ? store.writeNow(offset, data, fua) : store.write(offset, data, fua);
  };
  const timed = (): void => {
    if (stats && t0 >= 0) stats.backstore(HIST_WRITE, performance.now() - t0);
  };
  let p: Promise<void> | undefined;
  try {
    p = guarded ? lu.shared.guardWriteNow(offset, totalLength(data), submit) : submit();
  } catch (e) {
    timed();
    throw ioError(lu, 'write', e, lba);
  }
  if (p === undefined) {
    timed();
    return undefined;
  }
  return p.then(timed, (e: unknown) => {
    timed();
    throw ioError(lu, 'write', e, lba);
  });
}

/** Deallocate blocks (UNMAP, WRITE SAME with UNMAP): a write as far as the range guard is concerned. */
export async function unmapMedium(
  lu: LogicalUnit,
  lba: number,
  blocks: number,
  guarded = true,
): Promise<void> {
  const bs = lu.blockSize;
  try {
    if (!guarded) await lu.backstore.unmap(lba * bs, blocks * bs);
    else await lu.shared.guardWrite(lba * bs, blocks * bs, () => lu.backstore.unmap(lba * bs, blocks * bs));
  } catch (e) {
    throw ioError(lu, 'unmap', e, lba);
  }
}

/**
 * Writes refused: a read-only backstore, or a host mapping that lets this I_T nexus only read the LU, is
 * WRITE PROTECTED (as LIO answers for a write-protected mapped LUN); SWP set by MODE SELECT is SOFTWARE WRITE
 * PROTECTED. `lu` is the LU written (an EXTENDED COPY's destination may be another LU than the one addressed).
 */
export function requireWritable(ctx: Pick<CommandContext, 'nexusReadOnly'>, lu: LogicalUnit): void {
  if (lu.backstore.readOnly || ctx.nexusReadOnly(lu))
    throw new ScsiError(SenseKey.DATA_PROTECT, AscQ.WRITE_PROTECTED);
  if (lu.softwareWriteProtect) throw new ScsiError(SenseKey.DATA_PROTECT, AscQ.SOFTWARE_WRITE_PROTECTED);
}

function checkTransferLength(lu: LogicalUnit, blocks: number, lengthByte: number): void {
  if (blocks > lu.limits.maxTransferBlocks) throw invalidFieldInCdb(lengthByte, 7);
}

/** The pre-check of the block commands that carry Data-Out: range, then transfer length (as exec does). */
export function checkBlockTransfer(cdb: Buffer, lu: LogicalUnit): void {
  const { lba, blocks, lengthByte } = decodeBlockRange(cdb);
  checkRange(lu.numBlocks, lba, blocks);
  checkTransferLength(lu, blocks, lengthByte);
}

/** Whole blocks of Data-Out actually received, capped at what the CDB asks for. */
function receivedBlocks(lu: LogicalUnit, dataOut: readonly Buffer[], wanted: number): number {
  return Math.min(wanted, Math.floor(totalLength(dataOut) / lu.blockSize));
}

// ---- READ CAPACITY -------------------------------------------------------------------------------------

export function readCapacity10(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  // PMI = 0 requires LOGICAL BLOCK ADDRESS = 0.
  if ((cdb[8] & 0x01) === 0 && cdb.readUInt32BE(2) !== 0) throw invalidFieldInCdb(2, 7);
  const data = Buffer.alloc(8);
  const last = lu.numBlocks - 1;
  data.writeUInt32BE(last > 0xffffffff ? 0xffffffff : last, 0);
  data.writeUInt32BE(lu.blockSize, 4);
  return { status: Status.GOOD, dataIn: data };
}

export function readCapacity16(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  if ((cdb[14] & 0x01) === 0 && readU64(cdb, 2) !== 0) throw invalidFieldInCdb(2, 7);
  const alloc = cdb.readUInt32BE(10);
  const data = Buffer.alloc(32);
  writeU64(data, lu.numBlocks - 1, 0);
  data.writeUInt32BE(lu.blockSize, 8);
  // byte 12: P_TYPE/PROT_EN = 0 (no protection information); byte 13: P_I_EXPONENT 0, LBPPBE = log2 of the
  // logical blocks per physical block (as Block Limits' granularity); LOWEST ALIGNED LBA 0 (bytes 14-15).
  data[13] = 31 - Math.clz32(lu.limits.granularityBlocks);
  if (lu.thinProvisioned) data[14] = 0x80 | 0x40; // LBPME, LBPRZ (unmapped blocks read as zeros)
  return { status: Status.GOOD, dataIn: data.subarray(0, Math.min(alloc, data.length)) };
}

// ---- READ ----------------------------------------------------------------------------------------------

/** READ (6, 10, 12, 16): answered at once, with no promise, where the backstore has the data at hand. */
export function read(ctx: CommandContext): ScsiResult | Promise<ScsiResult> {
  const { cdb, lu } = ctx;
  const { lba, blocks, lengthByte } = decodeBlockRange(cdb);
  checkRange(lu.numBlocks, lba, blocks);
  checkTransferLength(lu, blocks, lengthByte);
  if (blocks === 0) return GOOD;
  // DPO, FUA, RARC, FUA_NV are accepted and need no action: reads always see the latest written data.
  const buf = lu.pool.acquire(blocks * lu.blockSize);
  let p: Promise<void> | undefined;
  try {
    p = readMediumNow(lu, lba, buf);
  } catch (e) {
    lu.pool.release(buf);
    throw e;
  }
  if (p === undefined) return { status: Status.GOOD, dataIn: buf, pooled: true };
  return p.then(
    (): ScsiResult => ({ status: Status.GOOD, dataIn: buf, pooled: true }),
    (e: unknown) => {
      lu.pool.release(buf);
      throw e;
    },
  );
}

// ---- WRITE ---------------------------------------------------------------------------------------------

/** WRITE (6, 10, 12, 16): answered at once, with no promise, where the backstore writes at once. */
export function write(ctx: CommandContext): ScsiResult | Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const { lba, blocks, lengthByte } = decodeBlockRange(cdb);
  const six = lengthByte === 4;
  checkRange(lu.numBlocks, lba, blocks);
  checkTransferLength(lu, blocks, lengthByte);
  requireWritable(ctx, lu);
  const n = receivedBlocks(lu, task.dataOut, blocks);
  if (n === 0) return GOOD;
  const fua = !six && (cdb[1] & 0x08) !== 0;
  const p = writeMediumNow(lu, lba, takeBytes(task.dataOut, n * lu.blockSize), fua);
  return p === undefined ? GOOD : p.then(() => GOOD);
}

// ---- VERIFY / WRITE AND VERIFY -------------------------------------------------------------------------

export function verifyDataOutLength(cdb: Buffer, lu: LogicalUnit): number {
  const bytchk = (cdb[1] >> 1) & 3;
  const { blocks } = decodeBlockRange(cdb);
  if (bytchk === 1) return blocks * lu.blockSize;
  if (bytchk === 3) return blocks > 0 ? lu.blockSize : 0;
  return 0;
}

/**
 * Read `blocks` from `lba` chunk by chunk; when `expected` is given, compare against it.
 * `expected` yields the Data-Out bytes for the next `n` medium bytes (as views).
 * Throws MISCOMPARE with the byte offset into the Data-Out buffer of the first difference.
 */
async function readAndCompare(
  lu: LogicalUnit,
  lba: number,
  blocks: number,
  expected?: (mediumOffset: number, n: number) => Buffer[],
  dataOutOffset?: (mediumOffset: number) => number,
): Promise<void> {
  const bs = lu.blockSize;
  const chunkBlocks = Math.max(1, Math.min(blocks, Math.floor(CHUNK_BYTES / bs)));
  const buf = lu.pool.acquire(chunkBlocks * bs);
  try {
    for (let done = 0; done < blocks;) {
      const k = Math.min(chunkBlocks, blocks - done);
      const medium = buf.subarray(0, k * bs);
      await readMedium(lu, lba + done, medium);
      if (expected) {
        let pos = 0;
        for (const piece of expected(done * bs, k * bs)) {
          const d = firstDifference(medium.subarray(pos, pos + piece.length), piece);
          if (d >= 0) {
            const at = done * bs + pos + d;
            throw miscompare(dataOutOffset ? dataOutOffset(at) : at);
          }
          pos += piece.length;
        }
      }
      done += k;
    }
  } finally {
    lu.pool.release(buf);
  }
}

export async function verify(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const bytchk = (cdb[1] >> 1) & 3;
  if (bytchk === 2) throw invalidFieldInCdb(1, 2);
  const { lba, blocks, lengthByte } = decodeBlockRange(cdb);
  checkRange(lu.numBlocks, lba, blocks);
  checkTransferLength(lu, blocks, lengthByte);
  if (blocks === 0) return GOOD;
  const bs = lu.blockSize;
  if (bytchk === 0) {
    // Medium verification: every block must be readable.
    await readAndCompare(lu, lba, blocks);
  } else if (bytchk === 1) {
    const n = receivedBlocks(lu, task.dataOut, blocks);
    const cursor = new SliceCursor(task.dataOut);
    await readAndCompare(lu, lba, n, (_off, len) => cursor.take(len));
  } else {
    // BYTCHK 11b: one block of Data-Out is compared with each block of the range.
    if (totalLength(task.dataOut) < bs) return GOOD;
    const pattern = gatherBytes(task.dataOut, bs);
    await readAndCompare(
      lu,
      lba,
      blocks,
      (_off, len) => {
        const out: Buffer[] = [];
        for (let i = 0; i < len; i += bs) out.push(pattern);
        return out;
      },
      (at) => at % bs,
    );
  }
  return GOOD;
}

export async function writeAndVerify(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const bytchk = (cdb[1] >> 1) & 3;
  if (bytchk >= 2) throw invalidFieldInCdb(1, 2);
  const { lba, blocks, lengthByte } = decodeBlockRange(cdb);
  checkRange(lu.numBlocks, lba, blocks);
  checkTransferLength(lu, blocks, lengthByte);
  requireWritable(ctx, lu);
  const n = receivedBlocks(lu, task.dataOut, blocks);
  if (n === 0) return GOOD;
  const data = takeBytes(task.dataOut, n * lu.blockSize);
  // "Write to the medium, then verify": the data must be on the medium, not in a volatile cache.
  await writeMedium(lu, lba, data, true);
  const cursor = new SliceCursor(data);
  await readAndCompare(lu, lba, n, bytchk === 1 ? (_off, len) => cursor.take(len) : undefined);
  return GOOD;
}

// ---- PRE-FETCH / SYNCHRONIZE CACHE ---------------------------------------------------------------------

export function preFetch(ctx: CommandContext): ScsiResult {
  const { lba, blocks } = decodeBlockRange(ctx.cdb);
  checkRange(ctx.lu.numBlocks, lba, blocks);
  // Nothing is staged in a cache of ours, so the blocks are not reported as cached: GOOD, not CONDITION MET.
  return GOOD;
}

export async function synchronizeCache(ctx: CommandContext): Promise<ScsiResult> {
  const { lu } = ctx;
  const { lba, blocks } = decodeBlockRange(ctx.cdb);
  // NUMBER OF LOGICAL BLOCKS = 0: from LBA to the end of the medium.
  checkRange(lu.numBlocks, lba, blocks);
  try {
    await lu.backstore.flush();
  } catch (e) {
    throw ioError(lu, 'flush', e, lba);
  }
  return GOOD;
}

// ---- WRITE SAME ------------------------------------------------------------------------------------------

/** WRITE SAME(16) with NDOB: no Data-Out buffer, the blocks are written with zeros (or unmapped). */
function noDataOutBuffer(cdb: Buffer): boolean {
  return cdb[0] === Opcode.WRITE_SAME_16 && (cdb[1] & 0x01) !== 0;
}

export function writeSameDataOutLength(cdb: Buffer, lu: LogicalUnit): number {
  return noDataOutBuffer(cdb) ? 0 : lu.blockSize;
}

/**
 * WRITE SAME(10)/(16). NUMBER OF LOGICAL BLOCKS 0 means "from LBA to the end of the medium" (WSNZ = 0), and
 * is held to MAXIMUM WRITE SAME LENGTH like any other count. UNMAP deallocates the range whatever the block
 * holds (SBC-3 leaves the choice to the device server; with LBPRZ = 1 the blocks then read as zeros, which
 * is what libiscsi's WriteSame10.UnmapUntilEnd checks after sending 0xFF). ANCHOR is outside the usage map
 * (ANC_SUP = 0), so the dispatcher refuses it.
 */
export async function writeSame(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const { lba, blocks: asked, lengthByte } = decodeBlockRange(cdb);
  const unmap = (cdb[1] & 0x08) !== 0;
  const ndob = noDataOutBuffer(cdb);
  if (asked === 0 && lba >= lu.numBlocks) throw lbaOutOfRange();
  const blocks = asked === 0 ? lu.numBlocks - lba : asked;
  if (blocks > lu.limits.maxWriteSameBlocks) throw invalidFieldInCdb(lengthByte, 7);
  checkRange(lu.numBlocks, lba, blocks);
  requireWritable(ctx, lu);
  // LBPWS/LBPWS10 = 0 on a fully provisioned LU: UNMAP = 1 is an invalid field (SBC-3 WRITE SAME).
  if (unmap && !lu.thinProvisioned) throw invalidFieldInCdb(1, 3);
  const bs = lu.blockSize;
  const want = ndob ? 0 : bs;
  // The Data-Out buffer is exactly one block (none with NDOB): an initiator that announces another length
  // has built a command other than the one the CDB describes.
  if (task.expectedLength !== want || totalLength(task.dataOut) < want) {
    lu.badRequest('WRITE SAME Data-Out length', { expected: want, edtl: task.expectedLength });
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_FIELD_IN_CDB);
  }
  if (unmap) {
    await unmapMedium(lu, lba, blocks);
    return GOOD;
  }
  const block = ndob ? Buffer.alloc(bs) : gatherBytes(task.dataOut, bs);
  const store = lu.backstore;
  if (store.writeSame) {
    // One request to a store that repeats the block itself (librbd): no chunks cross the network.
    try {
      await lu.shared.guardWrite(lba * bs, blocks * bs, () =>
        store.writeSame!(lba * bs, blocks * bs, block, false),
      );
    } catch (e) {
      throw ioError(lu, 'write', e, lba);
    }
    return GOOD;
  }
  await fillMedium(lu, lba, blocks, block, false);
  return GOOD;
}

/**
 * Write `block` (or, when shorter, the pattern repeated) into every block of a range, one chunk per
 * backstore call: each await yields to the event loop, so long ranges never starve it. `onChunk` hears the
 * blocks done so far (progress); `guarded` as for writeMedium.
 */
export async function fillMedium(
  lu: LogicalUnit,
  lba: number,
  blocks: number,
  block: Buffer,
  fua: boolean,
  guarded = true,
  onChunk?: (done: number) => void,
): Promise<void> {
  const bs = lu.blockSize;
  const chunkBlocks = Math.max(1, Math.min(blocks, Math.floor(CHUNK_BYTES / bs)));
  const one = block.length === bs ? block : Buffer.alloc(bs, block);
  const pattern = Buffer.allocUnsafe(chunkBlocks * bs);
  for (let i = 0; i < chunkBlocks; i++) one.copy(pattern, i * bs);
  for (let done = 0; done < blocks;) {
    const k = Math.min(chunkBlocks, blocks - done);
    await writeMedium(lu, lba + done, [pattern.subarray(0, k * bs)], fua, guarded);
    done += k;
    onChunk?.(done);
  }
}

// ---- UNMAP -----------------------------------------------------------------------------------------------

export async function unmap(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const paramLen = cdb.readUInt16BE(7);
  if (paramLen === 0) return GOOD;
  if (paramLen < 8) throw parameterListLengthError();
  requireWritable(ctx, lu);
  const got = Math.min(paramLen, totalLength(task.dataOut));
  if (got < 8) throw parameterListLengthError();
  const data = gatherBytes(task.dataOut, got);
  const descLen = Math.min(data.readUInt16BE(2), got - 8);
  const count = Math.floor(descLen / 16);
  if (count > lu.limits.maxUnmapDescriptors) throw invalidFieldInParameterList(2, 7);
  const ranges: Array<[number, number]> = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const off = 8 + i * 16;
    const start = readU64(data, off);
    const n = data.readUInt32BE(off + 8);
    if (start + n > lu.numBlocks) throw lbaOutOfRange();
    total += n;
    if (total > lu.limits.maxUnmapBlocks) throw invalidFieldInParameterList(off + 8, 7);
    if (n > 0) ranges.push([start, n]);
  }
  // Descriptors that touch or overlap become one range: on RBD each backstore unmap is a round trip to the
  // cluster, and initiators (libiscsi's Unmap tests among them) send runs of one-block descriptors.
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [start, n] of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && start <= last[0] + last[1]) last[1] = Math.max(last[1], start + n - last[0]);
    else merged.push([start, n]);
  }
  for (const [start, n] of merged) await unmapMedium(lu, start, n);
  return GOOD;
}

// ---- GET LBA STATUS --------------------------------------------------------------------------------------

/**
 * Most LBA status descriptors one command returns (64 KiB of parameter data). The device server may return
 * fewer than fit the allocation length; the initiator asks again from where the last descriptor ends. This
 * bounds the lseek calls one command makes on a fragmented file.
 */
export const MAX_LBA_STATUS_DESCRIPTORS = 4096;
const HEADER = 8;
const DESCRIPTOR = 16;
/** NUMBER OF LOGICAL BLOCKS is 32 bits: longer extents take several descriptors. */
const MAX_DESCRIPTOR_BLOCKS = 0xffffffff;
const PROVISIONING_MAPPED = 0x0;
const PROVISIONING_DEALLOCATED = 0x1;

/**
 * SBC-3 GET LBA STATUS: the provisioning status of the LBAs from STARTING LOGICAL BLOCK ADDRESS on. The
 * first descriptor starts at that LBA (inside whatever extent holds it) and each next one where the previous
 * ends. Status 0h mapped, 1h deallocated; nothing is ever anchored (ANC_SUP = 0).
 *
 * ALLOCATION LENGTH (SPC-4 rules): 0 is not an error and transfers nothing; the data is built for as many
 * whole descriptors as fit, at least one (PARAMETER DATA LENGTH is always 20 + 16n), then cut to the
 * allocation length, so a length under 24 gets a truncated header and descriptor.
 */
export async function getLbaStatus(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu } = ctx;
  const lba = readU64(cdb, 2);
  const alloc = cdb.readUInt32BE(10);
  if (lba >= lu.numBlocks) throw lbaOutOfRange();
  if (alloc === 0) return GOOD;
  const want = Math.min(MAX_LBA_STATUS_DESCRIPTORS, Math.max(1, Math.floor((alloc - HEADER) / DESCRIPTOR)));
  const bs = lu.blockSize;
  const offset = lba * bs;
  const length = (lu.numBlocks - lba) * bs;
  let extents: MappingExtent[];
  try {
    extents = lu.backstore.mapping
      ? await lu.backstore.mapping(offset, length, want)
      : [{ offset, length, mapped: true }]; // no map: every block mapped or unknown (0h)
  } catch (e) {
    throw ioError(lu, 'read', e, lba);
  }
  const descriptors: Buffer[] = [];
  let next = lba;
  for (const x of extents) {
    const start = x.offset / bs;
    const blocks = x.length / bs;
    if (start !== next || !Number.isInteger(blocks) || blocks <= 0)
      throw new Error(`backstore mapping: extent ${x.offset}+${x.length} does not continue at LBA ${next}`);
    for (let done = 0; done < blocks && descriptors.length < want;) {
      const n = Math.min(MAX_DESCRIPTOR_BLOCKS, blocks - done);
      const d = Buffer.alloc(DESCRIPTOR);
      writeU64(d, start + done, 0);
      d.writeUInt32BE(n, 8);
      d[12] = x.mapped ? PROVISIONING_MAPPED : PROVISIONING_DEALLOCATED;
      descriptors.push(d);
      done += n;
    }
    next = start + blocks;
    if (descriptors.length >= want) break;
  }
  if (descriptors.length === 0) throw new Error(`backstore mapping: nothing reported at LBA ${lba}`);
  const data = Buffer.concat([Buffer.alloc(HEADER), ...descriptors]);
  data.writeUInt32BE(data.length - 4, 0);
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}
