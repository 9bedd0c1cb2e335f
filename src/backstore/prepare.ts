/**
 * Provisioning, run once on the portal thread before any worker starts.
 *
 * A LU's identity (unit serial number, NAA designator) is created once, when the LU is first provisioned, and
 * kept in a provisioning record under `stateDir` (one JSON file per LU, written atomically). It is random, never
 * derived from the path: a blank disk made later at the same path gets a new identity, so no host takes it for
 * the old one. The record also outlives its backing file: a configured LU whose record exists but whose file has
 * disappeared is not re-created. It is reported by name and left offline, the other LUs serve, and it comes
 * back when the file does (at the next start) or when an operator re-provisions it (`nodetgt provision`).
 *
 * Otherwise: missing files are created sparse at their configured size, and every path is checked, so an
 * operator sees a clear error at start-up rather than a failed login later.
 */
import { syncDirectory } from '../config/write-back';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config, LunConfig } from '../config/schema';
import { ConfigError } from '../config/schema';
import { makeParents } from './file';
import { rbdAvailable } from '../native/rbd';

export interface LunRecord {
  version: 1;
  target: string;
  lun: number;
  backstore: 'file' | 'null' | 'rbd';
  /** The backing file (absent for a null backstore). */
  path?: string;
  /** An rbd LUN's pool[/namespace]/image. */
  rbd?: string;
  serial: string;
  naa: string;
  /** When the identity was created (ISO 8601). */
  provisioned: string;
  /** How the LU came to be: its file was created by us, or an existing file (or device) was adopted. */
  origin: 'created' | 'adopted';
}

export interface PrepareOptions {
  /** Create a new blank LU (file and identity) where the backing file of a provisioned LU has disappeared. */
  reprovision?: boolean;
}

export interface LunReport {
  target: string;
  lun: number;
  /** What start-up did: served as provisioned, adopted an existing file, created one, or left offline. */
  state: 'ready' | 'adopted' | 'created' | 'reprovisioned' | 'offline';
  serial?: string;
  reason?: string;
}

/** A fresh identity: 16 hex digits of serial, and an NAA 3h (locally assigned) designator of 60 random bits. */
export function generateIdentity(): { serial: string; naa: string } {
  const naa = randomBytes(8);
  naa[0] = 0x30 | (naa[0] & 0x0f);
  return { serial: randomBytes(8).toString('hex').toUpperCase(), naa: naa.toString('hex') };
}

function rbdName(l: LunConfig): string {
  const r = l.rbd!;
  return `${r.pool}/${r.namespace ? `${r.namespace}/` : ''}${r.image}`;
}

function recordFile(stateDir: string, target: string, l: LunConfig): string {
  const where = l.backstore === 'file' ? l.path : l.backstore === 'rbd' ? `rbd:${rbdName(l)}` : '';
  const key = createHash('sha256')
    .update(`${target}\0${l.lun}\0${l.backstore}\0${where}`)
    .digest('hex')
    .slice(0, 32);
  return path.join(stateDir, 'luns', `${key}.json`);
}

