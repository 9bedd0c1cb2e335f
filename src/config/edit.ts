/**
 * One configuration change (`nodetgt target|lun|acl|account ...`) as a pure function on the RAW config
 * document, the JSON as the operator wrote it: the result keeps their structure, key order, sizes written as
 * '10G' and accounts named by reference, so that writing it back changes only what the command asked for.
 * Validation of the result is the normalizer's (src/config/schema.ts); what is refused here is what the
 * normalizer cannot know (an unknown target, a LUN in use) or would explain less well.
 */
import type { AuthScope, ConfigChange } from '../admin/protocol';
import { parseSize } from '../util/size';
import { CHAP_SECRET_WARN_LENGTH } from './schema';

/** What an edit may need to know of the running target. */
export interface EditContext {
  /** Sessions logged in to a target now (0 when unknown). */
  sessions(target: string): number;
  /** A LU's size in bytes as served now, or undefined when not served. */
  lunBytes(target: string, lun: number): number | undefined;
  /** Go ahead with a change that cuts sessions off, loses data, or opens a target to anyone. */
  force: boolean;
}

export interface EditResult {
  doc: Record<string, unknown>;
  summary: string;
  warnings: string[];
}

/** A change that cannot be made (the message says why and, where there is one, the way out). */
export class EditError extends Error {}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
const userOf = (entry: unknown) =>
  typeof entry === 'string' ? entry : isObj(entry) ? entry.user : undefined;

function targetsOf(doc: Obj): Obj[] {
  if (!Array.isArray(doc.targets)) throw new EditError("the configuration has no 'targets' list");
  return doc.targets as Obj[];
}

function findTarget(doc: Obj, name: string): Obj {
  const t = targetsOf(doc).find((x) => isObj(x) && typeof x.name === 'string' && same(x.name, name));
  if (!t) throw new EditError(`no target ${name}`);
  return t;
}

function lunsOf(t: Obj): Obj[] {
  if (!Array.isArray(t.luns)) t.luns = [];
  return t.luns as Obj[];
}

function findLun(t: Obj, lun: number): Obj {
  const l = lunsOf(t).find((x) => isObj(x) && x.lun === lun);
  if (!l) throw new EditError(`target ${String(t.name)} has no LUN ${lun}`);
  return l;
}

function busy(ctx: EditContext, target: string, what: string): void {
  const n = ctx.sessions(target);
  if (n > 0 && !ctx.force)
    throw new EditError(
      `${what}: target ${target} has ${n} session(s) logged in (--force to go ahead; they lose it)`,
    );
}

/** Would a target with these settings let anyone in? */
function openWarning(t: Obj): string | null {
  const acl = isObj(t.acl) ? t.acl : {};
  const listed = (k: string) => Array.isArray(acl[k]) && (acl[k] as unknown[]).length > 0;
  if (listed('initiators') || listed('networks') || t.auth !== undefined) return null;
  return `target ${String(t.name)} has no ACL and no CHAP: any initiator that reaches a portal may log in`;
}

export function applyChange(raw: unknown, change: ConfigChange, ctx: EditContext): EditResult {
  if (!isObj(raw)) throw new EditError('the configuration is not a JSON object');
  const doc = structuredClone(raw);
  const warnings: string[] = [];
  const summary = EDITS[change.kind](doc, change as never, ctx, warnings);
  return { doc, summary, warnings };
}

/** The change of kind K (Extract alone misses members whose kind is a union, as 'acl-add' | 'acl-remove'). */
type ChangeOf<K> = ConfigChange extends infer C
  ? C extends { kind: infer CK }
    ? K extends CK
      ? C
      : never
    : never
  : never;

type Edit<K extends ConfigChange['kind']> = (
  doc: Obj,
  c: ChangeOf<K>,
  ctx: EditContext,
  warnings: string[],
) => string;

