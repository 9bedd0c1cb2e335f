/** iSCSI names (RFC 3720 3.2.6.3) and networks as the config accepts them. */
import * as net from 'node:net';
import { parseCidr } from './acl';
import { ConfigError } from './validate';

const IQN_RE = /^iqn\.(\d{4})-(\d{2})\.[a-z0-9][a-z0-9.-]*(:\S+)?$/i;
const EUI_NAA_RE = /^(eui\.[0-9a-f]{16}|naa\.([0-9a-f]{16}|[0-9a-f]{32}))$/i;

/**
 * Why `name` is not an iSCSI name (RFC 3720 3.2.6.3: iqn.YYYY-MM.reversed.domain[:anything], eui. + 16 hex
 * digits, naa. + 16 or 32 hex digits), or null when it is one.
 */
export function iscsiNameProblem(name: string): string | null {
  const m = IQN_RE.exec(name);
  if (m) {
    const month = Number(m[2]);
    if (month < 1 || month > 12)
      return `'${name}' has month ${m[2]} in its date (iqn.YYYY-MM, MM from 01 to 12)`;
    return null;
  }
  if (EUI_NAA_RE.test(name)) return null;
  return `'${name}' is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui.<16 hex> or naa.<16 or 32 hex>)`;
}

/** The config accepts exactly the networks the ACL matcher understands (parseCidr). */
export function validateCidr(text: string): void {
  if (parseCidr(text)) return;
  const m = /^([0-9a-f.:]+)\/\d+$/i.exec(text);
  if (m && net.isIP(m[1]) !== 0) throw new ConfigError(`invalid prefix length in '${text}'`);
  throw new ConfigError(`invalid network '${text}'`);
}
