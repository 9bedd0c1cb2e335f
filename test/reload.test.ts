/**
 * SIGHUP reloads the configuration file: the process stays up (it used to exit 129), an ACL change and CHAP
 * account changes (a target's, discovery's) apply to logins on every worker from then on while a session
 * already logged in goes on, a file that does not validate changes nothing, and what cannot change live is named
 * in the log. LUN and target changes: test/live-luns.test.ts.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { waitFor } from './helpers/flood';

const IQN = 'iqn.2026-11.io.nodetgt.test:reload';
const A = 'iqn.2026-11.io.nodetgt.test:a';
const B = 'iqn.2026-11.io.nodetgt.test:b';

function config(initiators: string[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    portals: ['127.0.0.1:0'],
    workers: 2,
    nopInInterval: 0,
    targets: [{ name: IQN, acl: { initiators }, luns: [{ lun: 0, backstore: 'null', size: '16M' }] }],
    ...extra,
  });
}

async function tryLogin(port: number, name: string): Promise<{ status: number; ini: TestInitiator }> {
  const ini = await TestInitiator.connect(port);
  const r = await ini.login({ targetName: IQN, initiatorName: name });
  return { status: r.status, ini };
}

test('SIGHUP: the ACL changes for new logins on every worker; sessions go on; a bad file changes nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-reload-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, config([A]));
  const c = await startChildTarget(['--config', file]);
  const lines = (re: RegExp) => (c.log().match(new RegExp(re.source, 'g')) ?? []).length;
  try {
    const a = await tryLogin(c.port, A);
    t.is(a.status, 0, 'A may log in');
    const b0 = await tryLogin(c.port, B);
    t.is(b0.status, 0x0202, 'B may not');
    b0.ini.close();

    fs.writeFileSync(file, config([B]));
    c.proc.kill('SIGHUP');
    t.true(await waitFor(() => lines(/SIGHUP: configuration reloaded/) === 1, 5000), 'reloaded');
    t.regex(c.log(), /applied="target iqn\.2026-11\.io\.nodetgt\.test:reload: acl/);
    t.notRegex(c.log(), /portals changed/, 'port 0 in the file is the port the kernel chose');
    // Two workers: both see the new ACL (four logins spread over them).
    for (let i = 0; i < 2; i++) {
      const b = await tryLogin(c.port, B);
      t.is(b.status, 0, `B may log in now (${i})`);
      const a2 = await tryLogin(c.port, A);
      t.is(a2.status, 0x0202, `A may not log in again (${i})`);
      a2.ini.close();
      b.ini.close();
    }
    t.is((await a.ini.nop(Buffer.from('on')))?.data.toString(), 'on', "A's session from before goes on");

    fs.writeFileSync(file, '{ "targets": [ }');
    c.proc.kill('SIGHUP');
    t.true(await waitFor(() => /SIGHUP: configuration not reloaded/.test(c.log()), 5000));
    t.is((await tryLogin(c.port, B)).status, 0, 'the running configuration stays');

    fs.writeFileSync(file, config([B], { queueDepth: 64 }));
    c.proc.kill('SIGHUP');
    t.true(await waitFor(() => lines(/SIGHUP: configuration reloaded/) === 2, 5000));
    t.regex(c.log(), /SIGHUP: not applied until a restart change="queueDepth changed/);
    t.true(c.alive(), 'still running after three SIGHUPs');
    a.ini.close();
  } finally {
    await c.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGHUP: CHAP accounts of a target and of discovery change live for new logins; a session logged in goes on', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-reload-'));
  const file = path.join(dir, 'config.json');
  const acct = (user: string, secret: string) => ({ incoming: [{ user, secret }] });
  const save = (auth?: unknown, discoveryAuth?: unknown) =>
    fs.writeFileSync(
      file,
      JSON.stringify({
        portals: ['127.0.0.1:0'],
        workers: 2,
        nopInInterval: 0,
        targets: [
          { name: IQN, ...(auth ? { auth } : {}), luns: [{ lun: 0, backstore: 'null', size: '16M' }] },
        ],
        ...(discoveryAuth ? { discoveryAuth } : {}),
      }),
    );
  const lines = (re: RegExp) => (c.log().match(new RegExp(re.source, 'g')) ?? []).length;
  const hup = async () => {
    const n = lines(/SIGHUP: configuration reloaded/);
    c.proc.kill('SIGHUP');
    t.true(await waitFor(() => lines(/SIGHUP: configuration reloaded/) > n, 10000), 'reloaded');
  };
  // A login that succeeds stays logged in until the end, so the next one goes to the other worker (the least
  // loaded); one that fails is closed by the target before the next begins.
  const held: TestInitiator[] = [];
  const login = async (o: Parameters<TestInitiator['login']>[0]) => {
    const ini = await TestInitiator.connect(c.port);
    const status = (await ini.login({ initiatorName: A, ...o })).status;
    if (status === 0) held.push(ini);
    else {
      await ini.closedPromise;
      await new Promise((r) => setTimeout(r, 50));
    }
    return status;
  };
  /** Worker tags ([tN]) of the log lines matching `re` since `from`. */
  const workers = (from: number, re: RegExp) =>
    new Set(
      [
        ...c
          .log()
          .slice(from)
          .matchAll(new RegExp(`\\[(t\\d+)\\] ${re.source}`, 'g')),
      ].map((m) => m[1]),
    );
  save();
  const c = await startChildTarget(['--config', file]);
  try {
    const open = await TestInitiator.connect(c.port);
    t.is((await open.login({ targetName: IQN, initiatorName: B })).status, 0, 'no CHAP yet');

    save(acct('host1', 'first-secret-1'), acct('finder', 'finder-secret-1'));
    let from = c.log().length;
    await hup();
    t.regex(c.log(), new RegExp(`applied="target ${IQN}: auth; discoveryAuth`));
    // Two workers: both have the accounts (the log says which worker answered each login).
    for (let i = 0; i < 3; i++) {
      t.is(await login({ targetName: IQN, security: true }), 0x0201, `no CHAP: refused now (${i})`);
      t.is(
        await login({ targetName: IQN, chap: { user: 'host1', secret: 'first-secret-1' } }),
        0,
        `CHAP (${i})`,
      );
      t.is(
        await login({ sessionType: 'Discovery', security: true }),
        0x0201,
        `discovery without CHAP (${i})`,
      );
      t.is(await login({ sessionType: 'Discovery', chap: { user: 'finder', secret: 'finder-secret-1' } }), 0);
    }

    t.is(workers(from, /login rejected/).size, 2, 'refusals from both workers');
    t.is(workers(from, /login peer=/).size, 2, 'logins on both workers');

    save(acct('host1', 'second-secret-2'));
    from = c.log().length;
    await hup();
    t.regex(c.log(), new RegExp(`applied="target ${IQN}: auth; discoveryAuth`));
    for (let i = 0; i < 2; i++) {
      t.is(
        await login({ targetName: IQN, chap: { user: 'host1', secret: 'first-secret-1' } }),
        0x0201,
        'old secret',
      );
      t.is(
        await login({ targetName: IQN, chap: { user: 'host1', secret: 'second-secret-2' } }),
        0,
        'new secret',
      );
    }
    t.is(await login({ sessionType: 'Discovery' }), 0, 'discovery open again');
    t.is(workers(from, /login rejected/).size, 2, 'refusals from both workers');
    t.is(workers(from, /login peer=/).size, 2, 'logins on both workers');
    t.is((await open.nop(Buffer.from('on')))?.data.toString(), 'on', 'the session from before goes on');
    open.close();
  } finally {
    for (const h of held) h.close();
    await c.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
