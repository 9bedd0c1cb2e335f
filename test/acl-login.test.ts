/**
 * ACLs through a real login against the in-process target: a denied initiator does not see the target in
 * SendTargets and its login is refused with 0x0202 (authorization failure), counted in
 * tgtLoginAuthorizeFails; an allowed initiator on the same target sees it and logs in.
 * (test/discovery.test.ts covers SendTargets=All/<name> hiding a name-protected target; this file adds the
 * allowed twin, network ACLs, the counter and libiscsi as the initiator. IPv6: test/ipv6.test.ts.)
 * Serial: each test starts a target, and logins on a loaded 2-core machine must stay within the
 * initiator's 5 s answer timeout.
 */
import test from 'ava';
import { startTestTarget, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { run } from './helpers/run';
import { readCounters } from '../src/metrics/counters';

const OPEN = 'iqn.2026-11.io.nodetgt.test:open';
const BY_NAME = 'iqn.2026-11.io.nodetgt.test:by-name';
const ALLOWED = 'iqn.2026-11.io.nodetgt.test:allowed';
const INTRUDER = 'iqn.2026-11.io.nodetgt.test:intruder';
const INQUIRY = Buffer.from([0x12, 0, 0, 0, 96, 0]);

function counters(tt: TestTarget) {
  return readCounters(tt.target.counters).total;
}

/** The TargetNames a discovery session of `initiatorName`, connected from `localAddress`, is told about. */
async function discover(tt: TestTarget, initiatorName: string, localAddress?: string): Promise<string[]> {
  const ini = await TestInitiator.connect(tt.port, '127.0.0.1', localAddress);
  try {
    const lr = await ini.login({ sessionType: 'Discovery', initiatorName });
    if (lr.status !== 0) throw new Error(`discovery login failed: 0x${lr.status.toString(16)}`);
    const names = (await ini.text([['SendTargets', 'All']])).get('TargetName') ?? [];
    await ini.logout();
    return names;
  } finally {
    ini.close();
  }
}

/** A Normal login to `targetName`; on success one INQUIRY and a logout. Returns the login status. */
async function loginStatus(
  t: import('ava').ExecutionContext,
  tt: TestTarget,
  targetName: string,
  initiatorName: string,
  localAddress?: string,
): Promise<number> {
  const ini = await TestInitiator.connect(tt.port, '127.0.0.1', localAddress);
  try {
    const lr = await ini.login({ targetName, initiatorName });
    if (lr.status !== 0) {
      t.is(lr.tsih, 0);
      await ini.closedPromise; // the target drops the connection after a failed login
      return lr.status;
    }
    t.not(lr.tsih, 0);
    const inq = await ini.scsi(INQUIRY, { edtl: 96, read: true });
    t.is(inq.status, 0, `INQUIRY on ${targetName} as ${initiatorName}`);
    t.is(inq.data[0]! & 0x1f, 0, 'direct-access device');
    t.is((await ini.logout())?.opcode, 0x26);
    return 0;
  } finally {
    ini.close();
  }
}

test.serial(
  'initiator-name ACL: the listed initiator (any case) logs in; another is hidden, refused 0x0202 and counted',
  async (t) => {
    const tt = await startTestTarget({
      targets: [
        { name: OPEN, luns: [{ lun: 0, path: 'o.img', size: '1M' }] },
        {
          name: BY_NAME,
          luns: [{ lun: 0, path: 'n.img', size: '1M' }],
          // Written in mixed case: iSCSI names compare case-insensitively (RFC 3722).
          acl: { initiators: ['IQN.2026-11.io.nodetgt.test:Allowed'] },
        },
      ],
    });
    try {
      const c0 = counters(tt);
      t.deepEqual(await discover(tt, INTRUDER), [OPEN]);
      t.deepEqual(await discover(tt, ALLOWED), [OPEN, BY_NAME]);
      t.deepEqual(await discover(tt, 'iqn.2026-11.io.nodetgt.test:ALLOWED'), [OPEN, BY_NAME]);

      t.is(await loginStatus(t, tt, BY_NAME, INTRUDER), 0x0202);
      t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 1);
      // The same target, the allowed initiator (sending its name in another case): logs in and works.
      t.is(await loginStatus(t, tt, BY_NAME, 'iqn.2026-11.io.nodetgt.test:ALLOWED'), 0);
      t.is(await loginStatus(t, tt, BY_NAME, ALLOWED), 0);
      // The refused initiator is not refused everywhere.
      t.is(await loginStatus(t, tt, OPEN, INTRUDER), 0);
      const c1 = counters(tt);
      t.is(c1.tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 1, 'only the refused login is counted');
      t.is(c1.tgtLoginOtherFails, c0.tgtLoginOtherFails);
      t.is(c1.tgtLoginAccepts - c0.tgtLoginAccepts, 3 + 3, '3 discovery + 3 normal logins accepted');
    } finally {
      await tt.close();
    }
  },
);

