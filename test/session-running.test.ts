/**
 * Session.track/untrack/quiesce: what a reinstatement waits for. The engine tracks a command when its execution
 * starts and untracks it once finished (no promise reaction per command); quiesce must still wait for every
 * execution tracked and not yet untracked, and forget the untracked ones.
 */
import test from 'ava';
import { Session, type RunningCommand } from '../src/session/session';
import { defaultParams } from '../src/login/negotiator';

function session(): Session {
  return new Session(
    1,
    'iqn.2026-11.io.nodetgt.test:i',
    '000000000001',
    'Normal',
    null,
    null,
    defaultParams(),
    1,
    8,
  );
}

function command(): RunningCommand & { settle: () => void } {
  let settle!: () => void;
  const execution = new Promise<void>((r) => (settle = r));
  return { execution, settle };
}

test('quiesce is null with nothing tracked, and again once every command is untracked', (t) => {
  const s = session();
  t.is(s.quiesce(), null);
  const a = command();
  s.track(a);
  t.not(s.quiesce(), null);
  s.untrack(a);
  t.is(s.quiesce(), null);
});

test('quiesce waits for every tracked execution, settled ones included', async (t) => {
  const s = session();
  const a = command();
  const b = command();
  a.settle(); // settled but not yet finished (ERL 2 holds its result): still counted, never waited on
  s.track(a);
  s.track(b);
  let done = false;
  const q = s.quiesce()!.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  t.false(done, 'b is still executing');
  b.settle();
  await q;
  t.true(done);
});

test('a command untracked before quiesce is not waited for', async (t) => {
  const s = session();
  const stuck = command(); // e.g. finished by its engine; its promise never matters again
  const b = command();
  s.track(stuck);
  s.track(b);
  s.untrack(stuck);
  const q = s.quiesce()!;
  b.settle();
  await t.notThrowsAsync(q);
});
