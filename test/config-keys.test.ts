/**
 * Configuration an operator writes by hand: per-target and global operational keys (`params`) and what the
 * negotiation makes of them, keepalive per target, storageDir, baseIqn, LUNs from a list of sizes, and LU
 * identity settings; validation of each, then the negotiated values seen by a real login (TestInitiator), a
 * target that requires CRC32C, qemu-img through InitialR2T=No/ImmediateData=No and small bursts, and the
 * INQUIRY names and sizes as libiscsi reports them.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeConfig, type Config } from '../src/config/schema';
import { offerFor } from '../src/config/params';
import { Negotiator } from '../src/login/negotiator';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { run } from './helpers/run';
import { runQemu, sha256File, writeRandomFile } from './helpers/qemu';

const T = 'iqn.2026-11.io.example:t';
const cfg = (o: Record<string, unknown>, dir = '/srv/x'): Config => normalizeConfig(o, dir);
const one = (t: Record<string, unknown>, top: Record<string, unknown> = {}): Config =>
  cfg({ targets: [{ name: T, luns: [{ lun: 0, path: 'a.img' }], ...t }], ...top });
const refused = (t: import('ava').ExecutionContext, f: () => unknown, re: RegExp): void => {
  t.regex(t.throws(f).message, re);
};

// ---- validation --------------------------------------------------------------------------------

test('params: ranges of RFC 7143 sec. 13, booleans, digest lists, ErrorRecoveryLevel 0 to 2, unknown keys', (t) => {
  const c = one(
    { params: { InitialR2T: true, HeaderDigest: 'CRC32C', MaxBurstLength: 65536 } },
    { params: { ImmediateData: false, DataDigest: 'None,CRC32C', MaxConnections: 2 } },
  );
  t.deepEqual(c.params, { ImmediateData: false, DataDigest: ['None', 'CRC32C'], MaxConnections: 2 });
  t.deepEqual(c.targets[0].params, {
    ImmediateData: false,
    DataDigest: ['None', 'CRC32C'],
    MaxConnections: 2,
    InitialR2T: true,
    HeaderDigest: ['CRC32C'],
    MaxBurstLength: 65536,
  });
  // MaxBurstLength alone below nodetgt's FirstBurstLength brings FirstBurstLength down with it.
  t.is(offerFor(c.targets[0].params).firstBurstLength, 65536);
  refused(
    t,
    () => one({ params: { MaxRecvDataSegmentLength: 511 } }),
    /'MaxRecvDataSegmentLength' must be an integer from 512 to 16777215/,
  );
  refused(t, () => one({ params: { MaxBurstLength: 16777216 } }), /from 512 to 16777215/);
  refused(
    t,
    () => one({ params: { MaxConnections: 0 } }),
    /'MaxConnections' must be an integer from 1 to 65535/,
  );
  refused(t, () => one({ params: { DefaultTime2Wait: 3601 } }), /from 0 to 3600/);
  t.is(one({ params: { ErrorRecoveryLevel: 1 } }).targets[0].params.ErrorRecoveryLevel, 1);
  t.is(one({ params: { ErrorRecoveryLevel: 2 } }).targets[0].params.ErrorRecoveryLevel, 2);
  refused(
    t,
    () => one({ params: { ErrorRecoveryLevel: 3 } }),
    /'ErrorRecoveryLevel' must be an integer from 0 to 2/,
  );
  refused(t, () => one({ params: { InitialR2T: 'No' } }), /'InitialR2T' must be true or false/);
  refused(t, () => one({ params: { HeaderDigest: 'MD5' } }), /'HeaderDigest' must be/);
  refused(t, () => one({ params: { DataDigest: 'None,None' } }), /'DataDigest' must be/);
  refused(t, () => one({ params: { DataPDUInOrder: false } }), /unknown setting 'DataPDUInOrder'/);
  refused(
    t,
    () => one({ params: { FirstBurstLength: 131072, MaxBurstLength: 65536 } }),
    /'FirstBurstLength' 131072 exceeds MaxBurstLength 65536/,
  );
  // Inherited from the global params: still refused, at the target that makes it so.
  refused(
    t,
    () => one({ params: { MaxBurstLength: 65536 } }, { params: { FirstBurstLength: 131072 } }),
    /config\.targets\[0\]\.params: 'FirstBurstLength' 131072 exceeds/,
  );
});

test('keepalive and limits per target: the global value unless set; ranges checked', (t) => {
  const c = one(
    { nopInInterval: 0, maxSessions: 2, maxConnections: 3 },
    { nopInTimeout: 7, limits: { maxSessions: 5 } },
  );
  t.is(c.targets[0].nopInInterval, 0);
  t.is(c.targets[0].nopInTimeout, 7);
  t.is(c.targets[0].maxSessions, 2);
  t.is(c.targets[0].maxConnections, 3);
  t.is(c.limits.maxSessions, 5);
  t.is(one({}).limits.maxSessions, 1024); // bounded by maxConnections unless set lower
  t.is(one({}).targets[0].maxSessions, undefined);
  refused(t, () => one({ nopInTimeout: 0 }), /'nopInTimeout' must be an integer from 1 to 3600/);
  refused(t, () => one({ maxSessions: 0 }), /'maxSessions' must be an integer from 1/);
});

test('storageDir and baseIqn: relative paths under storageDir, short names expanded', (t) => {
  const c = cfg(
    {
      storageDir: 'disks',
      baseIqn: 'iqn.2002-08.com.Example',
      targets: [
        {
          name: 'vm1',
          luns: [
            { lun: 0, path: 'vm1.img' },
            { lun: 1, path: '/abs/b.img' },
          ],
        },
        { name: 'iqn.2026-01.io.other:x', luns: [] },
      ],
    },
    '/etc/nodetgt',
  );
  t.is(c.storageDir, '/etc/nodetgt/disks');
  t.is(c.targets[0].name, 'iqn.2002-08.com.example:vm1');
  t.deepEqual(
    c.targets[0].luns.map((l) => l.path),
    ['/etc/nodetgt/disks/vm1.img', '/abs/b.img'],
  );
  t.is(c.targets[1].name, 'iqn.2026-01.io.other:x');
  t.is(
    cfg({ targets: [{ name: T, luns: [{ lun: 0, path: 'a.img' }] }] }, '/etc/n').targets[0].luns[0].path,
    '/etc/n/a.img',
  );
  refused(
    t,
    () => cfg({ targets: [{ name: 'vm1', luns: [] }] }),
    /'name' 'vm1' is not an iSCSI name; set 'baseIqn'/,
  );
  refused(
    t,
    () => cfg({ baseIqn: 'iqn.2002-08.com.example:x', targets: [{ name: T, luns: [] }] }),
    /'baseIqn' must be an IQN without/,
  );
  refused(t, () => cfg({ baseIqn: 'iqn.2002-13.com.example', targets: [{ name: T, luns: [] }] }), /month 13/);
});

test('sizes: one sparse LUN each, <name>.img then <name>_1.img ..., readOnly for all; not with luns', (t) => {
  const c = cfg(
    {
      storageDir: '/data',
      baseIqn: 'iqn.2002-08.info.netmanager',
      targets: [
        { name: 'xen', sizes: ['750GB', '500M'] },
        { name: 'iqn.2026-01.io.example:isos', sizes: ['20G'], readOnly: true },
      ],
    },
    '/etc',
  );
  t.deepEqual(
    c.targets.map((x) => x.luns.map((l) => [l.lun, l.path, l.size, l.readOnly, l.slot])),
    [
      [
        [0, '/data/xen.img', 750 * 1024 ** 3, false, 0],
        [1, '/data/xen_1.img', 500 * 1024 ** 2, false, 1],
      ],
      [[0, '/data/isos.img', 20 * 1024 ** 3, true, 2]],
    ],
  );
  refused(t, () => one({ sizes: ['1G'] }), /'sizes' and 'luns' are two ways/);
  refused(t, () => cfg({ targets: [{ name: T, sizes: [] }] }), /'sizes' must be a non-empty list/);
  refused(
    t,
    () => cfg({ targets: [{ name: T, sizes: ['100'] }] }),
    /sizes\[0\]: 'size': size '100' has no unit/,
  );
  refused(t, () => cfg({ targets: [{ name: T, sizes: ['1000B'] }] }), /multiple of the block size 512/);
  refused(t, () => one({ readOnly: true }), /'readOnly' of a target applies to its 'sizes'/);
});

test('LU identity: vendor, product, revision lengths; serial and NAA unique over all LUs', (t) => {
  const c = one({
    luns: [{ lun: 0, path: 'a.img', vendor: 'ACME', product: 'FastDisk 9000', revision: 'r2' }],
  });
  const l = c.targets[0].luns[0];
  t.deepEqual([l.vendor, l.product, l.revision], ['ACME', 'FastDisk 9000', 'r2']);
  refused(
    t,
    () => one({ luns: [{ lun: 0, path: 'a', vendor: 'ACMECORP1' }] }),
    /'vendor' must be 1 to 8 printable ASCII/,
  );
  refused(
    t,
    () => one({ luns: [{ lun: 0, path: 'a', product: 'x'.repeat(17) }] }),
    /'product' must be 1 to 16/,
  );
  refused(t, () => one({ luns: [{ lun: 0, path: 'a', revision: '12345' }] }), /'revision' must be 1 to 4/);
  refused(t, () => one({ luns: [{ lun: 0, path: 'a', vendor: 'é' }] }), /'vendor' must be/);
  refused(
    t,
    () => one({ luns: [{ lun: 0, path: 'a', type: 'cd', serial: 'has space' }] }),
    /'serial' must be/,
  );
  refused(
    t,
    () =>
      cfg({
        targets: [
          { name: T, luns: [{ lun: 0, path: 'a', serial: 'S1' }] },
          { name: `${T}2`, luns: [{ lun: 3, path: 'b', serial: 'S1' }] },
        ],
      }),
    /config\.targets\[1\]\.luns\[0\]: 'serial' S1 is already LUN 0 of iqn\.2026-11\.io\.example:t/,
  );
  refused(
    t,
    () =>
      one({
        luns: [
          { lun: 0, path: 'a', naa: '3000000000000001' },
          { lun: 1, path: 'b', naa: '3000000000000001' },
        ],
      }),
    /'naa' 3000000000000001 is already LUN 0/,
  );
});

// ---- negotiation with a target's values ----------------------------------------------------------

test('negotiation with a target offer: its values answered and proposed; CRC32C alone is required', (t) => {
  const offer = offerFor({
    MaxConnections: 4,
    InitialR2T: true,
    ImmediateData: false,
    MaxRecvDataSegmentLength: 16384,
    MaxBurstLength: 65536,
    FirstBurstLength: 8192,
    MaxOutstandingR2T: 2,
    DefaultTime2Wait: 5,
    DefaultTime2Retain: 10,
    HeaderDigest: ['CRC32C'],
  });
  const n = new Negotiator({ offer, leading: true });
  const r = n.process(defaultOperationalKeys(), 'operational');
  t.is(r.failure, undefined);
  const got = new Map(r.response);
  t.is(got.get('MaxConnections'), '4');
  t.is(got.get('InitialR2T'), 'Yes');
  t.is(got.get('ImmediateData'), 'No');
  t.is(got.get('MaxBurstLength'), '65536');
  t.is(got.get('FirstBurstLength'), 'Irrelevant'); // InitialR2T=Yes and ImmediateData=No
  t.is(got.get('MaxRecvDataSegmentLength'), '16384');
  t.is(got.get('DefaultTime2Wait'), '5');
  t.is(got.get('DefaultTime2Retain'), '0'); // the initiator's 0 is the minimum
  t.is(got.get('HeaderDigest'), 'Reject'); // it offered None only
  t.is(n.unmetRequirement(), 'HeaderDigest');
  // Offered CRC32C: agreed, nothing unmet.
  const n2 = new Negotiator({ offer, leading: true });
  t.is(
    new Map(n2.process([['HeaderDigest', 'None,CRC32C']], 'operational').response).get('HeaderDigest'),
    'CRC32C',
  );
  t.is(n2.unmetRequirement(), null);
  // Not offered at all: the target proposes CRC32C, and a refusal of it fails the login.
  const n3 = new Negotiator({ offer, leading: true });
  n3.process([], 'operational');
  t.deepEqual(
    n3.pendingOffers().find(([k]) => k === 'HeaderDigest'),
    ['HeaderDigest', 'CRC32C'],
  );
  t.regex(
    n3.process([['HeaderDigest', 'Reject']], 'operational').failure?.message ?? '',
    /required HeaderDigest=CRC32C/,
  );
});

// ---- end to end ---------------------------------------------------------------------------------

/** The test target with one 8 MiB LUN and these params; `more` targets and top-level settings beside it. */
async function withParams(
  params: Record<string, unknown>,
  more: { targets?: Array<Record<string, unknown>>; extra?: Record<string, unknown> } = {},
): Promise<TestTarget> {
  const tt = await startTestTarget({
    workers: 1,
    targets: [
      { name: TEST_TARGET, luns: [{ lun: 0, path: 'a.img', size: '8M' }], params },
      ...(more.targets ?? []),
    ],
    extra: more.extra,
  });
  return tt;
}

