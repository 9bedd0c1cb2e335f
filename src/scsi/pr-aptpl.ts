/**
 * Persist Through Power Loss (APTPL, SPC-4 5.13.5): while the last register-type PERSISTENT RESERVE OUT set
 * APTPL, the whole persistent reservation state of the LU is kept in a file, `<stateDir>/pr/<serial>.json`,
 * rewritten durably (temporary file, fsync, rename, fsync of the directory) inside the PR critical section, so
 * that a change is on disk before any initiator can see it or its command is acknowledged.
 *
 * At start the portal thread reads every LU's file before workers exist and seeds the LU's shared document. A
 * file that cannot be read back whole (corrupt, truncated, or for another LU) takes that LU offline, reported by
 * name like a missing backing file (src/backstore/prepare.ts): serving it with registrations silently dropped
 * would hand the LU to initiators the reservation was keeping out. The other LUs serve; the operator repairs or
 * removes the file and restarts.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config, LunConfig } from '../config/schema';
import { LuShared, PR_CAPACITY, type LuSharedMemory } from './lu-shared';
import { type PrDoc, VALID_TYPES, ZERO_KEY, docActive, isAllRegistrants } from './pr-doc';

interface AptplFile {
  version: 1;
  serial: string;
  generation: number;
  registrations: PrDoc['registrations'];
  reservation: PrDoc['reservation'];
}

/** A file name for per-LU state under stateDir: the serial itself when safe as a name, else a hash of it. */
export function serialFileName(serial: string): string {
  const safe = /^[A-Za-z0-9._-]{1,64}$/.test(serial) && !serial.startsWith('.');
  return safe ? serial : createHash('sha256').update(serial).digest('hex').slice(0, 32);
}

/** The APTPL file of the LU with this unit serial number. */
export function aptplPath(stateDir: string, serial: string): string {
  return path.join(stateDir, 'pr', `${serialFileName(serial)}.json`);
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Make the file match the document after a change (synchronous: runs inside the PR lock). Written when APTPL is
 * in effect; removed when it was and no longer is. Throws on an I/O error, and the change is then not made.
 */
export function persistPr(file: string, serial: string, before: PrDoc | null, after: PrDoc): void {
  const dir = path.dirname(file);
  if (!after.aptpl) {
    if (!before?.aptpl) return;
    try {
      fs.unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    fsyncDir(dir);
    return;
  }
  const body: AptplFile = {
    version: 1,
    serial,
    generation: after.generation,
    registrations: after.registrations,
    reservation: after.reservation,
  };
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify(body) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(dir);
}

/** Why a file was refused (its content does not describe this LU's state completely). */
function invalid(body: unknown, serial: string): string | null {
  if (typeof body !== 'object' || body === null) return 'not a JSON object';
  const b = body as Partial<AptplFile>;
  if (b.version !== 1) return `unknown version ${String(b.version)}`;
  if (b.serial !== serial) return `it is for the LU with serial ${String(b.serial)}, not ${serial}`;
  if (!Number.isInteger(b.generation) || b.generation! < 0 || b.generation! > 0xffffffff)
    return 'bad generation';
  if (!Array.isArray(b.registrations)) return 'no registrations list';
  const seen = new Set<string>();
  for (const r of b.registrations) {
    if (typeof r !== 'object' || r === null) return 'bad registration';
    if (typeof r.nexus !== 'string' || r.nexus === '' || seen.has(r.nexus)) return 'bad registration nexus';
    if (typeof r.key !== 'string' || !/^[0-9a-f]{16}$/.test(r.key) || r.key === ZERO_KEY)
      return 'bad registration key';
    if (typeof r.allTgPt !== 'boolean') return 'bad registration ALL_TG_PT';
    seen.add(r.nexus);
  }
  const res = b.reservation;
  if (res === undefined) return 'no reservation field';
  if (res !== null) {
    if (typeof res !== 'object' || !VALID_TYPES.has(res.type)) return 'bad reservation type';
    if (typeof res.holder !== 'string') return 'bad reservation holder';
    if (!isAllRegistrants(res.type) && !seen.has(res.holder)) return 'reservation holder is not registered';
    if (seen.size === 0) return 'reservation without registrations';
  }
  return null;
}

/** Read an APTPL file: null when there is none; throws an Error naming the file when it is unusable. */
export function loadAptpl(file: string, serial: string): PrDoc | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`persistent reservation file ${file}: ${(e as Error).message}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new Error(`persistent reservation file ${file} is corrupt or truncated: ${(e as Error).message}`);
  }
  const why = text.length > PR_CAPACITY ? 'larger than the PR state area' : invalid(body, serial);
  if (why !== null) throw new Error(`persistent reservation file ${file} is unusable: ${why}`);
  const b = body as AptplFile;
  return {
    generation: b.generation,
    registrations: b.registrations.map((r) => ({ nexus: r.nexus, key: r.key, allTgPt: r.allTgPt })),
    reservation: b.reservation && { holder: b.reservation.holder, type: b.reservation.type },
    aptpl: true,
    spc2: null,
  };
}

export interface PrLoadReport {
  target: string;
  lun: number;
  slot: number;
  /** The restored state, or null when the LU starts with none. */
  doc: PrDoc | null;
  /** Set when the LU was taken offline because its file is unusable. */
  error?: string;
}

/**
 * Give a restored document to the LU's shared memory, on the portal thread before any worker exists (lane 0,
 * whose lock is then never contended). A document too big for the PR area was refused by loadAptpl's size check.
 */
export function seedPr(memory: LuSharedMemory, doc: PrDoc): void {
  new LuShared(memory, 0).updatePr<PrDoc, void>(() => ({ doc, active: docActive(doc), result: undefined }));
}

/**
 * On the portal thread, after provisioning: give every served LU its APTPL file path (LunConfig.prFile, which
 * the workers use) and read what it holds. An unusable file sets LunConfig.offline.
 */
export function loadPrState(config: Config): PrLoadReport[] {
  const out: PrLoadReport[] = [];
  for (const t of config.targets)
    for (const l of t.luns) {
      if (l.offline !== undefined || l.identity === undefined) continue;
      // An rbd LU keeps its reservations in the cluster (src/scsi/pr-shared.ts), for every gateway.
      if (l.backstore === 'rbd') continue;
      const file = aptplPath(config.stateDir, l.identity.serial);
      (l as LunConfig).prFile = file;
      try {
        out.push({ target: t.name, lun: l.lun, slot: l.slot, doc: loadAptpl(file, l.identity.serial) });
      } catch (e) {
        l.offline = `${(e as Error).message}; the LU is not served so that its registrations are not dropped: repair or remove the file`;
        out.push({ target: t.name, lun: l.lun, slot: l.slot, doc: null, error: l.offline });
      }
    }
  return out;
}
