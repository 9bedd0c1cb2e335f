/**
 * `nodetgt log-level` through the real CLI and the control socket of a running `nodetgt serve` with two workers:
 * the level changes in the portal and in both workers (debug lines appear from each worker's thread, info lines
 * stop at error), the change is logged with who made it, and an unknown level is refused and changes nothing.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { waitFor } from './helpers/flood';
import { run } from './helpers/run';

const IQN = 'iqn.2026-11.io.nodetgt.test:loglevel';

/** Text-format lines of the target's log after `from` characters: level, thread and message. */
function lines(c: ChildTarget, from: number): Array<{ level: string; thread: number; message: string }> {
  return [
    ...c
      .log()
      .slice(from)
      .matchAll(/^\S+ (ERROR|WARN|INFO|DEBUG) \[t(\d+)\] (.*)$/gm),
  ].map((m) => ({
    level: m[1],
    thread: Number(m[2]),
    message: m[3],
  }));
}

/**
 * Two sessions held at once (the second goes to the other worker, the one with fewer connections), ended by
 * `end`: a logout, or the operator closing them by TSIH.
 */
async function twoSessions(
  c: ChildTarget,
  end: (s: TestInitiator, tsih: number) => Promise<unknown> = (s) => s.logout(),
): Promise<void> {
  const held: Array<[TestInitiator, number]> = [];
  for (let i = 0; i < 2; i++) {
    const s = await TestInitiator.connect(c.port);
    const r = await s.login({ targetName: IQN });
    if (r.status !== 0) throw new Error(`login: status 0x${r.status.toString(16)}`);
    held.push([s, r.tsih]);
  }
  for (const [s, tsih] of held) {
    await end(s, tsih);
    s.close();
  }
}

test('nodetgt log-level changes the level of the portal and every worker at run time', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-loglevel-'));
  const c = await startChildTargetWithConfig({
    workers: 2,
    stateDir,
    logLevel: 'info',
    targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '64M' }] }],
  });
  const cli = (...args: string[]) =>
    run(process.execPath, [BIN, 'log-level', ...args, '--state-dir', stateDir]);
  try {
    const asked = await cli();
    t.is(asked.code, 0, asked.stderr);
    t.is(asked.stdout, 'log level info\n');

    // At info: the workers log each login, and not the debug line of each connection closed.
    let mark = c.log().length;
    await twoSessions(c);
    t.true(
      await waitFor(() => lines(c, mark).filter((l) => l.message.startsWith('login ')).length === 2, 5000),
    );
    t.false(
      lines(c, mark).some((l) => l.level === 'DEBUG'),
      'no debug line at info',
    );

    mark = c.log().length;
    const debug = await cli('debug');
    t.is(debug.code, 0, debug.stderr);
    t.is(debug.stdout, 'log level info -> debug\n');
    t.true(
      lines(c, mark).some(
        (l) =>
          l.thread === 0 &&
          l.level === 'INFO' &&
          l.message === 'log level changed from=info to=debug by="control socket"',
      ),
      'the portal logs the change and who made it',
    );
    // Closed by the operator: each worker logs "closing connection" at debug for the session it ends.
    await twoSessions(c, (_, tsih) =>
      run(process.execPath, [BIN, 'session', 'close', String(tsih), '--state-dir', stateDir]),
    );
    const closing = () =>
      lines(c, mark).filter((l) => l.level === 'DEBUG' && l.message.startsWith('closing connection '));
    t.true(await waitFor(() => new Set(closing().map((l) => l.thread)).size === 2, 5000));
    const threads = new Set(closing().map((l) => l.thread));
    t.false(threads.has(0), 'from the workers, not the portal');
    t.is(threads.size, 2, 'both workers log at debug now');

    mark = c.log().length;
    const error = await cli('error');
    t.is(error.stdout, 'log level debug -> error\n');
    await twoSessions(c);
    const quiet = await cli();
    t.is(quiet.stdout, 'log level error\n');
    await new Promise((r) => setTimeout(r, 300));
    const after = lines(c, mark).filter(
      (l) => l.message !== 'log level changed from=debug to=error by="control socket"',
    );
    t.deepEqual(after, [], 'nothing below error from any thread once the level is error');

    const bad = await cli('verbose');
    t.is(bad.code, 1);
    t.regex(bad.stderr, /the log level must be one of error, warn, info, debug, not "verbose"/);
    t.is((await cli()).stdout, 'log level error\n', 'unchanged');
    t.is((await run(process.execPath, [BIN, 'log-level', 'info', 'debug', '--state-dir', stateDir])).code, 2);
  } finally {
    await c.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});
