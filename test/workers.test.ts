import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';

test('two sessions at once land on two different workers; a second connection of a session follows it', async (t) => {
  const tt = await startTestTarget({ workers: 2 });
  try {
    const a = await TestInitiator.connect(tt.port);
    const ra = await a.login({ targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:a' });
    t.is(ra.status, 0);
    const b = await TestInitiator.connect(tt.port);
    const rb = await b.login({ targetName: TEST_TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:b' });
    t.is(rb.status, 0);
    t.not(ra.tsih, rb.tsih);
    const per = tt.target.connectionsPerWorker();
    t.log([...per.entries()]);
    t.is(per.size, 2, 'each worker serves one connection');
    t.deepEqual([...per.values()].sort(), [1, 1]);
    // Both sessions answer at the same time.
    const [pa, pb] = await Promise.all([a.nop(Buffer.from('a')), b.nop(Buffer.from('b'))]);
    t.is(pa?.data.toString(), 'a');
    t.is(pb?.data.toString(), 'b');
    // MC/S: a second connection of session A (same ISID, its TSIH, CID 1) goes to A's worker.
    const a2 = await TestInitiator.connect(tt.port);
    const ra2 = await a2.login({
      targetName: TEST_TARGET,
      initiatorName: 'iqn.2026-11.io.nodetgt.test:a',
      isid: ra.isid,
      tsih: ra.tsih,
      cid: 1,
    });
    t.is(ra2.status, 0);
    t.is(ra2.tsih, ra.tsih);
    t.deepEqual([...tt.target.connectionsPerWorker().values()].sort(), [1, 2]);
    a.close();
    b.close();
    a2.close();
    await Promise.all([a.closedPromise, b.closedPromise, a2.closedPromise]);
  } finally {
    await tt.close();
  }
});
