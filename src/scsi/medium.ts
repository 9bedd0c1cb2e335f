/**
 * Removable medium: START STOP UNIT with LOEJ (eject and load), PREVENT ALLOW MEDIUM REMOVAL, and the
 * NOT READY answer while no medium is loaded. Shared by every removable LU: a 'cd' LU (MMC) and a disk
 * configured removable (SBC, RMB = 1).
 *
 * The state lives in the LU's shared memory (lu-shared.ts), so every worker sees one medium: FLAG_MEDIUM_ABSENT,
 * and PREVENT per I_T nexus (SPC-4: the medium stays locked while any nexus prevents removal; a nexus's
 * prevention ends with the nexus, with a LOGICAL UNIT RESET or a target reset).
 */
import { AscQ, SenseKey, Status } from './constants';
import type { LogicalUnit } from './lu';
import { FLAG_MEDIUM_ABSENT, UA } from './lu-shared';
import { ScsiError, fixedSense, invalidFieldInCdb } from './sense';
import type { CommandContext, ScsiResult } from './types';

const GOOD: ScsiResult = Object.freeze({ status: Status.GOOD });

export const mediumNotPresent = (): ScsiError => new ScsiError(SenseKey.NOT_READY, AscQ.MEDIUM_NOT_PRESENT);

export const removalPrevented = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.MEDIUM_REMOVAL_PREVENTED);

/** Power conditions SBC-3 defines (START_VALID, ACTIVE, IDLE, STANDBY, LU_CONTROL, FORCE_IDLE_0, FORCE_STANDBY_0). */
const SBC_POWER_CONDITIONS = new Set([0x0, 0x1, 0x2, 0x3, 0x7, 0xa, 0xb]);

/** Write back the cache before the unit stops or its medium leaves (unless NO_FLUSH). */
async function flushBeforeStop(lu: LogicalUnit): Promise<ScsiResult | undefined> {
  if (lu.backstore.readOnly) return undefined;
  try {
    await lu.backstore.flush();
    return undefined;
  } catch (e) {
    lu.ioFault('flush', e);
    return { status: Status.CHECK_CONDITION, sense: fixedSense(SenseKey.MEDIUM_ERROR, AscQ.WRITE_ERROR) };
  }
}

/**
 * START STOP UNIT. Nothing spins, so START alone changes nothing; stopping flushes. With LOEJ, a removable LU
 * ejects (START = 0) or loads (START = 1) its medium, refused with MEDIUM REMOVAL PREVENTED while any I_T
 * nexus prevents removal. A fixed LU refuses LOEJ.
 *
 * Power conditions: none is implemented, so with a non-zero POWER CONDITION the command changes nothing
 * (START and LOEJ are ignored, as SBC-3 and MMC-5 say). A fixed disk refuses the values SBC-3 reserves; a
 * removable LU accepts every value, as MMC-5 drives do and as libiscsi's StartStopUnit.PwrCnd (which sends
 * each of 1..15 to a removable LU and expects GOOD) requires.
 */
export async function startStopUnit(ctx: CommandContext): Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const powerCondition = cdb[4] >> 4;
  if (!lu.removable && !SBC_POWER_CONDITIONS.has(powerCondition)) throw invalidFieldInCdb(4, 7);
  if (powerCondition !== 0) return GOOD;
  const loej = (cdb[4] & 0x02) !== 0;
  const start = (cdb[4] & 0x01) !== 0;
  // Bit 2 is NO_FLUSH in SBC and FL (format layer) in MMC; a read-only cd never flushes, so it needs no action.
  const noFlush = (cdb[4] & 0x04) !== 0;
  if (loej && !lu.removable) throw invalidFieldInCdb(4, 1);
  if (!start && !noFlush) {
    const failed = await flushBeforeStop(lu);
    if (failed) return failed;
  }
  if (!loej) return GOOD;
  if (lu.removalPrevented) throw removalPrevented();
  if (!start) {
    lu.shared.setFlag(FLAG_MEDIUM_ABSENT, true);
    return GOOD;
  }
  // A medium that comes back may be another one: every other nexus hears MEDIUM MAY HAVE CHANGED.
  if (lu.shared.setFlag(FLAG_MEDIUM_ABSENT, false))
    lu.shared.establish(UA.MEDIUM_MAY_HAVE_CHANGED, { except: task.nexus });
  return GOOD;
}

/**
 * PREVENT ALLOW MEDIUM REMOVAL, per I_T nexus. SBC-3 makes PREVENT 10b and 11b obsolete; MMC-5 gives bit 1
 * (persistent prevent) a meaning for the drive's eject button and event reporting, neither of which an image
 * has, so an MMC LU accepts it and only bit 0 locks the medium.
 */
export function preventAllow(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  const prevent = cdb[4] & 0x03;
  if (prevent > 1 && lu.type !== 'cd') throw invalidFieldInCdb(4, 1);
  lu.setPreventRemoval(task.nexus, (prevent & 0x01) !== 0);
  return GOOD;
}