async function readRecord(file: string): Promise<LunRecord | null> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ConfigError(`provisioning record ${file}: ${(e as Error).message}`);
  }
  let r: Partial<LunRecord>;
  try {
    r = JSON.parse(text) as Partial<LunRecord>;
  } catch (e) {
    throw new ConfigError(`provisioning record ${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (r.version !== 1 || typeof r.serial !== 'string' || typeof r.naa !== 'string')
    throw new ConfigError(`provisioning record ${file} is not one this version understands`);
  return r as LunRecord;
}

/** Write the record durably: a temporary file, fsync, rename over, fsync the directory. */
async function writeRecord(file: string, rec: LunRecord): Promise<void> {
  const dir = path.dirname(file);
  try {
    await makeParents(dir);
    const tmp = `${file}.${process.pid}.tmp`;
    const fh = await fs.promises.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(rec, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
    await syncDirectory(dir);
  } catch (e) {
    throw new ConfigError(`cannot write provisioning record ${file}: ${(e as Error).message}`);
  }
}

async function createSparse(where: string, l: LunConfig): Promise<void> {
  try {
    const fh = await fs.promises.open(l.path, 'wx', 0o600);
    try {
      await fh.truncate(l.size);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new ConfigError(`${where}: cannot create backing file: ${(e as Error).message}`);
  }
}

/**
 * The parent directory must exist: a typo in a path ("/srv/iscsl/vm1.img") would otherwise make a new tree and
 * a blank disk where the operator meant an existing one.
 */
async function checkParent(where: string, l: LunConfig): Promise<void> {
  const dir = path.dirname(l.path);
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ConfigError(`${where}: parent directory ${dir} does not exist (nodetgt does not create it)`);
    throw new ConfigError(`${where}: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new ConfigError(`${where}: ENOTDIR: ${dir} is not a directory`);
}

async function checkExisting(where: string, l: LunConfig, st: fs.Stats): Promise<void> {
  if (!st.isFile() && !st.isBlockDevice())
    throw new ConfigError(`${where}: not a regular file or block device`);
  try {
    await fs.promises.access(l.path, l.readOnly ? fs.constants.R_OK : fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    throw new ConfigError(`${where}: not ${l.readOnly ? 'readable' : 'readable and writable'} by this user`);
  }
  // Opened once here, as the workers will: a device node without its device (ENXIO), a device held
  // exclusively (EBUSY) fail now, with the LU named, rather than in a worker after "target ready".
  try {
    await (await fs.promises.open(l.path, l.readOnly ? 'r' : 'r+')).close();
  } catch (e) {
    throw new ConfigError(`${where}: cannot open: ${(e as Error).message}`);
  }
  if (st.isFile() && l.size !== undefined && st.size !== l.size)
    throw new ConfigError(`${where}: existing file is ${st.size} bytes but the configured size is ${l.size}`);
}

/** What preparing one LU will do, decided without changing anything. */
interface LunPlan {
  target: string;
  l: LunConfig;
  where: string;
  recFile: string;
  rec: LunRecord | null;
  /** The backing file is to be created. */
  create: boolean;
  state: LunReport['state'];
  origin: LunRecord['origin'];
  /** Set when the LU is left offline. */
  offline?: string;
}

async function planLun(
  stateDir: string,
  target: string,
  l: LunConfig,
  opts: PrepareOptions,
): Promise<LunPlan> {
  const where =
    l.backstore === 'file'
      ? `target ${target} LUN ${l.lun} (${l.path})`
      : l.backstore === 'rbd'
        ? `target ${target} LUN ${l.lun} (rbd ${rbdName(l)})`
        : `target ${target} LUN ${l.lun}`;
  const recFile = recordFile(stateDir, target, l);
  const rec = await readRecord(recFile);
  const plan: LunPlan = { target, l, where, recFile, rec, create: false, state: 'ready', origin: 'adopted' };
  // The image itself is opened (and created, with `create`) by the workers: a cluster that cannot be reached
  // leaves that LU offline, named, while the others serve.
  if (l.backstore === 'rbd' && !rbdAvailable())
    throw new ConfigError(
      `${where}: this nodetgt was built without RBD support; install librbd-dev and librados-dev ` +
        "(apt-get install librbd-dev librados-dev) and rebuild the addon ('npx node-gyp rebuild')",
    );
  if (l.backstore !== 'file') {
    if (rec === null) Object.assign(plan, { state: 'created', origin: 'created' });
    return plan;
  }
  let st: fs.Stats | null = null;
  try {
    st = await fs.promises.stat(l.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ConfigError(`${where}: ${(e as Error).message}`);
  }
  if (st !== null) {
    await checkExisting(where, l, st);
    if (rec === null) plan.state = 'adopted';
    return plan;
  }
  if (rec !== null && !opts.reprovision) {
    plan.state = 'offline';
    plan.offline =
      `backing file ${l.path} has disappeared (LU provisioned ${rec.provisioned}, serial ${rec.serial}); ` +
      'it is not re-created: restore the file, or run `nodetgt provision` to make a new blank LU';
    return plan;
  }
  if (l.type === 'cd')
    throw new ConfigError(
      `${where}: the cd image does not exist (a cd LUN serves an existing ISO, never creates one)`,
    );
  if (l.size === undefined)
    throw new ConfigError(`${where}: file does not exist and no size was given to create it`);
  if (l.readOnly && l.sized === undefined)
    throw new ConfigError(`${where}: a read-only LUN needs an existing file`);
  await checkParent(where, l);
  return { ...plan, create: true, state: rec !== null ? 'reprovisioned' : 'created', origin: 'created' };
}

/** What this run created, removed again when a later LU fails: a failed start leaves nothing half made. */
interface Created {
  files: string[];
  records: string[];
}

async function applyPlan(p: LunPlan, made: Created): Promise<LunReport> {
  const { l, target } = p;
  if (p.offline !== undefined) {
    l.offline = p.offline;
    return { target, lun: l.lun, state: 'offline', serial: p.rec?.serial, reason: p.offline };
  }
  let rec = p.rec;
  if (p.create) {
    await createSparse(p.where, l);
    made.files.push(l.path);
    rec = null; // a new blank LU gets a new identity
  }
  const wanted = { serial: l.serial ?? rec?.serial, naa: l.naa ?? rec?.naa };
  if (rec === null || rec.serial !== wanted.serial || rec.naa !== wanted.naa) {
    const fresh = generateIdentity();
    const isNew = p.rec === null;
    rec = {
      version: 1,
      target,
      lun: l.lun,
      backstore: l.backstore,
      ...(l.backstore === 'file' ? { path: l.path } : {}),
      ...(l.backstore === 'rbd' ? { rbd: rbdName(l) } : {}),
      serial: wanted.serial ?? fresh.serial,
      naa: wanted.naa ?? fresh.naa,
      provisioned: rec?.provisioned ?? new Date().toISOString(),
      origin: rec?.origin ?? p.origin,
    };
    await writeRecord(p.recFile, rec);
    if (isNew) made.records.push(p.recFile);
  }
  l.identity = { serial: rec.serial, naa: rec.naa };
  return { target, lun: l.lun, state: p.state, serial: rec.serial };
}

async function planAll(config: Config, opts: PrepareOptions): Promise<LunPlan[]> {
  const plans: LunPlan[] = [];
  for (const t of config.targets)
    for (const l of t.luns) plans.push(await planLun(config.stateDir, t.name, l, opts));
  return plans;
}

/**
 * Everything start-up would refuse about the backing files (missing parents, unopenable paths, size
 * mismatches), found without creating or writing anything: `nodetgt check-config`.
 */
export async function checkBackingFiles(config: Config): Promise<void> {
  await planAll(config, {});
}

/**
 * Provision every configured LU: fills in `identity` on each LunConfig, or `offline` where the backing file of a
 * provisioned LU has disappeared (the LU is then not served). Throws ConfigError for what the operator must fix,
 * having checked every LU before changing anything and undone what it made when a change fails half-way.
 */
export async function prepareBackingFiles(config: Config, opts: PrepareOptions = {}): Promise<LunReport[]> {
  const plans = await planAll(config, opts);
  const made: Created = { files: [], records: [] };
  const reports: LunReport[] = [];
  try {
    for (const p of plans) reports.push(await applyPlan(p, made));
  } catch (e) {
    for (const f of [...made.files, ...made.records])
      await fs.promises.rm(f, { force: true }).catch(() => undefined);
    throw e;
  }
  return reports;
}
