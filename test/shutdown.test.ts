/**
 * Graceful shutdown of `nodetgt serve` (SIGTERM), on a child process with a file LUN under /var/tmp:
 * - writes received before the signal complete GOOD, the session is asked to log out (Async Message,
 *   AsyncEvent 1, Parameter3 = shutdownTimeout), logs out, the target exits 0 well before its deadline, and
 *   after a restart every acknowledged write reads back;
 * - a WRITE still waiting for its Data-Out is served if the data comes during the grace period; one whose data
 *   never comes is dropped unanswered when the session goes (it was never acknowledged);
 * - a login left half done (at the portal, or on a worker) neither delays the shutdown nor stays open;
 * - a second SIGTERM closes at once; the deadline closes a session that never logs out; both say so in the log.
 *
 * What the restart shows: acknowledged data is in the file after a clean exit. That the exit's fdatasync put it
 * on stable storage only a power cut would show; nothing here fakes one (see test/durability.test.ts).
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { diskWorkspace } from './helpers/disk-workspace';
import { TestInitiator, TEST_INITIATOR } from './helpers/initiator';
import { TEST_TARGET } from './helpers/target';
import { cdb10, pattern } from './scsi-helpers';
import { AsyncEvent } from '../src/pdu/opcodes';
import { encodeLoginRequest } from '../src/pdu/serializer';
import { encodeTextData } from '../src/login/text';

const KiB = 1024;
const WRITE = 128 * KiB;
const BLOCKS = WRITE / 512;
/** Bounds that only end a hang on a loaded 2-core machine. */
const START_BOUND = 45_000;

// On disk, not tmpfs: the flush at exit is an fdatasync of a real file.
const ws = diskWorkspace('nodetgt-shutdown-');

function startChild(name: string, extra: Record<string, unknown>): Promise<ChildTarget> {
  return startChildTargetWithConfig(
    {
      workers: 1,
      stateDir: path.join(ws.dir, `${name}-state`),
      targets: [
        { name: TEST_TARGET, luns: [{ lun: 0, path: path.join(ws.dir, `${name}.img`), size: '64M' }] },
      ],
      ...extra,
    },
    { timeoutMs: START_BOUND },
  ).then((c) => {
    ws.children.push(c);
    return c;
  });
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Date.now() at the exit. */
  at: number;
}

function exitOf(c: ChildTarget): Promise<Exit> {
  if (!c.alive())
    return Promise.resolve({ code: c.proc.exitCode, signal: c.proc.signalCode, at: Date.now() });
  return new Promise((resolve) =>
    c.proc.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
}

async function session(c: ChildTarget): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(c.port);
  const r = await ini.login({ targetName: TEST_TARGET });
  if (r.status !== 0) throw new Error(`login failed: 0x${r.status.toString(16)}`);
  return ini;
}

const write = (ini: TestInitiator, i: number, hold = false) =>
  ini.start(cdb10(0x2a, i * BLOCKS, BLOCKS), {
    edtl: WRITE,
    write: true,
    data: pattern(WRITE, i + 1),
    // A held write sends 4 KiB with the command and keeps its R2T for the rest: received, waiting for data.
    immediate: hold ? 4 * KiB : 64 * KiB,
    holdData: hold,
  });

test.serial(
  'SIGTERM: received writes complete, the session is asked to log out, exit 0, data reads back',
  async (t) => {
    t.timeout(2 * START_BOUND + 60_000);
    const config = { workers: 2, shutdownTimeout: 20 };
    const c = await startChild('drain', config);
    const ini = await session(c);
    // 32 WRITEs in flight; every 8th keeps its R2T: those wait for Data-Out when the signal comes.
    const tasks = Array.from({ length: 32 }, (_, i) => write(ini, i, i % 8 === 7));
    const held = tasks.filter((_, i) => i % 8 === 7);
    const r2ts = await Promise.all(held.map((h) => h.r2t()));
    const exit = exitOf(c);
    const signalled = Date.now();
    c.proc.kill('SIGTERM');

    const msg = await ini.asyncEvent(AsyncEvent.LogoutRequest, 10_000);
    t.truthy(msg, `an Async Message asking for a logout; log:\n${c.log()}`);
    t.is(msg?.parameter3, 20, 'Parameter3: the seconds the initiator has to log out');
    const full = tasks.filter((_, i) => i % 8 !== 7);
    const results = await Promise.all(full.map((x) => x.done));
    t.true(
      results.every((r) => r.status === 0),
      'every write received before the signal completes GOOD',
    );
    // The session is still served during the grace period: two held writes get their data and complete.
    held[0].answer(r2ts[0]);
    held[1].answer(r2ts[1]);
    t.is((await held[0].done).status, 0);
    t.is((await held[1].done).status, 0);
    const unanswered = [held[2].done, held[3].done].map((p) =>
      p.then(
        () => 'answered',
        () => 'dropped',
      ),
    );
    const lo = await ini.logout();
    t.is(lo.bhs[2], 0, 'logout response: success');
    t.deepEqual(await Promise.all(unanswered), ['dropped', 'dropped'], 'writes whose data never came');
    const e = await exit;
    t.is(e.code, 0, c.log());
    t.true(
      e.at - signalled < 10_000,
      `exited ${e.at - signalled} ms after SIGTERM, not at the 20 s deadline`,
    );
    const log = c.log();
    t.regex(log, /shutdown: not accepting connections, sessions asked to log out sessionsNotified=1 /);
    t.regex(log, /shutdown: every session has ended/);
    t.regex(log, /shutdown: backstores flushed flushed=2 failed=0/); // one LU on each of the 2 workers
    ini.close();

    const again = await startChild('drain', config);
    const check = await session(again);
    for (const i of [...Array(32).keys()].filter((i) => i % 8 !== 7 || i === 7 || i === 15)) {
      const r = await check.scsi(cdb10(0x28, i * BLOCKS, BLOCKS), { edtl: WRITE, read: true });
      t.true(r.data.equals(pattern(WRITE, i + 1)), `write ${i} reads back after the restart`);
    }
    await check.logout();
    check.close();
    await again.stop('SIGTERM');
  },
);

