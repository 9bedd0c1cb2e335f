/**
 * The redo journal behind WRITE ATOMIC(16) (src/scsi/atomic-write.ts): what makes an atomic write
 * all-or-nothing across a crash of the target process or of the host.
 *
 * Each LU has a directory `<stateDir>/atomic/<serial>/`, and in it one journal file per worker (lane),
 * `lane-<n>.journal`, holding at most one record at offset 0:
 *
 *   0  magic 'NTGTATW1'   8  sequence (u64 LE)   16  LBA (u64 LE)   24  blocks (u32 LE)   28  block size (u32 LE)
 *   32 CRC32C (u32 LE) of the 64-byte header with this field zero, continued over the data
 *   36..63 zero;  64.. the data (blocks * block size bytes)
 *
 * A write: (a) the record is written and fdatasync'ed; (b) the data is written in place and made durable;
 * (c) the header is zeroed and fdatasync'ed. A crash before (a) completes leaves a record that is short or
 * fails its CRC: it is discarded, and the in-place write never began, so the old data is whole. A crash after
 * (a) leaves a complete record: recovery writes it in place again (idempotent: the same bytes), so the blocks
 * hold all of the new data. The range is held exclusively (LuShared.exclusive) from (a) to (c), so records
 * valid at the same time, on different lanes, never overlap, and no other write to the range can be lost by
 * replaying one.
 *
 * Recovery (recoverLuJournals) is synchronous: it runs on the portal thread before any worker serves the LU,
 * and for one lane when its worker dies (the dead lane still holds its ranges then, so nothing newer exists).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config, LunConfig } from '../config/schema';
import { blockDeviceSize, crc32c } from '../native';
import { serialFileName } from '../scsi/pr-aptpl';
import { log } from '../util/log';
import { makeParents } from './file';
import type { RedoJournal } from './types';

export const JOURNAL_MAGIC = Buffer.from('NTGTATW1', 'latin1');
export const HEADER_BYTES = 64;
const CRC_AT = 32;

export interface JournalRecord {
  seq: bigint;
  lba: number;
  blocks: number;
  blockSize: number;
}

/** The journal file of one lane in an LU's journal directory. */
export function laneJournalPath(dir: string, lane: number): string {
  return path.join(dir, `lane-${lane}.journal`);
}

/** The record header for `data` (the slices back to back), CRC included. */
export function encodeHeader(rec: JournalRecord, data: readonly Buffer[]): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  JOURNAL_MAGIC.copy(h, 0);
  h.writeBigUInt64LE(rec.seq, 8);
  h.writeBigUInt64LE(BigInt(rec.lba), 16);
  h.writeUInt32LE(rec.blocks, 24);
  h.writeUInt32LE(rec.blockSize, 28);
  let crc = crc32c(h);
  for (const d of data) crc = crc32c(d, crc);
  h.writeUInt32LE(crc >>> 0, CRC_AT);
  return h;
}

export type Decoded =
  | { kind: 'idle' }
  | { kind: 'torn'; why: string }
  | { kind: 'complete'; record: JournalRecord; data: Buffer };

/** Data bytes a record's header announces (blocks × block size); 0 for a header cut short. */
export function recordDataBytes(head: Buffer): number {
  return head.length < HEADER_BYTES ? 0 : head.readUInt32LE(24) * head.readUInt32LE(28);
}

/** Throws when a complete record does not fit the LU it is to be written to (it is then kept, not applied). */
export function checkRecordFits(
  file: string,
  r: JournalRecord,
  lu: { blockSize: number; numBlocks: number },
): void {
  if (r.blockSize !== lu.blockSize || r.lba + r.blocks > lu.numBlocks)
    throw new Error(
      `atomic write journal ${file} holds a complete record (LBA ${r.lba}, ${r.blocks} blocks of ${r.blockSize} bytes) ` +
        `that does not fit this LU (${lu.numBlocks} blocks of ${lu.blockSize} bytes)`,
    );
}

/** What a journal file's content holds: nothing pending, a torn record, or a complete one. */
export function decodeJournal(buf: Buffer): Decoded {
  if (buf.length === 0) return { kind: 'idle' };
  const head = buf.subarray(0, Math.min(buf.length, HEADER_BYTES));
  if (head.subarray(0, 8).every((b) => b === 0)) return { kind: 'idle' };
  if (buf.length < HEADER_BYTES) return { kind: 'torn', why: 'short header' };
  if (!buf.subarray(0, 8).equals(JOURNAL_MAGIC)) return { kind: 'torn', why: 'bad magic' };
  const blocks = buf.readUInt32LE(24);
  const blockSize = buf.readUInt32LE(28);
  const len = recordDataBytes(buf);
  if (buf.length < HEADER_BYTES + len) return { kind: 'torn', why: 'short data' };
  const h = Buffer.from(buf.subarray(0, HEADER_BYTES));
  const stored = h.readUInt32LE(CRC_AT);
  h.writeUInt32LE(0, CRC_AT);
  const data = buf.subarray(HEADER_BYTES, HEADER_BYTES + len);
  if (crc32c(data, crc32c(h)) >>> 0 !== stored) return { kind: 'torn', why: 'CRC mismatch' };
  const record = {
    seq: h.readBigUInt64LE(8),
    lba: Number(h.readBigUInt64LE(16)),
    blocks,
    blockSize,
  };
  return { kind: 'complete', record, data };
}