test("end to end: a target's params are what its login answers; another target and discovery keep the global ones", async (t) => {
  const other = 'iqn.2026-11.io.nodetgt.test:other';
  const params = {
    MaxConnections: 2,
    InitialR2T: true,
    ImmediateData: false,
    MaxBurstLength: 65536,
    MaxOutstandingR2T: 3,
    MaxRecvDataSegmentLength: 32768,
  };
  const tt = await withParams(params, {
    targets: [{ name: other, luns: [{ lun: 0, path: 'b.img', size: '8M' }] }],
    extra: { params: { MaxConnections: 3 } },
  });
  t.teardown(() => tt.close());
  const login = async (targetName: string) => {
    const ini = await TestInitiator.connect(tt.port);
    try {
      return await ini.login({ targetName });
    } finally {
      ini.close();
    }
  };
  const a = await login(TEST_TARGET);
  t.is(a.status, 0);
  t.is(a.keys.get('MaxConnections'), '2');
  t.is(a.keys.get('InitialR2T'), 'Yes');
  t.is(a.keys.get('ImmediateData'), 'No');
  t.is(a.keys.get('MaxBurstLength'), '65536');
  t.is(a.keys.get('MaxOutstandingR2T'), '1'); // the initiator offered 1: the minimum
  t.is(a.keys.get('MaxRecvDataSegmentLength'), '32768');
  const b = await login(other);
  t.is(b.status, 0);
  t.is(b.keys.get('MaxConnections'), '3'); // the global params
  t.is(b.keys.get('InitialR2T'), 'No');
  t.is(b.keys.get('MaxBurstLength'), '1048576');
});

