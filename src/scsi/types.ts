/**
 * Shapes shared by the SCSI layer: what the iSCSI layer hands in (ScsiTask), what it gets back
 * (ScsiResult), and how a command is described in the command table (CommandSpec).
 */
import type { LogicalUnit } from './lu';
import type { LunView } from './lun-view';

export interface ScsiTask {
  /** Decoded LUN number (see decodeLun). */
  lun: number;
  /** 6..260 bytes; bytes past the command's CDB length are ignored. */
  cdb: Buffer;
  /** iSCSI Expected Data Transfer Length. */
  expectedLength: number;
  /** iSCSI R / W bits (informational: the CDB decides what the command does). */
  readFlag: boolean;
  writeFlag: boolean;
  /** Write data received, as zero-copy slices; may be shorter than the CDB asks for (EDTL < transfer length). */
  dataOut: readonly Buffer[];
  /** I_T nexus identity (initiator name + ISID + target portal group). */
  nexus: string;
  /**
   * The LU's reset epoch when the command arrived (see `lu`); a reset since then from any
   * nexus on any worker ends the command with TASK ABORTED (TAS = 1). Taken at execute when absent.
   */
  epoch?: number;
  /** What this nexus sees of the target (its session's host mapping); absent = every LUN, writable. */
  view?: LunView;
  /**
   * The LU the command was addressed to when it arrived (ScsiDispatcher.enterLun; null: none was there). When
   * given, the command runs only if that LU still serves the LUN: a LU removed or replaced live in between
   * answers it as an absent LUN. Absent: the LU serving the LUN at execute time.
   */
  lu?: LogicalUnit | null;
}

export interface ScsiResult {
  /** SAM status: 0x00 GOOD, 0x02 CHECK CONDITION, 0x18 RESERVATION CONFLICT, ... */
  status: number;
  /** Fixed-format sense data (18 bytes) with CHECK CONDITION. */
  sense?: Buffer;
  /** Data for the initiator, exactly what the command produced (already clipped to its allocation length). */
  dataIn?: Buffer;
  /**
   * True when dataIn came from the dispatcher's BufferPool: hand it back with
   * ScsiDispatcher.releaseDataIn() once the socket write is done (optional; unreturned buffers are just GC'd).
   */
  pooled?: boolean;
}

/** Everything a command handler gets. */
export interface CommandContext {
  task: ScsiTask;
  cdb: Buffer;
  lu: LogicalUnit;
  /** LUN numbers this I_T nexus sees (REPORT LUNS). */
  lunNumbers(): readonly number[];
  /**
   * The LU of this same target whose NAA designator (VPD 83h, identity.naa) is `naa` (EXTENDED COPY's copy
   * targets); undefined when no LU of this target has it or this nexus does not see it (another target's
   * LUs are never returned).
   */
  luByNaa(naa: Buffer): LogicalUnit | undefined;
  /** Writes from this I_T nexus to `lu` are refused (a read-only host mapping), whatever the LU's own state. */
  nexusReadOnly(lu: LogicalUnit): boolean;
  /** The command table, for REPORT SUPPORTED OPERATION CODES. */
  commands: readonly CommandSpec[];
}

/**
 * How a reservation held by another I_T nexus affects a command (SPC-4 5.13.1 "commands allowed in the presence
 * of various reservations", SBC-3 4.17; SPC-2 5.5.1 for RESERVE/RELEASE):
 *   any     allowed under every persistent reservation and under an SPC-2 reservation (INQUIRY, REPORT LUNS, ...)
 *   shared  allowed under every persistent reservation; conflicts with an SPC-2 reservation (TEST UNIT READY)
 *   read    allowed for a non-holder under the Write Exclusive types only (reads the medium)
 *   write   conflicts for every non-holder (except registrants under the registrants-only/all-registrants types)
 *   own     the command applies the rules itself (PERSISTENT RESERVE IN/OUT, RESERVE, RELEASE)
 */
export type ReservationAccess = 'any' | 'shared' | 'read' | 'write' | 'own';

export interface CommandSpec {
  opcode: number;
  /** Service action (for SERVICE ACTION IN(16), MAINTENANCE IN). */
  serviceAction?: number;
  name: string;
  cdbLength: number;
  /**
   * CDB usage data as REPORT SUPPORTED OPERATION CODES reports it: byte 0 is the opcode, the
   * SERVICE ACTION field holds the service action, every other bit is 1 where the device server uses the bit.
   * The dispatcher refuses any CDB with a bit set outside this map (INVALID FIELD IN CDB), so the map is what
   * is enforced, not just what is advertised.
   */
  usage(lu: LogicalUnit): Uint8Array;
  /**
   * Bits the dispatcher lets through, when wider than `usage`: a field the handler itself checks later (in
   * its proper order relative to range and write-protect checks) although this LU does not offer it.
   */
  cdbMask?(lu: LogicalUnit): Uint8Array;
  /** Whether this logical unit offers the command (e.g. UNMAP only on thin-provisioned LUs). */
  available?(lu: LogicalUnit): boolean;
  /**
   * Checks made when the command arrives, before any Data-Out is solicited or kept (range, transfer length
   * against the Block Limits maximum): throws the ScsiError the command is answered with. Only for commands
   * whose Data-Out grows with the CDB; it runs again, as part of exec, in its normal order.
   */
  precheck?(cdb: Buffer, lu: LogicalUnit): void;
  /** Bytes of Data-Out this CDB asks for; omitted for commands that never carry Data-Out. */
  dataOutLength?(cdb: Buffer, lu: LogicalUnit): number;
  /** Not blocked by a pending unit attention (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  ignoresUnitAttention?: boolean;
  /**
   * Runs on a removable LU whose medium is ejected (INQUIRY, START STOP UNIT, ...); every other command is
   * answered NOT READY, MEDIUM NOT PRESENT by the dispatcher.
   */
  withoutMedium?: boolean;
  /**
   * Class of the command in the reservation conflict tables (a function where it depends on the CDB, as for
   * PREVENT ALLOW MEDIUM REMOVAL); absent means 'write', the safe default: it conflicts with every reservation.
   */
  reservation?: ReservationAccess | ((cdb: Buffer) => ReservationAccess);
  /**
   * Runs through a target port whose group is not active (src/scsi/alua.ts): 'any' in every asymmetric access
   * state (INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT TARGET PORT GROUPS), 'standby' also in standby (MODE
   * SENSE/SELECT, PERSISTENT RESERVE IN/OUT, READ CAPACITY); absent: only in the active states.
   */
  aluaAccess?: 'any' | 'standby';
  /** Served while a SANITIZE runs or after one failed (INQUIRY, REPORT LUNS, REQUEST SENSE; sanitize.ts). */
  allowedDuringSanitize?: boolean;
  /** Recommended timeout for REPORT SUPPORTED OPERATION CODES (seconds); default 30. */
  timeoutSeconds?: number;
  exec(ctx: CommandContext): Promise<ScsiResult> | ScsiResult;
}

// ---- mode pages (mode.ts, and the MMC pages of mmc.ts) --------------------------------------------------

export const PC_CURRENT = 0;
export const PC_CHANGEABLE = 1;
export const PC_DEFAULT = 2;
export const PC_SAVED = 3;

export interface ModePage {
  code: number;
  /** Page bytes (header included) for the given page control. */
  build(lu: LogicalUnit, pc: number): Buffer;
}

/** A zeroed mode page of `length` bytes after its 2-byte header: PS = 0 (not savable), SPF = 0. */
export function modePage(code: number, length: number): Buffer {
  const b = Buffer.alloc(length + 2);
  b[0] = code;
  b[1] = length;
  return b;
}
