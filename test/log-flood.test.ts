/**
 * Repeated bad PDUs give a bounded number of log lines: the first few of each kind per window, then one
 * "suppressed N" line that accounts for every line left out. Against a real `nodetgt serve` (its stderr).
 */
import test from 'ava';
import { startChildTargetWithConfig } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { waitFor } from './helpers/flood';
import { encodeDataOut } from '../src/pdu/serializer';

const IQN = 'iqn.2026-11.io.nodetgt.test:logs';
const BAD = 50000;
const WINDOW_MS = 2000;
const BURST = 10;
const KIND = 'Data-Out for an unknown task';

test('50,000 bad Data-Out PDUs give a bounded number of WARN lines and a "suppressed N" count', async (t) => {
  const c = await startChildTargetWithConfig(
    { workers: 1, targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '64M' }] }] },
    { env: { NODETGT_LOG_WINDOW_MS: String(WINDOW_MS), NODETGT_LOG_BURST: String(BURST) } },
  );
  try {
    const ini = await TestInitiator.connect(c.port);
    t.is((await ini.login({ targetName: IQN })).status, 0);
    const one = encodeDataOut({ itt: 0x1234, dataSN: 0, bufferOffset: 0, expStatSN: ini.expStatSN });
    const start = Date.now();
    ini.sendRaw(Buffer.concat(Array.from({ length: BAD }, () => one)));
    t.true(
      await waitFor(async () => (await c.metrics()).nodetgt_rejects_sent_total >= BAD, 60000),
      'every bad PDU got its Reject',
    );
    const elapsed = Date.now() - start;
    // The last window's count is written when it ends.
    await waitFor(() => false, WINDOW_MS + 500);
    const lines = c.log().split('\n');
    const warned = lines.filter((l) => l.includes(`] ${KIND} `)).length;
    const suppressedLines = lines.filter((l) => /suppressed \d+ similar lines/.test(l) && l.includes(KIND));
    const suppressed = suppressedLines.reduce((n, l) => n + Number(/suppressed (\d+)/.exec(l)![1]), 0);
    const windows = Math.ceil((elapsed + WINDOW_MS) / WINDOW_MS);
    t.log(
      `${BAD} bad PDUs in ${elapsed} ms: ${warned} WARN lines + ${suppressedLines.length} "suppressed" lines ` +
        `(${suppressed} suppressed); ${lines.length} log lines in all`,
    );
    t.true(warned <= BURST * windows, `at most ${BURST} per ${WINDOW_MS} ms window`);
    t.true(suppressedLines.length >= 1, 'a "suppressed N" line');
    t.is(warned + suppressed, BAD, 'every line left out is accounted for');
    t.true(lines.length < 200, 'the log stays small');
    const p = await ini.nop(Buffer.from('ok'));
    t.truthy(p);
    ini.close();
  } finally {
    await c.stop();
  }
});