// ---- the write side (a worker, async) ------------------------------------------------------------------

/** Where the test hook of the crash tests kills the process (NODETGT_TEST_HOOKS=1 only). */
export type CrashPoint = 'torn-journal' | 'after-journal' | 'mid-write';

/** The crash point asked for by NODETGT_TEST_ATOMIC_CRASH, honoured only with NODETGT_TEST_HOOKS=1. */
export function crashPoint(): CrashPoint | undefined {
  if (process.env.NODETGT_TEST_HOOKS !== '1') return undefined;
  const p = process.env.NODETGT_TEST_ATOMIC_CRASH;
  return p === 'torn-journal' || p === 'after-journal' || p === 'mid-write' ? p : undefined;
}

/** The test hook's kill -9 of the whole process (from any thread). */
export function crashNow(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL sent');
}

async function writeAll(
  fh: fs.promises.FileHandle,
  bufs: readonly Buffer[],
  position: number,
): Promise<void> {
  let pos = position;
  for (const b of bufs) {
    for (let off = 0; off < b.length;) {
      const { bytesWritten } = await fh.write(b, off, b.length - off, pos);
      if (bytesWritten <= 0) throw new Error('journal write made no progress');
      off += bytesWritten;
      pos += bytesWritten;
    }
  }
}

/**
 * One lane's journal of one LU. Callers serialize their use of it (src/scsi/atomic-write.ts): one record at a
 * time, and stop using it once `broken` is set (a record kept for replay, or a file in an unknown state).
 */
export class AtomicJournal implements RedoJournal {
  private fh: fs.promises.FileHandle | null = null;
  private seq = 0n;
  broken: string | null = null;

  constructor(readonly file: string) {}

  private async open(): Promise<fs.promises.FileHandle> {
    if (this.fh) return this.fh;
    const dir = path.dirname(this.file);
    await makeParents(dir);
    const c = fs.constants;
    this.fh = await fs.promises.open(this.file, c.O_RDWR | c.O_CREAT, 0o600);
    // The file's directory entry must be durable before a record in it can be relied on.
    const d = await fs.promises.open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
    // Sequence numbers from the clock: increasing across restarts and comparable between lanes in logs.
    this.seq = BigInt(Date.now()) * 1000n;
    return this.fh;
  }

  /** Step (a): the record, durable on return. */
  async append(lba: number, blocks: number, blockSize: number, data: readonly Buffer[]): Promise<bigint> {
    const fh = await this.open();
    const seq = ++this.seq;
    const header = encodeHeader({ seq, lba, blocks, blockSize }, data);
    if (crashPoint() === 'torn-journal') {
      await writeAll(fh, [header, ...halfOf(data)], 0);
      await fh.datasync();
      crashNow();
    }
    await writeAll(fh, [header, ...data], 0);
    await fh.datasync();
    return seq;
  }

