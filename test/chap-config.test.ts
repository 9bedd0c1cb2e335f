/**
 * CHAP configuration and its safety nets: auth/discoveryAuth normalisation (empty secrets refused, no secret in
 * any message), start-up warnings (short secrets, a readable config file, the loopback-only default), and the
 * per-address limiter of authentication failures.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { normalizeConfig, defaultConfigObject, LOOPBACK_NETWORKS } from '../src/config/schema';
import { accessWarnings, buildConfig, parseServeArgs } from '../src/cli/main';
import { AuthFailureLimiter } from '../src/portal/auth-limit';
import { aclAllows } from '../src/config/acl';

const target = (auth: unknown) => ({
  targets: [
    { name: 'iqn.2026-11.io.nodetgt.test:a', luns: [{ lun: 0, backstore: 'null', size: '1M' }], auth },
  ],
});

test('auth: accounts kept as written; empty secret refused without quoting anything secret', (t) => {
  const c = normalizeConfig({
    ...target({
      incoming: [{ user: 'u', secret: 'long-enough-secret' }],
      outgoing: { user: 't', secret: 'x' },
    }),
    discoveryAuth: { incoming: [{ user: 'd', secret: 'disc-secret-123' }] },
  });
  t.deepEqual(c.targets[0].auth, {
    incoming: [{ user: 'u', secret: 'long-enough-secret' }],
    outgoing: { user: 't', secret: 'x' },
  });
  t.is(c.discoveryAuth?.incoming[0].user, 'd');
  t.throws(() => normalizeConfig(target({ incoming: [{ user: 'u', secret: '' }] })), {
    message: /must not be empty/,
  });
  t.throws(() => normalizeConfig(target({ incoming: [] })), { message: /incoming/ });
  t.throws(() => normalizeConfig(target({ incoming: [{ user: 'u', secret: 'sec-ret-xyz-1', pw: 1 }] })), {
    message: /unknown setting 'pw'/,
  });
  const e = t.throws(() =>
    normalizeConfig(
      target({
        incoming: [
          { user: 'u', secret: 'sec-ret-xyz-1' },
          { user: 'u', secret: 'q-1' },
        ],
      }),
    ),
  );
  t.false(e!.message.includes('sec-ret-xyz-1'));
});

test('start-up warnings: short secrets, config readable by others, loopback-only default', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-chapcfg-'));
  try {
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify(target({ incoming: [{ user: 'u', secret: 'short-1' }] })));
    fs.chmodSync(file, 0o644);
    const args = parseServeArgs(['--config', file]);
    const w = accessWarnings(args, buildConfig(args));
    t.true(w.some((s) => /shorter than 12/.test(s)));
    t.true(w.some((s) => /readable by group or others/.test(s)));
    t.false(w.some((s) => s.includes('short-1')));
    fs.chmodSync(file, 0o600);
    t.false(accessWarnings(args, buildConfig(args)).some((s) => /readable/.test(s)));
    const none = parseServeArgs(['--lun', 'null:1M', '--state-dir', dir]);
    const d = buildConfig(none);
    t.deepEqual(d.targets[0].acl.networks, LOOPBACK_NETWORKS);
    t.true(accessWarnings(none, d).some((s) => /only initiators on this host/.test(s)));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the embedded default lets loopback in and nothing else', (t) => {
  const acl = normalizeConfig(defaultConfigObject()).targets[0].acl;
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1'])
    t.true(aclAllows(acl, 'iqn.x', a), a);
  for (const a of ['192.0.2.1', '10.0.0.1', '2001:db8::1']) t.false(aclAllows(acl, 'iqn.x', a), a);
});

test('limiter: blocks at the limit within the window, for the block time; other addresses untouched', (t) => {
  let now = 0;
  const l = new AuthFailureLimiter(3, 1000, 5000, () => now);
  t.false(l.failed('a'));
  now = 500;
  t.false(l.failed('a'));
  now = 1400; // the first failure has left the window
  t.false(l.failed('a'));
  t.false(l.blocked('a'));
  t.true(l.failed('a'));
  t.true(l.blocked('a'));
  t.false(l.blocked('b'));
  t.is(l.blockedCount(), 1);
  now = 1400 + 5000;
  t.false(l.blocked('a'));
  t.is(l.blockedCount(), 0);
});
