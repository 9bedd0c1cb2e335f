/**
 * `nodetgt import`: IET and tgt configurations (copies of the samples operators have, in test/fixtures, with
 * test paths) into nodetgt's JSON, every unconverted setting named with its line; and end to end, an imported
 * configuration served and seen by a real initiator (libiscsi's iscsi-ls) with the same names, LUNs and sizes.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from './helpers/run';
import { startChildTargetWithConfig } from './helpers/child-target';
import { detectFormat, formatWarning, type ImportResult } from '../src/config/import-common';
import { importIet } from '../src/config/import-iet';
import { importTgt } from '../src/config/import-tgt';
import { importNetManager } from '../src/config/import-netmanager';
import { normalizeConfig } from '../src/config/schema';

const FIX = path.join(__dirname, '..', '..', 'test', 'fixtures');
const BIN = path.join(__dirname, '..', '..', 'bin', 'nodetgt.js');
const fixture = (name: string) => fs.readFileSync(path.join(FIX, name), 'utf8');
const allFiles = () => 'file' as const;
const lines = (r: ImportResult) => r.warnings.map(formatWarning);

test('the format is told from the content', (t) => {
  t.is(detectFormat(fixture('ietd.conf')), 'iet');
  t.is(detectFormat(fixture('targets.conf')), 'tgt');
  t.is(detectFormat(fixture('netmanager-iscsi.conf')), 'netmanager');
  t.is(detectFormat('{"targets": []}'), null);
});

test('ietd.conf and initiators.allow (the samples): exact JSON and warnings', (t) => {
  const r = importIet(
    fixture('ietd.conf'),
    { file: 'ietd.conf', pathKind: allFiles },
    { initiatorsAllow: { text: fixture('initiators.allow'), file: 'initiators.allow' } },
  );
  t.deepEqual(r.config, {
    portals: ['0.0.0.0:3260'],
    targets: [
      {
        name: 'iqn.2001-04.org.gentoo:iSCSI.test.disk1',
        luns: [{ lun: 0, path: '/srv/nodetgt-test/gentoo.img' }],
        acl: { initiators: ['iqn.1993-08.org.debian:01:abcdef'] },
      },
      {
        name: 'iqn.2007-07.org.zereso:storage.disk1',
        luns: [
          { lun: 0, path: '/srv/nodetgt-test/zereso-0.img' },
          { lun: 1, path: '/srv/nodetgt-test/zereso-1.img' },
        ],
        auth: {
          incoming: [{ user: 'iscsi_u', secret: 'monsecret12ab' }],
          outgoing: { user: 'target_u', secret: 'targetsecret34' },
        },
        acl: { networks: ['192.0.2.10', '192.0.2.0/24'] },
      },
    ],
  });
  t.deepEqual(lines(r), [
    'ietd.conf:4: MaxConnections 1: not converted (nodetgt has no per-target MaxConnections; it negotiates its own)',
    'ietd.conf:21: Lun 0: Type=blockio on /srv/nodetgt-test/zereso-0.img, a regular file (IET needs a block device): served as a file',
    'ietd.conf:23: HeaderDigest CRC32C,None: not converted (nodetgt has no per-target HeaderDigest; it negotiates its own)',
  ]);
  // What it makes is a configuration nodetgt accepts, CHAP accounts included.
  t.notThrows(() => normalizeConfig(r.config));
});

test('targets.conf (the sample): exact JSON and warnings, LUNs from 1', (t) => {
  const r = importTgt(fixture('targets.conf'), { file: 'targets.conf', pathKind: allFiles });
  t.deepEqual(r.config, {
    portals: ['0.0.0.0:3260'],
    targets: [
      {
        name: 'iqn.2016-01-com.example.tg1',
        luns: [{ lun: 1, path: '/srv/nodetgt-test/tg1.img' }],
        auth: { incoming: [{ user: 'usuario', secret: 'password1234' }] },
      },
      {
        name: 'iqn.2016-01.com.example:tg2',
        luns: [
          { lun: 1, path: '/srv/nodetgt-test/a.img' },
          { lun: 2, path: '/srv/nodetgt-test/b.img' },
        ],
        auth: {
          incoming: [{ user: 'alice', secret: 'alicesecret12' }],
          outgoing: { user: 'tgt', secret: 'targetsecret34' },
        },
        acl: { networks: ['192.0.2.0/24'], initiators: ['iqn.1993-08.org.debian:01:abcdef'] },
      },
    ],
  });
  t.deepEqual(lines(r), [
    "targets.conf:2: target 'iqn.2016-01-com.example.tg1' is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui.<16 hex> or naa.<16 or 32 hex>): nodetgt refuses it; rename the target",
    'targets.conf:7: target iqn.2016-01.com.example:tg2: nodetgt admits an initiator only when both its name and its address are allowed; check that this is what was meant',
  ]);
});

test('IET: indentation, globals, quotes, IOMode, nullio, Wthreads, ALL, targets.allow, missing paths', (t) => {
  const conf = [
    'IncomingUser disc discsecret', // 1: global: discovery CHAP
    '  MaxConnections 1', // 2: indented under no Target
    'Target iqn.2026-01.io.example:one # trailing comment', // 3
    '\tAlias "my disk"', // 4
    '\tLun 3 Path="/srv/x/ro.img",Type=fileio,IOMode=ro,ScsiSN=SN1,ScsiId=abc', // 5
    '\tLun 4 Type=nullio,Sectors=2048', // 6
    '\tWthreads 8', // 7
    '\tLun 5 Path=/dev/nodetgt-none,Type=blockio', // 8
    '\tFooBar 1', // 9
    'Target iqn.2026-13.io.example:two', // 10
    '\tLun 0 Path=/srv/x/two.img', // 11
  ].join('\n');
  const kinds: Record<string, 'file' | 'missing'> = { '/srv/x/ro.img': 'file', '/srv/x/two.img': 'file' };
  const r = importIet(
    conf,
    { file: 'i.conf', pathKind: (p) => kinds[p] ?? 'missing' },
    {
      initiatorsAllow: { text: 'ALL 10.0.0.0/8\niqn.2026-13.io.example:two ALL\nbob 1.2.3.4', file: 'ia' },
      targetsAllow: { text: 'ALL ALL\niqn.2026-01.io.example:one 127.0.0.1', file: 'ta' },
    },
  );
  t.deepEqual(r.config.targets, [
    {
      name: 'iqn.2026-01.io.example:one',
      alias: 'my disk',
      luns: [
        { lun: 3, path: '/srv/x/ro.img', readOnly: true, serial: 'SN1' },
        { lun: 4, backstore: 'null', size: 2048 * 512 },
        { lun: 5, path: '/dev/nodetgt-none', direct: true },
      ],
      acl: { networks: ['10.0.0.0/8'] },
    },
    { name: 'iqn.2026-13.io.example:two', luns: [{ lun: 0, path: '/srv/x/two.img' }] },
  ]);
  t.deepEqual(lines(r), [
    'i.conf:1: IncomingUser: discovery CHAP account not converted (an unindented line belongs to no target)',
    'i.conf:2: MaxConnections: indented under no Target, not converted',
    'i.conf:5: Lun 3: ScsiId=abc not converted',
    "i.conf:7: Wthreads 8: not converted (nodetgt's worker threads are global ('workers'))",
    "i.conf:8: /dev/nodetgt-none does not exist here: nodetgt will refuse to start until it does (or give it a 'size')",
    'i.conf:9: FooBar: unknown IET setting, not converted',
    "i.conf:10: target 'iqn.2026-13.io.example:two' has month 13 in its date (iqn.YYYY-MM, MM from 01 to 12): nodetgt refuses it; rename the target",
    'ia:3: target bob is not in the configuration: line not converted',
    'ta:2: iqn.2026-01.io.example:one 127.0.0.1: not converted (nodetgt serves every target on every portal)',
  ]);
});

test('tgt: backing-store blocks with lun, target-level settings, key = value, ALL, unknown keys', (t) => {
  const conf = [
    'default-driver iscsi', // 1: fine
    'include /etc/tgt/conf.d/*.conf', // 2
    '<target iqn.2026-01.io.example:t>', // 3
    '  readonly 1', // 4
    '  <backing-store "/srv/x/with space.img">', // 5
    '    lun 1', // 6
    '    write-cache off', // 7
    '  </backing-store>', // 8
    '  backing-store /srv/x/b.img', // 9: LUN 2 (1 is taken by the block)
    '  <direct-store /srv/x/c.iso>', // 10
    '    lun 5', // 11
    '    device-type cd', // 12
    '  </direct-store>', // 13
    '  initiator-address = ALL', // 14
    '  initiator-address 10.1.0.0/16', // 15
    '  MaxRecvDataSegmentLength 65536', // 16
    '</target>', // 17
  ].join('\n');
  const r = importTgt(conf, { file: 't.conf', pathKind: allFiles });
  t.deepEqual(r.config.targets, [
    {
      name: 'iqn.2026-01.io.example:t',
      luns: [
        { lun: 1, path: '/srv/x/with space.img', readOnly: true },
        { lun: 2, path: '/srv/x/b.img', readOnly: true },
        { lun: 5, path: '/srv/x/c.iso', type: 'cd' },
      ],
    },
  ]);
  t.deepEqual(lines(r), [
    't.conf:2: include /etc/tgt/conf.d/*.conf: global setting not converted',
    't.conf:7: write-cache off: not converted (nodetgt has no such LUN setting)',
    "t.conf:10: direct-store /srv/x/c.iso: served as a backing store (nodetgt does not pass the device's identity through)",
    't.conf:16: MaxRecvDataSegmentLength 65536: not converted (nodetgt has no per-target MaxRecvDataSegmentLength)',
  ]);
});

test('the CLI: detected format, -o, the warnings on stderr with exit 1; an unknown format is exit 2', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-imp-'));
  const out = path.join(dir, 'out.json');
  const r = await run('node', [BIN, 'import', path.join(FIX, 'targets.conf'), '-o', out]);
  t.is(r.code, 1);
  t.regex(r.stderr, /targets\.conf:2: target 'iqn\.2016-01-com\.example\.tg1' is not an iSCSI name/);
  t.is((JSON.parse(fs.readFileSync(out, 'utf8')) as ImportResult['config']).targets.length, 2);
  t.is(fs.statSync(out).mode & 0o777, 0o600, 'secrets inside: not world-readable');
  const bad = path.join(dir, 'x.conf');
  fs.writeFileSync(bad, 'nothing here\n');
  const b = await run('node', [BIN, 'import', bad]);
  t.is(b.code, 2);
  t.regex(b.stderr, /neither an IET ietd\.conf, a tgt targets\.conf nor a NetManager iscsi\.conf/);
  const forced = await run('node', [BIN, 'import', bad, '--format', 'iet']);
  t.is(forced.code, 1);
  t.regex(forced.stderr, /x\.conf:1: nothing: global setting not converted/);
});

const MIB = 1024 * 1024;

/**
 * iscsi-ls -s output as target name -> ["LUN:X"], where it prints per target "Lun:N Type:... (Size:XM)" with X the
 * last block's offset rounded down.
 */
