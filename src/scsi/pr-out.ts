/**
 * PERSISTENT RESERVE OUT (SPC-4 6.17, 5.13.7 to 5.13.11): REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE,
 * RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND MOVE.
 *
 * Every change goes through changePr: one synchronous critical section under the LU's PR lock (LuShared.updatePr)
 * that decides against the current document, persists the new one when APTPL is in effect, and only then makes
 * it visible to every worker. Unit attentions for the nexuses a change affects are established right after,
 * before the command completes.
 *
 * Offered: all six reservation types, ALL_TG_PT (the target has a single target port, so "all target ports" is
 * the one the command came through), APTPL. Refused with INVALID FIELD IN PARAMETER LIST: SPEC_I_PT (registering
 * other initiator ports), reported as not supported by REPORT CAPABILITIES (SIP_C = 0).
 *
 * PREEMPT AND ABORT removes the registrations and reservation as PREEMPT does; the preempted nexuses' tasks
 * already in progress are not aborted (they may live on other workers, with no per-nexus abort in shared state),
 * but every later command of theirs meets the REGISTRATIONS PREEMPTED unit attention and then the reservation.
 */
import { AscQ, PrOut, PrType, SenseKey, Status } from './constants';
import type { LogicalUnit } from './lu';
import { PR_CAPACITY, PrCapacityError, UA, type UaCondition } from './lu-shared';
import { persistPr } from './pr-aptpl';
import {
  type PrDoc,
  VALID_TYPES,
  ZERO_KEY,
  docActive,
  emptyDoc,
  isAllRegistrants,
  isHolder,
  isRegistrantsType,
  keyAt,
  nexusOf,
  parseTransportId,
  registrationOf,
  reservationKey,
} from './pr-doc';
import {
  ScsiError,
  internalFailure,
  invalidFieldInCdb,
  invalidFieldInParameterList,
  parameterListLengthError,
} from './sense';
import type { SharedPrStore } from './pr-shared';
import type { CommandContext, ScsiResult } from './types';

export const CONFLICT: ScsiResult = Object.freeze({ status: Status.RESERVATION_CONFLICT });
export const GOOD: ScsiResult = Object.freeze({ status: Status.GOOD });

/** The basic PERSISTENT RESERVE OUT parameter list (SPC-4 table "PERSISTENT RESERVE OUT parameter list"). */
const BASIC_LENGTH = 24;
/** Longest parameter list accepted: REGISTER AND MOVE with one iSCSI TransportID (at most 4 + 256 bytes). */
export const PR_OUT_MAX_LENGTH = 1024;

type Ua = readonly [UaCondition, string[]];

export interface PrChange {
  result: ScsiResult;
  /** The new document (a fresh object: documents handed out by LuShared are read-only); omitted: unchanged. */
  doc?: PrDoc;
  uas?: Ua[];
}

export function cloneDoc(d: PrDoc): PrDoc {
  return {
    ...d,
    registrations: d.registrations.map((r) => ({ ...r })),
    reservation: d.reservation && { ...d.reservation },
  };
}

function bump(d: PrDoc): void {
  d.generation = (d.generation + 1) >>> 0;
}

/** Why a change failed, as the sense the command ends in. */
function prFailure(lu: LogicalUnit, e: unknown): ScsiError {
  if (e instanceof ScsiError) return e;
  if (e instanceof PrCapacityError)
    return new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INSUFFICIENT_REGISTRATION_RESOURCES);
  lu.ioFault('write', e);
  return internalFailure();
}

/** The unit attentions a change establishes, before its command completes. */
function establishUas(lu: LogicalUnit, uas: Ua[], result: ScsiResult): ScsiResult {
  for (const [cond, only] of uas) if (only.length > 0) lu.shared.establish(cond, { only });
  return result;
}

/**
 * Change the LU's reservation state: `fn` decides from the current document (synchronously, under the lock).
 * The new document is persisted first when APTPL is (or was) in effect, so it is durable before any nexus
 * sees it; an I/O error there leaves the state as it was and fails the command.
 */
