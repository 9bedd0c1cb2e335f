/**
 * CHAP end to end against a real `nodetgt serve` process: our test initiator (one-way and mutual, SHA-256 and
 * MD5), libiscsi's iscsi-ls (discovery CHAP) and iscsi-inq, qemu-img, iscsi-test-cu with CHAP on; and 1,000
 * wrong-secret logins from one address, refused, counted and rate-limited, while a healthy session reads on.
 */
import test from 'ava';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { run } from './helpers/run';
import { allFamilies, iscsiTestCuAvailable, runIscsiTestCu, type SuiteResult } from './helpers/iscsi-test-cu';
import { LoginStatus } from '../src/pdu/opcodes';

const IQN = 'iqn.2026-11.io.nodetgt.test:chap';
const USER = 'alice';
const SECRET = 'alice-secret-1234';
const TARGET_USER = 'nodetgt';
const TARGET_SECRET = 'target-secret-5678';
const DISC_USER = 'finder';
const DISC_SECRET = 'discovery-secret-9';

function config(limits: Record<string, number> = {}): Record<string, unknown> {
  return {
    workers: 2,
    targets: [
      {
        name: IQN,
        luns: [{ lun: 0, backstore: 'null', size: '64M' }],
        auth: {
          // iscsi-ls -s logs in to each target with the discovery URL's account: the target takes it too.
          incoming: [
            { user: USER, secret: SECRET },
            { user: DISC_USER, secret: DISC_SECRET },
          ],
          outgoing: { user: TARGET_USER, secret: TARGET_SECRET },
        },
      },
    ],
    discoveryAuth: { incoming: [{ user: DISC_USER, secret: DISC_SECRET }] },
    limits,
  };
}

let c: ChildTarget;
test.before(async () => {
  c = await startChildTargetWithConfig(config());
});
test.after.always(async () => {
  await c?.stop();
});

const READ10 = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]);

for (const algorithms of [[7], [5]]) {
  test.serial(`our initiator: mutual CHAP with CHAP_A=${algorithms[0]}, then a READ`, async (t) => {
    const ini = await TestInitiator.connect(c.port);
    try {
      const r = await ini.login({
        targetName: IQN,
        chap: {
          user: USER,
          secret: SECRET,
          algorithms,
          mutual: { user: TARGET_USER, secret: TARGET_SECRET },
        },
      });
      t.is(r.status, 0);
      t.is(r.keys.get('CHAP_A'), String(algorithms[0]));
      const rd = await ini.scsi(READ10, { edtl: 4096, read: true });
      t.is(rd.status, 0);
    } finally {
      ini.close();
    }
  });
}

test.serial('our initiator: a target answering mutual CHAP with the wrong secret is caught', async (t) => {
  const ini = await TestInitiator.connect(c.port);
  try {
    await t.throwsAsync(
      ini.login({
        targetName: IQN,
        chap: {
          user: USER,
          secret: SECRET,
          algorithms: [7],
          mutual: { user: TARGET_USER, secret: 'other-secret-000' },
        },
      }),
      { message: /mutual CHAP/ },
    );
  } finally {
    ini.close();
  }
});

test.serial('our initiator: one-way CHAP; wrong secret and no CHAP are refused with 0x0201', async (t) => {
  const login = async (o: Parameters<TestInitiator['login']>[0]) => {
    const ini = await TestInitiator.connect(c.port);
    try {
      return (await ini.login(o)).status;
    } finally {
      ini.close();
    }
  };
  t.is(await login({ targetName: IQN, chap: { user: USER, secret: SECRET, algorithms: [8, 5] } }), 0);
  t.is(
    await login({ targetName: IQN, chap: { user: USER, secret: 'wrong-secret-000' } }),
    LoginStatus.AuthenticationFailure,
  );
  t.is(await login({ targetName: IQN, security: true }), LoginStatus.AuthenticationFailure);
  t.is(await login({ targetName: IQN }), LoginStatus.AuthenticationFailure);
  // Discovery has its own account: the target's does not open it.
  t.is(
    await login({ sessionType: 'Discovery', chap: { user: USER, secret: SECRET } }),
    LoginStatus.AuthenticationFailure,
  );
  t.is(await login({ sessionType: 'Discovery', chap: { user: DISC_USER, secret: DISC_SECRET } }), 0);
  t.false(c.log().includes(SECRET) || c.log().includes(TARGET_SECRET) || c.log().includes(DISC_SECRET));
});