const EDITS: { [K in ConfigChange['kind']]: Edit<K> } = {
  'target-add': (doc, c, _ctx, warnings) => {
    const targets = targetsOf(doc);
    if (targets.some((x) => isObj(x) && typeof x.name === 'string' && same(x.name, c.target)))
      throw new EditError(`target ${c.target} exists`);
    const t: Obj = { name: c.target, ...(c.alias !== undefined ? { alias: c.alias } : {}), luns: [] };
    targets.push(t);
    warnings.push(`target ${c.target} has no ACL and no CHAP yet: any initiator may log in`);
    return `target ${c.target} added`;
  },
  'target-remove': (doc, c, ctx) => {
    const t = findTarget(doc, c.target);
    const targets = targetsOf(doc);
    if (targets.length === 1)
      throw new EditError(`${c.target} is the only target (a configuration needs at least one)`);
    busy(ctx, String(t.name), 'not removed');
    targets.splice(targets.indexOf(t), 1);
    return `target ${String(t.name)} removed`;
  },
  'lun-add': (doc, c) => {
    const t = findTarget(doc, c.target);
    const luns = lunsOf(t);
    const used = new Set(luns.map((l) => (isObj(l) ? l.lun : undefined)));
    let n = c.lun ?? 0;
    if (c.lun === undefined) while (used.has(n)) n++;
    else if (used.has(n)) throw new EditError(`target ${String(t.name)} already has LUN ${n}`);
    if (c.path === undefined && c.size === undefined)
      throw new EditError('a null LUN needs a size (--null --size SIZE)');
    const l: Obj = { lun: n };
    if (c.path === undefined) l.backstore = 'null';
    else l.path = c.path;
    if (c.size !== undefined) l.size = c.size;
    if (c.readOnly) l.readOnly = true;
    if (c.blockSize !== undefined) l.blockSize = c.blockSize;
    if (c.serial !== undefined) l.serial = c.serial;
    luns.push(l);
    return `LUN ${n} added to ${String(t.name)}`;
  },
  'lun-remove': (doc, c, ctx) => {
    const t = findTarget(doc, c.target);
    const l = findLun(t, c.lun);
    busy(ctx, String(t.name), `LUN ${c.lun} not removed`);
    lunsOf(t).splice(lunsOf(t).indexOf(l), 1);
    return `LUN ${c.lun} removed from ${String(t.name)}`;
  },
  'lun-resize': (doc, c, ctx) => {
    const t = findTarget(doc, c.target);
    const l = findLun(t, c.lun);
    if (l.type === 'cd')
      throw new EditError(`LUN ${c.lun} of ${String(t.name)} is a cd: its size is its image's`);
    let bytes: number;
    try {
      bytes = parseSize(c.size);
    } catch (e) {
      throw new EditError((e as Error).message);
    }
    const now = ctx.lunBytes(String(t.name), c.lun);
    if (now !== undefined && bytes < now && !ctx.force)
      throw new EditError(
        `LUN ${c.lun} of ${String(t.name)} would shrink from ${now} to ${bytes} bytes, losing the data ` +
          'past the new end (--force to do it)',
      );
    l.size = c.size;
    return `LUN ${c.lun} of ${String(t.name)} resized to ${c.size}`;
  },
  'acl-add': (doc, c) => {
    const t = findTarget(doc, c.target);
    const { key, value } = aclEntry(c);
    const acl = isObj(t.acl) ? t.acl : (t.acl = {});
    const list = Array.isArray(acl[key]) ? (acl[key] as unknown[]) : (acl[key] = []);
    if (list.some((x) => typeof x === 'string' && same(x, value)))
      throw new EditError(`${value} is in the ACL of ${String(t.name)} already`);
    list.push(value);
    return `${value} added to the ACL of ${String(t.name)}`;
  },
  'acl-remove': (doc, c, ctx) => {
    const t = findTarget(doc, c.target);
    const { key, value } = aclEntry(c);
    const acl = isObj(t.acl) ? t.acl : {};
    const list = Array.isArray(acl[key]) ? (acl[key] as unknown[]) : [];
    const i = list.findIndex((x) => typeof x === 'string' && same(x, value));
    if (i < 0) throw new EditError(`${value} is not in the ACL of ${String(t.name)}`);
    list.splice(i, 1);
    if (list.length === 0) delete acl[key];
    if (isObj(t.acl) && Object.keys(t.acl).length === 0) delete t.acl;
    const open = openWarning(t);
    if (open && !ctx.force) throw new EditError(`not removed: ${open} once it is gone (--force to do it)`);
    return `${value} removed from the ACL of ${String(t.name)}`;
  },
  'account-add': (doc, c, _ctx, warnings) => {
    if (c.user === '') throw new EditError('an account needs a user name');
    if (c.secret === '') throw new EditError('empty CHAP secret refused (it would authenticate anyone)');
    const store = Array.isArray(doc.accounts) ? (doc.accounts as unknown[]) : (doc.accounts = []);
    if (store.some((a) => userOf(a) === c.user)) throw new EditError(`account ${c.user} exists`);
    store.push({ user: c.user, secret: c.secret });
    if (c.secret.length < CHAP_SECRET_WARN_LENGTH)
      warnings.push(
        `the secret of ${c.user} is shorter than ${CHAP_SECRET_WARN_LENGTH} characters ` +
          '(the Windows initiator requires 12 to 16)',
      );
    return `account ${c.user} added (bind it to a target or to discovery to use it)`;
  },
  'account-remove': (doc, c) => {
    const store = Array.isArray(doc.accounts) ? (doc.accounts as unknown[]) : [];
    const i = store.findIndex((a) => userOf(a) === c.user);
    const where = bindings(doc, c.user);
    if (i < 0) {
      if (where.length)
        throw new EditError(`account ${c.user} is written inline in ${where.join(', ')}: unbind it there`);
      throw new EditError(`no account ${c.user}`);
    }
    if (where.length)
      throw new EditError(`account ${c.user} is bound to ${where.join(', ')}: unbind it first`);
    store.splice(i, 1);
    if (store.length === 0) delete doc.accounts;
    return `account ${c.user} removed`;
  },
  'account-bind': (doc, c) => {
    const store = Array.isArray(doc.accounts) ? (doc.accounts as unknown[]) : [];
    if (!store.some((a) => userOf(a) === c.user))
      throw new EditError(`no account ${c.user} (add it first: nodetgt account add ${c.user})`);
    const { holder, key, name } = scopeOf(doc, c.scope);
    const auth = isObj(holder[key]) ? (holder[key] as Obj) : { incoming: [] };
    const incoming = Array.isArray(auth.incoming) ? (auth.incoming as unknown[]) : (auth.incoming = []);
    if (c.outgoing) {
      if (incoming.length === 0)
        throw new EditError(
          `${name} has no incoming account: bind one first (outgoing CHAP, the target proving itself, ` +
            'comes on top of the initiator proving itself)',
        );
      if (auth.outgoing !== undefined)
        throw new EditError(`${name} has outgoing account ${String(userOf(auth.outgoing))}: unbind it first`);
      auth.outgoing = c.user;
    } else {
      if (incoming.some((a) => userOf(a) === c.user))
        throw new EditError(`account ${c.user} is bound to ${name} already`);
      incoming.push(c.user);
    }
    holder[key] = auth;
    return `account ${c.user} bound to ${name}${c.outgoing ? ' (outgoing)' : ''}`;
  },
  'alua-state': (doc, c) => {
    const t = findTarget(doc, c.target);
    const alua = isObj(t.alua) ? t.alua : undefined;
    const groups = alua && Array.isArray(alua.groups) ? (alua.groups as unknown[]) : [];
    const g = groups.find((x): x is Obj => isObj(x) && x.id === c.group);
    if (!g) throw new EditError(`target ${String(t.name)} has no target port group ${c.group} in its 'alua'`);
    if (g.state === c.state)
      throw new EditError(`group ${c.group} of ${String(t.name)} is ${c.state} already`);
    const was = String(g.state);
    g.state = c.state;
    return `target port group ${c.group} of ${String(t.name)}: ${was} -> ${c.state}`;
  },
  'account-unbind': (doc, c, ctx) => {
    const { holder, key, name } = scopeOf(doc, c.scope);
    const auth = holder[key];
    if (!isObj(auth)) throw new EditError(`${name} has no CHAP accounts`);
    if (c.outgoing) {
      if (auth.outgoing === undefined || userOf(auth.outgoing) !== c.user)
        throw new EditError(`account ${c.user} is not the outgoing account of ${name}`);
      delete auth.outgoing;
      return `account ${c.user} unbound from ${name} (outgoing)`;
    }
    const incoming = Array.isArray(auth.incoming) ? (auth.incoming as unknown[]) : [];
    const i = incoming.findIndex((a) => userOf(a) === c.user);
    if (i < 0) throw new EditError(`account ${c.user} is not bound to ${name}`);
    if (incoming.length === 1) {
      if (!ctx.force)
        throw new EditError(
          `account ${c.user} is the last incoming account of ${name}: without it ${name} asks for no ` +
            'CHAP at all (--force to do it)',
        );
      delete holder[key]; // an outgoing account alone is not a valid auth
    } else incoming.splice(i, 1);
    return `account ${c.user} unbound from ${name}`;
  },
};

