/**
 * PERSISTENT RESERVE IN (SPC-4 6.16): READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS, read
 * from the LU's shared PR document (the same for every worker). Allowed from any I_T nexus under any persistent
 * reservation; every one conflicts while an SPC-2 reservation is held (SPC-4 5.13.3).
 */
import { PrIn, Status } from './constants';
import { type PrDoc, emptyDoc, isHolder, reservationKey, transportIdOf } from './pr-doc';
import { CONFLICT } from './pr-out';
import type { CommandContext, ScsiResult } from './types';

/** REPORT CAPABILITIES byte 2: CRH (RESERVE/RELEASE handled as SPC-4 5.13.3), ATP_C, PTPL_C; SIP_C = 0. */
const CAPS_BYTE2 = 0x10 | 0x04 | 0x01;
/**
 * Byte 3: TMV = 1 with ALLOW COMMANDS 001b: TEST UNIT READY is allowed through Write Exclusive and Exclusive
 * Access reservations (it is, see the command table), nothing more is claimed.
 */
const CAPS_BYTE3 = 0x80 | (0x1 << 4);
/** PERSISTENT RESERVATION TYPE MASK: WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX; then EX_AC_AR. */
const TYPE_MASK = [0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01];

function header(d: PrDoc, additional: number): Buffer {
  const b = Buffer.alloc(8 + additional);
  b.writeUInt32BE(d.generation >>> 0, 0);
  b.writeUInt32BE(additional, 4);
  return b;
}

function readKeys(d: PrDoc): Buffer {
  const b = header(d, 8 * d.registrations.length);
  d.registrations.forEach((r, i) => b.write(r.key, 8 + 8 * i, 'hex'));
  return b;
}

function readReservation(d: PrDoc): Buffer {
  const res = d.reservation;
  if (res === null) return header(d, 0);
  const b = header(d, 16);
  b.write(reservationKey(d), 8, 'hex');
  b[21] = res.type; // SCOPE 0h: LU_SCOPE
  return b;
}

function reportCapabilities(d: PrDoc): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(8, 0);
  b[2] = CAPS_BYTE2;
  b[3] = CAPS_BYTE3 | (d.aptpl ? 0x01 : 0);
  b[4] = TYPE_MASK[0];
  b[5] = TYPE_MASK[1];
  return b;
}

function readFullStatus(d: PrDoc, relativeTargetPort: number): Buffer {
  const descriptors = d.registrations.map((r) => {
    const tid = transportIdOf(r.nexus);
    const b = Buffer.alloc(24 + tid.length);
    b.write(r.key, 0, 'hex');
    const holder = isHolder(d, r.nexus);
    b[12] = (r.allTgPt ? 0x02 : 0) | (holder ? 0x01 : 0);
    if (holder) b[13] = d.reservation!.type;
    b.writeUInt16BE(relativeTargetPort, 18);
    b.writeUInt32BE(tid.length, 20);
    tid.copy(b, 24);
    return b;
  });
  const body = Buffer.concat(descriptors);
  const b = header(d, body.length);
  body.copy(b, 8);
  return b;
}

export function persistentReserveIn(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const d = lu.shared.prDocument<PrDoc>() ?? emptyDoc();
  if (d.spc2 !== null) return CONFLICT;
  let data: Buffer;
  switch (cdb[1] & 0x1f) {
    case PrIn.READ_KEYS:
      data = readKeys(d);
      break;
    case PrIn.READ_RESERVATION:
      data = readReservation(d);
      break;
    case PrIn.REPORT_CAPABILITIES:
      data = reportCapabilities(d);
      break;
    default:
      data = readFullStatus(d, lu.relativeTargetPort);
  }
  const alloc = cdb.readUInt16BE(7);
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}
