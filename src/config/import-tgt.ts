/**
 * tgt (targets.conf, as tgt-admin reads it) to nodetgt.
 *
 * `<target NAME>` ... `</target>` blocks; a LUN per `backing-store PATH` line or `<backing-store PATH>` block
 * (whose own `lun` may number it). tgt keeps LUN 0 for its controller, so backing stores are LUN 1 onwards in
 * the order written, skipping numbers a block took. Settings at target level apply to each of its LUNs. What
 * nodetgt has no place for is named in the warnings with its line.
 */
import {
  addAclEntry,
  addUser,
  checkAclMix,
  checkPath,
  checkTargetName,
  DEFAULT_PORTALS,
  statPathKind,
  Warner,
  words,
  type ImportedLun,
  type ImportedTarget,
  type ImportOptions,
  type ImportResult,
  type PathKind,
} from './import-common';

/** LUN settings tgt-admin accepts at target level or in a backing-store block. */
interface LunSettings {
  lun?: number;
  readOnly?: boolean;
  cd?: boolean;
  blockSize?: number;
  serial?: string;
}

interface Store {
  path: string;
  line: number;
  own: LunSettings;
}

interface TargetState {
  t: ImportedTarget;
  line: number;
  stores: Store[];
  common: LunSettings;
  /** initiator-address ALL: anyone may log in, whatever else is listed. */
  open: boolean;
}

const GLOBAL_IGNORED = new Set(['default-driver']);

/** A LUN setting into `s`; false when the key is not one. */
function lunSetting(s: LunSettings, key: string, v: string, line: number, warn: Warner): boolean {
  switch (key) {
    case 'lun':
      if (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 16383) s.lun = Number(v);
      else warn.add(line, `lun ${v}: not a LUN number from 1 to 16383 (0 is tgt's controller), ignored`);
      return true;
    case 'readonly':
      s.readOnly = v === '1' || /^(yes|on|true)$/i.test(v);
      return true;
    case 'device-type':
      if (v === 'cd') s.cd = true;
      else if (v !== 'disk') warn.add(line, `device-type ${v}: not converted (nodetgt serves disk and cd)`);
      return true;
    case 'block-size':
      if (v === '512' || v === '4096') s.blockSize = Number(v);
      else warn.add(line, `block-size ${v}: not converted (nodetgt serves 512 or 4096)`);
      return true;
    case 'scsi_sn':
      if (/^[\x21-\x7e]{1,20}$/.test(v)) s.serial = v;
      else warn.add(line, `scsi_sn ${v}: not converted (1 to 20 printable characters)`);
      return true;
    case 'bs-type':
      if (v !== 'rdwr' && v !== 'aio')
        warn.add(line, `bs-type ${v}: not converted (nodetgt serves files and devices)`);
      return true;
    default:
      return false;
  }
}

function makeLun(n: number, s: Store, common: LunSettings, kind: PathKind, warn: Warner): ImportedLun {
  const set = { ...common, ...s.own };
  checkPath(s.path, kind, s.line, warn);
  const lun: ImportedLun = { lun: n, path: s.path };
  if (set.cd) lun.type = 'cd';
  else {
    if (set.readOnly) lun.readOnly = true;
    if (set.blockSize !== undefined) lun.blockSize = set.blockSize;
  }
  if (set.serial !== undefined) lun.serial = set.serial;
  return lun;
}

/** Numbers the stores as tgt does and turns them into LUNs. */
function finishTarget(st: TargetState, warn: Warner, pathKind: (p: string) => PathKind): void {
  const taken = new Set(st.stores.map((s) => s.own.lun).filter((n): n is number => n !== undefined));
  let next = 1;
  const many = st.stores.length > 1;
  for (const s of st.stores) {
    let n = s.own.lun;
    if (n === undefined) {
      while (taken.has(next)) next++;
      n = next++;
    }
    const common = many ? { ...st.common, serial: undefined } : st.common;
    if (many && st.common.serial !== undefined && s === st.stores[0])
      warn.add(st.line, `scsi_sn ${st.common.serial} at target level with several LUNs: not converted`);
    (st.t.luns ??= []).push(makeLun(n, s, common, pathKind(s.path), warn));
  }
  if (st.open) delete st.t.acl;
  checkAclMix(st.t, st.line, warn);
}

function directStore(p: string, line: number, warn: Warner): void {
  warn.add(
    line,
    `direct-store ${p}: served as a backing store (nodetgt does not pass the device's identity through)`,
  );
}

function targetKey(st: TargetState, name: string, args: string[], line: number, warn: Warner): void {
  const key = name.toLowerCase();
  const v = args.join(' ');
  if (key === 'backing-store' || key === 'direct-store') {
    for (const p of args
      .join(' ')
      .split(/\s*,\s*/)
      .filter(Boolean))
      st.stores.push({ path: p, line, own: {} });
    if (key === 'direct-store')
      warn.add(
        line,
        `direct-store ${v}: served as a backing store (nodetgt does not pass the device's identity through)`,
      );
  } else if (key === 'incominguser') addUser(st.t, 'incoming', args, line, warn, key);
  else if (key === 'outgoinguser') addUser(st.t, 'outgoing', args, line, warn, key);
  else if (key === 'initiator-address' || key === 'initiator-name') {
    for (const e of args
      .join(' ')
      .split(/[\s,]+/)
      .filter(Boolean))
      if (!addAclEntry(st.t, e, line, warn)) st.open = true;
  } else if (!lunSetting(st.common, key, v, line, warn))
    warn.add(line, `${name} ${v}: not converted (nodetgt has no per-target ${name})`);
}

export function importTgt(text: string, opts: ImportOptions = {}): ImportResult {
  const warn = new Warner(opts.file ?? 'targets.conf');
  const pathKind = opts.pathKind ?? statPathKind;
  const targets: ImportedTarget[] = [];
  let st: TargetState | null = null;
  let store: Store | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    let w = words(raw);
    if (w.length === 0) return;
    // Config::General also takes "key = value".
    if (w[1] === '=') w = [w[0], ...w.slice(2)];
    const open = /^<([\w-]+)(?:\s+(.*?))?>$/.exec(w.join(' '));
    const close = /^<\/([\w-]+)>$/.exec(w.join(' '));
    if (open && open[1].toLowerCase() === 'target') {
      if (st !== null) warn.add(line, `<target> inside <target ${st.t.name}>: not converted`);
      const name = (open[2] ?? '').trim();
      checkTargetName(name, line, warn);
      st = { t: { name, luns: [] }, line, stores: [], common: {}, open: false };
      targets.push(st.t);
    } else if (open && /^(backing|direct)-store$/i.test(open[1]) && st !== null) {
      store = { path: (open[2] ?? '').trim(), line, own: {} };
      st.stores.push(store);
      if (/^direct/i.test(open[1])) directStore(store.path, line, warn);
    } else if (close && /^(backing|direct)-store$/i.test(close[1])) store = null;
    else if (close && close[1].toLowerCase() === 'target') {
      if (st !== null) finishTarget(st, warn, pathKind);
      st = null;
    } else if (open || close) warn.add(line, `${w.join(' ')}: not converted`);
    else if (store !== null) {
      if (!lunSetting(store.own, w[0].toLowerCase(), w.slice(1).join(' '), line, warn))
        warn.add(line, `${w.join(' ')}: not converted (nodetgt has no such LUN setting)`);
    } else if (st !== null) targetKey(st, w[0], w.slice(1), line, warn);
    else if (!GLOBAL_IGNORED.has(w[0].toLowerCase()) || w[1] !== 'iscsi')
      warn.add(line, `${w.join(' ')}: global setting not converted`);
  });
  if (st !== null) {
    const s: TargetState = st;
    warn.add(s.line, `<target ${s.t.name}> has no </target>: converted as far as the file goes`);
    finishTarget(s, warn, pathKind);
  }
  return {
    config: { portals: [...DEFAULT_PORTALS], targets },
    warnings: warn.list.sort((a, b) => a.line - b.line),
  };
}
