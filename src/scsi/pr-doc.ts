/**
 * The reservation state of one logical unit as it is kept in the LU's shared PR document (LuShared.prDocument,
 * src/scsi/lu-shared.ts): the persistent reservation registrations and reservation (SPC-4 5.13), the
 * PRgeneration, the APTPL setting, and the SPC-2 RESERVE holder. Plus the rules every user of the document
 * needs: who holds the reservation, what the iSCSI TransportID of an I_T nexus is.
 *
 * Registrations belong to an I_T nexus. Our nexus string is `${InitiatorName},i,0x${ISID}|${TargetName}`: the
 * initiator port is the iSCSI TransportID "name,i,0xISID" (SPC-4 7.6.4.6, format 01h) and the target port is the
 * target (one target port per target, relative target port identifier lu.relativeTargetPort).
 */
import { PrType } from './constants';

export interface PrRegistration {
  nexus: string;
  /** The reservation key, 16 lower-case hex digits (never all zero). */
  key: string;
  /** Registered with ALL_TG_PT = 1 (reported in READ FULL STATUS); the target has one target port anyway. */
  allTgPt: boolean;
}

export interface PrReservation {
  /** The nexus that made it; for the all-registrants types every registrant holds it. */
  holder: string;
  type: number;
}

export interface PrDoc {
  /** PRgeneration (32 bits, wraps). */
  generation: number;
  registrations: PrRegistration[];
  reservation: PrReservation | null;
  /** Activate Persist Through Power Loss, from the last register-type service action. */
  aptpl: boolean;
  /** SPC-2 RESERVE(6)/(10) holder, or null. Never persisted: an SPC-2 reservation ends with power loss. */
  spc2: string | null;
}

export const emptyDoc = (): PrDoc => ({
  generation: 0,
  registrations: [],
  reservation: null,
  aptpl: false,
  spc2: null,
});

/** The hot path must consult the document (LuShared.prActive) exactly when this holds. */
export function docActive(d: PrDoc): boolean {
  return d.registrations.length > 0 || d.reservation !== null || d.spc2 !== null;
}

export const VALID_TYPES: ReadonlySet<number> = new Set(Object.values(PrType));

export function isAllRegistrants(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** Registrants-only and all-registrants types: every registered nexus has access. */
export function isRegistrantsType(type: number): boolean {
  return type >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
}

export function isWriteExclusive(type: number): boolean {
  return (
    type === PrType.WRITE_EXCLUSIVE ||
    type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY ||
    type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS
  );
}

export function registrationOf(d: PrDoc, nexus: string): PrRegistration | undefined {
  return d.registrations.find((r) => r.nexus === nexus);
}

/** Does this nexus hold the persistent reservation (any registrant, for the all-registrants types)? */
export function isHolder(d: PrDoc, nexus: string): boolean {
  const res = d.reservation;
  if (res === null) return false;
  if (isAllRegistrants(res.type)) return registrationOf(d, nexus) !== undefined;
  return res.holder === nexus;
}

/** The key READ RESERVATION reports: the holder's, or zero for an all-registrants reservation. */
export function reservationKey(d: PrDoc): string {
  const res = d.reservation!;
  if (isAllRegistrants(res.type)) return ZERO_KEY;
  return registrationOf(d, res.holder)?.key ?? ZERO_KEY;
}

export const ZERO_KEY = '0000000000000000';

export function keyAt(buf: Buffer, offset: number): string {
  return buf.subarray(offset, offset + 8).toString('hex');
}

/** The nexus a registration would have for an initiator port on this LU's target. */
export function nexusOf(initiatorPort: string, targetName: string): string {
  return `${initiatorPort}|${targetName}`;
}

/** The initiator port part of a nexus ("name,i,0xISID"). */
export function initiatorPortOf(nexus: string): string {
  const bar = nexus.lastIndexOf('|');
  return bar < 0 ? nexus : nexus.slice(0, bar);
}

const ISCSI_PROTOCOL = 0x5;
const FORMAT_PORT = 0x40; // FORMAT CODE 01b: iSCSI name with ISID

/** The iSCSI TransportID (format 01h) of a nexus's initiator port, padded to a multiple of 4 bytes. */
export function transportIdOf(nexus: string): Buffer {
  const name = Buffer.from(initiatorPortOf(nexus), 'utf8');
  const len = (name.length + 1 + 3) & ~3; // NUL-terminated, padded
  const b = Buffer.alloc(4 + len);
  b[0] = FORMAT_PORT | ISCSI_PROTOCOL;
  b.writeUInt16BE(len, 2);
  name.copy(b, 4);
  return b;
}

/**
 * Parse one TransportID naming an iSCSI initiator port: "name,i,0xISID" (format 01h). Returns the initiator port
 * string normalised as our nexus strings spell it (lower-case ISID), or a reason it is refused: a name without an
 * ISID (format 00h) names every port of that initiator, which cannot be the single I_T nexus a move needs.
 */
export function parseTransportId(
  b: Buffer,
): { port: string; length: number } | { error: string; byte: number } {
  if (b.length < 4) return { error: 'TransportID truncated', byte: 0 };
  if ((b[0] & 0x0f) !== ISCSI_PROTOCOL)
    return { error: `protocol identifier ${b[0] & 0x0f} is not iSCSI`, byte: 0 };
  if ((b[0] & 0xc0) !== FORMAT_PORT)
    return { error: 'TransportID format is not 01h (name and ISID)', byte: 0 };
  const len = b.readUInt16BE(2);
  if (len < 4 || len % 4 !== 0 || 4 + len > b.length) return { error: 'bad TransportID length', byte: 2 };
  const body = b.subarray(4, 4 + len);
  const nul = body.indexOf(0);
  const text = body.subarray(0, nul < 0 ? body.length : nul).toString('utf8');
  const m = /^(.+),i,0x([0-9a-fA-F]{12})$/.exec(text);
  if (!m) return { error: `TransportID '${text.slice(0, 80)}' is not "name,i,0xISID"`, byte: 4 };
  return { port: `${m[1]},i,0x${m[2].toLowerCase()}`, length: 4 + len };
}
