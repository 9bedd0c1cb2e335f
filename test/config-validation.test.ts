/** Configuration validation (issue 9 item 6): what is refused, how it is reported, and `nodetgt check-config`. */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from './helpers/run';
import { buildConfig, parseServeArgs } from '../src/cli/main';
import { normalizeConfig } from '../src/config/schema';
import { prepareBackingFiles } from '../src/backstore/prepare';

const BIN = path.join(__dirname, '..', '..', 'bin', 'nodetgt.js');
const RUN_BOUND = 60_000;
const T = 'iqn.2026-11.io.example:t';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-cfg-'));
}

function withLuns(luns: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { targets: [{ name: T, luns }], ...extra };
}

function writeConfig(dir: string, text: string): string {
  const file = path.join(dir, 'c.json');
  fs.writeFileSync(file, text);
  return file;
}

test('malformed JSON is reported with the file name, line and column', (t) => {
  const dir = tmpDir();
  const file = writeConfig(dir, '{\n  "targets": [\n    { "name": "x",, }\n  ]\n}\n');
  const e = t.throws(() => buildConfig(parseServeArgs(['--config', file])));
  t.regex(e.message, new RegExp(`${file.replace(/[.]/g, '\\.')}:3:19: `));
  t.notRegex(e.message, /position/);
  const eof = writeConfig(dir, '{\n  "targets": [\n');
  t.regex(t.throws(() => buildConfig(parseServeArgs(['--config', eof]))).message, /c\.json:3:1: /);
});

test('a validation error in a JSON file names the file, the line and the key', (t) => {
  const dir = tmpDir();
  const file = writeConfig(
    dir,
    JSON.stringify(
      withLuns([
        { lun: 0, path: 'a.img', size: '1G' },
        { lun: 1, size: 0, path: 'b.img' },
      ]),
      null,
      2,
    ),
  );
  const e = t.throws(() => buildConfig(parseServeArgs(['--config', file])));
  // "size": 0 is on line 13 of the pretty-printed file.
  const line =
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .findIndex((l) => l.includes('"size": 0')) + 1;
  t.is(line, 13);
  t.regex(e.message, new RegExp(`c\\.json:${line}: config\\.targets\\[0\\]\\.luns\\[1\\]: 'size'`));
});

test("'metrics' as a number is a clear error naming the key", (t) => {
  const e = t.throws(() =>
    normalizeConfig(withLuns([{ lun: 0, backstore: 'null', size: '1M' }], { metrics: 9408 })),
  );
  t.regex(e.message, /'metrics' must be a string "HOST:PORT"/);
  t.is(
    normalizeConfig(withLuns([{ lun: 0, backstore: 'null', size: '1M' }], { metrics: '127.0.0.1:9408' }))
      .metrics?.port,
    9408,
  );
});

test('acl.initiators entries must be iSCSI names with a valid date; target names too', (t) => {
  const lun = { lun: 0, backstore: 'null', size: '1M' };
  const acl = (initiators: string[]) => ({ targets: [{ name: T, luns: [lun], acl: { initiators } }] });
  t.regex(
    t.throws(() => normalizeConfig(acl(['bob']))).message,
    /acl\.initiators\[0\].*'bob' is not an iSCSI name/,
  );
  t.regex(t.throws(() => normalizeConfig(acl(['iqn.2020-13.org.x:a']))).message, /month 13/);
  t.regex(t.throws(() => normalizeConfig(acl(['iqn.2020-00.org.x:a']))).message, /month 00/);
  t.regex(t.throws(() => normalizeConfig(acl(['eui.12345']))).message, /not an iSCSI name/);
  t.deepEqual(
    normalizeConfig(acl(['iqn.1993-08.org.debian:01:ABC', 'eui.0123456789abcdef', 'naa.0123456789abcdef']))
      .targets[0].acl.initiators,
    ['iqn.1993-08.org.debian:01:abc', 'eui.0123456789abcdef', 'naa.0123456789abcdef'],
  );
  const bad = { targets: [{ name: 'iqn.2026-13.io.example:t', luns: [lun] }] };
  t.regex(t.throws(() => normalizeConfig(bad)).message, /targets\[0\].*month 13/);
});

test('a size without a unit is refused; a JSON number is bytes; an explicit B is bytes', (t) => {
  const e = t.throws(() => normalizeConfig(withLuns([{ lun: 0, path: '/tmp/x.img', size: '1024' }])));
  t.regex(e.message, /'size'.*'1024' has no unit/);
  t.is(
    normalizeConfig(withLuns([{ lun: 0, path: '/tmp/x.img', size: '4096B' }])).targets[0].luns[0].size,
    4096,
  );
  t.is(normalizeConfig(withLuns([{ lun: 0, path: '/tmp/x.img', size: 4096 }])).targets[0].luns[0].size, 4096);
  t.regex(t.throws(() => buildConfig(parseServeArgs(['--lun', '/tmp/x.img:1024']))).message, /no unit/);
});