test.serial('iscsi-ls with discovery CHAP and iscsi-inq with target CHAP (libiscsi)', async (t) => {
  const ls = await run('iscsi-ls', ['-s', `iscsi://${DISC_USER}%${DISC_SECRET}@127.0.0.1:${c.port}`]);
  t.is(ls.code, 0, ls.stdout + ls.stderr);
  t.regex(ls.stdout, new RegExp(IQN));
  const bad = await run('iscsi-ls', ['-s', `iscsi://${DISC_USER}%wrong-secret-00@127.0.0.1:${c.port}`]);
  t.not(bad.code, 0);
  const inq = await run('iscsi-inq', [`iscsi://${USER}%${SECRET}@127.0.0.1:${c.port}/${IQN}/0`]);
  t.is(inq.code, 0, inq.stdout + inq.stderr);
  t.regex(inq.stdout, /nodetgt|NODETGT|Vendor/i);
  const wrong = await run('iscsi-inq', [`iscsi://${USER}%wrong-secret-00@127.0.0.1:${c.port}/${IQN}/0`]);
  t.not(wrong.code, 0);
  const none = await run('iscsi-inq', [`iscsi://127.0.0.1:${c.port}/${IQN}/0`]);
  t.not(none.code, 0);
});

test.serial('qemu-img info with user and password-secret', async (t) => {
  const opts = `driver=iscsi,transport=tcp,portal=127.0.0.1:${c.port},target=${IQN},lun=0,user=${USER},password-secret=sec0`;
  const r = await run('qemu-img', [
    'info',
    '--object',
    `secret,id=sec0,data=${SECRET}`,
    '--image-opts',
    opts,
  ]);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /64 MiB/);
  const bad = await run('qemu-img', [
    'info',
    '--object',
    'secret,id=sec0,data=wrong-secret-00',
    '--image-opts',
    opts,
  ]);
  t.not(bad.code, 0);
});

// The families of iscsi-test-cu's ALL that need more than one plain read-write disk: the conformance harness
// runs them on their own LUNs (removable, cd, read-only), with two URLs (MultipathIO) or one test per process
// (iSCSITMF). Every other family runs here with CHAP on and must give the same counts as without.
const NOT_ON_ONE_DISK = new Set([
  'NoMedia',
  'PreventAllow',
  'StartStopUnit',
  'ReadOnly',
  'MultipathIO',
  'iSCSITMF',
]);

