/**
 * `nodetgt target|lun|acl|account ...`: live administration over the control socket, in the spirit of
 * tgtadm and targetcli. Each command becomes one change request (src/admin/protocol.ts); the running target
 * edits its config file, applies the change and writes the file back (src/portal/change.ts).
 *
 * Exit status: 0 done, 1 refused (by the target, or not applied live), 2 usage. A CHAP secret is never taken
 * from the command line (it would sit in the shell history and in `ps`): it comes from --secret-file or stdin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChangeRequest, ConfigChange } from '../admin/protocol';
import { ALUA_STATES } from '../config/alua';
import { iscsiNameProblem, validateCidr } from '../config/schema';
import { parseSize } from '../util/size';
import { request, resolveSocket } from './admin';

export const CHANGE_USAGE = `       nodetgt target add IQN [--alias A]
       nodetgt target remove IQN [--force]
       nodetgt lun add IQN [--lun N] (--path FILE [--size SIZE] | --null --size SIZE) [--read-only] [--block-size 512|4096] [--serial S]
       nodetgt lun remove IQN LUN [--force]
       nodetgt lun resize IQN LUN SIZE [--force]
       nodetgt acl add|remove IQN (--initiator NAME|PREFIX* | --network CIDR) [--force]
       nodetgt account add USER [--secret-file FILE]     (else the secret is read from stdin)
       nodetgt account remove USER
       nodetgt account bind|unbind USER (IQN | --discovery) [--outgoing] [--force]
       nodetgt alua state IQN GROUP STATE      (STATE: ${ALUA_STATES.join('|')})
         each also takes [--save-only] [--json] [--socket PATH | --config FILE | --state-dir DIR]`;

export const CHANGE_COMMANDS = ['target', 'lun', 'acl', 'account', 'alua'] as const;
export type ChangeCommand = (typeof CHANGE_COMMANDS)[number];

class Usage extends Error {}

/** Options that take a value, and flags, that any change command accepts. */
const COMMON_VALUES = ['--socket', '--config', '--state-dir'];
const COMMON_FLAGS = ['--force', '--save-only', '--json'];

interface Parsed {
  words: string[];
  values: Map<string, string>;
  flags: Set<string>;
}

function parse(argv: string[], values: string[], flags: string[]): Parsed {
  const out: Parsed = { words: [], values: new Map(), flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if ([...COMMON_VALUES, ...values].includes(a)) {
      const v = argv[++i];
      if (v === undefined) throw new Usage(`${a} needs a value`);
      out.values.set(a, v);
    } else if ([...COMMON_FLAGS, ...flags].includes(a)) out.flags.add(a);
    else if (a === '--secret')
      throw new Usage('a secret is never taken on the command line: --secret-file FILE or stdin');
    else if (a.startsWith('--')) throw new Usage(`unknown option ${a}`);
    else out.words.push(a);
  }
  return out;
}

function iqn(name: string | undefined, what = 'IQN'): string {
  if (name === undefined) throw new Usage(`${what} missing`);
  const problem = iscsiNameProblem(name);
  if (problem !== null) throw new Usage(problem);
  return name;
}

function lunNumber(text: string | undefined): number {
  if (text === undefined || !/^\d+$/.test(text) || Number(text) > 16383)
    throw new Usage(`LUN must be a number from 0 to 16383, not '${text ?? ''}'`);
  return Number(text);
}

function size(text: string | undefined): string {
  if (text === undefined) throw new Usage('SIZE missing');
  try {
    parseSize(text);
  } catch (e) {
    throw new Usage((e as Error).message);
  }
  return text;
}

function arity(p: Parsed, n: number, shape: string): void {
  if (p.words.length !== n) throw new Usage(`expected: nodetgt ${shape}`);
}

