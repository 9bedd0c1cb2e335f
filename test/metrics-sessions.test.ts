/**
 * The per-session and per-target series over a session's and a target's life: hundreds of sessions each have
 * their series, which go at logout (cardinality stays bounded); a removed target's series go with it, and a
 * target added live that takes its row of session totals starts from zero.
 */
import test from 'ava';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { TUR } from './helpers/live';
import { waitFor } from './helpers/flood';

/** The per-session series of an exposition: metric name and isid of each line. */
function sessionSeries(body: string): Array<{ name: string; isid: string; value: number }> {
  return [...body.matchAll(/^(nodetgt_session_\w+)\{[^}]*isid="([0-9a-f]+)"[^}]*\} (\S+)$/gm)].map((m) => ({
    name: m[1],
    isid: m[2],
    value: Number(m[3]),
  }));
}

const sessionCount = (m: { body: string }) =>
  (m.body.match(/^nodetgt_session_cmd_pdus_total\{/gm) ?? []).length;

const series = (body: string, name: string, labels: string) =>
  Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(body)?.[1]);

/** The seven per-session metrics (iscsiSsnStatsTable and iscsiSsnCxnErrorStatsTable columns). */
const PER_SESSION = 7;

type Open = TestInitiator & { isidHex: string };

async function openSessions(tt: TestTarget, n: number, target = TEST_TARGET): Promise<Open[]> {
  const out: Open[] = [];
  // A few at a time: logins from one address are admitted 8 at once (limits.maxPendingLoginsPerAddress).
  for (let i = 0; i < n; i += 8) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(8, n - i) }, async () => {
        const ini = await TestInitiator.connect(tt.port);
        const r = await ini.login({ targetName: target });
        if (r.status !== 0) throw new Error(`login: status 0x${r.status.toString(16)}`);
        return Object.assign(ini, { isidHex: r.isid.toString('hex') });
      }),
    );
    out.push(...batch);
  }
  return out;
}

async function logoutAll(sessions: TestInitiator[]): Promise<void> {
  for (let i = 0; i < sessions.length; i += 16)
    await Promise.all(
      sessions.slice(i, i + 16).map(async (s) => {
        await s.logout();
        s.close();
      }),
    );
}

const isidOf = (s: Open) => s.isidHex;
const sorted = (xs: string[]) => [...new Set(xs)].sort();
const isids = (rows: Array<{ isid: string }>) => sorted(rows.map((r) => r.isid));

test('200 sessions each have their series; they go at logout, the target totals keep them', async (t) => {
  const tt = await startTestTarget({
    workers: 2,
    luns: [{ lun: 0, backstore: 'null', size: '64M' }],
    extra: { metrics: '127.0.0.1:0' },
  });
  try {
    const sessions = await openSessions(tt, 200);
    await Promise.all(sessions.map((s) => s.scsi(TUR, { edtl: 0 })));
    const all = (await tt.target.metrics()).body;
    const open = sessionSeries(all);
    t.is(open.length, 200 * PER_SESSION, 'seven series per session');
    t.deepEqual(isids(open), sorted(sessions.map(isidOf)), 'one per session, by ISID');
    t.true(
      open.filter((s) => s.name === 'nodetgt_session_cmd_pdus_total').every((s) => s.value >= 1),
      'each counted its TEST UNIT READY',
    );
    t.is(series(all, 'nodetgt_target_sessions', `target="${TEST_TARGET}"`), 200);
    const pdus = series(all, 'nodetgt_target_cmd_pdus_total', `target="${TEST_TARGET}"`);

    const [gone, stay] = [sessions.slice(0, 120), sessions.slice(120)];
    await logoutAll(gone);
    // The Logout Response goes out before the worker ends the session: the series go a moment later.
    const settled = (n: number) => waitFor(async () => sessionCount(await tt.target.metrics()) === n, 10000);
    t.true(await settled(80));
    const half = (await tt.target.metrics()).body;
    t.deepEqual(isids(sessionSeries(half)), sorted(stay.map(isidOf)));
    t.is(sessionSeries(half).length, 80 * PER_SESSION);
    t.is(series(half, 'nodetgt_target_sessions', `target="${TEST_TARGET}"`), 80);

    await logoutAll(stay);
    t.true(await settled(0));
    const none = (await tt.target.metrics()).body;
    t.deepEqual(sessionSeries(none), [], 'no session series left');
    t.is(series(none, 'nodetgt_target_sessions', `target="${TEST_TARGET}"`), 0);
    t.true(series(none, 'nodetgt_target_cmd_pdus_total', `target="${TEST_TARGET}"`) >= pdus);
  } finally {
    await tt.close();
  }
});

const A = 'iqn.2026-11.io.nodetgt.test:a';
const B = 'iqn.2026-11.io.nodetgt.test:b';
const C = 'iqn.2026-11.io.nodetgt.test:c';

/** Log in to `target`, send three TEST UNIT READYs, log out: the same PDUs each time. */
async function visit(tt: TestTarget, target: string): Promise<void> {
  const [s] = await openSessions(tt, 1, target);
  for (let i = 0; i < 3; i++) await s.scsi(TUR, { edtl: 0 });
  await logoutAll([s]);
  if (!(await waitFor(async () => sessionCount(await tt.target.metrics()) === 0, 10000)))
    throw new Error('the session did not end');
}

test('a removed target’s series go; a target added live in its row starts from zero', async (t) => {
  const lun = { lun: 0, backstore: 'null', size: '64M' };
  const tt = await startTestTarget({
    workers: 2,
    targets: [
      { name: A, luns: [lun] },
      { name: B, luns: [lun] },
    ],
    extra: { metrics: '127.0.0.1:0' },
  });
  try {
    await visit(tt, B);
    const before = (await tt.target.metrics()).body;
    const bTotal = series(before, 'nodetgt_target_cmd_pdus_total', `target="${B}"`);
    t.true(bTotal >= 3, 'B counted its session');
    const bRow = tt.target.config.targets.find((x) => x.name === B)!.slot;

    const removed = tt.target.config;
    removed.targets = removed.targets.filter((x) => x.name !== B);
    t.deepEqual((await tt.target.applyConfig(removed)).applied, [`target ${B} removed`]);
    const after = (await tt.target.metrics()).body;
    t.false(after.includes(`target="${B}"`), 'no series of B left');

    const added = tt.target.config;
    added.targets.push({ ...added.targets[0], name: C, luns: [] });
    t.deepEqual((await tt.target.applyConfig(added)).applied, [`target ${C} added (no LUNs)`]);
    t.is(tt.target.config.targets.find((x) => x.name === C)!.slot, bRow, 'C took the row B had');
    const fresh = (await tt.target.metrics()).body;
    for (const f of ['cmd_pdus_total', 'rsp_pdus_total', 'rx_data_octets_total', 'tx_data_octets_total'])
      t.is(series(fresh, `nodetgt_target_${f}`, `target="${C}"`), 0, `${f} of C starts at zero`);

    await visit(tt, C);
    const later = (await tt.target.metrics()).body;
    t.is(series(later, 'nodetgt_target_cmd_pdus_total', `target="${C}"`), bTotal, 'only its own session');
  } finally {
    await tt.close();
  }
});
