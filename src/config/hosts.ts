/**
 * Per-initiator LUN masking and read-only mapping: a target's `hosts` list (LIO's mapped LUNs with write
 * protect, SCST's security groups). Each entry names an initiator (exactly, or by a prefix) and what it sees:
 * which LUNs, and which of them it may only read. An initiator no entry matches sees every LUN, writable as
 * configured.
 *
 * This module has no runtime import of schema.ts (which calls it): the validation helpers it needs are
 * handed in, so the two do not form an import cycle.
 */

export interface HostConfig {
  /**
   * Who: a lower-case iSCSI name (exact match), or, with `prefix`, the start of names ("iqn.1998-01.com.vmware:"
   * from "iqn.1998-01.com.vmware:*" or "iqn.1998-01.com.vmware:"; "" from "*", every initiator).
   */
  initiator: string;
  prefix: boolean;
  /** The LUNs this initiator sees, ascending; absent = all of the target's. */
  luns?: number[];
  /** The LUNs it may only read, ascending; true = all it sees. */
  readOnly: number[] | true;
}

/** How schema.ts reports a problem (ConfigError with where/key) and checks a name, handed in (see header). */
export interface HostsValidation {
  fail(where: string, msg: string): never;
  nameProblem(name: string): string | null;
}

/**
 * Parse an initiator pattern (a host's `initiator`, an `acl.initiators` entry): "*" or a text ending in '*' is a prefix (without the '*'); a text ending in
 * ':' is a prefix too (no iSCSI name ends in ':'); anything else must be a whole iSCSI name.
 */
export function parsePattern(
  text: string,
  where: string,
  v: HostsValidation,
): { initiator: string; prefix: boolean } {
  const lower = text.toLowerCase();
  if (lower.endsWith('*')) {
    const head = lower.slice(0, -1);
    if (head.includes('*')) v.fail(where, `'initiator' may hold one '*', at its end: '${text}'`);
    if (head !== '' && !/^(iqn|eui|naa)\./.test(head))
      v.fail(where, `'initiator' prefix '${text}' must start with iqn., eui. or naa. (or be '*' alone)`);
    return { initiator: head, prefix: true };
  }
  if (lower.endsWith(':')) {
    if (!/^iqn\./.test(lower)) v.fail(where, `'initiator' prefix '${text}' must start with iqn.`);
    return { initiator: lower, prefix: true };
  }
  if (lower.includes('*')) v.fail(where, `'initiator' may hold one '*', at its end: '${text}'`);
  const problem = v.nameProblem(text);
  if (problem !== null) v.fail(where, `'initiator': ${problem}`);
  return { initiator: lower, prefix: false };
}

/** A list of distinct LUN numbers of the target, ascending. */
function lunList(
  raw: unknown,
  key: string,
  where: string,
  allowed: ReadonlySet<number>,
  what: string,
  v: HostsValidation,
): number[] {
  if (!Array.isArray(raw) || raw.some((n) => typeof n !== 'number' || !Number.isInteger(n)))
    v.fail(where, `'${key}' must be a list of LUN numbers`);
  const seen = new Set<number>();
  for (const n of raw as number[]) {
    if (!allowed.has(n)) v.fail(where, `'${key}' names LUN ${n}, which ${what} has not`);
    if (seen.has(n)) v.fail(where, `'${key}' names LUN ${n} twice`);
    seen.add(n);
  }
  return [...seen].sort((a, b) => a - b);
}

/** A target's `hosts` setting (undefined = none), checked against the target's LUN numbers. */
export function normalizeHosts(
  raw: unknown,
  where: string,
  targetLuns: readonly number[],
  v: HostsValidation,
): HostConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) v.fail(where, "'hosts' must be a list of { initiator, luns?, readOnly? }");
  const all = new Set(targetLuns);
  const patterns = new Set<string>();
  return raw.map((h, i): HostConfig => {
    const at = `${where}.hosts[${i}]`;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) v.fail(at, 'expected an object');
    const o = h as Record<string, unknown>;
    for (const k of Object.keys(o))
      if (k !== 'initiator' && k !== 'luns' && k !== 'readOnly') v.fail(at, `unknown setting '${k}'`);
    if (typeof o.initiator !== 'string' || o.initiator === '')
      v.fail(at, "'initiator' is required: an iSCSI name, or a prefix ending in '*'");
    const pattern = parsePattern(o.initiator, at, v);
    const key = `${pattern.prefix ? 'prefix' : 'name'} ${pattern.initiator}`;
    if (patterns.has(key)) v.fail(at, `'initiator' '${o.initiator}' is already mapped by an earlier entry`);
    patterns.add(key);
    const luns = o.luns === undefined ? undefined : lunList(o.luns, 'luns', at, all, 'the target', v);
    let readOnly: number[] | true = [];
    if (o.readOnly === true) readOnly = true;
    else if (o.readOnly !== undefined && o.readOnly !== false) {
      const visible = luns === undefined ? all : new Set(luns);
      readOnly = lunList(o.readOnly, 'readOnly', at, visible, luns ? "the entry's 'luns'" : 'the target', v);
    }
    return { ...pattern, ...(luns ? { luns } : {}), readOnly };
  });
}

/**
 * The entry for this initiator: an exact name wins over prefixes, then the longest matching prefix; undefined
 * when none matches. Names compare case-insensitively (RFC 3722), as the ACL's do.
 */
export function hostFor(
  hosts: readonly HostConfig[] | undefined,
  initiatorName: string,
): HostConfig | undefined {
  if (!hosts || hosts.length === 0) return undefined;
  const name = initiatorName.toLowerCase();
  let best: HostConfig | undefined;
  for (const h of hosts) {
    if (!h.prefix) {
      if (h.initiator === name) return h;
    } else if (name.startsWith(h.initiator) && (!best || h.initiator.length > best.initiator.length))
      best = h;
  }
  return best;
}

/** Whether this entry makes `lun` read-only (for a LUN the entry shows). */
export function hostReadOnly(h: HostConfig, lun: number): boolean {
  return h.readOnly === true || h.readOnly.includes(lun);
}
