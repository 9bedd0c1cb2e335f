/**
 * INQUIRY (SPC-4): standard data and the VPD pages 00h, 80h, 83h (SPC-4) and, for a disk, 8Fh (SPC-4, third-party
 * copy) and B0h, B1h, B2h (SBC-3). A 'cd' LU is an MMC device (peripheral type 05h, RMB = 1) with the SPC pages
 * only.
 */
import { DEVICE_TYPE_MMC, DEVICE_TYPE_SBC, Status, VersionDescriptor } from './constants';
import type { LogicalUnit } from './lu';
import { invalidFieldInCdb } from './sense';
import type { CommandContext, ScsiResult } from './types';
import { thirdPartyCopyDescriptors } from './xcopy';

const STANDARD_LENGTH = 96;
/** TPGS = 01b (byte 5 bits 5..4): implicit asymmetric access only; SET TARGET PORT GROUPS is not supported. */
const TPGS_IMPLICIT = 0x10;

function ascii(buf: Buffer, text: string, off: number, len: number): void {
  buf.write(text.padEnd(len, ' ').slice(0, len), off, len, 'ascii');
}

function clip(data: Buffer, alloc: number): ScsiResult {
  return { status: Status.GOOD, dataIn: alloc < data.length ? data.subarray(0, alloc) : data };
}

/** PERIPHERAL DEVICE TYPE, with qualifier 000b (connected). */
export function peripheralType(lu: LogicalUnit): number {
  return lu.type === 'cd' ? DEVICE_TYPE_MMC : DEVICE_TYPE_SBC;
}

export function standardInquiry(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(STANDARD_LENGTH);
  b[0] = peripheralType(lu);
  b[1] = lu.removable ? 0x80 : 0x00; // RMB
  b[2] = 0x06; // VERSION: SPC-4
  b[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
  b[4] = STANDARD_LENGTH - 5;
  // 3PC: a disk offers EXTENDED COPY (xcopy.ts), a cd does not. TPGS 01b: implicit ALUA when the target has
  // port groups (alua.ts). No SCCS, ACC, PROTECT.
  b[5] = (lu.type === 'cd' ? 0x00 : 0x08) | (lu.ports.enabled ? TPGS_IMPLICIT : 0);
  // MULTIP: the target device has several ports (the gateways of its port groups).
  b[6] = lu.ports.groups.reduce((n, g) => n + g.ports.length, 0) > 1 ? 0x10 : 0x00;
  b[7] = 0x02; // CMDQUE
  const id = lu.identity;
  ascii(b, id.vendor, 8, 8);
  ascii(b, id.product, 16, 16);
  ascii(b, id.revision, 32, 4);
  ascii(b, id.serial, 36, 20); // vendor specific: the unit serial number
  const versions = [
    VersionDescriptor.SAM_5,
    VersionDescriptor.ISCSI,
    VersionDescriptor.SPC_4,
    lu.type === 'cd' ? VersionDescriptor.MMC_5 : VersionDescriptor.SBC_3,
  ];
  versions.forEach((v, i) => b.writeUInt16BE(v, 58 + i * 2));
  return b;
}

/** Standard data for a LUN with no logical unit behind it: qualifier 011b, device type 1Fh. */
export function absentLunInquiry(): Buffer {
  const b = Buffer.alloc(36);
  b[0] = 0x7f;
  b[2] = 0x06;
  b[3] = 0x12;
  b[4] = 36 - 5;
  return b;
}

type VpdBuilder = (lu: LogicalUnit) => Buffer;

function vpdPage(lu: LogicalUnit, code: number, body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b[0] = peripheralType(lu);
  b[1] = code;
  b.writeUInt16BE(body.length, 2);
  body.copy(b, 4);
  return b;
}

function designator(
  codeSet: number,
  piv: boolean,
  protocol: number,
  assoc: number,
  type: number,
  value: Buffer,
): Buffer {
  const d = Buffer.alloc(4 + value.length);
  d[0] = ((protocol & 0x0f) << 4) | codeSet;
  d[1] = (piv ? 0x80 : 0) | ((assoc & 3) << 4) | (type & 0x0f);
  d[3] = value.length;
  value.copy(d, 4);
  return d;
}

const CODE_BINARY = 1;
const CODE_ASCII = 2;
const CODE_UTF8 = 3;
const PROTOCOL_ISCSI = 5;
const ASSOC_LU = 0;
const ASSOC_PORT = 1;
const ASSOC_TARGET = 2;

function deviceIdentification(lu: LogicalUnit): Buffer {
  const id = lu.identity;
  const t10 = Buffer.alloc(8 + id.serial.length);
  ascii(t10, id.vendor, 0, 8);
  t10.write(id.serial, 8, 'ascii');
  const port = Buffer.alloc(4);
  port.writeUInt16BE(lu.relativeTargetPort, 2);
  // SCSI name string: null-terminated UTF-8, padded to a multiple of 4 bytes.
  const nameBytes = Buffer.from(id.targetName, 'utf8');
  const name = Buffer.alloc((nameBytes.length + 4) & ~3);
  nameBytes.copy(name);
  const parts = [
    designator(CODE_BINARY, false, 0, ASSOC_LU, 0x3, id.naa), // NAA
    designator(CODE_ASCII, false, 0, ASSOC_LU, 0x1, t10), // T10 vendor ID
    designator(CODE_BINARY, true, PROTOCOL_ISCSI, ASSOC_PORT, 0x4, port), // relative target port
    designator(CODE_UTF8, true, PROTOCOL_ISCSI, ASSOC_TARGET, 0x8, name), // target device name
  ];
  const group = lu.ports.localGroup;
  if (group !== undefined) {
    // Target port group (SPC-4: required with TPGS != 00b): the group of the port the INQUIRY came through.
    const g = Buffer.alloc(4);
    g.writeUInt16BE(group, 2);
    parts.splice(3, 0, designator(CODE_BINARY, true, PROTOCOL_ISCSI, ASSOC_PORT, 0x5, g));
  }
  return vpdPage(lu, 0x83, Buffer.concat(parts));
}

function blockLimits(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c);
  const l = lu.limits;
  body[0] = 0x00; // WSNZ = 0: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 runs to the end of the medium
  body[1] = l.maxCompareAndWriteBlocks; // MAXIMUM COMPARE AND WRITE LENGTH
  body.writeUInt16BE(Math.min(0xffff, l.granularityBlocks), 2);
  body.writeUInt32BE(l.maxTransferBlocks, 4);
  body.writeUInt32BE(l.optimalTransferBlocks, 8);
  body.writeUInt32BE(0, 12); // MAXIMUM PREFETCH LENGTH: no limit reported
  if (lu.thinProvisioned) {
    body.writeUInt32BE(l.maxUnmapBlocks, 16);
    body.writeUInt32BE(l.maxUnmapDescriptors, 20);
    body.writeUInt32BE(l.granularityBlocks, 24); // OPTIMAL UNMAP GRANULARITY
    body.writeUInt32BE(0x80000000, 28); // UGAVALID, alignment 0
  }
  body.writeUInt32BE(0, 32);
  body.writeUInt32BE(l.maxWriteSameBlocks, 36); // MAXIMUM WRITE SAME LENGTH (low half of 8 bytes)
  if (l.maxAtomicTransferBlocks > 0) {
    // Page bytes 44..63 (WRITE ATOMIC, atomic-write.ts): whole physical blocks up to the maximum, and
    // MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY / MAXIMUM ATOMIC BOUNDARY SIZE zero: no boundaries.
    body.writeUInt32BE(l.maxAtomicTransferBlocks, 40);
    body.writeUInt32BE(l.atomicUnitBlocks, 44); // ATOMIC ALIGNMENT
    body.writeUInt32BE(l.atomicUnitBlocks, 48); // ATOMIC TRANSFER LENGTH GRANULARITY
  }
  return vpdPage(lu, 0xb0, body);
}

