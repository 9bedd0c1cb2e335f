/**
 * A LUN of the config: what one `luns[]` entry may say, and the LUNs a target's `sizes` list stands for.
 * Relative paths resolve under the storage directory (`storageDir`, by default the config file's directory).
 */
import * as path from 'node:path';
import { parseSize } from '../util/size';
import { asObject, checkKeys, fail, optBool, optInt } from './validate';

export interface LunConfig {
  lun: number;
  /**
   * 'disk' (SBC direct-access block device) or 'cd' (MMC CD/DVD-ROM drive, tgt's "cd" device type): a cd LUN
   * serves an existing image file (an ISO), read-only, in 2048-byte blocks, with a medium that can be ejected.
   */
  type: 'disk' | 'cd';
  /** A disk whose medium can be ejected and loaded (INQUIRY RMB = 1); always true for a cd. */
  removable: boolean;
  /**
   * 'file' (regular file or block device), 'null' (reads zeros, discards writes: benchmarks) or 'rbd' (a Ceph
   * RBD image through librbd, src/backstore/rbd.ts; its settings in `rbd`).
   */
  backstore: 'file' | 'null' | 'rbd';
  /** Where an 'rbd' LUN's image is and how to reach it. */
  rbd?: RbdLunConfig;
  /** Backing file or block device (absolute after validation). Unused for 'null'. */
  path: string;
  /** Size in bytes when the file must be created (sparse), or the null backstore's size. */
  size?: number;
  readOnly: boolean;
  /** O_DIRECT: bypass the page cache. */
  direct: boolean;
  /** 512 or 4096 for a disk; always 2048 for a cd. */
  blockSize: 512 | 2048 | 4096;
  /** Unit serial number (VPD 80h) set by the operator; otherwise one is generated at provisioning. */
  serial?: string;
  /** NAA designator (VPD 83h) set by the operator, hex; otherwise one is generated at provisioning. */
  naa?: string;
  /** INQUIRY VENDOR IDENTIFICATION (8 ASCII characters at most); default NODETGT. */
  vendor?: string;
  /** INQUIRY PRODUCT IDENTIFICATION (16 at most); default NODETGT-DISK or NODETGT-CD. */
  product?: string;
  /** INQUIRY PRODUCT REVISION LEVEL (4 at most); default 0001. */
  revision?: string;
  /**
   * Made from a target's `sizes`: the size declares the LU, so its file is created at first start even when
   * read-only (the operator fills it afterwards), as NetManager does.
   */
  sized?: true;
  /** Index of this LU among all configured LUs (per-LU counters). */
  slot: number;
  /** The identity stored at provisioning (src/backstore/prepare.ts), filled in before workers start. */
  identity?: { serial: string; naa: string };
  /** The LU's APTPL file (src/scsi/pr-aptpl.ts), filled in at start-up before workers start. */
  prFile?: string;
  /** The LU's WRITE ATOMIC journal directory (src/backstore/atomic-journal.ts), filled in at start-up. */
  atomicJournalDir?: string;
  /** Why the LU is not served (its backing file disappeared), filled in at start-up; absent when served. */
  offline?: string;
}

export interface RbdLunConfig {
  pool: string;
  image: string;
  namespace?: string;
  /** ceph.conf path (default: librados' own search, /etc/ceph/ceph.conf); resolved under storageDir. */
  cephConf?: string;
  /** cephx client id, without "client." (default admin). */
  clientId?: string;
  /** librbd's write-back cache (rbd_cache); off by default. */
  cache: boolean;
  /** Seconds before a cluster operation fails with an error (default 30). */
  opTimeout: number;
  /** Create the image (of the LUN's `size`) when it does not exist; otherwise a missing image is an error. */
  create: boolean;
}

/** RADOS pool, namespace and image names: no slash (it separates them), printable, not empty. */
const RBD_NAME_RE = /^[^/@\s]{1,250}$/;

const SERIAL_RE = /^[\x21-\x7e]{1,20}$/;
// NAA 3h (locally assigned) and 5h (IEEE registered): 8 bytes; 6h (IEEE registered extended): 16 bytes.
const NAA_RE = /^([35][0-9a-f]{15}|6[0-9a-f]{31})$/i;
/** INQUIRY's identification fields are printable ASCII (SPC-4 4.3.1), left-aligned and padded with spaces. */
const ASCII_RE = /^[\x20-\x7e]*$/;
const INQUIRY_FIELDS = { vendor: 8, product: 16, revision: 4 } as const;

type Identity = Pick<LunConfig, 'serial' | 'naa' | 'vendor' | 'product' | 'revision'>;

