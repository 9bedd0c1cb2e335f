/**
 * Reservation conflicts and SPC-2 reservations.
 *
 * reservationConflict is the dispatcher's check of a command against the reservation held on the LU, read from
 * the command table's classification (CommandSpec.reservation) so that the rules are data: SPC-4 5.13.1 and
 * SBC-3 4.17 for persistent reservations, SPC-2 5.5.1 for RESERVE(6)/(10). The dispatcher calls it only when
 * LuShared.prActive is set, so an LU without reservations pays one atomic load per command.
 *
 * RESERVE/RELEASE (SPC-2, kept for old initiators) live in the same shared document as the persistent
 * reservations. They conflict with PR as SPC-4 5.13.3 says: while any registration exists they end RESERVATION
 * CONFLICT; while an SPC-2 reservation exists every PERSISTENT RESERVE command does. The reservation ends with
 * RELEASE from its holder, a LOGICAL UNIT RESET or target reset, and the loss of the holder's I_T nexus.
 */
import { log } from '../util/log';
import type { LogicalUnit } from './lu';
import { type PrDoc, isHolder, isRegistrantsType, isWriteExclusive, registrationOf } from './pr-doc';
import { CONFLICT, GOOD, changePr, cloneDoc } from './pr-out';
import type { CommandContext, CommandSpec, ReservationAccess, ScsiResult } from './types';

/** Would this command from this nexus conflict with the reservation on the LU? (call only when prActive) */
export function reservationConflict(lu: LogicalUnit, spec: CommandSpec, cdb: Buffer, nexus: string): boolean {
  const d = lu.shared.prDocument<PrDoc>();
  if (d === null) return false;
  const c = spec.reservation;
  const access: ReservationAccess = c === undefined ? 'write' : typeof c === 'function' ? c(cdb) : c;
  if (access === 'own') return false;
  if (d.spc2 !== null) return d.spc2 !== nexus && access !== 'any';
  const res = d.reservation;
  if (res === null || access === 'any' || access === 'shared') return false;
  if (isHolder(d, nexus)) return false;
  if (isRegistrantsType(res.type) && registrationOf(d, nexus) !== undefined) return false;
  return !(access === 'read' && isWriteExclusive(res.type));
}

/** RESERVE(6) / RESERVE(10) of the whole LU; third-party and extent reservations are not offered. */
export function reserveUnit(ctx: CommandContext): ScsiResult | Promise<ScsiResult> {
  const nexus = ctx.task.nexus;
  return changePr(ctx.lu, (d) => {
    if (d.registrations.length > 0 || d.reservation !== null) return { result: CONFLICT };
    if (d.spc2 !== null) return { result: d.spc2 === nexus ? GOOD : CONFLICT };
    return { result: GOOD, doc: { ...cloneDoc(d), spc2: nexus } };
  });
}

/** RELEASE(6) / RELEASE(10): ends the nexus's own reservation; from any other nexus it does nothing. */
export function releaseUnit(ctx: CommandContext): ScsiResult | Promise<ScsiResult> {
  const { lu, task } = ctx;
  if (!lu.shared.prActive) return GOOD;
  return changePr(lu, (d) => {
    if (d.registrations.length > 0 || d.reservation !== null) return { result: CONFLICT };
    if (d.spc2 !== task.nexus) return { result: GOOD };
    return { result: GOOD, doc: { ...cloneDoc(d), spc2: null } };
  });
}

/**
 * End the SPC-2 reservation: any (reset), or only `nexus`'s (its I_T nexus is gone). Persistent reservations
 * are not touched: they outlive resets and nexus loss (SPC-4 5.13.1).
 */
export function releaseSpc2(lu: LogicalUnit, nexus?: string): void {
  if (!lu.shared.prActive) return;
  const held = lu.shared.prDocument<PrDoc>()?.spc2 ?? null;
  if (held === null || (nexus !== undefined && held !== nexus)) return;
  const failed = (e: unknown): void =>
    log.error('could not release the SPC-2 reservation', {
      target: lu.identity.targetName,
      lun: lu.identity.lun,
      error: (e as Error).message,
    });
  try {
    const done = changePr(lu, (d) => {
      if (d.spc2 === null || (nexus !== undefined && d.spc2 !== nexus)) return { result: GOOD };
      return { result: GOOD, doc: { ...cloneDoc(d), spc2: null } };
    });
    if (done instanceof Promise) done.catch(failed);
  } catch (e) {
    failed(e);
  }
}