test('a LUN of size 0 or negative is refused at validation', (t) => {
  for (const size of [0, -512, '0G', '-1G'])
    t.regex(
      t.throws(() => normalizeConfig(withLuns([{ lun: 0, path: '/tmp/x.img', size }]))).message,
      /'size'/,
      `size ${String(size)}`,
    );
});

test('two LUNs on the same file are refused, also across targets and spelled differently', (t) => {
  const e = t.throws(() =>
    normalizeConfig(
      {
        targets: [
          { name: T, luns: [{ lun: 0, path: 'a.img', size: '1M' }] },
          { name: `${T}2`, luns: [{ lun: 3, path: './sub/../a.img' }] },
        ],
      },
      '/srv',
    ),
  );
  t.regex(
    e.message,
    /targets\[1\]\.luns\[0\].*\/srv\/a\.img is already LUN 0 of iqn\.2026-11\.io\.example:t/,
  );
});

test('a missing parent directory of a LUN file is an error, not created', async (t) => {
  const dir = tmpDir();
  const c = normalizeConfig(
    withLuns([{ lun: 0, path: path.join(dir, 'no', 'such', 'x.img'), size: '1M' }], {
      stateDir: path.join(dir, 'st'),
    }),
  );
  const e = await t.throwsAsync(prepareBackingFiles(c));
  t.regex(e.message, /parent directory .*no\/such does not exist/);
  t.false(fs.existsSync(path.join(dir, 'no')));
});

test('a path that cannot be opened (ENXIO) is found at preparation and nothing half-created is left', async (t) => {
  const dir = tmpDir();
  const dev = path.join(dir, 'nodev');
  // A block device node whose driver does not exist: stat says block device, open says ENXIO.
  const mk = await run('mknod', [dev, 'b', '250', '77']);
  if (mk.code !== 0) return t.pass('mknod unavailable here');
  const st = path.join(dir, 'st');
  const c = normalizeConfig(
    withLuns(
      [
        { lun: 0, path: path.join(dir, 'fresh.img'), size: '1M' },
        { lun: 1, path: dev },
      ],
      { stateDir: st },
    ),
  );
  const e = await t.throwsAsync(prepareBackingFiles(c));
  t.regex(e.message, /LUN 1 .*nodev.*ENXIO/);
  t.false(fs.existsSync(path.join(dir, 'fresh.img')), 'the other LUN was not created');
  t.deepEqual(fs.existsSync(path.join(st, 'luns')) ? fs.readdirSync(path.join(st, 'luns')) : [], []);
});

test('serve with an ENXIO path exits 1 before "target ready", without a stack trace', async (t) => {
  const dir = tmpDir();
  const dev = path.join(dir, 'nodev');
  const mk = await run('mknod', [dev, 'b', '250', '77']);
  if (mk.code !== 0) return t.pass('mknod unavailable here');
  const r = await run(
    'node',
    [
      BIN,
      'serve',
      '--portal',
      '127.0.0.1:0',
      '--lun',
      dev,
      '--workers',
      '1',
      '--state-dir',
      path.join(dir, 'st'),
    ],
    RUN_BOUND,
  );
  t.is(r.code, 1);
  t.regex(r.stderr, /ENXIO/);
  t.notRegex(r.stdout + r.stderr, /target ready|    at /);
  t.false(
    fs.existsSync(path.join(dir, 'st', 'luns')) && fs.readdirSync(path.join(dir, 'st', 'luns')).length > 0,
  );
});

test('check-config: exit 0 on a valid file without creating anything, 2 with the errors on stderr', async (t) => {
  const dir = tmpDir();
  const good = writeConfig(dir, JSON.stringify(withLuns([{ lun: 0, path: 'x.img', size: '1M' }])));
  const ok = await run('node', [BIN, 'check-config', good], RUN_BOUND);
  t.is(ok.code, 0, ok.stderr);
  t.false(fs.existsSync(path.join(dir, 'x.img')));
  t.false(fs.existsSync(path.join(dir, '.nodetgt')));
  const badFile = path.join(dir, 'bad.json');
  fs.writeFileSync(
    badFile,
    JSON.stringify(withLuns([{ lun: 0, path: 'x.img', size: '1M' }], { metrics: 9408 })),
  );
  const bad = await run('node', [BIN, 'check-config', badFile], RUN_BOUND);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /bad\.json:1: config: 'metrics' must be a string/);
  const none = await run('node', [BIN, 'check-config'], RUN_BOUND);
  t.is(none.code, 2);
});
