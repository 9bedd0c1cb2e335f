/**
 * IPv6 portals: a target listening on [::1] is discovered and used by real initiators (libiscsi, QEMU),
 * SendTargets writes IPv6 TargetAddresses in brackets (RFC 7143 13.8 / RFC 3986 IP-literal), IPv6 network
 * ACLs decide real logins, and a dual-stack [::] portal sees IPv4 clients as ::ffff:a.b.c.d and matches
 * them against IPv4 networks.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startTestTarget, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { run } from './helpers/run';
import { runQemu } from './helpers/qemu';
import { readCounters } from '../src/metrics/counters';

const DISK = 'iqn.2026-11.io.nodetgt.test:v6disk';
const INI = 'iqn.2026-11.io.nodetgt.test:v6-initiator';

async function sendTargetsAll(host: string, port: number): Promise<Map<string, string[]>> {
  const ini = await TestInitiator.connect(port, host);
  try {
    const lr = await ini.login({ sessionType: 'Discovery', initiatorName: INI });
    if (lr.status !== 0) throw new Error(`discovery login failed: 0x${lr.status.toString(16)}`);
    const all = await ini.text([['SendTargets', 'All']]);
    await ini.logout();
    return all;
  } finally {
    ini.close();
  }
}

async function loginStatus(host: string, port: number, targetName: string): Promise<number> {
  const ini = await TestInitiator.connect(port, host);
  try {
    const lr = await ini.login({ targetName, initiatorName: INI });
    if (lr.status === 0) await ini.logout();
    else await ini.closedPromise;
    return lr.status;
  } finally {
    ini.close();
  }
}

const authorizeFails = (tt: TestTarget) => readCounters(tt.target.counters).total.tgtLoginAuthorizeFails;

test.serial(
  'portal on [::1]: reports ::1, SendTargets brackets it, iscsi-ls lists it, qemu-io writes and reads back',
  async (t) => {
    const tt = await startTestTarget({
      targets: [{ name: DISK, luns: [{ lun: 0, path: 'v6.img', size: '4M' }] }],
      extra: { portals: ['[::1]:0'] },
    });
    try {
      // The portal reports the address it listens on; the kernel-chosen port is what gets announced.
      t.is(tt.target.addresses.length, 1);
      t.like(tt.target.addresses[0], { address: '::1', family: 'IPv6' });
      t.true(tt.port > 0);
      t.deepEqual(tt.target.config.portals, [{ host: '::1', port: tt.port }]);

      const all = await sendTargetsAll('::1', tt.port);
      t.deepEqual(all.get('TargetName'), [DISK]);
      t.deepEqual(all.get('TargetAddress'), [`[::1]:${tt.port},1`]);

      const ls = await run('iscsi-ls', ['-i', INI, '-s', `iscsi://[::1]:${tt.port}`], 30000);
      t.is(ls.code, 0, ls.stderr);
      t.regex(
        ls.stdout,
        new RegExp(`^Target:${DISK.replace(/\./g, '\\.')} Portal:\\[::1\\]:${tt.port},1$`, 'm'),
      );
      t.regex(ls.stdout, /Lun:0\s+Type:DIRECT_ACCESS/);

      // qemu-io over libiscsi with an IPv6 URL: write a pattern, read it back through the target (-P verifies),
      // then check the backing file itself so the bytes really went through.
      const io = await runQemu(
        'qemu-io',
        [
          '-f',
          'raw',
          '-c',
          'write -P 0x5a 65536 131072',
          '-c',
          'read -P 0x5a 65536 131072',
          '-c',
          'read -P 0 0 65536',
          `iscsi://[::1]:${tt.port}/${DISK}/0`,
        ],
        60000,
      );
      t.regex(io.stdout, /wrote 131072\/131072 bytes at offset 65536/);
      t.regex(io.stdout, /read 131072\/131072 bytes at offset 65536/);
      t.regex(io.stdout, /read 65536\/65536 bytes at offset 0/);
      t.notRegex(io.stdout, /Pattern verification failed|error/i, io.stdout);
      const onDisk = fs.readFileSync(path.join(tt.dir, 'v6.img'));
      t.true(onDisk.subarray(65536, 65536 + 131072).equals(Buffer.alloc(131072, 0x5a)), 'pattern on disk');
      t.true(onDisk.subarray(0, 65536).equals(Buffer.alloc(65536)), 'nothing written before it');
      t.true(onDisk.subarray(65536 + 131072, 65536 + 131072 + 4096).equals(Buffer.alloc(4096)), 'nor after');
    } finally {
      await tt.close();
    }
  },
);

test.serial(
  'IPv6 network ACL through real logins: ::1/128 admits, 2001:db8::/32 and IPv4 networks refuse',
  async (t) => {
    const V6OK = 'iqn.2026-11.io.nodetgt.test:v6-loopback';
    const V6DOC = 'iqn.2026-11.io.nodetgt.test:v6-documentation';
    const V4LO = 'iqn.2026-11.io.nodetgt.test:v4-loopback';
    const tt = await startTestTarget({
      targets: [
        { name: V6OK, luns: [{ lun: 0, path: 'a.img', size: '1M' }], acl: { networks: ['::1/128'] } },
        // 2001:db8::/32 is the IPv6 documentation prefix (RFC 3849): nobody here connects from it.
        { name: V6DOC, luns: [{ lun: 0, path: 'b.img', size: '1M' }], acl: { networks: ['2001:db8::/32'] } },
        // An IPv6 client is not in an IPv4 network, not even the loopback one.
        { name: V4LO, luns: [{ lun: 0, path: 'c.img', size: '1M' }], acl: { networks: ['127.0.0.0/8'] } },
      ],
      extra: { portals: ['[::1]:0'] },
    });
    const portal = `iscsi://[::1]:${tt.port}`;
    try {
      const f0 = authorizeFails(tt);
      t.deepEqual((await sendTargetsAll('::1', tt.port)).get('TargetName'), [V6OK]);
      const ls = await run('iscsi-ls', ['-i', INI, portal], 30000);
      t.is(ls.code, 0, ls.stderr);
      t.deepEqual(
        [...ls.stdout.matchAll(/^Target:(\S+) Portal:(\S+)$/gm)].map((m) => [m[1], m[2]]),
        [[V6OK, `[::1]:${tt.port},1`]],
      );

      const ok = await run('iscsi-inq', ['-i', INI, `${portal}/${V6OK}/0`], 30000);
      t.is(ok.code, 0, ok.stderr);
      t.regex(ok.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
      for (const denied of [V6DOC, V4LO]) {
        const r = await run('iscsi-inq', ['-i', INI, `${portal}/${denied}/0`], 30000);
        t.not(r.code, 0, `${denied} must refuse`);
        t.regex(r.stderr, /Authorization failure\(514\)/, denied);
      }
      t.is(authorizeFails(tt), f0 + 2);
      t.is(await loginStatus('::1', tt.port, V6DOC), 0x0202);
      t.is(await loginStatus('::1', tt.port, V4LO), 0x0202);
      t.is(await loginStatus('::1', tt.port, V6OK), 0);
      t.is(authorizeFails(tt), f0 + 4);
    } finally {
      await tt.close();
    }
  },
);

test.serial(
  'dual-stack [::] portal: IPv4 clients arrive as ::ffff:127.0.0.1 and match IPv4 networks; addresses per family',
  async (t) => {
    const V4LO = 'iqn.2026-11.io.nodetgt.test:v4-loopback';
    const V4DOC = 'iqn.2026-11.io.nodetgt.test:v4-documentation';
    const V6OK = 'iqn.2026-11.io.nodetgt.test:v6-loopback';
    const tt = await startTestTarget({
      targets: [
        { name: V4LO, luns: [{ lun: 0, path: 'a.img', size: '1M' }], acl: { networks: ['127.0.0.0/8'] } },
        { name: V4DOC, luns: [{ lun: 0, path: 'b.img', size: '1M' }], acl: { networks: ['192.0.2.0/24'] } },
        { name: V6OK, luns: [{ lun: 0, path: 'c.img', size: '1M' }], acl: { networks: ['::1/128'] } },
      ],
      extra: { portals: ['[::]:0'] },
    });
    try {
      t.like(tt.target.addresses[0], { address: '::', family: 'IPv6' });
      const f0 = authorizeFails(tt);
      // Over IPv4 (the portal thread sees ::ffff:127.0.0.1): the IPv4 loopback network admits, the address
      // announced is the plain IPv4 one the client connected to.
      const v4 = await sendTargetsAll('127.0.0.1', tt.port);
      t.deepEqual(v4.get('TargetName'), [V4LO]);
      t.deepEqual(v4.get('TargetAddress'), [`127.0.0.1:${tt.port},1`]);
      t.is(await loginStatus('127.0.0.1', tt.port, V4LO), 0);
      t.is(await loginStatus('127.0.0.1', tt.port, V4DOC), 0x0202);
      t.is(await loginStatus('127.0.0.1', tt.port, V6OK), 0x0202);
      // Over IPv6: the other way round, and the address announced is bracketed.
      const v6 = await sendTargetsAll('::1', tt.port);
      t.deepEqual(v6.get('TargetName'), [V6OK]);
      t.deepEqual(v6.get('TargetAddress'), [`[::1]:${tt.port},1`]);
      t.is(await loginStatus('::1', tt.port, V6OK), 0);
      t.is(await loginStatus('::1', tt.port, V4LO), 0x0202);
      t.is(authorizeFails(tt), f0 + 3);
      // libiscsi over IPv4 to the dual-stack portal.
      const inq = await run('iscsi-inq', ['-i', INI, `iscsi://127.0.0.1:${tt.port}/${V4LO}/0`], 30000);
      t.is(inq.code, 0, inq.stderr);
    } finally {
      await tt.close();
    }
  },
);
