import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseServeArgs } from '../src/cli/main';
import { normalizeConfig } from '../src/config/schema';
import { log, logLevel, setLogFormat, setLogLevel } from '../src/util/log';

const BIN = path.join(__dirname, '..', '..', 'bin', 'nodetgt.js');

function capture(fn: () => void): string[] {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) => {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    return true;
  }) as typeof process.stderr.write;
  try {
    fn();
  } finally {
    process.stderr.write = write;
  }
  return lines;
}

test.serial(
  'text lines quote values with spaces; json lines are one object with time, level, thread, message, fields',
  (t) => {
    setLogLevel('debug');
    try {
      setLogFormat('text');
      const [text] = capture(() =>
        log.info('login', { initiator: 'iqn.x:a', reason: 'no such target', n: 3 }),
      );
      t.regex(text, /^\S+Z INFO \[t\d+\] login initiator=iqn\.x:a reason="no such target" n=3$/);
      setLogFormat('json');
      const [json] = capture(() =>
        log.info('login', { initiator: 'iqn.x:a', message: 'not mine', isid: '80ab' }),
      );
      const o = JSON.parse(json) as Record<string, unknown>;
      t.deepEqual(Object.keys(o), ['time', 'level', 'thread', 'message', 'initiator', 'isid']);
      t.is(o.level, 'info');
      t.is(o.message, 'login', 'a field never hides a fixed key');
      t.is(o.isid, '80ab');
      setLogLevel('warn');
      t.deepEqual(
        capture(() => log.info('hidden')),
        [],
      );
    } finally {
      setLogFormat('text');
      setLogLevel('info');
    }
  },
);

test('an invalid level or format is an error: flags, config keys, NODETGT_LOG', (t) => {
  t.throws(() => parseServeArgs(['--log-level', 'verbose']), {
    message: /--log-level must be one of error, warn, info, debug/,
  });
  t.throws(() => parseServeArgs(['--log-format', 'yaml']), {
    message: /--log-format must be one of text, json/,
  });
  t.is(parseServeArgs(['--log-level=debug']).logLevel, 'debug');
  const base = {
    targets: [{ name: 'iqn.2026-11.io.nodetgt.test:x', luns: [{ lun: 0, path: 'null', size: '1M' }] }],
  };
  t.throws(() => normalizeConfig({ ...base, logLevel: 'loud' }), { message: /'logLevel' must be one of/ });
  t.throws(() => normalizeConfig({ ...base, logFormat: 'xml' }), { message: /'logFormat' must be one of/ });
  const c = normalizeConfig({ ...base, logLevel: 'warn', logFormat: 'json' });
  t.is(c.logLevel, 'warn');
  t.is(c.logFormat, 'json');
  const saved = process.env.NODETGT_LOG;
  process.env.NODETGT_LOG = 'chatty';
  try {
    t.throws(() => normalizeConfig(base), { message: /NODETGT_LOG must be one of/ });
  } finally {
    if (saved === undefined) delete process.env.NODETGT_LOG;
    else process.env.NODETGT_LOG = saved;
  }
  t.is(logLevel(), 'info');
});

test('nodetgt serve --log-format json: every line is JSON from the first; SIGUSR2 cycles the level', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-log-'));
  const env = { ...process.env };
  delete env.NODETGT_LOG;
  const p = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--portal',
      '127.0.0.1:0',
      '--lun',
      'null:64M',
      '--workers',
      '1',
      '--log-format',
      'json',
      '--log-level',
      'debug',
    ],
    { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let out = '';
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const until = async (re: RegExp) => {
    for (let i = 0; i < 200 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  };
  try {
    await until(/portal listening/);
    p.kill('SIGUSR2');
    await until(/log level changed/);
  } finally {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const lines = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.true(lines.some((l) => l.message === 'portal listening' && l.level === 'info'));
  t.true(lines.every((l) => typeof l.time === 'string' && typeof l.thread === 'number'));
  const changed = lines.find((l) => l.message === 'log level changed');
  t.is(changed?.to, 'error', 'debug cycles to error');
});