test('end to end: a target requiring CRC32C refuses a None-only initiator and serves a CRC32C one', async (t) => {
  const tt = await withParams({ HeaderDigest: 'CRC32C', DataDigest: 'CRC32C' });
  t.teardown(() => tt.close());
  const none = await TestInitiator.connect(tt.port);
  const r = await none.login({ targetName: TEST_TARGET });
  none.close();
  t.is(r.status, 0x0200, 'Initiator error once it goes on after HeaderDigest=Reject');
  t.is(r.keys.get('HeaderDigest'), 'Reject');
  const crc = await TestInitiator.connect(tt.port);
  t.teardown(() => crc.close());
  const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
    k === 'HeaderDigest' || k === 'DataDigest' ? [k, 'CRC32C,None'] : [k, v],
  );
  const ok = await crc.login({ targetName: TEST_TARGET, keys });
  t.is(ok.status, 0);
  t.is(ok.keys.get('HeaderDigest'), 'CRC32C');
  t.is(ok.keys.get('DataDigest'), 'CRC32C');
  const tur = await crc.scsi(Buffer.alloc(6)); // TEST UNIT READY over digests
  t.is(tur.status, 0);
});

test('end to end: qemu-img through InitialR2T=No, ImmediateData=No and 16 KiB bursts writes and reads back the same bytes', async (t) => {
  const tt = await withParams({
    InitialR2T: false,
    ImmediateData: false,
    MaxBurstLength: 16384,
    FirstBurstLength: 8192,
    MaxRecvDataSegmentLength: 4096,
  });
  t.teardown(() => tt.close());
  const src = path.join(tt.dir, 'src.raw');
  const back = path.join(tt.dir, 'back.raw');
  writeRandomFile(src, 8 * 1024 * 1024);
  await runQemu('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, tt.url(0)], 120_000);
  await runQemu('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', tt.url(0), back], 120_000);
  t.is(await sha256File(back), await sha256File(src));
});