export function changePr(lu: LogicalUnit, fn: (d: PrDoc) => PrChange): ScsiResult | Promise<ScsiResult> {
  if (lu.prStore !== undefined) return changeSharedPr(lu, lu.prStore, fn);
  let uas: Ua[] = [];
  let result: ScsiResult;
  try {
    result = lu.shared.updatePr<PrDoc, ScsiResult>((cur) => {
      const out = fn(cur ?? emptyDoc());
      uas = out.uas ?? [];
      if (out.doc === undefined) return { result: out.result };
      if (Buffer.byteLength(JSON.stringify(out.doc)) > PR_CAPACITY) throw new PrCapacityError();
      if (lu.prFile !== undefined) persistPr(lu.prFile, lu.identity.serial, cur, out.doc);
      return { doc: out.doc, active: docActive(out.doc), result: out.result };
    });
  } catch (e) {
    throw prFailure(lu, e);
  }
  return establishUas(lu, uas, result);
}

/**
 * The same change where the state is shared by gateways (src/scsi/pr-shared.ts): decided against the stored
 * document, compare-and-swapped into the store, mirrored here; the unit attentions go to this gateway's nexuses.
 */
async function changeSharedPr(
  lu: LogicalUnit,
  store: SharedPrStore,
  fn: (d: PrDoc) => PrChange,
): Promise<ScsiResult> {
  let uas: Ua[] = [];
  let result: ScsiResult;
  try {
    result = await store.change((cur) => {
      const out = fn(cur ?? emptyDoc());
      uas = out.uas ?? [];
      if (out.doc !== undefined && Buffer.byteLength(JSON.stringify(out.doc)) > PR_CAPACITY - 64)
        throw new PrCapacityError();
      return { doc: out.doc, result: out.result };
    });
  } catch (e) {
    throw prFailure(lu, e);
  }
  return establishUas(lu, uas, result);
}

interface Params {
  key: string;
  saKey: string;
  allTgPt: boolean;
  aptpl: boolean;
}

/** The parameter list, checked for its length (SPC-4 6.17.3) and the options we do not offer. */
function parameters(ctx: CommandContext, sa: number): { p: Params; data: Buffer } {
  const { cdb, lu, task } = ctx;
  const length = cdb.readUInt32BE(5);
  const data = task.dataOut.length === 1 ? task.dataOut[0] : Buffer.concat(task.dataOut);
  const move = sa === PrOut.REGISTER_AND_MOVE;
  if (length < BASIC_LENGTH || length > PR_OUT_MAX_LENGTH || data.length < length) {
    lu.badRequest('PERSISTENT RESERVE OUT parameter list length', { length, received: data.length, sa });
    throw parameterListLengthError();
  }
  if (!move && (data[20] & 0x08) !== 0) {
    lu.badRequest('PERSISTENT RESERVE OUT with SPEC_I_PT (not supported)', { sa });
    throw invalidFieldInParameterList(20, 3);
  }
  if (!move && length !== BASIC_LENGTH) {
    lu.badRequest('PERSISTENT RESERVE OUT parameter list length', { length, sa });
    throw parameterListLengthError();
  }
  const p: Params = {
    key: keyAt(data, 0),
    saKey: keyAt(data, 8),
    allTgPt: !move && (data[20] & 0x04) !== 0,
    aptpl: ((move ? data[17] : data[20]) & 0x01) !== 0,
  };
  return { p, data };
}

/** SCOPE must be LU_SCOPE and TYPE one of the six types, for the service actions that use them. */
function checkScopeType(lu: LogicalUnit, cdb: Buffer): number {
  const scope = cdb[2] >> 4;
  const type = cdb[2] & 0x0f;
  if (scope !== 0) {
    lu.badRequest('PERSISTENT RESERVE OUT scope', { scope });
    throw invalidFieldInCdb(2, 7);
  }
  if (!VALID_TYPES.has(type)) {
    lu.badRequest('PERSISTENT RESERVE OUT type', { type });
    throw invalidFieldInCdb(2, 3);
  }
  return type;
}

/** The nexuses registered, other than `nexus`. */
const othersOf = (d: PrDoc, nexus: string): string[] =>
  d.registrations.filter((r) => r.nexus !== nexus).map((r) => r.nexus);

/** Remove a registration; a reservation it alone held ends (SPC-4 5.13.11.2.2 / 5.13.11.3). */
function unregister(n: PrDoc, nexus: string): Ua[] {
  n.registrations = n.registrations.filter((r) => r.nexus !== nexus);
  const res = n.reservation;
  if (res === null) return [];
  if (isAllRegistrants(res.type)) {
    if (n.registrations.length === 0) n.reservation = null;
    return [];
  }
  if (res.holder !== nexus) return [];
  n.reservation = null;
  const registrantsOnly =
    res.type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY ||
    res.type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY;
  return registrantsOnly ? [[UA.RESERVATIONS_RELEASED, othersOf(n, nexus)]] : [];
}