function lunsSeen(stdout: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  let cur: string[] = [];
  for (const l of stdout.split('\n')) {
    const tm = /^Target:(\S+)/.exec(l);
    if (tm) seen.set(tm[1], (cur = []));
    const lm = /^Lun:(\d+)\s+Type:DIRECT_ACCESS \(Size:(\d+)M\)/.exec(l);
    if (lm) cur.push(`${lm[1]}:${lm[2]}`);
  }
  return seen;
}

test('end to end: imported ietd.conf and targets.conf served, iscsi-ls sees the same names, LUNs and sizes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-imp-e2e-'));
  // Sparse files of a different size per LUN, where the sample-derived configurations point.
  const sizes: Record<string, number> = {
    'gentoo.img': 3 * MIB,
    'zereso-0.img': 5 * MIB,
    'zereso-1.img': 7 * MIB,
    'tg1.img': 9 * MIB,
    'a.img': 11 * MIB,
    'b.img': 13 * MIB,
  };
  for (const [f, size] of Object.entries(sizes)) {
    fs.writeFileSync(path.join(dir, f), '');
    fs.truncateSync(path.join(dir, f), size);
  }
  const derive = (name: string) => {
    const file = path.join(dir, name);
    // tgt accepts the sample's malformed first name; nodetgt does not (the unit test checks it is named).
    const text = fixture(name)
      .replaceAll('/srv/nodetgt-test', dir)
      .replace('iqn.2016-01-com.example.tg1', 'iqn.2016-01.com.example:tg1');
    fs.writeFileSync(file, text);
    return file;
  };
  const iet = await run('node', [BIN, 'import', derive('ietd.conf'), '-o', path.join(dir, 'iet.json')]);
  const tgt = await run('node', [BIN, 'import', derive('targets.conf'), '-o', path.join(dir, 'tgt.json')]);
  t.is(iet.code, 1, iet.stderr); // MaxConnections, blockio on a file, HeaderDigest: named, not fatal
  t.is(tgt.code, 1, tgt.stderr); // initiator name and address both given
  const read = (f: string) =>
    JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as ImportResult['config'];
  // The imported CHAP accounts (validated by the unit tests above) and ACLs are left out here: iscsi-ls -s logs
  // in to every target with one name and one account, and the point is the names, LUN numbers and sizes.
  const targets = [...read('iet.json').targets, ...read('tgt.json').targets].map(
    ({ auth: _auth, acl: _acl, ...rest }) => rest,
  );
  const child = await startChildTargetWithConfig({ targets, workers: 1, stateDir: path.join(dir, 'state') });
  try {
    const ls = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${child.port}`], 30_000);
    t.is(ls.code, 0, ls.stderr);
    const seen = lunsSeen(ls.stdout);
    const label = (f: string) => `${sizes[f] / MIB - 1}`;
    t.deepEqual(
      Object.fromEntries([...seen].map(([k, v]) => [k, [...v].sort()])),
      {
        'iqn.2001-04.org.gentoo:iscsi.test.disk1': [`0:${label('gentoo.img')}`],
        'iqn.2007-07.org.zereso:storage.disk1': [`0:${label('zereso-0.img')}`, `1:${label('zereso-1.img')}`],
        'iqn.2016-01.com.example:tg1': [`1:${label('tg1.img')}`],
        'iqn.2016-01.com.example:tg2': [`1:${label('a.img')}`, `2:${label('b.img')}`],
      },
      ls.stdout,
    );
  } finally {
    await child.stop('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('netmanager-iscsi.conf (the sample): exact JSON and warnings; nodetgt accepts it', (t) => {
  const r = importNetManager(fixture('netmanager-iscsi.conf'), { file: 'iscsi.conf' });
  t.deepEqual(r.config, {
    portals: ['0.0.0.0:3260'],
    storageDir: '/srv/nodetgt-test',
    baseIqn: 'iqn.2002-08.info.netmanager',
    limits: { maxSessions: 32 },
    params: { MaxConnections: 8 },
    targets: [
      {
        name: 'xenserver',
        sizes: ['750GB', '500MB'],
        acl: {
          networks: ['192.168.100.0/24'],
          initiators: ['iqn.2011-07.com.example:89abcdef', 'iqn.2011-07.com.example:01234567'],
        },
        alias: 'XenServer pool storage',
      },
      {
        name: 'isos',
        sizes: ['20GB'],
        readOnly: true,
        acl: { initiators: ['iqn.2011-07.com.example:89abcdef', 'iqn.2011-07.com.example:01234567'] },
      },
    ],
  });
  t.deepEqual(lines(r), [
    'iscsi.conf:11: target xenserver: nodetgt admits an initiator only when both its name and its address are allowed; check that this is what was meant',
  ]);
  const c = normalizeConfig(r.config);
  t.deepEqual(
    c.targets.map((x) => [x.name, x.luns.map((l) => [l.lun, l.path, l.size, l.readOnly])]),
    [
      [
        'iqn.2002-08.info.netmanager:xenserver',
        [
          [0, '/srv/nodetgt-test/xenserver.img', 750 * 1024 ** 3, false],
          [1, '/srv/nodetgt-test/xenserver_1.img', 500 * 1024 ** 2, false],
        ],
      ],
      ['iqn.2002-08.info.netmanager:isos', [[0, '/srv/nodetgt-test/isos.img', 20 * 1024 ** 3, true]]],
    ],
  );
  t.is(c.limits.maxSessions, 32);
  t.is(c.targets[0].params.MaxConnections, 8);
});

test('NetManager: what cannot be converted is named with its line', (t) => {
  const conf = [
    'storage=relative/dir', // 1
    'node=iqn.2002-08.info.netmanager:bad', // 2
    'sessions=many', // 3
    'threads=4', // 4
    '[a]', // 5
    'size=1GB 12 3X', // 6
    'readonly=maybe', // 7
    'lun=0', // 8
    '[b]', // 9
    'comment=no size', // 10
    'what is this', // 11
  ].join('\n');
  const r = importNetManager(conf, { file: 'n.conf' });
  t.deepEqual(r.config.targets, [{ name: 'a', sizes: ['1GB'] }]);
  t.deepEqual(lines(r), [
    "n.conf:1: storage=relative/dir: not an absolute path; taken from the config file's directory",
    "n.conf:2: node=iqn.2002-08.info.netmanager:bad: not an IQN without a ':' part (e.g. iqn.2002-08.com.example); not converted",
    'n.conf:3: sessions=many: not a number of sessions; not converted',
    'n.conf:4: threads: unknown NetManager global setting, not converted',
    "n.conf:6: [a] size 12: size '12' has no unit (write e.g. 12M or 12G, or 12B for bytes); that LUN not converted",
    "n.conf:6: [a] size 3X: invalid size '3X' (expected e.g. 512M, 1G, 2T); that LUN not converted",
    'n.conf:7: [a] readonly=maybe: not y or n; not converted',
    'n.conf:8: [a] lun: unknown NetManager target setting, not converted',
    "n.conf:11: 'what is this': not a key=value line or a [section]; not converted",
    "n.conf:5: [a]: no node= to make its IQN; nodetgt refuses the name until 'baseIqn' is set",
    'n.conf:9: [b]: no size=, so no LUN; target not converted',
  ]);
});

test('end to end: an imported NetManager iscsi.conf served (small sizes), iscsi-ls sees names, LUNs and sizes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-imp-nm-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage);
  const src = path.join(dir, 'iscsi.conf');
  fs.writeFileSync(
    src,
    fixture('netmanager-iscsi.conf')
      .replaceAll('/srv/nodetgt-test', storage)
      .replace('size=750GB 500MB', 'size=3MB 5MB')
      .replace('size=20GB', 'size=7MB'),
  );
  const out = path.join(dir, 'nm.json');
  const imp = await run('node', [BIN, 'import', src, '-o', out]);
  t.is(imp.code, 1, imp.stderr); // the name-and-network ACL note
  const cfg = JSON.parse(fs.readFileSync(out, 'utf8')) as ImportResult['config'];
  // iscsi-ls logs in with its own name from 127.0.0.1: the imported ACLs are left out, the rest served as is.
  // The portal is the test's own (loopback, ephemeral).
  const { portals: _portals, ...settings } = cfg;
  const targets = cfg.targets.map(({ acl: _acl, ...rest }) => rest);
  const child = await startChildTargetWithConfig({
    ...settings,
    targets,
    workers: 1,
    stateDir: path.join(dir, 'state'),
  });
  try {
    t.deepEqual(
      ['xenserver.img', 'xenserver_1.img', 'isos.img'].map((f) => fs.statSync(path.join(storage, f)).size),
      [3 * MIB, 5 * MIB, 7 * MIB],
    );
    const ls = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${child.port}`], 30_000);
    t.is(ls.code, 0, ls.stderr);
    const seen = lunsSeen(ls.stdout);
    t.deepEqual(
      Object.fromEntries(seen),
      {
        'iqn.2002-08.info.netmanager:xenserver': ['0:2', '1:4'],
        'iqn.2002-08.info.netmanager:isos': ['0:6'],
      },
      ls.stdout,
    );
  } finally {
    await child.stop('SIGTERM');
  }
});
