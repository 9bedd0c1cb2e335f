/** CHAP accounts of a target or of discovery sessions, as the config gives them. */
import { asObject, checkKeys, fail } from './validate';

/** A CHAP name and secret (RFC 7143 12.1.3). */
export interface ChapAccount {
  user: string;
  secret: string;
}

/** CHAP for a target or for discovery sessions. */
export interface AuthConfig {
  /** Accounts an initiator may prove (any one of them). */
  incoming: ChapAccount[];
  /** The target's own name and secret, for initiators that authenticate the target too (mutual CHAP). */
  outgoing?: ChapAccount;
}

/** Secrets shorter than this draw a warning: the Windows initiator requires 12 to 16 characters. */
export const CHAP_SECRET_WARN_LENGTH = 12;

/** Messages never quote a secret: only where it is and what is wrong with it. */
function normalizeAccount(raw: unknown, where: string): ChapAccount {
  const o = asObject(raw, where);
  checkKeys(o, ['user', 'secret'], where);
  if (typeof o.user !== 'string' || o.user === '') fail(where, "'user' must be a non-empty string");
  if (typeof o.secret !== 'string') fail(where, "'secret' must be a string");
  if (o.secret === '') fail(where, "'secret' must not be empty (an empty CHAP secret authenticates anyone)");
  return { user: o.user, secret: o.secret };
}

/** The top-level `accounts` store: a list of { user, secret }, each user once. */
export function normalizeStore(raw: unknown): ChapAccount[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) fail('config', "'accounts' must be a list of { user, secret }");
  const store = raw.map((a, i) => normalizeAccount(a, `config.accounts[${i}]`));
  const users = new Set<string>();
  store.forEach((a, i) => {
    if (users.has(a.user)) fail(`config.accounts[${i}]`, `duplicate account '${a.user}'`);
    users.add(a.user);
  });
  return store;
}

/** An account written inline ({ user, secret }) or named by user from the `accounts` store ("alice"). */
function accountOrReference(raw: unknown, where: string, store: readonly ChapAccount[]): ChapAccount {
  if (typeof raw !== 'string') return normalizeAccount(raw, where);
  // The store's own object: shortSecrets tells a reference from an inline account by identity.
  const a = store.find((x) => x.user === raw);
  if (!a) fail(where, `no account '${raw}' in the top-level 'accounts'`);
  return a;
}

/**
 * A target's `auth` or the top-level `discoveryAuth`: { incoming: [account, ...], outgoing? }, each account
 * { user, secret } inline or a user name from the `accounts` store.
 */
export function normalizeAuth(raw: unknown, where: string, store: readonly ChapAccount[] = []): AuthConfig {
  const o = asObject(raw, where);
  checkKeys(o, ['incoming', 'outgoing'], where);
  if (!Array.isArray(o.incoming) || o.incoming.length === 0)
    fail(where, "'incoming' must be a non-empty list of { user, secret } or account names");
  const incoming = o.incoming.map((a, i) => accountOrReference(a, `${where}.incoming[${i}]`, store));
  const users = new Set<string>();
  for (const a of incoming) {
    if (users.has(a.user)) fail(where, `duplicate incoming user '${a.user}'`);
    users.add(a.user);
  }
  if (o.outgoing === undefined) return { incoming };
  return { incoming, outgoing: accountOrReference(o.outgoing, `${where}.outgoing`, store) };
}