test('end to end: sizes provisioned as named files; iscsi-readcapacity16 and iscsi-inq report sizes and identity', async (t) => {
  const tt = await startTestTarget({
    workers: 1,
    targets: [
      { name: 'iqn.2026-11.io.nodetgt.test:sized', sizes: ['3M', '5M', '7M'] },
      {
        name: TEST_TARGET,
        luns: [
          {
            lun: 0,
            path: 'a.img',
            size: '4M',
            vendor: 'ACME',
            product: 'RoadRunner Disk',
            revision: 'B2',
            serial: 'ACME0001',
          },
        ],
      },
    ],
  });
  t.teardown(() => tt.close());
  t.deepEqual(
    ['sized.img', 'sized_1.img', 'sized_2.img'].map((f) => fs.statSync(path.join(tt.dir, f)).size),
    [3, 5, 7].map((m) => m * 1024 * 1024),
  );
  for (const [lun, mib] of [
    [0, 3],
    [1, 5],
    [2, 7],
  ]) {
    const r = await run('iscsi-readcapacity16', [tt.url(lun, 'iqn.2026-11.io.nodetgt.test:sized')], 30_000);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`Total size:${mib * 1024 * 1024}\\b`));
  }
  const std = await run('iscsi-inq', [tt.url(0)], 30_000);
  t.is(std.code, 0, std.stderr);
  t.regex(std.stdout, /Vendor:ACME\s*\n/);
  t.regex(std.stdout, /Product:RoadRunner Disk\s*\n/);
  t.regex(std.stdout, /Revision:B2\s*\n/);
  const sn = await run('iscsi-inq', ['-e', '1', '-c', '128', tt.url(0)], 30_000);
  t.is(sn.code, 0, sn.stderr);
  t.regex(sn.stdout, /ACME0001/);
  // A LU left at the defaults keeps nodetgt's names.
  const def = await run('iscsi-inq', [tt.url(0, 'iqn.2026-11.io.nodetgt.test:sized')], 30_000);
  t.regex(def.stdout, /Vendor:NODETGT/);
  t.regex(def.stdout, /Product:NODETGT-DISK/);
});