  /** Step (c): the record no longer counts, durably. */
  async invalidate(): Promise<void> {
    const fh = await this.open();
    await writeAll(fh, [Buffer.alloc(HEADER_BYTES)], 0);
    await fh.datasync();
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

/** The first half of the bytes of `data` (whole slices, then part of one): what a torn write leaves. */
export function halfOf(data: readonly Buffer[]): Buffer[] {
  let left = Math.floor(data.reduce((n, d) => n + d.length, 0) / 2);
  const out: Buffer[] = [];
  for (const d of data) {
    if (left <= 0) break;
    out.push(d.subarray(0, Math.min(left, d.length)));
    left -= d.length;
  }
  return out;
}

// ---- recovery (the portal thread, synchronous) -----------------------------------------------------------

export interface RecoveryAction {
  file: string;
  outcome: 'applied' | 'discarded';
  why?: string;
  record?: JournalRecord;
}

function writeAllSync(fd: number, buf: Buffer, position: number): void {
  for (let off = 0; off < buf.length;) {
    const n = fs.writeSync(fd, buf, off, buf.length - off, position + off);
    if (n <= 0) throw new Error('write made no progress');
    off += n;
  }
}

function clearRecord(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    writeAllSync(fd, Buffer.alloc(HEADER_BYTES), 0);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replay one complete record onto the backing file, durably. */
function applyRecord(backing: string, rec: JournalRecord, data: Buffer): void {
  const fd = fs.openSync(backing, 'r+');
  try {
    writeAllSync(fd, data, rec.lba * rec.blockSize);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export interface RecoveryTarget {
  /** The LU's backing file or block device. */
  backing: string;
  blockSize: number;
  /** Capacity in blocks: a record beyond it is not this LU's. */
  numBlocks: number;
}

/**
 * Bring one journal file (its content `buf`) to rest: a complete record is written in place (durably) and then
 * cleared; a torn one is cleared. Null when there was nothing pending. Throws when a complete record cannot be
 * applied (the record is kept, so that a later start can still apply it).
 */
export function recoverJournal(file: string, buf: Buffer, lu: RecoveryTarget): RecoveryAction | null {
  const d = decodeJournal(buf);
  if (d.kind === 'idle') return null;
  if (d.kind === 'torn') {
    clearRecord(file);
    return { file, outcome: 'discarded', why: d.why };
  }
  const r = d.record;
  checkRecordFits(file, r, lu);
  applyRecord(lu.backing, r, d.data);
  clearRecord(file);
  return { file, outcome: 'applied', record: r };
}

/** Every lane's journal of one LU (all of them at start-up; one lane when its worker died), oldest record first. */
export function recoverLuJournals(dir: string, lu: RecoveryTarget, lane?: number): RecoveryAction[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const only = lane === undefined ? undefined : path.basename(laneJournalPath(dir, lane));
  const journals = names
    .filter((n) => /^lane-\d+\.journal$/.test(n) && (only === undefined || n === only))
    .map((n) => {
      const file = path.join(dir, n);
      const buf = fs.readFileSync(file);
      const d = decodeJournal(buf);
      return { file, buf, seq: d.kind === 'complete' ? d.record.seq : 0n };
    });
  // Pending records never overlap (see the header); oldest first only makes the log read in order.
  journals.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  const out: RecoveryAction[] = [];
  for (const j of journals) {
    const a = recoverJournal(j.file, j.buf, lu);
    if (a) out.push(a);
  }
  return out;
}

// ---- every LU of a configuration (start-up, and a dead worker's lane) ------------------------------------

/** The journal directory of the LU with this unit serial number. */
export function atomicJournalDir(stateDir: string, serial: string): string {
  return path.join(stateDir, 'atomic', serialFileName(serial));
}

function recoveryTarget(l: LunConfig): RecoveryTarget {
  const fd = fs.openSync(l.path, 'r');
  try {
    const st = fs.fstatSync(fd);
    const bytes = st.isBlockDevice() ? blockDeviceSize(fd) : st.size;
    return { backing: l.path, blockSize: l.blockSize, numBlocks: Math.floor(bytes / l.blockSize) };
  } finally {
    fs.closeSync(fd);
  }
}

export interface AtomicRecoveryReport {
  target: string;
  lun: number;
  actions: RecoveryAction[];
  /** Set when the LU was taken offline: a complete record could not be applied. */
  error?: string;
}

/**
 * On the portal thread, after provisioning and before workers: give every served file-backed disk LU its journal
 * directory (LunConfig.atomicJournalDir) and bring its journals to rest (all lanes, or only `lane` when its
 * worker died). A complete record that cannot be applied takes the LU offline: serving it would show old data
 * for a write that was acknowledged.
 */
export function recoverAtomicJournals(config: Config, lane?: number): AtomicRecoveryReport[] {
  const out: AtomicRecoveryReport[] = [];
  for (const t of config.targets)
    for (const l of t.luns) {
      if (l.offline !== undefined || l.identity === undefined || l.backstore !== 'file' || l.type !== 'disk')
        continue;
      const dir = atomicJournalDir(config.stateDir, l.identity.serial);
      (l as LunConfig).atomicJournalDir = dir;
      try {
        const actions = recoverLuJournals(dir, recoveryTarget(l), lane);
        if (actions.length > 0) out.push({ target: t.name, lun: l.lun, actions });
      } catch (e) {
        const why = `WRITE ATOMIC journal recovery failed: ${(e as Error).message}`;
        if (lane === undefined) l.offline = `${why}; the LU is not served: repair the cause and restart`;
        out.push({ target: t.name, lun: l.lun, actions: [], error: why });
      }
    }
  return out;
}

/** The log lines of a recovery (start-up, a dead worker's lane, a live change). */
export function logAtomicRecovery(reports: AtomicRecoveryReport[]): void {
  for (const r of reports) {
    if (r.error !== undefined)
      log.error('WRITE ATOMIC journal recovery failed', { target: r.target, lun: r.lun, reason: r.error });
    for (const a of r.actions)
      if (a.outcome === 'applied')
        log.warn(
          'WRITE ATOMIC journal: a complete record was written in place (the write had been cut short)',
          {
            target: r.target,
            lun: r.lun,
            journal: a.file,
            seq: String(a.record!.seq),
            lba: a.record!.lba,
            blocks: a.record!.blocks,
          },
        );
      else if (a.record !== undefined)
        log.error('WRITE ATOMIC journal: a complete record was discarded, its write may be left torn', {
          target: r.target,
          lun: r.lun,
          journal: a.file,
          why: a.why,
          lba: a.record.lba,
          blocks: a.record.blocks,
        });
      else
        log.warn('WRITE ATOMIC journal: a torn record was discarded (its write never began in place)', {
          target: r.target,
          lun: r.lun,
          journal: a.file,
          why: a.why,
        });
  }
}