test.serial(
  'network ACL: the same target admits 127.0.0.2 and refuses 127.0.0.1 (0x0202, counted, hidden)',
  async (t) => {
    const NET2 = 'iqn.2026-11.io.nodetgt.test:only-127-0-0-2';
    const DOCNET = 'iqn.2026-11.io.nodetgt.test:only-192-0-2';
    const tt = await startTestTarget({
      targets: [
        { name: OPEN, luns: [{ lun: 0, path: 'o.img', size: '1M' }] },
        { name: NET2, luns: [{ lun: 0, path: 'a.img', size: '1M' }], acl: { networks: ['127.0.0.2/32'] } },
        // TEST-NET-1 (RFC 5737): nobody here connects from it.
        { name: DOCNET, luns: [{ lun: 0, path: 'b.img', size: '1M' }], acl: { networks: ['192.0.2.0/24'] } },
      ],
    });
    try {
      const c0 = counters(tt);
      t.deepEqual(await discover(tt, ALLOWED, '127.0.0.1'), [OPEN]);
      t.deepEqual(await discover(tt, ALLOWED, '127.0.0.2'), [OPEN, NET2]);

      t.is(await loginStatus(t, tt, NET2, ALLOWED, '127.0.0.1'), 0x0202);
      t.is(await loginStatus(t, tt, DOCNET, ALLOWED, '127.0.0.1'), 0x0202);
      t.is(await loginStatus(t, tt, DOCNET, ALLOWED, '127.0.0.2'), 0x0202);
      t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 3);
      t.is(await loginStatus(t, tt, NET2, ALLOWED, '127.0.0.2'), 0);
      t.is(await loginStatus(t, tt, OPEN, ALLOWED, '127.0.0.1'), 0);
      t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 3);
    } finally {
      await tt.close();
    }
  },
);

test.serial('name and network ACL together: both must admit', async (t) => {
  const BOTH = 'iqn.2026-11.io.nodetgt.test:both';
  const tt = await startTestTarget({
    targets: [
      {
        name: BOTH,
        luns: [{ lun: 0, path: 'a.img', size: '1M' }],
        acl: { initiators: [ALLOWED], networks: ['127.0.0.2'] },
      },
    ],
  });
  try {
    const c0 = counters(tt);
    t.is(await loginStatus(t, tt, BOTH, INTRUDER, '127.0.0.2'), 0x0202, 'right network, wrong name');
    t.is(await loginStatus(t, tt, BOTH, ALLOWED, '127.0.0.1'), 0x0202, 'right name, wrong network');
    t.is(await loginStatus(t, tt, BOTH, INTRUDER, '127.0.0.1'), 0x0202, 'wrong name, wrong network');
    t.is(await loginStatus(t, tt, BOTH, ALLOWED, '127.0.0.2'), 0, 'right name, right network');
    t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 3);
    t.deepEqual(await discover(tt, ALLOWED, '127.0.0.2'), [BOTH]);
    t.deepEqual(await discover(tt, ALLOWED, '127.0.0.1'), []);
    t.deepEqual(await discover(tt, INTRUDER, '127.0.0.2'), []);
  } finally {
    await tt.close();
  }
});

test.serial(
  'libiscsi (iscsi-ls -i, iscsi-inq -i) as the initiator: denied by name and by network, allowed twin works',
  async (t) => {
    const LO = 'iqn.2026-11.io.nodetgt.test:loopback-only';
    const DOCNET = 'iqn.2026-11.io.nodetgt.test:only-192-0-2';
    const tt = await startTestTarget({
      targets: [
        { name: OPEN, luns: [{ lun: 0, path: 'o.img', size: '1M' }] },
        { name: BY_NAME, luns: [{ lun: 0, path: 'n.img', size: '1M' }], acl: { initiators: [ALLOWED] } },
        { name: LO, luns: [{ lun: 0, path: 'l.img', size: '1M' }], acl: { networks: ['127.0.0.0/8'] } },
        { name: DOCNET, luns: [{ lun: 0, path: 'd.img', size: '1M' }], acl: { networks: ['192.0.2.0/24'] } },
      ],
    });
    const portal = `iscsi://127.0.0.1:${tt.port}`;
    // libiscsi prints the SendTargets answer in its own order.
    const listed = (out: string) => [...out.matchAll(/^Target:(\S+) Portal:/gm)].map((m) => m[1]).sort();
    try {
      const c0 = counters(tt);
      const lsIntruder = await run('iscsi-ls', ['-i', INTRUDER, portal], 30000);
      t.is(lsIntruder.code, 0, lsIntruder.stderr);
      t.deepEqual(listed(lsIntruder.stdout), [OPEN, LO].sort());
      const lsAllowed = await run('iscsi-ls', ['-i', ALLOWED, portal], 30000);
      t.is(lsAllowed.code, 0, lsAllowed.stderr);
      t.deepEqual(listed(lsAllowed.stdout), [OPEN, BY_NAME, LO].sort());

      // Refused logins: iscsi-inq fails, and the target counts each as an authorization failure.
      const inqIntruder = await run('iscsi-inq', ['-i', INTRUDER, `${portal}/${BY_NAME}/0`], 30000);
      t.not(inqIntruder.code, 0);
      // libiscsi reports the login status in decimal: 514 = 0x0202.
      t.regex(inqIntruder.stderr, /Authorization failure\(514\)/);
      const inqDocnet = await run('iscsi-inq', ['-i', ALLOWED, `${portal}/${DOCNET}/0`], 30000);
      t.not(inqDocnet.code, 0);
      t.regex(inqDocnet.stderr, /Authorization failure\(514\)/);
      t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 2);

      // The allowed twins on the same targets.
      for (const target of [BY_NAME, LO]) {
        const inq = await run('iscsi-inq', ['-i', ALLOWED, `${portal}/${target}/0`], 30000);
        t.is(inq.code, 0, `${target}: ${inq.stderr}`);
        t.regex(inq.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
      }
      t.is(counters(tt).tgtLoginAuthorizeFails, c0.tgtLoginAuthorizeFails + 2);
    } finally {
      await tt.close();
    }
  },
);
