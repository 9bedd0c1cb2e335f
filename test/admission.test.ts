/**
 * Admission against the real target: pending logins are limited globally and per source address (idle
 * connections and logins still under way on a worker both count), refusals are counted, a login that does
 * not finish in time is dropped, and a session already logged in never notices.
 */
import test from 'ava';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { flood, halfLogin, idleConnection, tryLogin, waitFor } from './helpers/flood';
import { readCounters } from '../src/metrics/counters';

test('the N+1th pending login is refused, per address and globally; a session goes on', async (t) => {
  const tt = await startTestTarget({
    workers: 2,
    extra: { limits: { maxPendingLogins: 6, maxPendingLoginsPerAddress: 3, loginTimeout: 60 } },
  });
  const counter = (n: string) => (readCounters(tt.target.counters).total as Record<string, number>)[n];
  try {
    const healthy = await TestInitiator.connect(tt.port);
    t.is((await healthy.login({ targetName: TEST_TARGET })).status, 0);
    t.is(tt.target.admitted().pending, 0, 'a logged-in session holds no pending slot');

    // 127.0.0.1: two idle connections and one login still under way on a worker = 3 pending.
    const idle = await flood(tt.port, 2);
    const half = await TestInitiator.connect(tt.port);
    half.sendRaw(halfLogin(TEST_TARGET, 'iqn.2026-11.io.nodetgt.test:half'));
    const answer = await half.next();
    t.is(answer?.opcode, 0x23, 'the half login got its first Login Response and stays in login');
    t.true(await waitFor(() => tt.target.admitted().pending === 3, 3000), 'three pending');
    const fourth = await idleConnection(tt.port);
    t.true(await waitFor(() => fourth.closed, 3000), 'the fourth from the same address is closed');
    t.is(counter('cxnRefused'), 1);

    // 127.0.0.2 has room of its own, until the global limit (6).
    const other = await flood(tt.port, 3, '127.0.0.2');
    t.true(await waitFor(() => tt.target.admitted().pending === 6, 3000), 'six pending');
    t.false(
      other.some((c) => c.closed),
      'three from another address are admitted',
    );
    const seventh = await idleConnection(tt.port, '127.0.0.3');
    t.true(await waitFor(() => seventh.closed, 3000), 'a seventh, from a third address, is closed');
    t.is(counter('cxnRefused'), 2);
    t.false(
      [...idle, ...other].some((c) => c.closed),
      'the admitted ones are still open',
    );

    const p = await healthy.nop(Buffer.from('still here'));
    t.is(p?.data.toString(), 'still here', 'the existing session is unaffected');

    // Once they go, logins are admitted again, and a finished login frees its slot.
    for (const c of [...idle, ...other]) c.socket.destroy();
    half.close();
    t.true(await waitFor(() => tt.target.admitted().pending === 0, 5000), 'slots freed');
    const fresh = await tryLogin(tt.port, TEST_TARGET);
    t.is(fresh.result, 0);
    t.is(tt.target.admitted().pending, 0);
    t.is(tt.target.admitted().total, 2, 'two sessions admitted');
    fresh.ini?.close();
    healthy.close();
  } finally {
    await tt.close();
  }
});

test('a login that does not complete in loginTimeout is dropped, before and after the hand-over', async (t) => {
  const tt = await startTestTarget({ workers: 1, extra: { limits: { loginTimeout: 2 } } });
  const counter = (n: string) => (readCounters(tt.target.counters).total as Record<string, number>)[n];
  try {
    const healthy = await TestInitiator.connect(tt.port);
    t.is((await healthy.login({ targetName: TEST_TARGET })).status, 0);
    const start = Date.now();
    const [idle] = await flood(tt.port, 1);
    const half = await TestInitiator.connect(tt.port);
    half.sendRaw(halfLogin(TEST_TARGET, 'iqn.2026-11.io.nodetgt.test:half'));
    t.is((await half.next())?.opcode, 0x23);
    t.true(await waitFor(() => idle.closed && half.closed, 8000), 'both dropped');
    const took = Date.now() - start;
    t.log(`dropped after ${took} ms (loginTimeout 2 s)`);
    t.true(took >= 1900, 'not before the timeout');
    t.is(counter('instSsnFormatErrors'), 1, 'no login PDU: counted by the portal');
    t.is(counter('instSsnCxnTimeoutErrors'), 1, 'login not finished: counted by the worker');
    t.true(await waitFor(() => tt.target.admitted().pending === 0, 3000));
    const p = await healthy.nop(Buffer.from('x'));
    t.is(p?.data.toString(), 'x');
    healthy.close();
  } finally {
    await tt.close();
  }
});

test('total connections are limited: the one over maxConnections is closed and counted', async (t) => {
  const tt = await startTestTarget({ workers: 1, extra: { limits: { maxConnections: 2 } } });
  const counter = (n: string) => (readCounters(tt.target.counters).total as Record<string, number>)[n];
  try {
    const a = await tryLogin(tt.port, TEST_TARGET);
    const b = await tryLogin(tt.port, TEST_TARGET);
    t.is(a.result, 0);
    t.is(b.result, 0);
    const c = await tryLogin(tt.port, TEST_TARGET);
    t.is(c.result, 'closed');
    t.is(counter('cxnRefused'), 1);
    t.is((await a.ini!.nop(Buffer.from('a')))?.data.toString(), 'a');
    a.ini!.close();
    await a.ini!.closedPromise;
    t.true(await waitFor(() => tt.target.admitted().total === 1, 3000));
    const d = await tryLogin(tt.port, TEST_TARGET);
    t.is(d.result, 0, 'room again once one has gone');
    b.ini!.close();
    d.ini!.close();
  } finally {
    await tt.close();
  }
});
