/**
 * MODE SENSE(6/10) and MODE SELECT(6/10) with the Caching (08h), Control (0Ah) and
 * Informational Exceptions Control (1Ch) pages and a short or long LBA block descriptor; a 'cd' LU has the
 * MMC pages of mmc.ts instead and no block descriptor (MMC-5 drives return none).
 *
 * The caching page tells the truth: WCE mirrors backstore.writeCacheEnabled and is not changeable. The only
 * changeable bit is SWP in the Control page (software write protect). Saved values are not supported.
 */
import { AscQ, Status } from './constants';
import { gatherBytes, totalLength, writeU64 } from './cdb';
import type { LogicalUnit } from './lu';
import {
  invalidFieldInCdb,
  invalidFieldInParameterList,
  parameterListLengthError,
  savingParametersNotSupported,
} from './sense';
import { MMC_MODE_PAGES } from './mmc';
import type { CommandContext, ModePage, ScsiResult } from './types';
import { PC_CHANGEABLE, PC_CURRENT, PC_DEFAULT, PC_SAVED, modePage as page } from './types';

const cachingPage: ModePage = {
  code: 0x08,
  build(lu, pc) {
    const b = page(0x08, 0x12);
    if (pc === PC_CHANGEABLE) return b;
    if (lu.backstore.writeCacheEnabled) b[2] |= 0x04; // WCE
    // RCD = 0: reads may be served from the cache.
    return b;
  },
};