/** The identity settings a disk and a cd LUN share, checked the same way for both. */
function normalizeIdentity(o: Record<string, unknown>, where: string): Identity {
  if (o.serial !== undefined && (typeof o.serial !== 'string' || !SERIAL_RE.test(o.serial)))
    fail(where, "'serial' must be 1 to 20 printable ASCII characters without spaces");
  if (o.naa !== undefined && (typeof o.naa !== 'string' || !NAA_RE.test(o.naa)))
    fail(where, "'naa' must be 16 hex digits starting with 3 or 5, or 32 starting with 6");
  const out: Identity = {
    serial: o.serial as string | undefined,
    naa: (o.naa as string | undefined)?.toLowerCase(),
  };
  for (const [key, max] of Object.entries(INQUIRY_FIELDS) as Array<[keyof typeof INQUIRY_FIELDS, number]>) {
    const v = o[key];
    if (v === undefined) continue;
    // Trailing spaces are the field's padding: a value that is all padding would report nothing.
    if (typeof v !== 'string' || !ASCII_RE.test(v) || v.trim() === '' || v.length > max)
      fail(where, `'${key}' must be 1 to ${max} printable ASCII characters`);
    out[key] = v;
  }
  return out;
}

/** A size in bytes (a number) or with a unit ("750G"); `what` names the setting in the message. */
export function normalizeSize(v: unknown, where: string, what: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v <= 0)
      fail(where, `'${what}' must be above 0 (a number is bytes; or a string like '1G')`);
    return v;
  }
  if (typeof v !== 'string') fail(where, `'${what}' must be a number of bytes or a string like '1G'`);
  try {
    return parseSize(v);
  } catch (e) {
    fail(where, `'${what}': ${(e as Error).message}`);
  }
}

const LUN_KEYS = [
  'lun',
  'type',
  'removable',
  'backstore',
  'path',
  'size',
  'readOnly',
  'direct',
  'blockSize',
  'serial',
  'naa',
  'vendor',
  'product',
  'revision',
  'pool',
  'image',
  'namespace',
  'cephConf',
  'clientId',
  'rbdCache',
  'opTimeout',
  'create',
];

/** The settings of an 'rbd' LUN (pool, image, namespace?, cephConf?, clientId?, rbdCache?, opTimeout?). */
function normalizeRbd(o: Record<string, unknown>, where: string, storageDir: string): RbdLunConfig {
  const name = (key: string, required: boolean): string | undefined => {
    const v = o[key];
    if (v === undefined) {
      if (required) fail(where, `'${key}' is required for an rbd backstore`);
      return undefined;
    }
    if (typeof v !== 'string' || !RBD_NAME_RE.test(v))
      fail(where, `'${key}' must be a name without '/', '@' or spaces`);
    return v;
  };

  if (o.path !== undefined) fail(where, "an rbd backstore has no 'path' (it has 'pool' and 'image')");
  if (o.direct !== undefined) fail(where, "'direct' is for a file backstore");
  if (o.cephConf !== undefined && (typeof o.cephConf !== 'string' || o.cephConf === ''))
    fail(where, "'cephConf' must be the path of a ceph.conf");
  const clientId = name('clientId', false);
  if (clientId?.startsWith('client.')) fail(where, "'clientId' is the id without 'client.' (e.g. 'admin')");
  return {
    pool: name('pool', true)!,
    image: name('image', true)!,
    namespace: name('namespace', false),
    cephConf: o.cephConf === undefined ? undefined : path.resolve(storageDir, o.cephConf as string),
    clientId,
    cache: optBool(o, 'rbdCache', where),
    opTimeout: optInt(o, 'opTimeout', 30, 1, 3600, where),
    create: optBool(o, 'create', where),
  };
}

