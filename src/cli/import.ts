/** `nodetgt import`: an IET or tgt configuration into a nodetgt JSON config, naming what it could not convert. */
import * as fs from 'node:fs';
import { detectFormat, formatWarning, type ImportFormat, type ImportResult } from '../config/import-common';
import { importIet } from '../config/import-iet';
import { importTgt } from '../config/import-tgt';
import { importNetManager } from '../config/import-netmanager';

interface ImportArgs {
  file: string;
  format?: ImportFormat;
  initiatorsAllow?: string;
  targetsAllow?: string;
  out?: string;
}

function parseImportArgs(argv: string[]): ImportArgs {
  const a: Partial<ImportArgs> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--format') {
      const f = value();
      if (f !== 'iet' && f !== 'tgt' && f !== 'netmanager')
        throw new Error(`--format must be iet, tgt or netmanager, not '${f}'`);
      a.format = f;
    } else if (flag === '--initiators-allow') a.initiatorsAllow = value();
    else if (flag === '--targets-allow') a.targetsAllow = value();
    else if (flag === '-o' || flag === '--output') a.out = value();
    else if (flag.startsWith('-')) throw new Error(`unknown option '${flag}'`);
    else if (a.file === undefined) a.file = flag;
    else throw new Error(`one FILE only ('${flag}' is a second)`);
  }
  if (a.file === undefined) throw new Error('import needs a FILE');
  return a as ImportArgs;
}

function read(file: string): { text: string; file: string } {
  try {
    return { text: fs.readFileSync(file, 'utf8'), file };
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
}

export function runImport(a: ImportArgs): ImportResult {
  const src = read(a.file);
  const format = a.format ?? detectFormat(src.text);
  if (format === null)
    throw new Error(
      `${a.file}: neither an IET ietd.conf, a tgt targets.conf nor a NetManager iscsi.conf (force one with --format)`,
    );
  if (format !== 'iet' && (a.initiatorsAllow || a.targetsAllow))
    throw new Error(
      `--initiators-allow and --targets-allow are IET files; ${format} keeps its ACLs in its own file`,
    );
  if (format === 'netmanager') return importNetManager(src.text, { file: a.file });
  return format === 'iet'
    ? importIet(
        src.text,
        { file: a.file },
        {
          initiatorsAllow: a.initiatorsAllow === undefined ? undefined : read(a.initiatorsAllow),
          targetsAllow: a.targetsAllow === undefined ? undefined : read(a.targetsAllow),
        },
      )
    : importTgt(src.text, { file: a.file });
}

/** Exit 0: all converted; 1: written, with what was not converted on stderr; 2: nothing written. */
export function importMain(argv: string[], usage: string): void {
  let result: ImportResult;
  let args: ImportArgs;
  try {
    args = parseImportArgs(argv);
    result = runImport(args);
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n${usage}`);
    process.exitCode = 2;
    return;
  }
  const json = JSON.stringify(result.config, null, 2) + '\n';
  try {
    if (args.out === undefined) process.stdout.write(json);
    else fs.writeFileSync(args.out, json, { mode: 0o600 }); // it may hold CHAP secrets
  } catch (e) {
    process.stderr.write(`nodetgt: cannot write ${args.out}: ${(e as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  for (const w of result.warnings) process.stderr.write(`${formatWarning(w)}\n`);
  process.exitCode = result.warnings.length ? 1 : 0;
}
