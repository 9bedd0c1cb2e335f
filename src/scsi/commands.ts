/**
 * The command table: every command the device server implements, with its CDB usage map. Dispatch, the
 * reserved-bit check, Data-Out sizing and REPORT SUPPORTED OPERATION CODES all read this one table, so what
 * is advertised is exactly what executes.
 *
 * Usage maps mark the bits we evaluate. Fields we do not support are left out on purpose:
 * RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT (no protection information), ANCHOR (no anchored state), NACA and
 * the vendor bits of CONTROL; a CDB that sets them is refused with INVALID FIELD IN CDB pointing at the bit.
 *
 * `reservation` classifies each command for the reservation conflict check (src/scsi/reserve.ts): absent means it
 * conflicts with any reservation held by another I_T nexus, as writes do.
 *
 * WRITE ATOMIC(16) (9Ch) promises all-or-nothing, against other commands and across a crash of the target or
 * the host. A buffered file (or plain O_DIRECT) can be torn by a crash at any block or page boundary, and
 * RWF_ATOMIC covers too few cases to build on, so the guarantee comes from a redo journal per LU under the
 * state directory (src/scsi/atomic-write.ts, src/backstore/atomic-journal.ts): the record is made durable
 * before the in-place write begins and cleared only after that write is durable; start-up replays a complete
 * record and discards a torn one before any worker serves, so after a crash the blocks hold all of the new data
 * or all of the old. The range is held exclusively meanwhile. Offered on file-backed disk LUs (they always have
 * a state directory), on RBD LUs (one RADOS op inside an object; across objects a journal kept in the cluster,
 * src/backstore/rbd-atomic.ts) and on the null backstore, where it is trivially atomic: nothing is stored, every
 * read returns zeros. Not offered (INVALID COMMAND OPERATION CODE, zero ATOMIC fields in Block Limits) elsewhere:
 * a memory LU in unit tests without a journal, a cd.
 */
import {
  MaintenanceIn,
  Opcode,
  PrIn,
  PrOut,
  ReceiveCopyResults,
  Sanitize,
  ServiceActionIn16,
} from './constants';
import { REPORT_TARGET_PORT_GROUPS } from './alua';
import { checkWriteAtomic, writeAtomic16, writeAtomicDataOutLength } from './atomic-write';
import { decodeBlockRange } from './cdb';
import { inquiry } from './inquiry';
import type { LogicalUnit } from './lu';
import { modeSelect, modeSelectDataOutLength, modeSense } from './mode';
import * as medium from './medium';
import { persistentReserveIn } from './pr-in';
import { persistentReserveOut, prOutDataOutLength, prOutPrecheck } from './pr-out';
import { releaseUnit, reserveUnit } from './reserve';
import { checkSanitize, sanitize, sanitizeDataOutLength } from './sanitize';
import * as sbc from './sbc';
import * as atomic from './sbc-atomic';
import { readDefectData10, readDefectData12 } from './sbc-defect';
import * as spc from './spc';
import type { CommandSpec, ReservationAccess } from './types';
import * as xcopy from './xcopy';

export const FF = 0xff;
export { REPORT_TARGET_PORT_GROUPS };

export function fixed(...bytes: number[]): (lu: LogicalUnit) => Uint8Array {
  const map = Uint8Array.from(bytes);
  return () => map;
}

/**
 * Byte 1 of WRITE SAME: UNMAP is offered only where logical block provisioning is enabled. The bit always
 * passes the dispatcher's mask so that a write-protected LU answers DATA PROTECT first; sbc.writeSame
 * refuses UNMAP on a fully provisioned LU itself.
 */
function writeSameMaps(...bytes: number[]): Pick<CommandSpec, 'usage' | 'cdbMask'> {
  const plain = Uint8Array.from(bytes);
  const thin = Uint8Array.from(bytes);
  thin[1] |= 0x08;
  return { usage: (lu) => (lu.thinProvisioned ? thin : plain), cdbMask: () => thin };
}