function blockDeviceCharacteristics(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(0x3c);
  body.writeUInt16BE(lu.limits.rotationRate, 0);
  // WABEREQ 01b: after SANITIZE BLOCK ERASE a read of a block not written since succeeds (it reads zeros,
  // LBPRZ). Only a thin LU offers BLOCK ERASE; elsewhere 00b. WACEREQ 00b: no CRYPTO ERASE.
  if (lu.thinProvisioned) body[3] = 0x40;
  return vpdPage(lu, 0xb1, body);
}

function logicalBlockProvisioning(lu: LogicalUnit): Buffer {
  const body = Buffer.alloc(4);
  if (lu.thinProvisioned) {
    body[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ
    body[2] = 0x02; // PROVISIONING TYPE: thin
  }
  return vpdPage(lu, 0xb2, body);
}

function thirdPartyCopy(lu: LogicalUnit): Buffer {
  return vpdPage(lu, 0x8f, thirdPartyCopyDescriptors(lu));
}

function unitSerialNumber(lu: LogicalUnit): Buffer {
  return vpdPage(lu, 0x80, Buffer.from(lu.identity.serial, 'ascii'));
}

const SPC_VPD_PAGES: ReadonlyArray<[number, VpdBuilder]> = [
  [0x00, supportedPages],
  [0x80, unitSerialNumber],
  [0x83, deviceIdentification],
];

const SBC_VPD_PAGES: ReadonlyArray<[number, VpdBuilder]> = [
  ...SPC_VPD_PAGES,
  [0x8f, thirdPartyCopy],
  [0xb0, blockLimits],
  [0xb1, blockDeviceCharacteristics],
  [0xb2, logicalBlockProvisioning],
];

/** The VPD pages a LU has: the block device pages belong to a disk only. */
function vpdPages(lu: LogicalUnit): ReadonlyArray<[number, VpdBuilder]> {
  return lu.type === 'cd' ? SPC_VPD_PAGES : SBC_VPD_PAGES;
}

function supportedPages(lu: LogicalUnit): Buffer {
  return vpdPage(lu, 0x00, Buffer.from(vpdPages(lu).map(([code]) => code)));
}

export function vpd(lu: LogicalUnit, page: number): Buffer | undefined {
  const entry = vpdPages(lu).find(([code]) => code === page);
  return entry?.[1](lu);
}

export function inquiry(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const evpd = (cdb[1] & 0x01) !== 0;
  const page = cdb[2];
  const alloc = cdb.readUInt16BE(3);
  if (!evpd) {
    if (page !== 0) throw invalidFieldInCdb(2, 7);
    return clip(standardInquiry(lu), alloc);
  }
  const data = vpd(lu, page);
  if (!data) throw invalidFieldInCdb(2, 7);
  return clip(data, alloc);
}

/** INQUIRY addressed to a LUN without a logical unit. */
export function inquiryAbsentLun(cdb: Buffer): ScsiResult {
  if ((cdb[1] & 0xfe) !== 0) throw invalidFieldInCdb(1, 1);
  if ((cdb[1] & 0x01) === 0 && cdb[2] !== 0) throw invalidFieldInCdb(2, 7);
  const alloc = cdb.readUInt16BE(3);
  return clip(absentLunInquiry(), alloc);
}
