import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { encodeNopOut } from '../src/pdu/serializer';
import { readCounters } from '../src/metrics/counters';

test('an idle connection gets NOP-In pings; answered it stays, unanswered it is dropped and counted', async (t) => {
  const tt = await startTestTarget({ workers: 1, extra: { nopInInterval: 1, nopInTimeout: 1 } });
  try {
    const a = await TestInitiator.connect(tt.port);
    t.is((await a.login({ targetName: TEST_TARGET })).status, 0);
    for (let i = 0; i < 2; i++) {
      const ping = await a.next(4000);
      t.truthy(ping, 'a ping arrives');
      t.is(ping!.opcode, 0x20);
      t.is(ping!.itt, 0xffffffff, 'unsolicited: ITT reserved');
      const ttt = ping!.bhs.readUInt32BE(20);
      t.not(ttt, 0xffffffff, 'a TTT to echo');
      a.send(encodeNopOut({ immediate: true, itt: 0xffffffff, ttt, cmdSN: a.cmdSN, expStatSN: a.expStatSN }));
    }
    t.false(a.closed, 'answered pings keep the connection');
    const before = readCounters(tt.target.counters).total.instSsnCxnTimeoutErrors;
    // Now stay silent: the next ping goes unanswered and the target drops the connection.
    await Promise.race([a.closedPromise, new Promise((r) => setTimeout(r, 8000))]);
    t.true(a.closed, 'silent connection dropped');
    t.is(readCounters(tt.target.counters).total.instSsnCxnTimeoutErrors, before + 1);
  } finally {
    await tt.close();
  }
});