test.serial(
  'iscsi-test-cu with CHAP: every family on a plain disk gives the same counts as without',
  async (t) => {
    t.true(iscsiTestCuAvailable(), 'iscsi-test-cu is installed (Debian libiscsi-bin)');
    const families = allFamilies().filter((f) => !NOT_ON_ONE_DISK.has(f));
    t.true(families.length >= 40, `iscsi-test-cu -l lists the families: ${families.join(' ')}`);
    t.timeout(600_000);
    const disk = (name: string) => ({ lun: 0, path: `${name}.img`, size: '64M' });
    const withAuth = await startChildTargetWithConfig({
      workers: 2,
      targets: [{ name: IQN, luns: [disk('chap')], auth: { incoming: [{ user: USER, secret: SECRET }] } }],
    });
    const open = await startChildTargetWithConfig({
      workers: 2,
      targets: [{ name: IQN, luns: [disk('open')] }],
    });
    try {
      const counts = (r: SuiteResult) =>
        `ran ${r.ran} passed ${r.passed} failed ${r.failed} skipped ${r.skipped.length}` +
        (r.setupError ? ` (set-up error: ${r.setupError.split('\n')[0]})` : '');
      let ran = 0;
      for (const family of families) {
        const extraArgs = family === 'Sanitize' ? ['--allow-sanitize'] : [];
        // The two runs go side by side: different targets, different files.
        const [chap, plain] = await Promise.all([
          runIscsiTestCu(family, {
            url: `iscsi://${USER}%${SECRET}@127.0.0.1:${withAuth.port}/${IQN}/0`,
            timeoutMs: 60_000,
            extraArgs,
          }),
          runIscsiTestCu(family, {
            url: `iscsi://127.0.0.1:${open.port}/${IQN}/0`,
            timeoutMs: 60_000,
            extraArgs,
          }),
        ]);
        t.is(chap.setupError, undefined, `${family} with CHAP started`);
        t.true(chap.ran > 0, `${family} ran with CHAP`);
        t.is(counts(chap), counts(plain), `${family}: with CHAP as without`);
        ran += chap.ran;
      }
      const m = await withAuth.metrics();
      t.log(
        `${families.length} families, ${ran} tests with CHAP; CHAP logins refused: ${m.nodetgt_tgt_login_authenticate_fails_total}`,
      );
      t.is(m.nodetgt_tgt_login_authenticate_fails_total, 0, 'no CHAP login of iscsi-test-cu was refused');
      t.true(m.nodetgt_tgt_login_accepts_total > families.length, 'a CHAP login for every family and more');
    } finally {
      await withAuth.stop();
      await open.stop();
    }
  },
);

test.serial(
  '1,000 wrong-secret logins: refused, counted, rate-limited; a healthy session reads on',
  async (t) => {
    const d = await startChildTargetWithConfig(
      config({ authFailuresPerAddress: 10, authFailureWindow: 60, authBlockTime: 600 }),
    );
    try {
      const healthy = await TestInitiator.connect(d.port);
      t.is((await healthy.login({ targetName: IQN, chap: { user: USER, secret: SECRET } })).status, 0);
      let reads = 0;
      let stop = false;
      const reader = (async () => {
        while (!stop) {
          const r = await healthy.scsi(READ10, { edtl: 4096, read: true });
          if (r.status !== 0) throw new Error(`READ status ${r.status}`);
          reads++;
        }
      })();
      const statuses = new Map<number, number>();
      for (let i = 0; i < 1000; i++) {
        const ini = await TestInitiator.connect(d.port);
        try {
          const s = (await ini.login({ targetName: IQN, chap: { user: USER, secret: `guess-${i}-000000` } }))
            .status;
          statuses.set(s, (statuses.get(s) ?? 0) + 1);
        } finally {
          ini.close();
        }
      }
      const readsDuring = reads;
      stop = true;
      await reader;
      t.deepEqual(
        [...statuses.keys()],
        [LoginStatus.AuthenticationFailure],
        'every login refused with 0x0201',
      );
      t.true(readsDuring > 0, 'the healthy session read during the flood');
      t.is((await healthy.scsi(READ10, { edtl: 4096, read: true })).status, 0);
      // Even the right secret is refused now: the address is blocked.
      const late = await TestInitiator.connect(d.port);
      t.is(
        (await late.login({ targetName: IQN, chap: { user: USER, secret: SECRET } })).status,
        LoginStatus.AuthenticationFailure,
      );
      late.close();
      const m = await d.metrics();
      const fails = m.nodetgt_tgt_login_authenticate_fails_total;
      const limited = m.nodetgt_tgt_login_rate_limited_total;
      t.true(fails >= 10 && fails < 100, `authenticate fails ${fails}`);
      t.is(fails + limited, 1001);
      t.is(m.nodetgt_auth_blocked_addresses, 1);
      t.regex(d.log(), /too many authentication failures/);
      healthy.close();
    } finally {
      await d.stop();
    }
  },
);
