/**
 * NOP-In keepalive, with margins that hold on a loaded machine: a 3 s ping interval and a 5 s timeout, waits
 * bounded by generous slack, and the order of events checked against the configured times.
 *
 * The target checks its connections once a second (TICK): it pings a connection idle for at least INTERVAL
 * (nothing received), and drops one whose ping has gone unanswered for more than TIMEOUT. The target runs in
 * this process (its worker threads share the clock), so times measured here bound the target's own:
 *   - a ping comes no earlier than INTERVAL after the last PDU we sent (the target's idle clock starts when it
 *     receives it, which is after we sent it);
 *   - the drop comes no earlier than INTERVAL + TIMEOUT after our last PDU, and no earlier than TIMEOUT minus a
 *     small slack (the ping's delivery to us) after we received the unanswered ping;
 *   - upper bounds add TICK and LOAD_SLACK for a busy machine, and only bound the waits.
 */
import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { encodeNopOut } from '../src/pdu/serializer';
import { readCounters } from '../src/metrics/counters';

const INTERVAL = 3000;
const TIMEOUT = 5000;
/** The target's check period (connection.ts: min(interval, 1 s)). */
const TICK = 1000;
/** How late an event may be on a saturated machine before the test calls it wrong. */
const LOAD_SLACK = 5000;
/** Clock granularity between the target's threads and this one. */
const CLOCK_SLACK = 50;
/** Time for the unanswered ping to reach us after the target sent it (the drop is timed from then). */
const DELIVERY_SLACK = 750;

test('an idle connection gets NOP-In pings; answered it stays, unanswered it is dropped after the timeout', async (t) => {
  // login + 3 pings + the drop, each bounded below
  t.timeout(3 * (INTERVAL + TICK + LOAD_SLACK) + TIMEOUT + TICK + LOAD_SLACK + 30_000);
  const tt = await startTestTarget({
    workers: 1,
    extra: { nopInInterval: INTERVAL / 1000, nopInTimeout: TIMEOUT / 1000 },
  });
  try {
    const counters = () => readCounters(tt.target.counters).total;
    const pings0 = counters().nopInPings;
    const drops0 = counters().instSsnCxnTimeoutErrors;
    const a = await TestInitiator.connect(tt.port);
    // lastSent: taken before our last PDU went out, so the target's idle clock starts later (lower bounds).
    // lastSeen: taken after the target has surely received our last PDU (upper bounds).
    let lastSent = Date.now();
    t.is((await a.login({ targetName: TEST_TARGET })).status, 0);
    let lastSeen = Date.now(); // the login response came, so the target had the login request

    const waitPing = async (which: string) => {
      const ping = await a.next(INTERVAL + TICK + LOAD_SLACK);
      const at = Date.now();
      if (ping === null)
        throw new Error(`${which}: no ping within ${INTERVAL + TICK + LOAD_SLACK} ms (closed: ${a.closed})`);
      t.is(ping.opcode, 0x20, `${which}: NOP-In`);
      t.is(ping.itt, 0xffffffff, `${which}: unsolicited, ITT reserved`);
      const idle = at - lastSent;
      t.true(
        idle >= INTERVAL - CLOCK_SLACK,
        `${which}: not before ${INTERVAL} ms idle (came after ${idle} ms)`,
      );
      t.true(at - lastSeen <= INTERVAL + TICK + LOAD_SLACK, `${which}: came after ${at - lastSeen} ms idle`);
      t.log(`${which} after ${idle} ms idle`);
      return { ttt: ping.bhs.readUInt32BE(20), at };
    };

    // Two pings answered: each answer keeps the connection, and the next ping comes one interval later. The
    // three pings span more than TIMEOUT, so only the answers can have kept the connection this long.
    const answered = [];
    for (const which of ['ping 1', 'ping 2']) {
      const ping = await waitPing(which);
      t.not(ping.ttt, 0xffffffff, `${which}: a TTT to echo`);
      lastSent = Date.now();
      a.send(
        encodeNopOut({
          immediate: true,
          itt: 0xffffffff,
          ttt: ping.ttt,
          cmdSN: a.cmdSN,
          expStatSN: a.expStatSN,
        }),
      );
      lastSeen = lastSent; // its delivery is within LOAD_SLACK
      answered.push(ping);
    }
    const third = await waitPing('ping 3');
    t.false(a.closed, 'answered pings keep the connection');
    const span = third.at - answered[0].at;
    t.true(span > TIMEOUT, `the pings spanned ${span} ms, more than the timeout`);
    t.is(counters().instSsnCxnTimeoutErrors, drops0, 'no timeout counted while pings were answered');

    // Now stay silent: the third ping goes unanswered and the target drops the connection, not before TIMEOUT.
    const bound = TIMEOUT + TICK + LOAD_SLACK;
    let timer: NodeJS.Timeout | undefined;
    const closedAt = await Promise.race([
      a.closedPromise.then(() => Date.now()),
      new Promise<null>((r) => (timer = setTimeout(() => r(null), bound))),
    ]);
    clearTimeout(timer);
    if (closedAt === null)
      return t.fail(`silent connection not dropped within ${bound} ms of the unanswered ping`);
    const afterPing = closedAt - third.at;
    const afterLast = closedAt - lastSent;
    t.log(`dropped ${afterPing} ms after the unanswered ping, ${afterLast} ms after our last PDU`);
    t.true(
      afterLast >= INTERVAL + TIMEOUT - CLOCK_SLACK,
      `not before interval + timeout after our last PDU (${afterLast} ms)`,
    );
    t.true(afterPing >= TIMEOUT - DELIVERY_SLACK, `not before the timeout after the ping (${afterPing} ms)`);
    t.is(counters().instSsnCxnTimeoutErrors, drops0 + 1, 'the drop is counted once');
    t.is(counters().nopInPings, pings0 + 3, 'exactly three pings: no extra one while the third was pending');
  } finally {
    await tt.close();
  }
});
