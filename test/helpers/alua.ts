/**
 * ALUA test helpers: CDBs (INQUIRY, REPORT TARGET PORT GROUPS) and decoders of what comes back (VPD 83h
 * designators, target port group descriptors), written from SPC-4's layouts, independent of src/scsi.
 */

export function inquiryCdb(evpd: boolean, page: number, alloc = 1024): Buffer {
  const c = Buffer.alloc(6);
  c[0] = 0x12;
  c[1] = evpd ? 1 : 0;
  c[2] = page;
  c.writeUInt16BE(alloc, 3);
  return c;
}

/** MAINTENANCE IN / REPORT TARGET PORT GROUPS; `extended` sets PARAMETER DATA FORMAT 001b. */
export function rtpgCdb(extended: boolean, alloc = 1024): Buffer {
  const c = Buffer.alloc(12);
  c[0] = 0xa3;
  c[1] = (extended ? 0x20 : 0) | 0x0a;
  c.writeUInt32BE(alloc, 6);
  return c;
}

/** TPGS of standard INQUIRY data (byte 5 bits 5..4). */
export const tpgsOf = (std: Buffer): number => (std[5] >> 4) & 3;

export interface Designator {
  codeSet: number;
  piv: boolean;
  protocol: number;
  assoc: number;
  type: number;
  value: Buffer;
}

/** The designation descriptors of a Device Identification VPD page (83h). */
export function designators(page: Buffer): Designator[] {
  const out: Designator[] = [];
  const end = 4 + page.readUInt16BE(2);
  for (let off = 4; off + 4 <= end;) {
    const len = page[off + 3];
    out.push({
      codeSet: page[off] & 0x0f,
      protocol: page[off] >> 4,
      piv: (page[off + 1] & 0x80) !== 0,
      assoc: (page[off + 1] >> 4) & 3,
      type: page[off + 1] & 0x0f,
      value: page.subarray(off + 4, off + 4 + len),
    });
    off += 4 + len;
  }
  return out;
}

/** The LU's NAA, this port's relative target port and target port group, from a VPD 83h page. */
export function identityOf83(page: Buffer): { naa: string; relativePort?: number; group?: number } {
  const d = designators(page);
  const naa = d.find((x) => x.type === 3 && x.assoc === 0)!.value.toString('hex');
  const port = d.find((x) => x.type === 4 && x.assoc === 1);
  const group = d.find((x) => x.type === 5 && x.assoc === 1);
  return { naa, relativePort: port?.value.readUInt16BE(2), group: group?.value.readUInt16BE(2) };
}

export interface PortGroup {
  preferred: boolean;
  state: number;
  supported: number;
  id: number;
  status: number;
  ports: number[];
}

export interface RtpgData {
  /** RETURN DATA LENGTH. */
  length: number;
  /** FORMAT TYPE (extended header) or undefined (length only). */
  formatType?: number;
  transitionTime?: number;
  groups: PortGroup[];
}

/** REPORT TARGET PORT GROUPS parameter data in the format asked for. */
export function parseRtpg(data: Buffer, extended: boolean): RtpgData {
  const length = data.readUInt32BE(0);
  const end = Math.min(data.length, 4 + length);
  const groups: PortGroup[] = [];
  for (let off = extended ? 8 : 4; off + 8 <= end;) {
    const count = data[off + 7];
    const ports: number[] = [];
    for (let i = 0; i < count; i++) ports.push(data.readUInt16BE(off + 8 + 4 * i + 2));
    groups.push({
      preferred: (data[off] & 0x80) !== 0,
      state: data[off] & 0x0f,
      supported: data[off + 1],
      id: data.readUInt16BE(off + 2),
      status: data[off + 5],
      ports,
    });
    off += 8 + 4 * count;
  }
  return extended
    ? { length, formatType: (data[4] >> 4) & 7, transitionTime: data[5], groups }
    : { length, groups };
}

/** ASYMMETRIC ACCESS STATE codes. */
export const AO = 0x0;
export const ANO = 0x1;
export const STANDBY = 0x2;
export const UNAVAILABLE = 0x3;
export const TRANSITIONING = 0xf;

/** The senses (as helpers/live's senseOf prints them) an ALUA initiator reacts to. */
export const STANDBY_SENSE = '02/04/0b'; // NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE
export const STATE_CHANGED = '06/2a/06'; // UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED
