/**
 * IET (iSCSI Enterprise Target) to nodetgt: ietd.conf, with initiators.allow and targets.allow.
 *
 * ietd.conf: `Target NAME` starts a target at the start of a line; the lines indented under it are its
 * settings; other unindented lines are global (discovery CHAP accounts, defaults). Keys are case-insensitive.
 * What nodetgt has no place for (the operational keys, which it negotiates itself; Wthreads; ScsiId...) is
 * named in the warnings with its line.
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
} from './import-common';

/** RFC 7143 operational keys IET sets per target; nodetgt negotiates them with its own values. */
const OPERATIONAL = [
  'MaxConnections',
  'InitialR2T',
  'ImmediateData',
  'MaxRecvDataSegmentLength',
  'MaxXmitDataSegmentLength',
  'MaxBurstLength',
  'FirstBurstLength',
  'DefaultTime2Wait',
  'DefaultTime2Retain',
  'MaxOutstandingR2T',
  'DataPDUInOrder',
  'DataSequenceInOrder',
  'ErrorRecoveryLevel',
  'HeaderDigest',
  'DataDigest',
  'OFMarker',
  'IFMarker',
  'OFMarkInt',
  'IFMarkInt',
];

/** IET settings of its own that nodetgt sets globally or not at all, and why each is not carried over. */
const NOT_CONVERTED: Record<string, string> = {
  wthreads: "nodetgt's worker threads are global ('workers')",
  queuedcommands: "nodetgt's command window is global ('queueDepth')",
  nopinterval: "nodetgt's NOP-In interval is global ('nopInInterval')",
  noptimeout: "nodetgt's NOP-In timeout is global ('nopInTimeout')",
  rsptimeout: 'nodetgt has no response timeout setting',
};

interface Ctx {
  warn: Warner;
  pathKind: (p: string) => ReturnType<typeof statPathKind>;
}

function parseLun(t: ImportedTarget, args: string[], line: number, ctx: Ctx): void {
  const n = Number(args[0]);
  if (!/^\d+$/.test(args[0] ?? '') || n > 16383) {
    ctx.warn.add(line, `Lun '${args[0] ?? ''}': not a LUN number from 0 to 16383; not converted`);
    return;
  }
  const opts = new Map<string, string>();
  // Name=value pairs, comma-separated; a "quoted" value may hold commas.
  for (const m of args
    .slice(1)
    .join('')
    .matchAll(/([^,=]+)(?:=("[^"]*"|[^,]*))?/g))
    opts.set(m[1].toLowerCase(), (m[2] ?? '').replace(/^"(.*)"$/, '$1'));
  const lun: ImportedLun = { lun: n };
  const type = (opts.get('type') ?? 'fileio').toLowerCase();
  if (type === 'nullio') {
    lun.backstore = 'null';
    const sectors = Number(opts.get('sectors') ?? NaN);
    if (Number.isSafeInteger(sectors) && sectors > 0) lun.size = sectors * 512;
    else {
      lun.size = 64 * 1024 ** 3;
      ctx.warn.add(line, `Lun ${n}: Type=nullio without Sectors: made a 64 GiB null LUN`);
    }
  } else {
    const p = opts.get('path');
    if (p === undefined || p === '') {
      ctx.warn.add(line, `Lun ${n}: no Path: not converted`);
      return;
    }
    lun.path = p;
    const kind = ctx.pathKind(p);
    checkPath(p, kind, line, ctx.warn);
    if (type === 'blockio') {
      if (kind === 'file')
        ctx.warn.add(
          line,
          `Lun ${n}: Type=blockio on ${p}, a regular file (IET needs a block device): served as a file`,
        );
      else lun.direct = true; // blockio bypasses the page cache; O_DIRECT is nodetgt's way to do the same
    } else if (type !== 'fileio') ctx.warn.add(line, `Lun ${n}: Type=${type} unknown: served as fileio`);
  }
  for (const [k, v] of opts) {
    if (k === 'path' || k === 'type' || k === 'sectors') continue;
    if (k === 'iomode' && v.toLowerCase() === 'ro') lun.readOnly = true;
    else if (k === 'iomode' && v.toLowerCase() === 'wb') continue;
    else if (k === 'iomode')
      ctx.warn.add(
        line,
        `Lun ${n}: IOMode=${v} not converted (nodetgt writes back; FUA and SYNCHRONIZE CACHE flush)`,
      );
    else if (k === 'blocksize' && (v === '512' || v === '4096')) lun.blockSize = Number(v);
    else if (k === 'scsisn' && /^[\x21-\x7e]{1,20}$/.test(v)) lun.serial = v;
    else ctx.warn.add(line, `Lun ${n}: ${k === 'scsiid' ? 'ScsiId' : k}=${v} not converted`);
  }
  const luns = (t.luns ??= []);
  if (luns.some((l) => l.lun === n)) ctx.warn.add(line, `Lun ${n} given twice: the second not converted`);
  else luns.push(lun);
}

function parseTargetKey(t: ImportedTarget, w: string[], line: number, ctx: Ctx): void {
  const key = w[0].toLowerCase();
  const args = w.slice(1);
  if (key === 'lun') parseLun(t, args, line, ctx);
  else if (key === 'incominguser') addUser(t, 'incoming', args, line, ctx.warn, w[0]);
  else if (key === 'outgoinguser') addUser(t, 'outgoing', args, line, ctx.warn, w[0]);
  else if (key === 'alias') t.alias = args.join(' ');
  else if (OPERATIONAL.some((k) => k.toLowerCase() === key))
    ctx.warn.add(
      line,
      `${w.join(' ')}: not converted (nodetgt has no per-target ${w[0]}; it negotiates its own)`,
    );
  else if (NOT_CONVERTED[key] !== undefined)
    ctx.warn.add(line, `${w.join(' ')}: not converted (${NOT_CONVERTED[key]})`);
  else ctx.warn.add(line, `${w[0]}: unknown IET setting, not converted`);
}

/** Lines of an allow file: `TARGET|ALL entry, entry, ...`, with the line number of each. */
function allowLines(text: string): Array<{ line: number; target: string; entries: string[] }> {
  const out: Array<{ line: number; target: string; entries: string[] }> = [];
  text.split('\n').forEach((raw, i) => {
    const w = words(raw);
    if (w.length === 0) return;
    out.push({
      line: i + 1,
      target: w[0],
      entries: w
        .slice(1)
        .join(' ')
        .split(/[\s,]+/)
        .filter(Boolean),
    });
  });
  return out;
}

/**
 * initiators.allow: a target (or ALL, for every target) and who may log in to it. A target without a line,
 * or with ALL among its entries, admits anyone.
 */
function applyInitiatorsAllow(targets: ImportedTarget[], text: string, file: string, warns: Warner[]): void {
  const warn = new Warner(file);
  warns.push(warn);
  const open = new Set<ImportedTarget>();
  let last = 0;
  for (const { line, target, entries } of allowLines(text)) {
    last = line;
    const all = /^all$/i.test(target);
    const hit = targets.filter((t) => all || t.name.toLowerCase() === target.toLowerCase());
    if (hit.length === 0) warn.add(line, `target ${target} is not in the configuration: line not converted`);
    for (const t of hit) for (const e of entries) if (!addAclEntry(t, e, line, warn)) open.add(t);
  }
  for (const t of open) delete t.acl;
  for (const t of targets) checkAclMix(t, last, warn);
}

/** targets.allow limits the portal addresses a target is reached through; nodetgt's portals are global. */
function applyTargetsAllow(text: string, file: string, warns: Warner[]): void {
  const warn = new Warner(file);
  warns.push(warn);
  for (const { line, target, entries } of allowLines(text))
    if (!entries.every((e) => /^all$/i.test(e)))
      warn.add(
        line,
        `${target} ${entries.join(', ')}: not converted (nodetgt serves every target on every portal)`,
      );
}

export interface IetSources {
  initiatorsAllow?: { text: string; file: string };
  targetsAllow?: { text: string; file: string };
}

export function importIet(text: string, opts: ImportOptions = {}, allow: IetSources = {}): ImportResult {
  const ctx: Ctx = { warn: new Warner(opts.file ?? 'ietd.conf'), pathKind: opts.pathKind ?? statPathKind };
  const targets: ImportedTarget[] = [];
  let cur: ImportedTarget | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const w = words(raw);
    if (w.length === 0) return;
    const indented = /^\s/.test(raw);
    if (!indented && /^target$/i.test(w[0])) {
      if (w.length !== 2) {
        ctx.warn.add(line, `Target needs exactly one name: '${w.slice(1).join(' ')}' not converted`);
        cur = null;
        return;
      }
      checkTargetName(w[1], line, ctx.warn);
      cur = { name: w[1], luns: [] };
      targets.push(cur);
    } else if (!indented) {
      cur = null;
      const what = /^(incoming|outgoing)user$/i.test(w[0]) ? 'discovery CHAP account' : 'global setting';
      ctx.warn.add(line, `${w[0]}: ${what} not converted (an unindented line belongs to no target)`);
    } else if (cur === null) ctx.warn.add(line, `${w[0]}: indented under no Target, not converted`);
    else parseTargetKey(cur, w, line, ctx);
  });
  const warns = [ctx.warn];
  if (allow.initiatorsAllow)
    applyInitiatorsAllow(targets, allow.initiatorsAllow.text, allow.initiatorsAllow.file, warns);
  if (allow.targetsAllow) applyTargetsAllow(allow.targetsAllow.text, allow.targetsAllow.file, warns);
  return { config: { portals: [...DEFAULT_PORTALS], targets }, warnings: warns.flatMap((w) => w.list) };
}