/** The change a command line asks for, and the options it was given; throws Usage. */
function changeOf(cmd: ChangeCommand, argv: string[]): { change: ConfigChange | 'account-add'; p: Parsed } {
  const [sub, ...rest] = argv;
  const key = `${cmd} ${sub ?? ''}`;
  switch (key) {
    case 'target add': {
      const p = parse(rest, ['--alias'], []);
      arity(p, 1, 'target add IQN [--alias A]');
      const alias = p.values.get('--alias');
      return { change: { kind: 'target-add', target: iqn(p.words[0]), ...(alias ? { alias } : {}) }, p };
    }
    case 'target remove': {
      const p = parse(rest, [], []);
      arity(p, 1, 'target remove IQN [--force]');
      return { change: { kind: 'target-remove', target: iqn(p.words[0]) }, p };
    }
    case 'lun add':
      return lunAdd(rest);
    case 'lun remove': {
      const p = parse(rest, [], []);
      arity(p, 2, 'lun remove IQN LUN [--force]');
      return { change: { kind: 'lun-remove', target: iqn(p.words[0]), lun: lunNumber(p.words[1]) }, p };
    }
    case 'lun resize': {
      const p = parse(rest, [], []);
      arity(p, 3, 'lun resize IQN LUN SIZE [--force]');
      const [t, l, s] = p.words;
      return { change: { kind: 'lun-resize', target: iqn(t), lun: lunNumber(l), size: size(s) }, p };
    }
    case 'acl add':
    case 'acl remove': {
      const p = parse(rest, ['--initiator', '--network'], []);
      arity(p, 1, `${key} IQN (--initiator NAME | --network CIDR)`);
      const initiator = p.values.get('--initiator');
      const network = p.values.get('--network');
      if ((initiator === undefined) === (network === undefined))
        throw new Usage('give one of --initiator NAME or --network CIDR');
      if (initiator !== undefined && !/[*:]$/.test(initiator)) iqn(initiator, '--initiator');
      if (network !== undefined)
        try {
          validateCidr(network);
        } catch (e) {
          throw new Usage((e as Error).message);
        }
      const entry = initiator !== undefined ? { initiator } : { network: network! };
      const kind = sub === 'add' ? 'acl-add' : 'acl-remove';
      return { change: { kind, target: iqn(p.words[0]), ...entry }, p };
    }
    case 'account add': {
      const p = parse(rest, ['--secret-file'], []);
      arity(p, 1, 'account add USER [--secret-file FILE]');
      return { change: 'account-add', p };
    }
    case 'account remove': {
      const p = parse(rest, [], []);
      arity(p, 1, 'account remove USER');
      return { change: { kind: 'account-remove', user: p.words[0] }, p };
    }
    case 'account bind':
    case 'account unbind': {
      const p = parse(rest, [], ['--discovery', '--outgoing']);
      const discovery = p.flags.has('--discovery');
      arity(p, discovery ? 1 : 2, `${key} USER (IQN | --discovery) [--outgoing]`);
      const scope = discovery ? { discovery: true as const } : { target: iqn(p.words[1]) };
      const kind = sub === 'bind' ? 'account-bind' : 'account-unbind';
      return { change: { kind, user: p.words[0], scope, outgoing: p.flags.has('--outgoing') }, p };
    }
    case 'alua state': {
      const p = parse(rest, [], []);
      arity(p, 3, 'alua state IQN GROUP STATE');
      const [t, g, state] = p.words;
      if (!/^\d+$/.test(g) || Number(g) > 0xffff)
        throw new Usage(`GROUP must be a target port group number from 0 to 65535, not '${g}'`);
      if (!(ALUA_STATES as readonly string[]).includes(state))
        throw new Usage(`STATE must be one of ${ALUA_STATES.join(', ')}`);
      return { change: { kind: 'alua-state', target: iqn(t), group: Number(g), state }, p };
    }
    default:
      throw new Usage(`${key.trim()}: not a command`);
  }
}

