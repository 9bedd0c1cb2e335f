import test from 'ava';
import * as net from 'node:net';
import * as path from 'node:path';
import { run } from './helpers/run';
import { buildConfig, parseServeArgs } from '../src/cli/main';

const BIN = path.join(__dirname, '..', '..', 'bin', 'nodetgt.js');
/** Only ends a hang: each run takes about a second unloaded, several on a loaded machine. */
const RUN_BOUND = 60_000;

test('a bad flag is refused with exit code 2 and the usage', async (t) => {
  const r = await run('node', [BIN, 'serve', '--bogus'], RUN_BOUND);
  t.is(r.code, 2);
  t.regex(r.stderr, /unknown option '--bogus'/);
  t.regex(r.stderr, /usage: nodetgt serve/);
});

test('a bad size and a bad portal are refused with clear messages', async (t) => {
  const a = await run('node', [BIN, 'serve', '--lun', '/tmp/x.img:12Q'], RUN_BOUND);
  t.is(a.code, 2);
  t.regex(a.stderr, /invalid size '12Q'/);
  const b = await run('node', [BIN, 'serve', '--portal', '127.0.0.1:99999'], RUN_BOUND);
  t.is(b.code, 2);
  t.regex(b.stderr, /invalid port/);
});

test('a port in use is reported as such', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const r = await run(
      'node',
      [BIN, 'serve', '--portal', `127.0.0.1:${port}`, '--lun', 'null:1M', '--workers', '1'],
      RUN_BOUND,
    );
    t.is(r.code, 1);
    t.regex(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`));
  } finally {
    blocker.close();
  }
});

test('an unusable backing path is reported before anything listens', async (t) => {
  const r = await run(
    'node',
    [BIN, 'serve', '--portal', '127.0.0.1:0', '--lun', '/etc/passwd/lun.img:1M'],
    RUN_BOUND,
  );
  t.is(r.code, 1);
  t.regex(r.stderr, /LUN 0 \(\/etc\/passwd\/lun\.img\): ENOTDIR/);
});

test('flags build the configuration: LUN numbering, sizes, null backstore, target name', (t) => {
  const c = buildConfig(
    parseServeArgs([
      '--target',
      'iqn.2026-11.io.example:t',
      '--lun',
      'a.img:1G',
      '--lun',
      'null:2T',
      '--workers',
      '3',
    ]),
    '/srv',
  );
  t.is(c.workers, 3);
  t.is(c.targets[0].name, 'iqn.2026-11.io.example:t');
  t.deepEqual(
    c.targets[0].luns.map((l) => [l.lun, l.backstore, l.path, l.size]),
    [
      [0, 'file', '/srv/a.img', 1024 ** 3],
      [1, 'null', '', 2 * 1024 ** 4],
    ],
  );
  t.deepEqual(c.portals, [{ host: '0.0.0.0', port: 3260 }]);
  t.throws(() => parseServeArgs(['--workers', '0']), { message: /--workers/ });
  t.throws(() => buildConfig(parseServeArgs(['--target', 'not-an-iqn'])), { message: /iSCSI name/ });
});
