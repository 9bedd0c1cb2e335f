/**
 * SANITIZE (48h), SBC-4: OVERWRITE, BLOCK ERASE (thin LUs only) and EXIT FAILURE MODE, and the state the
 * LU is in while a sanitize runs or after one failed.
 *
 * - OVERWRITE writes the initialization pattern (repeated to fill each block) over the whole medium,
 *   OVERWRITE COUNT times, inverting it on every other pass when INVERT is set, then flushes.
 * - BLOCK ERASE deallocates every block (hole punching, as UNMAP) and flushes: afterwards the blocks read as
 *   zeros (LBPRZ = 1, WABEREQ = 01b). A fully provisioned LU cannot deallocate anything, and writing zeros
 *   would be an overwrite, not a block erase: it does not offer the service action.
 * - CRYPTO ERASE is not offered: nothing is stored encrypted, so there is no key to change (INVALID FIELD IN
 *   CDB on the SERVICE ACTION, WACEREQ = 00b).
 *
 * While a sanitize runs (on any worker: the flag and its progress live in LuShared), every command but
 * INQUIRY, REPORT LUNS and REQUEST SENSE is answered NOT READY / SANITIZE IN PROGRESS with the progress in
 * the sense-key specific bytes. A sanitize that fails (an I/O error, or the worker running it died) leaves the
 * LU in failure mode: those commands then get MEDIUM ERROR / SANITIZE COMMAND FAILED until a sanitize
 * succeeds or, when the failed one had AUSE = 1, until EXIT FAILURE MODE. Resets do not stop a sanitize.
 * The state is in memory: a target restarted during a sanitize comes back with the medium partly sanitized
 * and no failure mode.
 */
import { gatherBytes, totalLength } from './cdb';
import { AscQ, Sanitize, SenseKey } from './constants';
import type { LogicalUnit } from './lu';
import { FLAG_SANITIZE_AUSE, FLAG_SANITIZE_FAILED, FLAG_SANITIZING } from './lu-shared';
import { GOOD, fillMedium, ioError, requireWritable, unmapMedium } from './sbc';
import { ScsiError, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError } from './sense';
import type { CommandContext, CommandSpec, ScsiResult } from './types';
import { log } from '../util/log';

const IMMED = 0x80;
const AUSE = 0x20;
const INVERT = 0x80;
const TEST = 0x60;
const COUNT = 0x1f;
/** Blocks deallocated per backstore call during BLOCK ERASE (progress granularity). */
const ERASE_CHUNK_BYTES = 64 * 1024 * 1024;

// ---- the LU's state while sanitizing -----------------------------------------------------------------------

/** NOT READY / SANITIZE IN PROGRESS with the current progress, as any worker sees it. */
export function sanitizeInProgress(lu: LogicalUnit): ScsiError {
  return new ScsiError(SenseKey.NOT_READY, AscQ.SANITIZE_IN_PROGRESS, {
    progress: lu.shared.sanitizeProgress,
  });
}

const sanitizeFailed = (): ScsiError => new ScsiError(SenseKey.MEDIUM_ERROR, AscQ.SANITIZE_COMMAND_FAILED);

/**
 * The refusal a command gets from a sanitize running or failed, or undefined (hot path: one load of FLAGS).
 * INQUIRY, REPORT LUNS and REQUEST SENSE always pass; in failure mode so does SANITIZE (it is the way out).
 */
export function sanitizeGate(lu: LogicalUnit, spec: CommandSpec): ScsiError | undefined {
  if (!lu.shared.flag(FLAG_SANITIZING | FLAG_SANITIZE_FAILED) || spec.allowedDuringSanitize) return undefined;
  if (lu.shared.flag(FLAG_SANITIZING)) return sanitizeInProgress(lu);
  return spec.exec === sanitize ? undefined : sanitizeFailed();
}

/** What REQUEST SENSE reports when no unit attention is pending: the sanitize state, or undefined. */
export function sanitizeSense(lu: LogicalUnit): ScsiError | undefined {
  if (lu.shared.flag(FLAG_SANITIZING)) return sanitizeInProgress(lu);
  if (lu.shared.flag(FLAG_SANITIZE_FAILED)) return sanitizeFailed();
  return undefined;
}

// ---- the command ---------------------------------------------------------------------------------------

export function sanitizeDataOutLength(cdb: Buffer): number {
  return cdb.readUInt16BE(7);
}

/** Arrival check: the PARAMETER LIST LENGTH each service action allows (before any Data-Out is solicited). */
export function checkSanitize(cdb: Buffer, lu: LogicalUnit): void {
  const len = cdb.readUInt16BE(7);
  const sa = cdb[1] & 0x1f;
  const ok = sa === Sanitize.OVERWRITE ? len >= 5 && len <= lu.blockSize + 4 : len === 0;
  if (!ok) {
    lu.badRequest('SANITIZE parameter list length', { serviceAction: sa, length: len });
    throw invalidFieldInCdb(7, 7);
  }
}