function register(d: PrDoc, nexus: string, p: Params, ignoreKey: boolean): PrChange {
  const reg = registrationOf(d, nexus);
  if (reg === undefined) {
    if (!ignoreKey && p.key !== ZERO_KEY) return { result: CONFLICT };
    if (p.saKey === ZERO_KEY) return { result: GOOD };
    const n = cloneDoc(d);
    n.registrations.push({ nexus, key: p.saKey, allTgPt: p.allTgPt });
    n.aptpl = p.aptpl;
    bump(n);
    return { result: GOOD, doc: n };
  }
  if (!ignoreKey && p.key !== reg.key) return { result: CONFLICT };
  const n = cloneDoc(d);
  bump(n);
  if (p.saKey === ZERO_KEY) return { result: GOOD, doc: n, uas: unregister(n, nexus) };
  registrationOf(n, nexus)!.key = p.saKey;
  n.aptpl = p.aptpl;
  return { result: GOOD, doc: n };
}

function reserve(d: PrDoc, nexus: string, type: number): PrChange {
  const res = d.reservation;
  if (res !== null) return { result: isHolder(d, nexus) && res.type === type ? GOOD : CONFLICT };
  const n = cloneDoc(d);
  n.reservation = { holder: nexus, type };
  return { result: GOOD, doc: n };
}

function release(lu: LogicalUnit, d: PrDoc, nexus: string, type: number): PrChange {
  const res = d.reservation;
  if (res === null || !isHolder(d, nexus)) return { result: GOOD };
  if (res.type !== type) {
    lu.badRequest('PERSISTENT RESERVE OUT RELEASE of another type', { held: res.type, type });
    throw new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
  }
  const n = cloneDoc(d);
  n.reservation = null;
  return {
    result: GOOD,
    doc: n,
    uas: isRegistrantsType(res.type) ? [[UA.RESERVATIONS_RELEASED, othersOf(d, nexus)]] : [],
  };
}

function clear(d: PrDoc, nexus: string): PrChange {
  const n = cloneDoc(d);
  n.registrations = [];
  n.reservation = null;
  bump(n);
  return { result: GOOD, doc: n, uas: [[UA.RESERVATIONS_PREEMPTED, othersOf(d, nexus)]] };
}

function preempt(lu: LogicalUnit, d: PrDoc, nexus: string, p: Params, type: number): PrChange {
  const res = d.reservation;
  const n = cloneDoc(d);
  const removeWhere = (keep: (r: PrDoc['registrations'][number]) => boolean): string[] => {
    const gone = n.registrations.filter((r) => !keep(r)).map((r) => r.nexus);
    n.registrations = n.registrations.filter(keep);
    return gone;
  };
  if (res !== null && isAllRegistrants(res.type) && p.saKey === ZERO_KEY) {
    // Preempting an all-registrants reservation: every other registration goes, and this nexus reserves anew.
    const gone = removeWhere((r) => r.nexus === nexus);
    n.reservation = { holder: nexus, type };
    bump(n);
    return { result: GOOD, doc: n, uas: [[UA.REGISTRATIONS_PREEMPTED, gone]] };
  }
  if (res !== null && !isAllRegistrants(res.type) && reservationKey(d) === p.saKey) {
    // Preempting the holder: its key's registrations go (not ours), and the reservation becomes ours.
    const gone = removeWhere((r) => r.key !== p.saKey || r.nexus === nexus);
    n.reservation = { holder: nexus, type };
    bump(n);
    const uas: Ua[] = [[UA.REGISTRATIONS_PREEMPTED, gone]];
    if (res.type !== type) uas.push([UA.RESERVATIONS_RELEASED, othersOf(n, nexus)]);
    return { result: GOOD, doc: n, uas };
  }
  // No reservation to preempt: only registrations are removed, those with the given key.
  if (p.saKey === ZERO_KEY) {
    lu.badRequest('PERSISTENT RESERVE OUT PREEMPT with a zero service action reservation key');
    throw invalidFieldInParameterList(8);
  }
  const gone = removeWhere((r) => r.key !== p.saKey || r.nexus === nexus);
  if (gone.length === 0) return { result: CONFLICT };
  bump(n);
  return { result: GOOD, doc: n, uas: [[UA.REGISTRATIONS_PREEMPTED, gone]] };
}

