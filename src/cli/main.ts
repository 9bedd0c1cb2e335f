/** The `nodetgt` command. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  defaultConfigObject,
  normalizeConfig,
  parsePortal,
  shortSecrets,
  DEFAULT_TARGET_NAME,
  LOOPBACK_NETWORKS,
  type Config,
} from '../config/schema';
import { startTarget, type RunningTarget } from '../portal/portal';
import { cycleLogLevel, log, parseLogFormat, parseLogLevel, setLogFormat, setLogLevel } from '../util/log';
import { checkBackingFiles, prepareBackingFiles } from '../backstore/prepare';
import { describeJsonError, settingLine } from '../config/json-location';
import { importMain } from './import';
import { ADMIN_USAGE, adminCommand } from './admin';
import { CHANGE_COMMANDS, CHANGE_USAGE, changeCommand, type ChangeCommand } from './change';
import { fileSource, memorySource, type ConfigSource } from '../config/source';
import { TUNE_USAGE, tuneCommand } from './tune';

/**
 * SIGHUP: read the configuration file again (with the same command-line overrides) and apply what can change
 * live (RunningTarget.applyConfig, never forced: a LUN with I/O in flight is not removed, none is shrunk); a
 * file that does not validate, or a change refused, changes nothing and the target goes on as it was.
 */
async function reloadConfig(running: RunningTarget, args: ServeArgs): Promise<void> {
  if (!args.config) {
    log.warn('SIGHUP: no configuration file to reload (started without --config)');
    return;
  }
  let next: Config;
  try {
    next = buildConfig(args);
  } catch (e) {
    log.error('SIGHUP: configuration not reloaded, the running one stays', { error: (e as Error).message });
    return;
  }
  try {
    const report = await running.applyConfig(next);
    if (report.refused !== undefined) {
      log.error('SIGHUP: configuration change refused, nothing applied', { refused: report.refused });
    } else {
      log.info('SIGHUP: configuration reloaded', {
        applied: report.applied.join('; ') || 'nothing changed live',
        ...(report.needsRestart.length ? { needsRestart: report.needsRestart.join('; ') } : {}),
      });
    }
    for (const d of report.needsRestart) log.warn('SIGHUP: not applied until a restart', { change: d });
  } catch (e) {
    log.error('SIGHUP: reload failed', { error: (e as Error).message });
  }
}

