import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { run } from './helpers/run';

test('iscsi-ls discovers the target (SendTargets) and lists its LUN with its size', async (t) => {
  const tt = await startTestTarget({ luns: [{ lun: 0, path: 'a.img', size: '64M' }] });
  try {
    const r = await run(
      'iscsi-ls',
      ['-i', 'iqn.2026-11.io.nodetgt.test:ls', '-s', `iscsi://127.0.0.1:${tt.port}`],
      60_000,
    );
    t.log(r.stdout.trim());
    t.is(r.code, 0, r.stderr);
    t.regex(
      r.stdout,
      new RegExp(`Target:${TEST_TARGET.replace(/\./g, '\\.')} Portal:127\\.0\\.0\\.1:${tt.port},1`),
    );
    // iscsi-ls prints the last LBA times the block size (63M for a 64 MiB LUN); READ CAPACITY(16) gives it all.
    t.regex(r.stdout, /Lun:0\s+Type:DIRECT_ACCESS \(Size:63M\)/);
    const rc = await run('iscsi-readcapacity16', ['-i', 'iqn.2026-11.io.nodetgt.test:ls', tt.url(0)], 60_000);
    t.is(rc.code, 0, rc.stderr);
    t.regex(rc.stdout, /Total size:67108864\b/);
    t.regex(rc.stdout, /LOGICAL BLOCK LENGTH IN BYTES:512\b/);
  } finally {
    await tt.close();
  }
});

test('SendTargets=All lists every target the initiator may see; ACL hides the others', async (t) => {
  const tt = await startTestTarget({
    targets: [
      { name: 'iqn.2026-11.io.nodetgt.test:open', luns: [{ lun: 0, path: 'o.img', size: '1M' }] },
      {
        name: 'iqn.2026-11.io.nodetgt.test:closed',
        luns: [{ lun: 0, path: 'c.img', size: '1M' }],
        acl: { initiators: ['iqn.2026-11.io.nodetgt.test:someone-else'] },
      },
      {
        name: 'iqn.2026-11.io.nodetgt.test:netonly',
        luns: [{ lun: 0, path: 'n.img', size: '1M' }],
        acl: { networks: ['127.0.0.0/8'] },
      },
    ],
  });
  try {
    const ini = await TestInitiator.connect(tt.port);
    const lr = await ini.login({ sessionType: 'Discovery' });
    t.is(lr.status, 0);
    const all = await ini.text([['SendTargets', 'All']]);
    t.deepEqual(all.get('TargetName'), [
      'iqn.2026-11.io.nodetgt.test:open',
      'iqn.2026-11.io.nodetgt.test:netonly',
    ]);
    t.deepEqual(all.get('TargetAddress'), [`127.0.0.1:${tt.port},1`, `127.0.0.1:${tt.port},1`]);
    const one = await ini.text([['SendTargets', 'iqn.2026-11.io.nodetgt.test:netonly']]);
    t.deepEqual(one.get('TargetName'), ['iqn.2026-11.io.nodetgt.test:netonly']);
    const hidden = await ini.text([['SendTargets', 'iqn.2026-11.io.nodetgt.test:closed']]);
    t.is(hidden.get('TargetName'), undefined);
    const logout = await ini.logout();
    t.is(logout?.opcode, 0x26);
    await ini.closedPromise;
    // Logging in to the ACL-protected target is refused with Authorization Failure (0x0202).
    const ini2 = await TestInitiator.connect(tt.port);
    const denied = await ini2.login({ targetName: 'iqn.2026-11.io.nodetgt.test:closed' });
    t.is(denied.status, 0x0202);
    await ini2.closedPromise;
  } finally {
    await tt.close();
  }
});