interface Overwrite {
  invert: boolean;
  count: number;
  pattern: Buffer;
}

function overwriteParameters(lu: LogicalUnit, dataOut: readonly Buffer[], len: number): Overwrite {
  if (totalLength(dataOut) < len) throw parameterListLengthError();
  const p = gatherBytes(dataOut, len);
  const refuse = (byte: number, bit: number, what: string): never => {
    lu.badRequest(`SANITIZE OVERWRITE ${what}`, { byte });
    throw invalidFieldInParameterList(byte, bit);
  };
  // TEST is vendor specific (01b-11b): we define no test modes.
  if (p[0] & TEST) refuse(0, 6, 'TEST');
  const count = p[0] & COUNT;
  if (count === 0) refuse(0, 4, 'OVERWRITE COUNT 0');
  const patternLength = p.readUInt16BE(2);
  if (patternLength === 0 || patternLength > lu.blockSize || patternLength > len - 4)
    refuse(2, 7, 'INITIALIZATION PATTERN LENGTH');
  return { invert: (p[0] & INVERT) !== 0, count, pattern: Buffer.from(p.subarray(4, 4 + patternLength)) };
}

/** One block filled with the pattern repeated (the last copy cut at the block's end), inverted if asked. */
function patternBlock(lu: LogicalUnit, pattern: Buffer, invert: boolean): Buffer {
  const block = Buffer.alloc(lu.blockSize, pattern);
  if (invert) for (let i = 0; i < block.length; i++) block[i] ^= 0xff;
  return block;
}

async function overwrite(lu: LogicalUnit, o: Overwrite): Promise<void> {
  const n = lu.numBlocks;
  for (let pass = 0; pass < o.count; pass++) {
    const block = patternBlock(lu, o.pattern, o.invert && pass % 2 === 1);
    await fillMedium(lu, 0, n, block, false, false, (done) => {
      lu.shared.sanitizeProgress = ((pass * n + done) / (o.count * n)) * 0x10000;
    });
  }
}

async function blockErase(lu: LogicalUnit): Promise<void> {
  const n = lu.numBlocks;
  const chunk = Math.max(1, Math.floor(ERASE_CHUNK_BYTES / lu.blockSize));
  for (let done = 0; done < n;) {
    const k = Math.min(chunk, n - done);
    await unmapMedium(lu, done, k, false);
    done += k;
    lu.shared.sanitizeProgress = (done / n) * 0x10000;
  }
}

/** Run the operation over the whole medium under the range lock, flush, and leave or enter failure mode. */
async function runSanitize(lu: LogicalUnit, op: () => Promise<void>, ause: boolean): Promise<void> {
  let failed = true;
  try {
    await lu.shared.exclusive(0, lu.numBlocks * lu.blockSize, op);
    try {
      await lu.backstore.flush();
    } catch (e) {
      throw ioError(lu, 'flush', e, 0);
    }
    failed = false;
  } finally {
    lu.shared.endSanitize(failed, ause);
    if (failed)
      log.error('SANITIZE failed: the LU is in sanitize failure mode', {
        target: lu.identity.targetName,
        lun: lu.identity.lun,
      });
  }
}

function exitFailureMode(lu: LogicalUnit): ScsiResult {
  if (!lu.shared.flag(FLAG_SANITIZE_FAILED)) {
    // Nothing to exit: the command is out of sequence.
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.COMMAND_SEQUENCE_ERROR);
  }
  // A failed sanitize without AUSE may only be left by a sanitize that completes.
  if (!lu.shared.flag(FLAG_SANITIZE_AUSE)) throw invalidFieldInCdb(1, 4);
  lu.shared.endSanitize(false, false);
  return GOOD;
}

export async function sanitize(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  checkSanitize(cdb, lu);
  const sa = cdb[1] & 0x1f;
  if (sa === Sanitize.EXIT_FAILURE_MODE) return exitFailureMode(lu);
  requireWritable(ctx, lu);
  let op: () => Promise<void>;
  if (sa === Sanitize.OVERWRITE) {
    const o = overwriteParameters(lu, task.dataOut, cdb.readUInt16BE(7));
    op = () => overwrite(lu, o);
  } else {
    op = () => blockErase(lu);
  }
  // Another worker may have begun one since the dispatcher looked.
  if (!lu.shared.beginSanitize()) throw sanitizeInProgress(lu);
  const run = runSanitize(lu, op, (cdb[1] & AUSE) !== 0);
  if (cdb[1] & IMMED) {
    // GOOD now; the operation goes on, reported through NOT READY and REQUEST SENSE progress.
    run.catch(() => undefined);
    return GOOD;
  }
  try {
    await run;
  } catch {
    throw sanitizeFailed(); // the cause is counted and logged by the LU (ioFault)
  }
  return GOOD;
}