function aclEntry(c: { initiator?: string; network?: string }): { key: string; value: string } {
  if ((c.initiator === undefined) === (c.network === undefined))
    throw new EditError('an ACL entry is one --initiator NAME or one --network CIDR');
  return c.initiator !== undefined
    ? { key: 'initiators', value: c.initiator }
    : { key: 'networks', value: c.network! };
}

function scopeOf(doc: Obj, scope: AuthScope): { holder: Obj; key: string; name: string } {
  if ('discovery' in scope) return { holder: doc, key: 'discoveryAuth', name: 'discovery' };
  const t = findTarget(doc, scope.target);
  return { holder: t, key: 'auth', name: `target ${String(t.name)}` };
}

/** Where a user is bound: "target X", "discovery" (incoming or outgoing, by reference or inline). */
function bindings(doc: Obj, user: string): string[] {
  const out: string[] = [];
  const check = (auth: unknown, name: string) => {
    if (!isObj(auth)) return;
    const incoming = Array.isArray(auth.incoming) ? (auth.incoming as unknown[]) : [];
    if (incoming.some((a) => userOf(a) === user) || userOf(auth.outgoing) === user) out.push(name);
  };
  check(doc.discoveryAuth, 'discovery');
  for (const t of Array.isArray(doc.targets) ? (doc.targets as unknown[]) : [])
    if (isObj(t)) check(t.auth, `target ${String(t.name)}`);
  return out;
}