/** One `luns[]` entry; a relative `path` resolves under `storageDir`. */
export function normalizeLun(raw: unknown, where: string, storageDir: string, slot = 0): LunConfig {
  const o = asObject(raw, where);
  checkKeys(o, LUN_KEYS, where);
  const type = o.type ?? 'disk';
  if (type !== 'disk' && type !== 'cd') fail(where, "'type' must be 'disk' or 'cd'");
  const identity = normalizeIdentity(o, where);
  if (type === 'cd') return normalizeCdLun(o, where, storageDir, slot, identity);
  const lun = optInt(o, 'lun', -1, 0, 16383, where);
  if (lun < 0) fail(where, "'lun' is required");
  const backstore = o.backstore ?? 'file';
  if (backstore !== 'file' && backstore !== 'null' && backstore !== 'rbd')
    fail(where, "'backstore' must be 'file', 'null' or 'rbd'");
  const rbdOnly = ['pool', 'image', 'namespace', 'cephConf', 'clientId', 'rbdCache', 'opTimeout', 'create'];
  for (const k of rbdOnly)
    if (backstore !== 'rbd' && o[k] !== undefined) fail(where, `'${k}' is for an rbd backstore`);
  const size = o.size === undefined ? undefined : normalizeSize(o.size, where, 'size');
  const blockSize = optInt(o, 'blockSize', 512, 512, 4096, where);
  if (blockSize !== 512 && blockSize !== 4096) fail(where, "'blockSize' must be 512 or 4096");
  if (size !== undefined && size % blockSize !== 0)
    fail(where, `'size' must be a multiple of the block size ${blockSize}`);
  let p = '';
  let rbd: RbdLunConfig | undefined;
  if (backstore === 'rbd') {
    rbd = normalizeRbd(o, where, storageDir);
    if (rbd.create && size === undefined) fail(where, "'create' needs the 'size' of the image to create");
  } else if (backstore === 'file') {
    if (typeof o.path !== 'string' || o.path === '') fail(where, "'path' is required for a file backstore");
    p = path.resolve(storageDir, o.path);
  } else if (size === undefined) fail(where, "'size' is required for a null backstore");
  return {
    lun,
    type: 'disk',
    removable: optBool(o, 'removable', where),
    backstore,
    path: p,
    ...(rbd ? { rbd } : {}),
    size,
    readOnly: optBool(o, 'readOnly', where),
    direct: optBool(o, 'direct', where),
    blockSize,
    ...identity,
    slot,
  };
}

/** The CD/DVD image block size (MMC: 2048-byte user data per sector). */
const CD_BLOCK_SIZE = 2048;

/**
 * A cd LUN: an existing image, never created (so no size), always read-only and removable, 2048-byte blocks.
 * Settings that would contradict that are refused rather than silently changed, except readOnly, which a cd
 * LUN is whatever the file says.
 */
function normalizeCdLun(
  o: Record<string, unknown>,
  where: string,
  storageDir: string,
  slot: number,
  identity: Identity,
): LunConfig {
  const lun = optInt(o, 'lun', -1, 0, 16383, where);
  if (lun < 0) fail(where, "'lun' is required");
  if (o.backstore !== undefined && o.backstore !== 'file')
    fail(where, "a cd LUN's 'backstore' must be 'file'");
  if (o.size !== undefined) fail(where, "a cd LUN serves an existing image as it is: 'size' is not allowed");
  if (o.blockSize !== undefined && o.blockSize !== CD_BLOCK_SIZE)
    fail(where, `a cd LUN's 'blockSize' is ${CD_BLOCK_SIZE}`);
  if (o.removable !== undefined && o.removable !== true) fail(where, "a cd LUN is always 'removable'");
  if (typeof o.path !== 'string' || o.path === '')
    fail(where, "'path' (the ISO image) is required for a cd LUN");
  optBool(o, 'readOnly', where); // checked for its type; a cd is read-only either way
  return {
    lun,
    type: 'cd',
    removable: true,
    backstore: 'file',
    path: path.resolve(storageDir, o.path),
    readOnly: true,
    direct: optBool(o, 'direct', where),
    blockSize: CD_BLOCK_SIZE,
    ...identity,
    slot,
  };
}

/**
 * The backing file of the n-th LUN made from a target's `sizes`: `<stem>.img` for LUN 0, then `<stem>_1.img`,
 * `<stem>_2.img`... (the NetManager naming), under the storage directory.
 */
export function sizedLunFile(stem: string, n: number): string {
  return n === 0 ? `${stem}.img` : `${stem}_${n}.img`;
}

/** A file stem may not leave the storage directory nor be hidden. */
const STEM_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

/** LUNs 0, 1, ... from a target's `sizes` list: sparse files created at first start, `readOnly` for all. */
export function lunsFromSizes(
  sizes: unknown,
  stem: string,
  readOnly: boolean,
  where: string,
  storageDir: string,
  firstSlot: number,
): LunConfig[] {
  if (!Array.isArray(sizes) || sizes.length === 0)
    fail(where, '\'sizes\' must be a non-empty list of sizes (e.g. ["750G", "500M"])');
  if (!STEM_RE.test(stem))
    fail(where, `'sizes': the file name '${stem}' taken from the target name is not a plain file name`);
  return sizes.map((s, i) => {
    const size = normalizeSize(s, `${where}.sizes[${i}]`, 'size');
    if (size % 512 !== 0) fail(`${where}.sizes[${i}]`, `'size' must be a multiple of the block size 512`);
    return {
      lun: i,
      type: 'disk',
      removable: false,
      backstore: 'file',
      path: path.resolve(storageDir, sizedLunFile(stem, i)),
      size,
      readOnly,
      direct: false,
      blockSize: 512,
      sized: true,
      slot: firstSlot + i,
    };
  });
}