function writeDataOut(cdb: Buffer, lu: LogicalUnit): number {
  return decodeBlockRange(cdb).blocks * lu.blockSize;
}

const thinOnly = (lu: LogicalUnit) => lu.thinProvisioned;

/** SBC-3 4.17: START STOP UNIT that starts the unit (START = 1, no power condition) does not conflict. */
const startStopAccess = (cdb: Buffer): ReservationAccess =>
  (cdb[4] & 0x01) !== 0 && cdb[4] >> 4 === 0 ? 'shared' : 'write';

/** PERSISTENT RESERVE IN, one entry per service action; unknown ones are INVALID FIELD IN CDB. */
const prIn = (serviceAction: number, name: string): CommandSpec => ({
  opcode: Opcode.PERSISTENT_RESERVE_IN,
  serviceAction,
  name: `PERSISTENT RESERVE IN ${name}`,
  cdbLength: 10,
  usage: fixed(0x5e, serviceAction, 0, 0, 0, 0, 0, FF, FF, 0),
  reservation: 'own',
  aluaAccess: 'standby',
  exec: persistentReserveIn,
});

/** PERSISTENT RESERVE OUT, one entry per service action: SCOPE/TYPE and the parameter list length are used. */
const prOut = (serviceAction: number, name: string): CommandSpec => ({
  opcode: Opcode.PERSISTENT_RESERVE_OUT,
  serviceAction,
  name: `PERSISTENT RESERVE OUT ${name}`,
  cdbLength: 10,
  usage: fixed(0x5f, serviceAction, FF, 0, 0, FF, FF, FF, FF, 0),
  reservation: 'own',
  aluaAccess: 'standby',
  dataOutLength: prOutDataOutLength,
  precheck: prOutPrecheck,
  exec: persistentReserveOut,
});

/** RESERVE/RELEASE (SPC-2) of the whole LU: the extent, third-party and LONGID options are not offered. */
const spc2 = (opcode: number, name: string, cdbLength: number, exec: CommandSpec['exec']): CommandSpec => ({
  opcode,
  name,
  cdbLength,
  usage: fixed(opcode, ...new Array<number>(cdbLength - 1).fill(0)),
  reservation: 'own',
  exec,
});

// Byte 1 maps: READ = DPO FUA RARC FUA_NV; WRITE = DPO FUA FUA_NV; VERIFY/WRITE AND VERIFY = DPO BYTCHK.
const RD = 0x1e;
const WR = 0x1a;
const VF = 0x16;
const GROUP = 0x1f;

// ---- Commands every device type has (the MMC table, mmc-commands.ts, shares them) -------------------------

export const TEST_UNIT_READY: CommandSpec = {
  opcode: Opcode.TEST_UNIT_READY,
  name: 'TEST UNIT READY',
  reservation: 'shared',
  cdbLength: 6,
  usage: fixed(0x00, 0, 0, 0, 0, 0),
  exec: spc.testUnitReady,
};

export const REQUEST_SENSE: CommandSpec = {
  aluaAccess: 'any',
  opcode: Opcode.REQUEST_SENSE,
  name: 'REQUEST SENSE',
  reservation: 'any',
  cdbLength: 6,
  usage: fixed(0x03, 0x01, 0, 0, FF, 0),
  ignoresUnitAttention: true,
  withoutMedium: true,
  allowedDuringSanitize: true,
  exec: spc.requestSense,
};

export const INQUIRY: CommandSpec = {
  aluaAccess: 'any',
  opcode: Opcode.INQUIRY,
  name: 'INQUIRY',
  reservation: 'any',
  cdbLength: 6,
  usage: fixed(0x12, 0x01, FF, FF, FF, 0),
  ignoresUnitAttention: true,
  withoutMedium: true,
  allowedDuringSanitize: true,
  exec: inquiry,
};

export const START_STOP_UNIT: CommandSpec = {
  opcode: Opcode.START_STOP_UNIT,
  name: 'START STOP UNIT',
  reservation: startStopAccess,
  cdbLength: 6,
  usage: fixed(0x1b, 0x01, 0, 0x0f, 0xf7, 0),
  withoutMedium: true,
  exec: medium.startStopUnit,
};