function lunAdd(argv: string[]): { change: ConfigChange; p: Parsed } {
  const p = parse(argv, ['--lun', '--path', '--size', '--block-size', '--serial'], ['--null', '--read-only']);
  arity(p, 1, 'lun add IQN [--lun N] (--path FILE [--size SIZE] | --null --size SIZE)');
  const file = p.values.get('--path');
  const isNull = p.flags.has('--null');
  if ((file === undefined) === !isNull) throw new Usage('give one of --path FILE or --null');
  const sz = p.values.get('--size');
  if (isNull && sz === undefined) throw new Usage('--null needs --size SIZE');
  const bs = p.values.get('--block-size');
  if (bs !== undefined && bs !== '512' && bs !== '4096') throw new Usage('--block-size must be 512 or 4096');
  const n = p.values.get('--lun');
  const change: ConfigChange = {
    kind: 'lun-add',
    target: iqn(p.words[0]),
    ...(n !== undefined ? { lun: lunNumber(n) } : {}),
    // The target resolves a relative path against its config file's directory: say what the operator meant.
    ...(file !== undefined ? { path: path.resolve(file) } : {}),
    ...(sz !== undefined ? { size: size(sz) } : {}),
    ...(p.flags.has('--read-only') ? { readOnly: true } : {}),
    ...(bs !== undefined ? { blockSize: Number(bs) } : {}),
    ...(p.values.has('--serial') ? { serial: p.values.get('--serial') } : {}),
  };
  return { change, p };
}

/** The secret of `account add`: the file's first line, or stdin's (typed without echo on a terminal). */
async function readSecret(user: string, file: string | undefined): Promise<string> {
  let text: string;
  if (file !== undefined) text = fs.readFileSync(file, 'utf8');
  else if (process.stdin.isTTY) text = await promptHidden(`CHAP secret for ${user}: `);
  else {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  }
  const secret = text.replace(/\r?\n$/, '');
  if (/[\r\n]/.test(secret)) throw new Error('the secret must be one line');
  return secret;
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    process.stderr.write(prompt);
    const stdin = process.stdin;
    stdin.setRawMode(true);
    let typed = '';
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new Error('interrupted'));
        if (ch === '\u007f') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

/** Runs one change command; resolves to the exit status. */
export async function changeCommand(cmd: ChangeCommand, argv: string[]): Promise<number> {
  let req: ChangeRequest;
  let socket: string;
  let json: boolean;
  try {
    const { change, p } = changeOf(cmd, argv);
    socket = resolveSocket({
      socket: p.values.get('--socket'),
      config: p.values.get('--config'),
      stateDir: p.values.get('--state-dir'),
    });
    json = p.flags.has('--json');
    let c: ConfigChange;
    if (change === 'account-add') {
      const secret = await readSecret(p.words[0], p.values.get('--secret-file')).catch((e: Error) => {
        throw new Error(`account ${p.words[0]}: ${e.message}`);
      });
      if (secret === '') throw new Error('empty CHAP secret refused (it would authenticate anyone)');
      c = { kind: 'account-add', user: p.words[0], secret };
    } else c = change;
    req = { op: 'change', change: c, force: p.flags.has('--force'), saveOnly: p.flags.has('--save-only') };
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n`);
    if (e instanceof Usage) process.stderr.write(`usage:\n${CHANGE_USAGE}\n`);
    return e instanceof Usage ? 2 : 1;
  }
  try {
    const a = await request(socket, req);
    if (!a.ok) {
      process.stderr.write(`nodetgt: ${a.error}\n`);
      return 1;
    }
    const o = a.change!;
    if (json) process.stdout.write(`${JSON.stringify(o, null, 1)}\n`);
    for (const w of o.warnings) process.stderr.write(`nodetgt: warning: ${w}\n`);
    if (o.refused !== undefined) {
      process.stderr.write(`nodetgt: refused: ${o.refused}\n`);
      return 1;
    }
    if (o.needsRestart.length && !req.saveOnly) {
      process.stderr.write(
        `nodetgt: not applied: needs a restart: ${o.needsRestart.join('; ')}\n` +
          'nodetgt: the config file was not written (--save-only writes it, to apply at the next start)\n',
      );
      return 1;
    }
    if (!json) {
      process.stdout.write(`${o.summary}\n`);
      if (o.applied.length) process.stdout.write(`applied live: ${o.applied.join('; ')}\n`);
      if (req.saveOnly)
        process.stdout.write('not applied now: it takes effect at the next start or SIGHUP\n');
      process.stdout.write('file' in o.persisted ? `saved to ${o.persisted.file}\n` : `${o.persisted.not}\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`nodetgt: ${(e as Error).message}\n`);
    return 1;
  }
}