/** `nodetgt provision`: one line per LU, exit status 0 when every LU is ready. */
function provision(config: Config): void {
  prepareBackingFiles(config, { reprovision: true }).then(
    (reports) => {
      for (const r of reports)
        process.stdout.write(
          `${r.target} LUN ${r.lun}: ${r.state}${r.serial ? ` serial ${r.serial}` : ''}\n`,
        );
    },
    (e: Error) => {
      process.stderr.write(`nodetgt: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}

const USAGE = `usage: nodetgt serve [options]
       nodetgt provision [options]
${ADMIN_USAGE}
${CHANGE_USAGE}
${TUNE_USAGE}
       nodetgt check-config FILE
       nodetgt import FILE [--format iet|tgt|netmanager] [--initiators-allow FILE] [--targets-allow FILE] [-o OUT]

  serve                 start the target
  provision             provision the configured LUs and exit: create missing backing files, each with a new
                        identity, also for a LU whose file disappeared (which serve leaves offline), and print
                        each LU's state and serial
  show sessions         list the sessions of a running target, a row per connection (--json: as JSON)
  show targets|luns|accounts
                        its targets (ACL, auth, sessions), LUs (size, mode, identity, online or why not),
                        CHAP accounts (user names only, never a secret)
  session close TSIH    end a session of a running target (all its connections)
  log-level [LEVEL]     set the log level of a running target (portal and every worker) until it stops, or
                        without LEVEL print it
  target add|remove     add a target (no LUNs yet), or remove one (--force: even with sessions logged in)
  lun add|remove|resize add a LUN (file or block device, or null; LUN N defaults to the lowest free),
                        remove one, or resize one (shrinking or removing one in use needs --force)
  acl add|remove        allow an initiator name or a network (CIDR) to log in, or stop allowing it
                        (taking out the last entry opens the target to anyone: needs --force)
  account add|remove    a CHAP account in the config file's account store (secret from --secret-file or
                        stdin, never the command line); remove only when bound nowhere
  account bind|unbind   require an account at a target's or discovery's login (--outgoing: the target's
                        own name for mutual CHAP); unbinding the last needs --force
                        Changes apply live and are then written to the config file atomically; one that
                        needs a restart is not applied and the file is not written (exit 1), unless
                        --save-only (write the file only). Without a config file changes are live only.
  tune                  check this host and the running target's connections for a SAN on 10GbE: MTU and
                        jumbo frames end to end (each connection's MSS), link speed, TCP buffers, offloads,
                        congestion control, receive spread, CPU governor; each with the fix (--json; exit 1
                        if a check failed; --interface IF checks IF instead of the portals' interfaces)
  check-config FILE     validate a configuration file without starting anything (exit 0 valid, 2 not;
                        the errors on stderr); backing paths are checked but nothing is created
  import FILE           convert an IET ietd.conf, a tgt targets.conf or a NetManager iscsi.conf (detected
                        from the content, or --format) into a nodetgt JSON config on stdout (or -o OUT); what cannot be converted
                        is listed on stderr with its line; exit 0 all converted, 1 converted with warnings

  --config FILE         JSON configuration file (see README); flags below override it
  --portal HOST:PORT    listen address (repeatable; default 0.0.0.0:3260)
  --target IQN          target name (default ${DEFAULT_TARGET_NAME})
  --lun PATH[:SIZE]     a LUN backed by PATH, created sparse at SIZE (e.g. 1G, 500M, 2T) when missing
                        (repeatable; LUN numbers 0, 1, ... in order; PATH 'null' with a SIZE = null backstore)
  --lun cd:ISO          a read-only CD/DVD LUN (MMC, removable) serving the existing image file ISO
  --workers N           worker threads (default: number of cores)
  --metrics HOST:PORT   Prometheus endpoint (default: none)
  --log-level LEVEL     error, warn, info or debug (default: NODETGT_LOG, else info); at run time,
                        nodetgt log-level LEVEL, or SIGUSR2 cycles error > warn > info > debug > error
  --log-format FORMAT   text (one line per event, key=value) or json (one object per line); default text
  --state-dir DIR       where the LUs' provisioning records (their identity) are kept
                        (default: .nodetgt beside the config file, or in the current directory)
  -h, --help            this text
`;

export class UsageError extends Error {}

/** A value check whose message is the usage error. */
function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export interface ServeArgs {
  config?: string;
  portals: string[];
  target?: string;
  luns: string[];
  workers?: number;
  metrics?: string;
  stateDir?: string;
  logLevel?: string;
  logFormat?: string;
}

export function parseServeArgs(argv: string[]): ServeArgs {
  const out: ServeArgs = { portals: [], luns: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--config':
        out.config = value();
        break;
      case '--portal':
        out.portals.push(value());
        break;
      case '--target':
        out.target = value();
        break;
      case '--lun':
        out.luns.push(value());
        break;
      case '--workers': {
        const v = value();
        const n = Number(v);
        if (!/^\d+$/.test(v) || n < 1 || n > 256)
          throw new UsageError(`--workers must be a number from 1 to 256, not '${v}'`);
        out.workers = n;
        break;
      }
      case '--metrics':
        out.metrics = value();
        break;
      case '--state-dir':
        out.stateDir = value();
        break;
      case '--log-level':
        out.logLevel = usage(() => parseLogLevel(value(), '--log-level'));
        break;
      case '--log-format':
        out.logFormat = usage(() => parseLogFormat(value(), '--log-format'));
        break;
      default:
        throw new UsageError(`unknown option '${a}'`);
    }
  }
  return out;
}

function lunFromFlag(spec: string, lun: number): Record<string, unknown> {
  // cd:PATH = a cd LUN serving the existing ISO image at PATH (never created, so no size).
  if (spec.startsWith('cd:')) return { lun, type: 'cd', path: spec.slice(3) };
  // PATH[:SIZE]; SIZE is the text after the last ':' when it looks like a size.
  const m = /^(.*):(\d+(?:\.\d+)?[kmgtp]?(?:i?b)?)$/i.exec(spec);
  const bad = /:(\d[^:/]*)$/.exec(spec);
  if (!m && bad) throw new UsageError(`--lun ${spec}: invalid size '${bad[1]}' (expected e.g. 500M, 1G, 2T)`);
  const p = m ? m[1] : spec;
  const size = m ? m[2] : undefined;
  if (p === 'null') return { lun, backstore: 'null', size: size ?? '1G' };
  return size === undefined ? { lun, path: p } : { lun, path: p, size };
}

/**
 * What the control socket's changes edit: the config file, unless there is none or the command line replaces
 * its targets (--target, --lun), in which case an in-memory document that is never saved.
 */
export function configSource(args: ServeArgs, cwd = process.cwd()): ConfigSource {
  if (args.config !== undefined && args.target === undefined && args.luns.length === 0) {
    const file = path.resolve(cwd, args.config);
    return fileSource(file, (raw) =>
      normalizeConfig(
        applyFlags(structuredClone(raw) as Record<string, unknown>, args, cwd),
        path.dirname(file),
      ),
    );
  }
  const base = args.config ? path.dirname(path.resolve(cwd, args.config)) : cwd;
  const raw = args.config
    ? (JSON.parse(fs.readFileSync(path.resolve(cwd, args.config), 'utf8')) as Record<string, unknown>)
    : defaultConfigObject();
  const why = args.config ? 'the targets come from --target/--lun on the command line' : 'no config file';
  return memorySource(applyFlags(raw, args, cwd), why, (doc) => normalizeConfig(structuredClone(doc), base));
}

export function buildConfig(args: ServeArgs, cwd = process.cwd()): Config {
  let raw: Record<string, unknown>;
  let baseDir = cwd;
  if (args.config) {
    const file = path.resolve(cwd, args.config);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`${file}:${describeJsonError(text, e as Error)} (not valid JSON)`);
    }
    baseDir = path.dirname(file);
    try {
      return normalizeConfig(applyFlags(raw, args, cwd), baseDir);
    } catch (e) {
      if (!(e instanceof ConfigError) || e.where === undefined) throw e;
      const line = settingLine(text, e.where, e.key);
      throw new ConfigError(`${file}${line === undefined ? '' : `:${line}`}: ${e.message}`, e.where, e.key);
    }
  } else {
    raw = defaultConfigObject();
  }
  return normalizeConfig(applyFlags(raw, args, cwd), baseDir);
}

/** The command-line flags override the file (or the embedded default). */
function applyFlags(raw: Record<string, unknown>, args: ServeArgs, cwd: string): Record<string, unknown> {
  if (args.portals.length) {
    args.portals.forEach((p) => parsePortal(p));
    raw.portals = args.portals;
  }
  if (args.workers !== undefined) raw.workers = args.workers;
  if (args.metrics !== undefined) raw.metrics = args.metrics;
  if (args.logLevel !== undefined) raw.logLevel = args.logLevel;
  if (args.logFormat !== undefined) raw.logFormat = args.logFormat;
  if (args.stateDir !== undefined) raw.stateDir = path.resolve(cwd, args.stateDir);
  if (args.target !== undefined || args.luns.length) {
    const targets = (raw.targets as Array<Record<string, unknown>>) ?? [];
    const first = { ...(targets[0] ?? { name: DEFAULT_TARGET_NAME, luns: [] }) };
    if (args.target !== undefined) first.name = args.target;
    if (args.luns.length) first.luns = args.luns.map((s, i) => lunFromFlag(s, i));
    raw.targets = [first, ...targets.slice(1)];
  }
  return raw;
}

/** `nodetgt check-config FILE`: everything serve would refuse, without serving or creating anything. */
function checkConfig(rest: string[]): void {
  if (rest.length !== 1 || rest[0].startsWith('-')) {
    process.stderr.write(`nodetgt: check-config takes one FILE\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  let config: Config;
  try {
    config = buildConfig({ config: rest[0], portals: [], luns: [] });
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n`);
    process.exitCode = 2;
    return;
  }
  checkBackingFiles(config).then(
    () => process.stdout.write(`${rest[0]}: valid (${config.targets.length} target(s))\n`),
    (e: Error) => {
      process.stderr.write(`nodetgt: ${rest[0]}: ${e.message}\n`);
      process.exitCode = 2;
    },
  );
}

/** What the operator should hear at start-up about who may log in; never a secret. */
export function accessWarnings(args: ServeArgs, config: Config, cwd = process.cwd()): string[] {
  const out: string[] = [];
  if (!args.config)
    out.push(
      `no --config: only initiators on this host (${LOOPBACK_NETWORKS.join(', ')}) may log in; ` +
        'to serve other hosts, start with a config file whose target has an acl or auth (see README)',
    );
  for (const where of shortSecrets(config))
    out.push(
      `CHAP secret at ${where} is shorter than 12 characters (the Windows initiator requires 12 to 16)`,
    );
  const hasSecrets =
    !!config.discoveryAuth || config.targets.some((t) => t.auth) || !!config.accounts?.length;
  if (args.config && hasSecrets) {
    const file = path.resolve(cwd, args.config);
    if ((fs.statSync(file).mode & 0o077) !== 0)
      out.push(`config file ${file} holds CHAP secrets and is readable by group or others (chmod 600 it)`);
  }
  return out;
}

export function main(argv: string[]): void {
  const [cmd, ...rest] = argv;
  if ((CHANGE_COMMANDS as readonly string[]).includes(cmd ?? '')) {
    if (rest.includes('-h') || rest.includes('--help') || rest.length === 0) {
      const lines = CHANGE_USAGE.split('\n').filter(
        (l) => l.includes(`nodetgt ${cmd} `) || l.includes('each'),
      );
      (rest.length ? process.stdout : process.stderr).write(`usage:\n${lines.join('\n')}\n`);
      process.exitCode = rest.length ? 0 : 2;
      return;
    }
    void changeCommand(cmd as ChangeCommand, rest).then((code) => (process.exitCode = code));
    return;
  }
  if (
    cmd === undefined ||
    cmd === '-h' ||
    cmd === '--help' ||
    rest.includes('-h') ||
    rest.includes('--help')
  ) {
    process.stdout.write(USAGE);
    process.exitCode = cmd === undefined ? 2 : 0;
    return;
  }
  if (cmd === 'show' || cmd === 'session' || cmd === 'log-level') {
    void adminCommand(cmd, rest).then((code) => (process.exitCode = code));
    return;
  }
  if (cmd === 'tune') {
    void tuneCommand(rest).then((code) => (process.exitCode = code));
    return;
  }
  if (cmd === 'check-config') return checkConfig(rest);
  if (cmd === 'import') return importMain(rest, USAGE);
  if (cmd !== 'serve' && cmd !== 'provision') {
    process.stderr.write(`nodetgt: unknown command '${cmd}'\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  let config: Config;
  let args: ServeArgs;
  try {
    args = parseServeArgs(rest);
    config = buildConfig(args);
    // Before the first line is logged: the start-up warnings come out in the format asked for.
    setLogLevel(config.logLevel);
    setLogFormat(config.logFormat);
    // The embedded default's LUN lives in ./data, a directory no operator named: made here, since a LUN's
    // missing parent directory is otherwise an error.
    if (args.config === undefined && args.luns.length === 0) fs.mkdirSync('data', { recursive: true });
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE);
    process.exitCode = 2;
    return;
  }
  if (cmd === 'provision') {
    provision(config);
    return;
  }
  for (const w of accessWarnings(args, config)) log.warn(w);
  // SIGUSR1 is Node's inspector signal: the log level cycles on SIGUSR2. Taken before the start, whose log lines
  // ("portal listening") come before it resolves: a SIGUSR2 sent on seeing them must not kill the target.
  process.on('SIGUSR2', () => cycleLogLevel('SIGUSR2'));
  startTarget(config, { source: configSource(args) }).then(
    (running) => {
      for (const t of config.targets)
        log.info('target ready', {
          target: t.name,
          luns: t.luns
            .filter((l) => l.offline === undefined)
            .map((l) => l.lun)
            .join(','),
        });
      // The first SIGTERM/SIGINT shuts down gracefully (README, "Stopping"); the second closes at once. Both
      // flush every backstore before the exit: 0 when every flush succeeded, 1 otherwise.
      let signals = 0;
      const stop = (sig: string) => {
        if (++signals > 1) {
          log.warn('second signal: closing at once', { signal: sig });
          void running.shutdownNow();
          return;
        }
        log.info('shutting down', { signal: sig, seconds: config.shutdownTimeout });
        running.shutdown().then(
          (report) => process.exit(report.flushErrors.length ? 1 : 0),
          (e: Error) => {
            log.error('shutdown failed', { error: e.stack ?? e.message });
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => void reloadConfig(running, args));
    },
    (e: Error) => {
      process.stderr.write(`nodetgt: ${e.message}\n`);
      process.exit(1);
    },
  );
}
