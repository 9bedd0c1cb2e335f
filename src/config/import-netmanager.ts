/**
 * NetManager's iscsi.conf (an .ini file) to nodetgt. Globals come first: `storage=` (the directory of the
 * backing files) becomes `storageDir`, `node=` (the base IQN) `baseIqn`, `sessions=` `limits.maxSessions`,
 * `connections=` (per session) the global `params.MaxConnections`, `initiators=` every target's allowed
 * initiators unless its section names its own. Each `[name]` section is a target `<node>:<name>`: `size=` a
 * list of sizes, one LUN each (files `<name>.img`, `<name>_1.img`, ... under storageDir, as NetManager names
 * them); `networks=`, `initiators=`, `readonly=y|n`, and `comment=` as the target's alias. Whatever else is
 * there is named in the warnings with its line.
 */
import { parseSize } from '../util/size';
import {
  addAclEntry,
  checkAclMix,
  checkTargetName,
  DEFAULT_PORTALS,
  Warner,
  type ImportedConfig,
  type ImportedTarget,
  type ImportOptions,
  type ImportResult,
} from './import-common';

interface Section {
  name: string;
  line: number;
  t: ImportedTarget;
  /** Set when the section gives its own initiators= (the global list is then not added). */
  ownInitiators: boolean;
}

function positiveInt(v: string): number | null {
  return /^[1-9]\d{0,6}$/.test(v) ? Number(v) : null;
}

function setGlobal(cfg: ImportedConfig, key: string, v: string, line: number, warn: Warner): string[] | null {
  switch (key) {
    case 'storage':
      if (!v.startsWith('/'))
        warn.add(line, `storage=${v}: not an absolute path; taken from the config file's directory`);
      cfg.storageDir = v;
      return null;
    case 'node':
      if (!/^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*$/i.test(v))
        warn.add(
          line,
          `node=${v}: not an IQN without a ':' part (e.g. iqn.2002-08.com.example); not converted`,
        );
      else cfg.baseIqn = v;
      return null;
    case 'sessions': {
      const n = positiveInt(v);
      if (n === null) warn.add(line, `sessions=${v}: not a number of sessions; not converted`);
      else cfg.limits = { maxSessions: n };
      return null;
    }
    case 'connections': {
      const n = positiveInt(v);
      if (n === null || n > 65535)
        warn.add(
          line,
          `connections=${v}: not a number of connections per session (1 to 65535); not converted`,
        );
      else cfg.params = { MaxConnections: n };
      return null;
    }
    case 'initiators':
      return v.split(/[\s,]+/).filter(Boolean);
    default:
      warn.add(line, `${key}: unknown NetManager global setting, not converted`);
      return null;
  }
}

function setTargetKey(s: Section, key: string, v: string, line: number, warn: Warner): void {
  const t = s.t;
  switch (key) {
    case 'size': {
      const sizes: string[] = [];
      for (const word of v.split(/[\s,]+/).filter(Boolean)) {
        try {
          if (parseSize(word) % 512 !== 0) throw new Error('not a multiple of 512 bytes');
          sizes.push(word);
        } catch (e) {
          warn.add(line, `[${s.name}] size ${word}: ${(e as Error).message}; that LUN not converted`);
        }
      }
      if (sizes.length) t.sizes = sizes;
      return;
    }
    case 'networks':
    case 'initiators':
      if (key === 'initiators') s.ownInitiators = true;
      for (const e of v.split(/[\s,]+/).filter(Boolean)) addAclEntry(t, e, line, warn);
      return;
    case 'readonly':
      if (/^(y|yes|1|true)$/i.test(v)) t.readOnly = true;
      else if (!/^(n|no|0|false)$/i.test(v))
        warn.add(line, `[${s.name}] readonly=${v}: not y or n; not converted`);
      return;
    case 'comment':
      t.alias = v;
      return;
    default:
      warn.add(line, `[${s.name}] ${key}: unknown NetManager target setting, not converted`);
  }
}

export function importNetManager(text: string, opts: ImportOptions = {}): ImportResult {
  const warn = new Warner(opts.file ?? 'iscsi.conf');
  const cfg: ImportedConfig = { portals: DEFAULT_PORTALS, targets: [] };
  const sections: Section[] = [];
  let globalInitiators: { line: number; names: string[] } | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const l = raw.trim();
    if (l === '' || l.startsWith(';') || l.startsWith('#')) return;
    const head = /^\[([^\]]*)\]$/.exec(l);
    if (head) {
      const name = head[1].trim();
      if (sections.some((s) => s.name === name))
        warn.add(line, `[${name}] given twice: the second not converted`);
      sections.push({ name, line, t: { name }, ownInitiators: false });
      return;
    }
    const kv = /^([A-Za-z_][\w-]*)\s*=\s*(.*)$/.exec(l);
    if (!kv) {
      warn.add(line, `'${l}': not a key=value line or a [section]; not converted`);
      return;
    }
    const key = kv[1].toLowerCase();
    const value = kv[2].trim();
    const current = sections.at(-1);
    if (current === undefined) {
      const names = setGlobal(cfg, key, value, line, warn);
      if (names !== null) globalInitiators = { line, names };
    } else if (sections.filter((s) => s.name === current.name).length === 1) {
      setTargetKey(current, key, value, line, warn);
    }
  });
  for (const s of sections) {
    if (sections.find((o) => o.name === s.name) !== s) continue;
    const g = globalInitiators as { line: number; names: string[] } | null;
    if (g !== null && !s.ownInitiators) for (const n of g.names) addAclEntry(s.t, n, g.line, warn);
    if (s.t.sizes === undefined) {
      warn.add(s.line, `[${s.name}]: no size=, so no LUN; target not converted`);
      continue;
    }
    if (cfg.baseIqn === undefined)
      warn.add(
        s.line,
        `[${s.name}]: no node= to make its IQN; nodetgt refuses the name until 'baseIqn' is set`,
      );
    else checkTargetName(`${cfg.baseIqn}:${s.name}`, s.line, warn);
    checkAclMix(s.t, s.line, warn);
    cfg.targets.push(s.t);
  }
  // Globals first in the JSON, as in the source.
  const { targets, ...globals } = cfg;
  return { config: { ...globals, targets }, warnings: warn.list };
}
