/**
 * The command table of a 'cd' LU (MMC-5, read-only): what Linux's sr driver, libiscsi and an ISO 9660 / UDF
 * reader send to a CD/DVD-ROM drive. As for the disk table (commands.ts), the usage maps are enforced by the
 * dispatcher and reported by REPORT SUPPORTED OPERATION CODES. No command that writes is offered.
 *
 * Without a medium, only the commands marked withoutMedium run; the rest answer NOT READY, MEDIUM NOT PRESENT.
 * GET CONFIGURATION and GET EVENT STATUS NOTIFICATION are not held up by a unit attention: MMC-5 has a host
 * poll them to learn of the very media changes a unit attention reports.
 */
import {
  FF,
  fixed,
  INQUIRY,
  MODE_SENSE_6,
  MODE_SENSE_10,
  PREVENT_ALLOW_MEDIUM_REMOVAL,
  REPORT_LUNS,
  REPORT_SUPPORTED_OPERATION_CODES,
  REPORT_TARGET_PORT_GROUPS,
  REQUEST_SENSE,
  START_STOP_UNIT,
  TEST_UNIT_READY,
} from './commands';
import { Opcode } from './constants';
import * as mmc from './mmc';
import * as sbc from './sbc';
import type { CommandSpec } from './types';

// Byte 1 of READ(10)/(12): DPO, FUA (accepted, nothing to do on a read-only image).
const RD = 0x18;

export const MMC_COMMANDS: readonly CommandSpec[] = [
  TEST_UNIT_READY,
  REQUEST_SENSE,
  INQUIRY,
  MODE_SENSE_6,
  START_STOP_UNIT,
  PREVENT_ALLOW_MEDIUM_REMOVAL,
  {
    opcode: Opcode.READ_CAPACITY_10,
    name: 'READ CAPACITY',
    aluaAccess: 'standby',
    cdbLength: 10,
    usage: fixed(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    exec: sbc.readCapacity10,
  },
  {
    opcode: Opcode.READ_10,
    name: 'READ(10)',
    cdbLength: 10,
    usage: fixed(0x28, RD, FF, FF, FF, FF, 0, FF, FF, 0),
    exec: sbc.read,
  },
  {
    opcode: Opcode.READ_TOC_PMA_ATIP,
    name: 'READ TOC/PMA/ATIP',
    cdbLength: 10,
    usage: fixed(0x43, 0x02, 0x0f, 0, 0, 0, FF, FF, FF, 0),
    exec: mmc.readToc,
  },
  {
    opcode: Opcode.GET_CONFIGURATION,
    name: 'GET CONFIGURATION',
    cdbLength: 10,
    usage: fixed(0x46, 0x03, FF, FF, 0, 0, 0, FF, FF, 0),
    ignoresUnitAttention: true,
    withoutMedium: true,
    exec: mmc.getConfiguration,
  },
  {
    opcode: Opcode.GET_EVENT_STATUS_NOTIFICATION,
    name: 'GET EVENT STATUS NOTIFICATION',
    cdbLength: 10,
    usage: fixed(0x4a, 0x01, 0, 0, FF, 0, 0, FF, FF, 0),
    ignoresUnitAttention: true,
    withoutMedium: true,
    exec: mmc.getEventStatusNotification,
  },
  {
    opcode: Opcode.READ_DISC_INFORMATION,
    name: 'READ DISC INFORMATION',
    cdbLength: 10,
    usage: fixed(0x51, 0x07, 0, 0, 0, 0, 0, FF, FF, 0),
    exec: mmc.readDiscInformation,
  },
  MODE_SENSE_10,
  REPORT_LUNS,
  REPORT_TARGET_PORT_GROUPS,
  REPORT_SUPPORTED_OPERATION_CODES,
  {
    opcode: Opcode.READ_12,
    name: 'READ(12)',
    cdbLength: 12,
    usage: fixed(0xa8, RD, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0),
    exec: sbc.read,
  },
];
