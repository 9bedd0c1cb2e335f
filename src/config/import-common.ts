/**
 * What the IET and tgt importers share: the JSON they produce, the warnings they give for what they could not
 * carry over (each with its source line, never dropped silently), tokenizing with quotes and comments, telling
 * the two formats apart, and the ACL entries both spell the same way (initiator names, addresses, networks).
 */
import * as fs from 'node:fs';
import { iscsiNameProblem, validateCidr } from './schema';

export interface ImportedLun {
  lun: number;
  type?: 'cd';
  backstore?: 'null';
  path?: string;
  size?: number;
  readOnly?: boolean;
  direct?: boolean;
  blockSize?: number;
  serial?: string;
}

export interface ImportedAuth {
  incoming: Array<{ user: string; secret: string }>;
  outgoing?: { user: string; secret: string };
}

export interface ImportedTarget {
  name: string;
  alias?: string;
  luns?: ImportedLun[];
  /** One LUN per size (NetManager's size= list), files named by the target under storageDir. */
  sizes?: string[];
  /** Applies to every LUN of `sizes`. */
  readOnly?: boolean;
  acl?: { initiators?: string[]; networks?: string[] };
  auth?: ImportedAuth;
}

export interface ImportWarning {
  file: string;
  line: number;
  message: string;
}

/** The top-level settings an importer can fill in; the rest keep nodetgt's defaults. */
export interface ImportedConfig {
  portals: string[];
  storageDir?: string;
  baseIqn?: string;
  params?: { MaxConnections?: number };
  limits?: { maxSessions?: number };
  targets: ImportedTarget[];
}

export interface ImportResult {
  config: ImportedConfig;
  warnings: ImportWarning[];
}

export type PathKind = 'file' | 'block' | 'missing' | 'other';

export interface ImportOptions {
  /** The source's name in warnings. */
  file?: string;
  /** What a LUN's path is on this machine (the default looks); tests pass their own. */
  pathKind?: (p: string) => PathKind;
}

export function formatWarning(w: ImportWarning): string {
  return `${w.file}:${w.line}: ${w.message}`;
}

export function statPathKind(p: string): PathKind {
  try {
    const st = fs.statSync(p);
    return st.isFile() ? 'file' : st.isBlockDevice() ? 'block' : 'other';
  } catch {
    return 'missing';
  }
}

/** Both formats listen on every address at the iSCSI port unless told otherwise. */
export const DEFAULT_PORTALS = ['0.0.0.0:3260'];

export class Warner {
  readonly list: ImportWarning[] = [];
  constructor(readonly file: string) {}
  add(line: number, message: string): void {
    this.list.push({ file: this.file, line, message });
  }
}

/**
 * Words of a line: whitespace-separated, "double" or 'single' quotes keep spaces in a value, and a '#' that
 * starts a word starts a comment.
 */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|(#.*)|(\S+))/gy;
  for (let m = re.exec(line); m !== null && m[0] !== ''; m = re.exec(line)) {
    if (m[3] !== undefined) break;
    out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[4]));
  }
  return out;
}

export type ImportFormat = 'iet' | 'tgt' | 'netmanager';

/** 'iet', 'tgt', 'netmanager' (an .ini with [sections] and key=value lines), or null when it is none of them. */
export function detectFormat(text: string): ImportFormat | null {
  const lines = text.split('\n').map((l) => words(l));
  if (lines.some((w) => /^<target$/i.test(w[0] ?? '') || /^<target\s/i.test(w.join(' ')))) return 'tgt';
  if (lines.some((w) => w.length >= 2 && /^target$/i.test(w[0]))) return 'iet';
  if (/^\s*\[[^\]]+\]\s*$/m.test(text) && /^\s*(storage|node|size)\s*=/im.test(text)) return 'netmanager';
  return null;
}

/** Registers a target's CHAP accounts in the `auth` shape, warning about what it cannot hold. */
export function addUser(
  t: ImportedTarget,
  dir: 'incoming' | 'outgoing',
  args: string[],
  line: number,
  warn: Warner,
  key: string,
): void {
  if (args.length !== 2) {
    warn.add(line, `${key} needs a user and a secret: '${args.join(' ')}' not converted`);
    return;
  }
  const [user, secret] = args;
  const auth = (t.auth ??= { incoming: [] });
  if (dir === 'incoming') auth.incoming.push({ user, secret });
  else if (auth.outgoing !== undefined)
    warn.add(
      line,
      `${key} ${user}: a target has one outgoing (mutual CHAP) account, ${auth.outgoing.user} kept`,
    );
  else auth.outgoing = { user, secret };
}

/**
 * One ACL entry (an initiator name, an address, a network, or ALL) into the target's acl. Returns false for
 * ALL, which lifts the restriction. Addresses may be in [brackets] (IPv6, as IET writes them).
 */
export function addAclEntry(t: ImportedTarget, entry: string, line: number, warn: Warner): boolean {
  if (/^all$/i.test(entry)) return false;
  const acl = (t.acl ??= {});
  if (/^(iqn|eui|naa)\./i.test(entry)) {
    const problem = iscsiNameProblem(entry);
    if (problem !== null) warn.add(line, `initiator ${problem}: not converted`);
    else (acl.initiators ??= []).push(entry.toLowerCase());
    return true;
  }
  const net = entry.replace(/^\[([^\]]+)\]/, '$1');
  try {
    validateCidr(net);
  } catch {
    warn.add(line, `'${entry}' is neither an iSCSI name nor an address or network: not converted`);
    return true;
  }
  (acl.networks ??= []).push(net);
  return true;
}

/** Names, after conversion, what nodetgt's ACL would do differently from the source's. */
export function checkAclMix(t: ImportedTarget, line: number, warn: Warner): void {
  if (t.acl?.initiators?.length && t.acl.networks?.length)
    warn.add(
      line,
      `target ${t.name}: nodetgt admits an initiator only when both its name and its address are allowed; ` +
        'check that this is what was meant',
    );
}

/** The name check nodetgt's config will make, named at import rather than at start-up. */
export function checkTargetName(name: string, line: number, warn: Warner): void {
  const problem = iscsiNameProblem(name);
  if (problem !== null) warn.add(line, `target ${problem}: nodetgt refuses it; rename the target`);
}

/** A path that does not exist here cannot be served (imported LUNs have no size to create them). */
export function checkPath(p: string, kind: PathKind, line: number, warn: Warner): void {
  if (kind === 'missing')
    warn.add(
      line,
      `${p} does not exist here: nodetgt will refuse to start until it does (or give it a 'size')`,
    );
  else if (kind === 'other') warn.add(line, `${p} is neither a regular file nor a block device`);
}
