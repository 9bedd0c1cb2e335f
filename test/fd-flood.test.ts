/**
 * Running out of file descriptors, in a real `nodetgt serve` process under a low RLIMIT_NOFILE: idle
 * connections flood the portal, then logins are tried. The process must survive, count the refusals, keep
 * the session it already serves, and let a new session in once the flood has gone.
 */
import test from 'ava';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { flood, idleConnection, tryLogin, waitFor, type IdleConnection } from './helpers/flood';

const IQN = 'iqn.2026-11.io.nodetgt.test:flood';
const NOFILE = 256;
const FLOOD = 400;

function config(fdHeadroom: number): Record<string, unknown> {
  return {
    workers: 2,
    targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '64M' }] }],
    // Admission limits out of the way: this is about descriptors (loginTimeout keeps the flood idle).
    limits: {
      maxConnections: 100000,
      maxPendingLogins: 4096,
      maxPendingLoginsPerAddress: 4096,
      loginTimeout: 600,
      fdHeadroom,
    },
  };
}

async function recover(
  c: ChildTarget,
  idle: IdleConnection[],
): Promise<{ ms: number; ini: TestInitiator | null }> {
  for (const i of idle) i.socket.destroy();
  const t0 = Date.now();
  let ini: TestInitiator | null = null;
  await waitFor(async () => {
    const r = await tryLogin(c.port, IQN);
    ini = r.ini;
    return r.result === 0;
  }, 20000);
  return { ms: Date.now() - t0, ini };
}

test.serial('fd flood with headroom: the last descriptors are refused at accept and counted', async (t) => {
  const c = await startChildTargetWithConfig(config(32), { nofile: NOFILE });
  try {
    const healthy = await TestInitiator.connect(c.port);
    t.is((await healthy.login({ targetName: IQN })).status, 0);
    const fdsIdle = c.openFds();
    const idle = await flood(c.port, FLOOD);
    await waitFor(() => false, 1000);
    const refusedSeen = idle.filter((i) => i.closed).length;
    const fdsAtFlood = c.openFds();
    t.true(c.alive(), 'the process is up');
    t.true(fdsAtFlood <= NOFILE, `${fdsAtFlood} descriptors`);
    t.true(refusedSeen > 0, 'some of the flood was refused');
    const during = await tryLogin(c.port, IQN);
    t.is(during.result, 'closed', 'a login while flooded is refused');
    const p = await healthy.nop(Buffer.from('during'));
    t.is(p?.data.toString(), 'during', 'the existing session works while flooded');
    const m = await c.metrics(); // the headroom leaves room for a scrape
    t.is(m.nodetgt_cxn_refused_total, refusedSeen + 1, 'every refusal is counted');
    t.is(m.nodetgt_fd_exhausted_total, 0, 'the headroom kept EMFILE away');
    const { ms, ini } = await recover(c, idle);
    t.truthy(ini, 'a new session logs in after the flood');
    t.log(
      `RLIMIT_NOFILE ${NOFILE}: ${fdsIdle} fds before, ${fdsAtFlood} at flood; ${refusedSeen} of ${FLOOD} idle ` +
        `connections refused (cxnRefused ${m.nodetgt_cxn_refused_total}); new login ${ms} ms after the flood left`,
    );
    t.is((await healthy.nop(Buffer.from('after')))?.data.toString(), 'after');
    ini?.close();
    healthy.close();
    t.true(c.alive());
  } finally {
    await c.stop();
  }
});