function registerAndMove(lu: LogicalUnit, d: PrDoc, nexus: string, p: Params, data: Buffer): PrChange {
  const length = data.length;
  if (p.saKey === ZERO_KEY) {
    lu.badRequest('REGISTER AND MOVE with a zero service action reservation key');
    throw invalidFieldInParameterList(8);
  }
  const res = d.reservation;
  if (res === null || isAllRegistrants(res.type) || res.holder !== nexus) return { result: CONFLICT };
  const tidLength = data.readUInt32BE(20);
  if (BASIC_LENGTH + tidLength > length) {
    lu.badRequest('REGISTER AND MOVE TransportID beyond the parameter list', { tidLength, length });
    throw parameterListLengthError();
  }
  const rtpi = data.readUInt16BE(18);
  if (rtpi !== lu.relativeTargetPort) {
    lu.badRequest('REGISTER AND MOVE to an unknown target port', { rtpi });
    throw invalidFieldInParameterList(18);
  }
  const tid = parseTransportId(data.subarray(BASIC_LENGTH, BASIC_LENGTH + tidLength));
  if ('error' in tid) {
    lu.badRequest(`REGISTER AND MOVE: ${tid.error}`);
    throw invalidFieldInParameterList(BASIC_LENGTH + tid.byte);
  }
  const dest = nexusOf(tid.port, nexus.slice(nexus.lastIndexOf('|') + 1));
  if (dest === nexus) {
    lu.badRequest('REGISTER AND MOVE to the I_T nexus it came from');
    throw invalidFieldInParameterList(BASIC_LENGTH + 4);
  }
  const n = cloneDoc(d);
  const existing = registrationOf(n, dest);
  if (existing) existing.key = p.saKey;
  else n.registrations.push({ nexus: dest, key: p.saKey, allTgPt: false });
  n.reservation = { holder: dest, type: res.type };
  if ((data[17] & 0x02) !== 0) n.registrations = n.registrations.filter((r) => r.nexus !== nexus);
  n.aptpl = p.aptpl;
  bump(n);
  return { result: GOOD, doc: n };
}

export function persistentReserveOut(ctx: CommandContext): ScsiResult | Promise<ScsiResult> {
  const { cdb, lu, task } = ctx;
  const sa = cdb[1] & 0x1f;
  const usesType =
    sa === PrOut.RESERVE || sa === PrOut.RELEASE || sa === PrOut.PREEMPT || sa === PrOut.PREEMPT_AND_ABORT;
  const type = usesType ? checkScopeType(lu, cdb) : 0;
  const { p, data } = parameters(ctx, sa);
  const nexus = task.nexus;
  return changePr(lu, (d) => {
    // An SPC-2 reservation makes every PERSISTENT RESERVE command conflict (SPC-4 5.13.3).
    if (d.spc2 !== null) return { result: CONFLICT };
    if (sa === PrOut.REGISTER) return register(d, nexus, p, false);
    if (sa === PrOut.REGISTER_AND_IGNORE_EXISTING_KEY) return register(d, nexus, p, true);
    // Every other service action needs this nexus registered under the key it gives.
    const reg = registrationOf(d, nexus);
    if (reg === undefined || reg.key !== p.key) return { result: CONFLICT };
    switch (sa) {
      case PrOut.RESERVE:
        return reserve(d, nexus, type);
      case PrOut.RELEASE:
        return release(lu, d, nexus, type);
      case PrOut.CLEAR:
        return clear(d, nexus);
      case PrOut.PREEMPT:
      case PrOut.PREEMPT_AND_ABORT:
        return preempt(lu, d, nexus, p, type);
      case PrOut.REGISTER_AND_MOVE:
        return registerAndMove(lu, d, nexus, p, data.subarray(0, cdb.readUInt32BE(5)));
      default:
        throw invalidFieldInCdb(1, 4); // the command table offers no other service action
    }
  });
}

/** Data-Out of PERSISTENT RESERVE OUT: the PARAMETER LIST LENGTH, refused on arrival when it cannot be right. */
export function prOutDataOutLength(cdb: Buffer): number {
  return cdb.readUInt32BE(5);
}

export function prOutPrecheck(cdb: Buffer, lu: LogicalUnit): void {
  const length = cdb.readUInt32BE(5);
  if (length > PR_OUT_MAX_LENGTH) {
    lu.badRequest('PERSISTENT RESERVE OUT parameter list length', { length });
    throw parameterListLengthError();
  }
}