test.serial('a login left half done neither delays the shutdown nor stays open', async (t) => {
  t.timeout(START_BOUND + 30_000);
  // A long login timeout: before the fix, the shutdown waited for it (the portal's listener did).
  const c = await startChild('login', { shutdownTimeout: 10, limits: { loginTimeout: 60 } });
  // One connection sends nothing: the portal is still waiting for its first Login PDU.
  const silent = net.connect(c.port, '127.0.0.1');
  silent.on('error', () => undefined);
  const silentClosed = new Promise<void>((r) => silent.once('close', () => r()));
  // Another is in the security stage on a worker: its first Login PDU asked to stay there (T=0).
  const half = await TestInitiator.connect(c.port);
  half.send(
    encodeLoginRequest({
      transit: false,
      continue: false,
      csg: 0,
      nsg: 1,
      isid: Buffer.from([0x80, 0, 0, 0, 0, 9]),
      itt: 1,
      cid: 0,
      cmdSN: 1,
      expStatSN: 0,
    }),
    encodeTextData([
      ['InitiatorName', TEST_INITIATOR],
      ['SessionType', 'Normal'],
      ['TargetName', TEST_TARGET],
      ['AuthMethod', 'None'],
    ]),
  );
  t.truthy(await half.next(10_000), 'the worker answered the first login PDU');
  await new Promise((r) => setTimeout(r, 200)); // the silent one is surely accepted by now
  const exit = exitOf(c);
  const signalled = Date.now();
  c.proc.kill('SIGTERM');
  const e = await exit;
  t.is(e.code, 0, c.log());
  t.true(e.at - signalled < 5000, `exited ${e.at - signalled} ms after SIGTERM`);
  await silentClosed;
  await half.closedPromise;
  t.regex(c.log(), /sessionsNotified=0 loginsClosed=2 /);
  half.close();
});

test.serial('a second SIGTERM closes at once, still flushing; the session hears it is dropped', async (t) => {
  t.timeout(START_BOUND + 30_000);
  const c = await startChild('second', { shutdownTimeout: 60 });
  const ini = await session(c);
  t.is((await write(ini, 0).done).status, 0);
  const held = write(ini, 1, true);
  await held.r2t();
  const exit = exitOf(c);
  c.proc.kill('SIGTERM');
  t.truthy(await ini.asyncEvent(AsyncEvent.LogoutRequest, 10_000), 'asked to log out');
  // This initiator does not log out: a second signal, and the target must not wait the 60 s.
  const second = Date.now();
  c.proc.kill('SIGTERM');
  const e = await exit;
  t.is(e.code, 0, c.log());
  t.true(e.at - second < 3000, `exited ${e.at - second} ms after the second SIGTERM`);
  await ini.closedPromise;
  const drop = ini.asyncMessages.find((m) => m.asyncEvent === AsyncEvent.SessionDrop);
  t.truthy(drop, 'AsyncEvent 3: the target drops the session');
  t.is(drop?.parameter2, 0, 'Time2Retain 0: nothing is kept');
  await t.throwsAsync(held.done);
  const log = c.log();
  t.regex(log, /second signal: closing at once/);
  t.regex(log, /shutdown: closing at once seconds=\S+ sessionsOpen=1 commandsDropped=1/);
  t.regex(log, /shutdown: backstores flushed flushed=1 failed=0/);
  // The acknowledged write is in the file (read directly: the target is gone).
  const got = Buffer.alloc(WRITE);
  const fd = fs.openSync(path.join(ws.dir, 'second.img'), 'r');
  fs.readSync(fd, got, 0, WRITE, 0);
  fs.closeSync(fd);
  t.true(got.equals(pattern(WRITE, 1)));
  ini.close();
});

test.serial('the deadline closes a session that never logs out, with a log line', async (t) => {
  t.timeout(START_BOUND + 30_000);
  const c = await startChild('deadline', { shutdownTimeout: 2 });
  const ini = await session(c);
  const held = write(ini, 0, true);
  await held.r2t();
  const exit = exitOf(c);
  const signalled = Date.now();
  c.proc.kill('SIGTERM');
  const msg = await ini.asyncEvent(AsyncEvent.LogoutRequest, 10_000);
  t.is(msg?.parameter3, 2);
  // Still served meanwhile: a NOP-Out is answered.
  await ini.nop();
  const e = await exit;
  t.is(e.code, 0, c.log());
  const ms = e.at - signalled;
  t.true(ms >= 1900 && ms < 8000, `exited ${ms} ms after SIGTERM (deadline 2 s)`);
  await t.throwsAsync(held.done);
  t.regex(
    c.log(),
    /shutdown: deadline reached, closing the sessions still open seconds=\S+ sessionsOpen=1 commandsDropped=1/,
  );
  ini.close();
});