export const PREVENT_ALLOW_MEDIUM_REMOVAL: CommandSpec = {
  opcode: Opcode.PREVENT_ALLOW_MEDIUM_REMOVAL,
  name: 'PREVENT ALLOW MEDIUM REMOVAL',
  reservation: (cdb) => ((cdb[4] & 0x03) === 0 ? 'any' : 'write'),
  cdbLength: 6,
  usage: fixed(0x1e, 0, 0, 0, 0x03, 0),
  withoutMedium: true,
  exec: medium.preventAllow,
};

export const REPORT_LUNS: CommandSpec = {
  aluaAccess: 'any',
  opcode: Opcode.REPORT_LUNS,
  name: 'REPORT LUNS',
  reservation: 'any',
  cdbLength: 12,
  usage: fixed(0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0),
  ignoresUnitAttention: true,
  withoutMedium: true,
  allowedDuringSanitize: true,
  exec: (ctx) => spc.reportLuns(ctx.cdb, ctx.lunNumbers()),
};

export const REPORT_SUPPORTED_OPERATION_CODES: CommandSpec = {
  opcode: Opcode.MAINTENANCE_IN,
  serviceAction: MaintenanceIn.REPORT_SUPPORTED_OPERATION_CODES,
  name: 'REPORT SUPPORTED OPERATION CODES',
  cdbLength: 12,
  usage: fixed(0xa3, 0x0c, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0),
  withoutMedium: true,
  exec: spc.reportSupportedOperationCodes,
};

export const MODE_SENSE_6: CommandSpec = {
  aluaAccess: 'standby',
  opcode: Opcode.MODE_SENSE_6,
  name: 'MODE SENSE(6)',
  cdbLength: 6,
  usage: fixed(0x1a, 0x08, FF, FF, FF, 0),
  withoutMedium: true,
  exec: modeSense,
};

export const MODE_SENSE_10: CommandSpec = {
  aluaAccess: 'standby',
  opcode: Opcode.MODE_SENSE_10,
  name: 'MODE SENSE(10)',
  cdbLength: 10,
  usage: fixed(0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, 0),
  withoutMedium: true,
  exec: modeSense,
};

