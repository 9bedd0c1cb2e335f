/**
 * Implicit asymmetric logical unit access (SPC-4 5.15): REPORT TARGET PORT GROUPS, and the gate that lets a
 * command through this gateway's target port only as its group's asymmetric access state allows. The states
 * themselves are configuration (src/scsi/port-groups.ts); SET TARGET PORT GROUPS is not offered (TPGS = 01b,
 * implicit only), so MAINTENANCE OUT is an unknown operation code: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
 *
 * Which commands run in which state (SPC-4 5.15.2.4, CommandSpec.aluaAccess):
 *   active/optimized, active/non-optimized  every command
 *   standby        INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE, MODE SENSE/SELECT, PERSISTENT
 *                  RESERVE IN/OUT, and READ CAPACITY (so a host can size the device on a standby path, as it does
 *                  at scan; LIO serves it there too); the rest NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT
 *                  IN STANDBY STATE (04h/0Bh)
 *   unavailable    INQUIRY, REPORT LUNS, REPORT TARGET PORT GROUPS, REQUEST SENSE; the rest 04h/0Ch
 *   transitioning  the same; the rest ASYMMETRIC ACCESS STATE TRANSITION (04h/0Ah)
 * (LOG SENSE/SELECT, SEND/RECEIVE DIAGNOSTIC and READ/WRITE BUFFER, also allowed by SPC-4, are not implemented.)
 */
import { AscQ, MaintenanceIn, Opcode, SenseKey, type Asc } from './constants';
import { ACCESS_STATE_CODE } from './port-groups';
import { ScsiError } from './sense';
import { clip } from './spc';
import type { CommandContext, CommandSpec, ScsiResult } from './types';

/** SUPPORTED states of every group: T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP (no offline, no LBA dependent). */
const SUPPORTED_STATES = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;
/** PARAMETER DATA FORMAT 001b: the extended header (FORMAT TYPE 001b, IMPLICIT TRANSITION TIME). */
const EXTENDED = 1;

const NOT_ACCESSIBLE: Readonly<Record<'standby' | 'unavailable' | 'transitioning', Asc>> = {
  standby: AscQ.TARGET_PORT_IN_STANDBY_STATE,
  unavailable: AscQ.TARGET_PORT_IN_UNAVAILABLE_STATE,
  transitioning: AscQ.ASYMMETRIC_ACCESS_STATE_TRANSITION,
};

/**
 * The refusal of a command this gateway's access state does not allow, or null when it may run. One property
 * read on the hot path: a target without ALUA is always active/optimized.
 */
export function aluaRefusal(state: string, spec: CommandSpec): ScsiError | null {
  if (state === 'active-optimized' || state === 'active-non-optimized') return null;
  const access = spec.aluaAccess;
  if (access === 'any' || (access === 'standby' && state === 'standby')) return null;
  return new ScsiError(SenseKey.NOT_READY, NOT_ACCESSIBLE[state as keyof typeof NOT_ACCESSIBLE]);
}

const RTPG_USAGE = Uint8Array.from([
  Opcode.MAINTENANCE_IN,
  0x20 | MaintenanceIn.REPORT_TARGET_PORT_GROUPS, // PARAMETER DATA FORMAT 000b or 001b
  ...[0, 0, 0, 0],
  ...[0xff, 0xff, 0xff, 0xff], // ALLOCATION LENGTH
  ...[0, 0],
]);

/**
 * The command table's entry (commands.ts, mmc-commands.ts): offered where the target has port groups (INQUIRY
 * TPGS = 01b); PARAMETER DATA FORMAT values other than 000b and 001b fall outside the usage map and are refused.
 */
export const REPORT_TARGET_PORT_GROUPS: CommandSpec = {
  opcode: Opcode.MAINTENANCE_IN,
  serviceAction: MaintenanceIn.REPORT_TARGET_PORT_GROUPS,
  name: 'REPORT TARGET PORT GROUPS',
  reservation: 'any',
  aluaAccess: 'any',
  cdbLength: 12,
  usage: () => RTPG_USAGE,
  available: (lu) => lu.ports.enabled,
  withoutMedium: true,
  exec: reportTargetPortGroups,
};

/**
 * REPORT TARGET PORT GROUPS (MAINTENANCE IN, service action 0Ah): one descriptor per configured group with its
 * state, PREF, supported states, status code and relative target ports. RETURN DATA LENGTH counts the bytes after
 * itself (n - 3) in both formats, so an initiator reading descriptors from byte 4 (length only) or byte 8
 * (extended) up to that length finds them all.
 */
export function reportTargetPortGroups(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const format = cdb[1] >> 5; // 000b or 001b: the usage map refuses the reserved values
  const alloc = cdb.readUInt32BE(6);
  const ports = lu.ports;
  const parts: Buffer[] = [Buffer.alloc(format === EXTENDED ? 8 : 4)];
  for (const g of ports.groups) {
    const d = Buffer.alloc(8 + 4 * g.ports.length);
    d[0] = (g.preferred ? 0x80 : 0) | ACCESS_STATE_CODE[g.state];
    d[1] = SUPPORTED_STATES;
    d.writeUInt16BE(g.id, 2);
    d[5] = ports.statusOf(g.id);
    d[7] = g.ports.length;
    g.ports.forEach((p, i) => d.writeUInt16BE(p, 8 + 4 * i + 2));
    parts.push(d);
  }
  const data = Buffer.concat(parts);
  data.writeUInt32BE(data.length - 4, 0);
  if (format === EXTENDED) {
    data[4] = 0x10; // FORMAT TYPE 001b
    data[5] = 0; // IMPLICIT TRANSITION TIME: none advertised (a change is a configuration change, at once)
  }
  return clip(data, alloc);
}