test.serial(
  'fd flood to EMFILE (no headroom): a login then is answered Out of Resources; nothing dies',
  async (t) => {
    const c = await startChildTargetWithConfig(config(0), { nofile: NOFILE });
    try {
      const healthy = await TestInitiator.connect(c.port);
      t.is((await healthy.login({ targetName: IQN })).status, 0);
      const idle = await flood(c.port, FLOOD);
      await waitFor(() => false, 1000);
      // The flood's last connections may still wait in the listen backlog (they hold no descriptor until
      // accepted): on a loaded machine, give the accepts up to 5 s more to fill the table.
      await waitFor(() => c.openFds() >= NOFILE - 4, 5000);
      // A flood connection turned away before its accept (the backlog full on a loaded machine: the clean-clone
      // CI once saw 251 in use) holds no descriptor: top the flood up until the table is full.
      for (let i = 0; i < 20 && c.openFds() < NOFILE - 4; i++) {
        const extra = await idleConnection(c.port);
        if (!extra.closed) idle.push(extra);
        await waitFor(() => c.openFds() >= NOFILE - 4, 500);
      }
      const open = idle.filter((i) => !i.closed);
      const fdsAtFlood = c.openFds();
      // Every descriptor is in use but for the portal's reserve of 4 (/dev/null), which it gives back one at
      // a time when accept() fails with EMFILE and takes again at the next connection: 252..256 are all "full".
      t.true(fdsAtFlood >= NOFILE - 4 && fdsAtFlood <= NOFILE, `${fdsAtFlood} descriptors in use`);
      t.true(c.alive());
      t.is((await healthy.nop(Buffer.from('during')))?.data.toString(), 'during');
      // How many descriptors are free when the flood ends depends on whether its last event was an accept or an
      // accept that failed (which gives one back from the reserve), and a client socket still in the listen
      // backlog holds none; under load it varies. Bring it to exactly one free: close idle connections while
      // none is, open more while several are (each accepted one holds one), and let it settle in between.
      const extras: IdleConnection[] = [];
      const counts: number[] = [];
      let settled = false;
      for (let i = 0; i < 30 && !settled; i++) {
        await waitFor(() => false, 200);
        const n = c.openFds();
        counts.push(n);
        if (n === NOFILE - 1) settled = true;
        else if (n >= NOFILE) {
          open.pop()!.socket.destroy();
          await waitFor(() => c.openFds() < n, 1000);
        } else {
          const extra = await idleConnection(c.port);
          if (!extra.closed) {
            open.push(extra);
            extras.push(extra);
          }
          await waitFor(() => extra.closed || c.openFds() > n, 1000);
        }
      }
      t.true(settled, `one descriptor free before the first attempt (in use: ${counts.join(' ')})`);
      const outcomes: Array<number | 'closed'> = [];
      const t0 = Date.now();
      // The accept takes the last descriptor and the hand-over's dup fails.
      let { result, ini } = await tryLogin(c.port, IQN);
      outcomes.push(result);
      t.true(c.alive(), 'the process survives the attempt');
      // Then one descriptor more at a time until logins succeed again.
      while (open.length && !ini) {
        open.pop()!.socket.destroy();
        await waitFor(() => false, 150);
        ({ result, ini } = await tryLogin(c.port, IQN));
        outcomes.push(result);
        t.true(c.alive(), 'the process survives every attempt');
      }
      t.log(
        `descriptors in use while settling: ${counts.join(' ')}; login attempts, the first with one descriptor free, then after freeing one more each: ${outcomes.map((o) => (typeof o === 'number' ? `0x${o.toString(16)}` : o)).join(' ')}`,
      );
      t.is(outcomes[0], 0x0302, 'a login at EMFILE is answered with Out of Resources (0x0302)');
      t.truthy(ini, 'logins succeed again as descriptors come back');
      // With no headroom even a scrape has no descriptor until the flood goes.
      const { ms, ini: after } = await recover(c, [...idle, ...extras]);
      t.truthy(after);
      const m = await c.metrics();
      t.true(m.nodetgt_fd_exhausted_total >= 1, 'EMFILE counted');
      t.log(
        `${fdsAtFlood} fds at flood, ${FLOOD + extras.length - open.length - outcomes.length} flood connections refused at accept ` +
          `(libuv, uncounted), ${extras.length} idle ones added to fill up, fdExhausted ${m.nodetgt_fd_exhausted_total}; first login ${Date.now() - t0} ms after ` +
          `descriptors began to free, another ${ms} ms after the flood left`,
      );
      t.true((c.log().match(/out of file descriptors/g) ?? []).length >= 1, 'logged');
      t.is((await healthy.nop(Buffer.from('after')))?.data.toString(), 'after');
      ini?.close();
      after?.close();
      healthy.close();
      t.true(c.alive());
    } finally {
      await c.stop();
    }
  },
);
