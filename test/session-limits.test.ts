/**
 * Session and connection limits, global (limits.maxSessions) and per target (maxSessions, maxConnections),
 * counted over all workers: a login over a limit is answered Out of Resources (0x0302) and counted, and the
 * place it could not take comes free when a session or connection ends.
 */
import test from 'ava';
import { readCounters } from '../src/metrics/counters';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, type LoginOptions } from './helpers/initiator';

const OUT_OF_RESOURCES = 0x0302;
const OTHER = 'iqn.2026-11.io.nodetgt.test:other';

interface Login {
  ini: TestInitiator;
  status: number;
  tsih: number;
  isid: Buffer;
}

async function connectAndLogin(tt: TestTarget, o: LoginOptions): Promise<Login> {
  const ini = await TestInitiator.connect(tt.port);
  const r = await ini.login(o);
  if (r.status !== 0) ini.close();
  return { ini, status: r.status, tsih: r.tsih, isid: r.isid };
}

/** A login retried while the target has not yet counted out what the test closed (it notices asynchronously). */
async function retryLogin(tt: TestTarget, o: LoginOptions): Promise<Login> {
  for (let i = 0; ; i++) {
    const r = await connectAndLogin(tt, o);
    if (r.status !== OUT_OF_RESOURCES || i === 40) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

const refusals = (tt: TestTarget) => readCounters(tt.target.counters).total.tgtLoginLimitRefusals;

test('target maxSessions over two workers: the second session is refused 0x0302 until the first ends', async (t) => {
  const tt = await startTestTarget({
    workers: 2,
    targets: [
      { name: TEST_TARGET, luns: [{ lun: 0, path: 'a.img', size: '4M' }], maxSessions: 1 },
      { name: OTHER, luns: [{ lun: 0, path: 'b.img', size: '4M' }] },
    ],
  });
  t.teardown(() => tt.close());
  const a = await connectAndLogin(tt, { targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.test:a' });
  t.is(a.status, 0);
  const b = await connectAndLogin(tt, { targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.test:b' });
  t.is(b.status, OUT_OF_RESOURCES);
  t.is(refusals(tt), 1);
  // Another target has no such limit.
  const c = await connectAndLogin(tt, { targetName: OTHER, initiatorName: 'iqn.2026-11.io.test:b' });
  t.is(c.status, 0);
  await a.ini.logout();
  a.ini.close();
  const again = await retryLogin(tt, { targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.test:b' });
  t.is(again.status, 0);
  again.ini.close();
  c.ini.close();
});

test("target maxConnections counts every session's connections; limits.maxSessions counts over all targets", async (t) => {
  const tt = await startTestTarget({
    workers: 1,
    targets: [
      { name: TEST_TARGET, luns: [{ lun: 0, path: 'a.img', size: '4M' }], maxConnections: 2 },
      { name: OTHER, luns: [{ lun: 0, path: 'b.img', size: '4M' }] },
    ],
    extra: { limits: { maxSessions: 2 } },
  });
  t.teardown(() => tt.close());
  const lead = await connectAndLogin(tt, { targetName: TEST_TARGET });
  t.is(lead.status, 0);
  // A second connection of the same session (MC/S): room for it under maxConnections 2.
  const mcs = await connectAndLogin(tt, {
    targetName: TEST_TARGET,
    isid: lead.isid,
    tsih: lead.tsih,
    cid: 1,
  });
  t.is(mcs.status, 0);
  const s2 = await connectAndLogin(tt, { targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.test:two' });
  t.is(s2.status, OUT_OF_RESOURCES, 'a third connection to the target');
  // One session on each target: the global limit of 2 refuses a third, on any target.
  const o = await connectAndLogin(tt, { targetName: OTHER, initiatorName: 'iqn.2026-11.io.test:three' });
  t.is(o.status, 0);
  const o2 = await connectAndLogin(tt, { targetName: OTHER, initiatorName: 'iqn.2026-11.io.test:four' });
  t.is(o2.status, OUT_OF_RESOURCES, 'limits.maxSessions 2 reached');
  t.is(refusals(tt), 2);
  // Places come free as connections and sessions end.
  mcs.ini.close();
  o.ini.close();
  const s3 = await retryLogin(tt, { targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.test:two' });
  t.is(s3.status, 0);
  s3.ini.close();
  lead.ini.close();
});
