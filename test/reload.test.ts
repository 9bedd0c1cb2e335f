/**
 * SIGHUP reloads the configuration file: the process stays up (it used to exit 129), an ACL change applies to
 * logins on every worker from then on while a session already logged in goes on, a file that does not
 * validate changes nothing, and what cannot change live is named in the log.
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
    t.regex(c.log(), /applied=target iqn\.2026-11\.io\.nodetgt\.test:reload: acl/);
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
    t.regex(c.log(), /SIGHUP: not applied until a restart change=queueDepth changed/);
    t.true(c.alive(), 'still running after three SIGHUPs');
    a.ini.close();
  } finally {
    await c.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