export const COMMANDS: readonly CommandSpec[] = [
  TEST_UNIT_READY,
  REQUEST_SENSE,
  {
    opcode: Opcode.READ_6,
    name: 'READ(6)',
    reservation: 'read',
    cdbLength: 6,
    usage: fixed(0x08, 0x1f, FF, FF, FF, 0),
    exec: sbc.read,
  },
  {
    opcode: Opcode.WRITE_6,
    name: 'WRITE(6)',
    cdbLength: 6,
    usage: fixed(0x0a, 0x1f, FF, FF, FF, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.write,
  },
  INQUIRY,
  {
    opcode: Opcode.MODE_SELECT_6,
    name: 'MODE SELECT(6)',
    aluaAccess: 'standby',
    cdbLength: 6,
    usage: fixed(0x15, 0x11, 0, 0, FF, 0),
    dataOutLength: modeSelectDataOutLength,
    withoutMedium: true,
    exec: modeSelect,
  },
  spc2(Opcode.RESERVE_6, 'RESERVE(6)', 6, reserveUnit),
  spc2(Opcode.RELEASE_6, 'RELEASE(6)', 6, releaseUnit),
  MODE_SENSE_6,
  START_STOP_UNIT,
  PREVENT_ALLOW_MEDIUM_REMOVAL,
  {
    opcode: Opcode.READ_CAPACITY_10,
    name: 'READ CAPACITY(10)',
    aluaAccess: 'standby',
    reservation: 'shared',
    cdbLength: 10,
    usage: fixed(0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, 0),
    exec: sbc.readCapacity10,
  },
  {
    opcode: Opcode.READ_10,
    name: 'READ(10)',
    reservation: 'read',
    cdbLength: 10,
    usage: fixed(0x28, RD, FF, FF, FF, FF, GROUP, FF, FF, 0),
    exec: sbc.read,
  },
  {
    opcode: Opcode.WRITE_10,
    name: 'WRITE(10)',
    cdbLength: 10,
    usage: fixed(0x2a, WR, FF, FF, FF, FF, GROUP, FF, FF, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.write,
  },
  {
    opcode: Opcode.WRITE_AND_VERIFY_10,
    name: 'WRITE AND VERIFY(10)',
    cdbLength: 10,
    usage: fixed(0x2e, VF, FF, FF, FF, FF, GROUP, FF, FF, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.writeAndVerify,
  },
  {
    opcode: Opcode.VERIFY_10,
    name: 'VERIFY(10)',
    reservation: 'read',
    cdbLength: 10,
    usage: fixed(0x2f, VF, FF, FF, FF, FF, GROUP, FF, FF, 0),
    dataOutLength: sbc.verifyDataOutLength,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.verify,
  },
  {
    opcode: Opcode.PRE_FETCH_10,
    name: 'PRE-FETCH(10)',
    reservation: 'read',
    cdbLength: 10,
    usage: fixed(0x34, 0x02, FF, FF, FF, FF, GROUP, FF, FF, 0),
    exec: sbc.preFetch,
  },
  {
    opcode: Opcode.SYNCHRONIZE_CACHE_10,
    name: 'SYNCHRONIZE CACHE(10)',
    cdbLength: 10,
    usage: fixed(0x35, 0x06, FF, FF, FF, FF, GROUP, FF, FF, 0),
    exec: sbc.synchronizeCache,
  },
  {
    opcode: Opcode.READ_DEFECT_DATA_10,
    name: 'READ DEFECT DATA(10)',
    cdbLength: 10,
    usage: fixed(0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, 0),
    exec: readDefectData10,
  },
  {
    opcode: Opcode.WRITE_SAME_10,
    name: 'WRITE SAME(10)',
    cdbLength: 10,
    ...writeSameMaps(0x41, 0, FF, FF, FF, FF, GROUP, FF, FF, 0),
    dataOutLength: sbc.writeSameDataOutLength,
    exec: sbc.writeSame,
  },
  {
    opcode: Opcode.UNMAP,
    name: 'UNMAP',
    cdbLength: 10,
    usage: fixed(0x42, 0, 0, 0, 0, 0, GROUP, FF, FF, 0),
    available: thinOnly,
    dataOutLength: (cdb) => cdb.readUInt16BE(7),
    exec: sbc.unmap,
  },
  ...[Sanitize.OVERWRITE, Sanitize.BLOCK_ERASE, Sanitize.EXIT_FAILURE_MODE].map((sa): CommandSpec => ({
    // A write for write protection and reservations. BLOCK ERASE only where blocks can be deallocated.
    opcode: Opcode.SANITIZE,
    serviceAction: sa,
    name: `SANITIZE ${sa === Sanitize.OVERWRITE ? 'OVERWRITE' : sa === Sanitize.BLOCK_ERASE ? 'BLOCK ERASE' : 'EXIT FAILURE MODE'}`,
    cdbLength: 10,
    usage: fixed(0x48, 0xa0 | sa, 0, 0, 0, 0, 0, FF, FF, 0),
    available: sa === Sanitize.BLOCK_ERASE ? thinOnly : undefined,
    dataOutLength: sanitizeDataOutLength,
    precheck: checkSanitize,
    timeoutSeconds: 3600,
    exec: sanitize,
  })),
  {
    opcode: Opcode.MODE_SELECT_10,
    name: 'MODE SELECT(10)',
    aluaAccess: 'standby',
    cdbLength: 10,
    usage: fixed(0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, 0),
    dataOutLength: modeSelectDataOutLength,
    withoutMedium: true,
    exec: modeSelect,
  },
  MODE_SENSE_10,
  spc2(Opcode.RESERVE_10, 'RESERVE(10)', 10, reserveUnit),
  spc2(Opcode.RELEASE_10, 'RELEASE(10)', 10, releaseUnit),
  {
    // EXTENDED COPY (LID1); LID4 (service action 01h) is not offered.
    opcode: Opcode.EXTENDED_COPY,
    serviceAction: 0x00,
    name: 'EXTENDED COPY(LID1)',
    // Writes to the LU it is sent to; the copy's other LUs are not checked against their reservations.
    reservation: 'write',
    cdbLength: 16,
    usage: fixed(0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0),
    dataOutLength: xcopy.extendedCopyDataOutLength,
    precheck: xcopy.extendedCopyPrecheck,
    exec: xcopy.extendedCopy,
  },
  {
    opcode: Opcode.RECEIVE_COPY_RESULTS,
    serviceAction: ReceiveCopyResults.COPY_STATUS,
    name: 'RECEIVE COPY RESULTS(COPY STATUS)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x84, 0x00, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0),
    exec: xcopy.copyStatus,
  },
  {
    opcode: Opcode.RECEIVE_COPY_RESULTS,
    serviceAction: ReceiveCopyResults.OPERATING_PARAMETERS,
    name: 'RECEIVE COPY RESULTS(OPERATING PARAMETERS)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0),
    exec: xcopy.operatingParameters,
  },
  {
    opcode: Opcode.RECEIVE_COPY_RESULTS,
    serviceAction: ReceiveCopyResults.FAILED_SEGMENT_DETAILS,
    name: 'RECEIVE COPY RESULTS(FAILED SEGMENT DETAILS)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x84, 0x04, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0),
    exec: xcopy.failedSegmentDetails,
  },
  // One entry per service action, named from the constant (READ_KEYS -> "READ KEYS").
  ...Object.entries(PrIn).map(([name, sa]) => prIn(sa, name.replace(/_/g, ' '))),
  ...Object.entries(PrOut).map(([name, sa]) => prOut(sa, name.replace(/_/g, ' '))),
  {
    opcode: Opcode.READ_16,
    name: 'READ(16)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x88, RD, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    exec: sbc.read,
  },
  {
    opcode: Opcode.COMPARE_AND_WRITE,
    name: 'COMPARE AND WRITE',
    cdbLength: 16,
    usage: fixed(0x89, WR, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, GROUP, 0),
    dataOutLength: atomic.compareAndWriteDataOutLength,
    precheck: atomic.checkCompareAndWrite,
    exec: atomic.compareAndWrite,
  },
  {
    opcode: Opcode.WRITE_16,
    name: 'WRITE(16)',
    cdbLength: 16,
    usage: fixed(0x8a, WR, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.write,
  },
  {
    opcode: Opcode.ORWRITE_16,
    name: 'ORWRITE(16)',
    cdbLength: 16,
    usage: fixed(0x8b, WR, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: atomic.orWrite,
  },
  {
    opcode: Opcode.WRITE_AND_VERIFY_16,
    name: 'WRITE AND VERIFY(16)',
    cdbLength: 16,
    usage: fixed(0x8e, VF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.writeAndVerify,
  },
  {
    opcode: Opcode.VERIFY_16,
    name: 'VERIFY(16)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x8f, VF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: sbc.verifyDataOutLength,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.verify,
  },
  {
    opcode: Opcode.PRE_FETCH_16,
    name: 'PRE-FETCH(16)',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    exec: sbc.preFetch,
  },
  {
    opcode: Opcode.SYNCHRONIZE_CACHE_16,
    name: 'SYNCHRONIZE CACHE(16)',
    cdbLength: 16,
    usage: fixed(0x91, 0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    exec: sbc.synchronizeCache,
  },
  {
    opcode: Opcode.WRITE_SAME_16,
    name: 'WRITE SAME(16)',
    cdbLength: 16,
    // NDOB (byte 1 bit 0): no Data-Out buffer, zeros written (or, with UNMAP, deallocated).
    ...writeSameMaps(0x93, 0x01, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: sbc.writeSameDataOutLength,
    exec: sbc.writeSame,
  },
  {
    // Bytes 10-11 (ATOMIC BOUNDARY) are outside the map: no atomic boundaries are offered (Block Limits).
    opcode: Opcode.WRITE_ATOMIC_16,
    name: 'WRITE ATOMIC(16)',
    reservation: 'write',
    cdbLength: 16,
    usage: fixed(0x9c, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, FF, FF, GROUP, 0),
    available: (lu) => lu.atomicWrites !== null,
    dataOutLength: writeAtomicDataOutLength,
    precheck: checkWriteAtomic,
    exec: writeAtomic16,
  },
  {
    opcode: Opcode.SERVICE_ACTION_IN_16,
    serviceAction: ServiceActionIn16.READ_CAPACITY_16,
    name: 'READ CAPACITY(16)',
    aluaAccess: 'standby',
    reservation: 'shared',
    cdbLength: 16,
    usage: fixed(0x9e, 0x10, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, 0),
    exec: sbc.readCapacity16,
  },
  {
    // Offered exactly where READ CAPACITY(16) reports LBPME = 1 (SBC-3 requires it there). Byte 14 is
    // reserved as in SBC-3: SBC-4's REPORT TYPE is not implemented, so a non-zero value is refused.
    opcode: Opcode.SERVICE_ACTION_IN_16,
    serviceAction: ServiceActionIn16.GET_LBA_STATUS,
    name: 'GET LBA STATUS',
    reservation: 'read',
    cdbLength: 16,
    usage: fixed(0x9e, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0),
    available: thinOnly,
    exec: sbc.getLbaStatus,
  },
  REPORT_LUNS,
  REPORT_TARGET_PORT_GROUPS,
  REPORT_SUPPORTED_OPERATION_CODES,
  {
    opcode: Opcode.READ_12,
    name: 'READ(12)',
    reservation: 'read',
    cdbLength: 12,
    usage: fixed(0xa8, RD, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    exec: sbc.read,
  },
  {
    opcode: Opcode.WRITE_12,
    name: 'WRITE(12)',
    cdbLength: 12,
    usage: fixed(0xaa, WR, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.write,
  },
  {
    opcode: Opcode.WRITE_AND_VERIFY_12,
    name: 'WRITE AND VERIFY(12)',
    cdbLength: 12,
    usage: fixed(0xae, VF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: writeDataOut,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.writeAndVerify,
  },
  {
    opcode: Opcode.VERIFY_12,
    name: 'VERIFY(12)',
    reservation: 'read',
    cdbLength: 12,
    usage: fixed(0xaf, VF, FF, FF, FF, FF, FF, FF, FF, FF, GROUP, 0),
    dataOutLength: sbc.verifyDataOutLength,
    precheck: sbc.checkBlockTransfer,
    exec: sbc.verify,
  },
  {
    opcode: Opcode.READ_DEFECT_DATA_12,
    name: 'READ DEFECT DATA(12)',
    cdbLength: 12,
    usage: fixed(0xb7, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0),
    exec: readDefectData12,
  },
];

/** Table lookup by opcode, then by service action for the opcodes that have them. */
export class CommandIndex {
  private readonly plain: Array<CommandSpec | undefined> = new Array(256);
  private readonly bySa = new Map<number, Map<number, CommandSpec>>();

  constructor(readonly commands: readonly CommandSpec[] = COMMANDS) {
    for (const c of commands) {
      if (c.serviceAction === undefined) {
        this.plain[c.opcode] = c;
      } else {
        let m = this.bySa.get(c.opcode);
        if (!m) this.bySa.set(c.opcode, (m = new Map()));
        m.set(c.serviceAction, c);
      }
    }
  }

  /** The spec, 'bad-sa' for a known opcode with an unknown service action, or undefined. */
  lookup(cdb: Buffer): CommandSpec | 'bad-sa' | undefined {
    const op = cdb[0];
    const plain = this.plain[op];
    if (plain) return plain;
    const m = this.bySa.get(op);
    if (!m) return undefined;
    return m.get(cdb[1] & 0x1f) ?? 'bad-sa';
  }
}