const controlPage: ModePage = {
  code: 0x0a,
  build(lu, pc) {
    const b = page(0x0a, 0x0a);
    if (pc === PC_CHANGEABLE) {
      b[4] = 0x08; // SWP
      return b;
    }
    b[2] = 0x02; // TST 000b (one task set), D_SENSE 0 (fixed format), GLTSD 1 (no log parameters saved)
    b[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering; QERR 00b
    if (pc === PC_CURRENT && lu.softwareWriteProtect) b[4] |= 0x08; // SWP
    b[5] = 0x40; // TAS: tasks ended by another nexus's reset complete with TASK ABORTED
    b.writeUInt16BE(0xffff, 8); // BUSY TIMEOUT PERIOD: unlimited
    return b;
  },
};

const informationalExceptionsPage: ModePage = {
  code: 0x1c,
  build(_lu, pc) {
    const b = page(0x1c, 0x0a);
    if (pc === PC_CHANGEABLE) return b;
    b[2] = 0x08; // DEXCPT: informational exception reporting disabled; MRIE 0
    return b;
  },
};

/** In ascending page code order, as "return all pages" wants them. */
const PAGES: readonly ModePage[] = [cachingPage, controlPage, informationalExceptionsPage];

function pagesOf(lu: LogicalUnit): readonly ModePage[] {
  return lu.type === 'cd' ? MMC_MODE_PAGES : PAGES;
}

/**
 * Device-specific parameter of the mode parameter header: WP and DPOFUA (reserved in MMC). WP is as this I_T
 * nexus sees it: the LU's own write protect, or a host mapping that lets the nexus only read.
 */
function deviceSpecific(ctx: CommandContext): number {
  const lu = ctx.lu;
  if (lu.type === 'cd') return 0;
  return (lu.writeProtected || ctx.nexusReadOnly(lu) ? 0x80 : 0) | 0x10;
}

function blockDescriptor(lu: LogicalUnit, long: boolean, pc: number): Buffer {
  if (long) {
    const d = Buffer.alloc(16);
    if (pc !== PC_CHANGEABLE) {
      writeU64(d, lu.numBlocks, 0);
      d.writeUInt32BE(lu.blockSize, 12);
    }
    return d;
  }
  const d = Buffer.alloc(8);
  if (pc !== PC_CHANGEABLE) {
    d.writeUInt32BE(lu.numBlocks > 0xffffffff ? 0xffffffff : lu.numBlocks, 0);
    d.writeUIntBE(lu.blockSize, 5, 3);
  }
  return d;
}

function selectPages(lu: LogicalUnit, code: number, subpage: number, pc: number): Buffer[] {
  if (code === 0x3f) {
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidFieldInCdb(3, 7);
    return pagesOf(lu).map((p) => p.build(lu, pc));
  }
  const p = pagesOf(lu).find((x) => x.code === code);
  if (!p) throw invalidFieldInCdb(2, 5);
  // None of our pages has subpages; FFh ("all subpages") returns the page itself.
  if (subpage !== 0x00 && subpage !== 0xff) throw invalidFieldInCdb(3, 7);
  return [p.build(lu, pc)];
}

export function modeSense(ctx: CommandContext): ScsiResult {
  const { cdb, lu } = ctx;
  const ten = cdb.length >= 10 && cdb[0] === 0x5a;
  const dbd = (cdb[1] & 0x08) !== 0;
  const llbaa = ten && (cdb[1] & 0x10) !== 0;
  const pc = cdb[2] >> 6;
  const code = cdb[2] & 0x3f;
  const subpage = cdb[3];
  const alloc = ten ? cdb.readUInt16BE(7) : cdb[4];
  if (pc === PC_SAVED) throw savingParametersNotSupported(2, 7);
  const pages = selectPages(lu, code, subpage, pc === PC_DEFAULT ? PC_DEFAULT : pc);
  const desc = dbd || lu.type === 'cd' ? undefined : blockDescriptor(lu, llbaa, pc);
  const headerLen = ten ? 8 : 4;
  const header = Buffer.alloc(headerLen);
  const total = headerLen + (desc?.length ?? 0) + pages.reduce((n, p) => n + p.length, 0);
  if (ten) {
    header.writeUInt16BE(total - 2, 0);
    header[3] = deviceSpecific(ctx);
    if (desc && llbaa) header[4] = 0x01; // LONGLBA
    header.writeUInt16BE(desc?.length ?? 0, 6);
  } else {
    header[0] = total - 1;
    header[2] = deviceSpecific(ctx);
    header[3] = desc?.length ?? 0;
  }
  const data = Buffer.concat(desc ? [header, desc, ...pages] : [header, ...pages], total);
  return { status: Status.GOOD, dataIn: alloc < total ? data.subarray(0, alloc) : data };
}

export function modeSelectDataOutLength(cdb: Buffer): number {
  return cdb[0] === 0x55 ? cdb.readUInt16BE(7) : cdb[4];
}

/**
 * MODE SELECT: every page sent must be one of ours, with our length, and may differ from the current values
 * only in changeable bits. Accepted changes take effect at once and raise MODE PARAMETERS CHANGED on the
 * other I_T nexuses.
 */
export function modeSelect(ctx: CommandContext): ScsiResult {
  const { cdb, lu, task } = ctx;
  const ten = cdb[0] === 0x55;
  const pf = (cdb[1] & 0x10) !== 0;
  const sp = (cdb[1] & 0x01) !== 0;
  const listLen = modeSelectDataOutLength(cdb);
  if (sp) throw invalidFieldInCdb(1, 0);
  if (listLen === 0) return { status: Status.GOOD };
  const headerLen = ten ? 8 : 4;
  if (listLen < headerLen || totalLength(task.dataOut) < listLen) throw parameterListLengthError();
  const data = gatherBytes(task.dataOut, listLen);
  const descLen = ten ? data.readUInt16BE(6) : data[3];
  const longLba = ten && (data[4] & 0x01) !== 0;
  if (descLen !== 0 && descLen !== (longLba ? 16 : 8)) throw invalidFieldInParameterList(ten ? 6 : 3, 7);
  if (headerLen + descLen > listLen) throw parameterListLengthError();
  if (descLen > 0) {
    // The block descriptor may only restate the current geometry (or leave the block count zero).
    const d = data.subarray(headerLen, headerLen + descLen);
    const count = longLba ? d.readUInt32BE(0) * 0x1_0000_0000 + d.readUInt32BE(4) : d.readUInt32BE(0);
    const blockLen = longLba ? d.readUInt32BE(12) : d.readUIntBE(5, 3);
    const current = longLba ? lu.numBlocks : Math.min(lu.numBlocks, 0xffffffff);
    if (count !== 0 && count !== current) throw invalidFieldInParameterList(headerLen, 7);
    if (blockLen !== lu.blockSize) throw invalidFieldInParameterList(headerLen + (longLba ? 12 : 5), 7);
  }
  let off = headerLen + descLen;
  if (off < listLen && !pf) throw invalidFieldInCdb(1, 4);
  const changes: Array<() => void> = [];
  while (off < listLen) {
    if (off + 2 > listLen) throw parameterListLengthError();
    const code = data[off] & 0x3f;
    if (data[off] & 0x40) throw invalidFieldInParameterList(off, 6); // SPF: we have no subpages
    const p = PAGES.find((x) => x.code === code);
    if (!p) throw invalidFieldInParameterList(off, 5);
    const cur = p.build(lu, PC_CURRENT);
    const mask = p.build(lu, PC_CHANGEABLE);
    if (data[off + 1] !== cur[1]) throw invalidFieldInParameterList(off + 1, 7);
    if (off + cur.length > listLen) throw parameterListLengthError();
    const sent = data.subarray(off, off + cur.length);
    for (let i = 2; i < cur.length; i++) {
      const bad = (sent[i] ^ cur[i]) & ~mask[i];
      if (bad) throw invalidFieldInParameterList(off + i, 31 - Math.clz32(bad));
    }
    if (code === controlPage.code) {
      const swp = (sent[4] & 0x08) !== 0;
      changes.push(() => {
        if (lu.softwareWriteProtect !== swp) {
          lu.softwareWriteProtect = swp;
          lu.establishUnitAttention(AscQ.MODE_PARAMETERS_CHANGED, task.nexus);
        }
      });
    }
    off += cur.length;
  }
  // All pages validated: apply together, so a refused list changes nothing.
  for (const apply of changes) apply();
  return { status: Status.GOOD };
}
