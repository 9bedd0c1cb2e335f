/**
 * `nodetgt target|lun|acl|account` against a real `nodetgt serve` child: an ACL or CHAP change takes effect for
 * the next logins on every worker and is written to the config file (0600 once it holds a secret), so a
 * restart from the file serves the same; targets and LUNs are added, resized and removed live, seen by a session
 * already logged in (unit attentions, REPORT LUNS, READ CAPACITY); --save-only writes without applying; usage
 * errors exit 2; a target started without a config file changes live only and says so.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, startChildTarget, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import type { ChapCredentials } from './helpers/chap-initiator';
import { capacity, drainUnitAttentions, read, reportLuns, senseOf, write } from './helpers/live';

const IQN = 'iqn.2026-11.io.nodetgt.test:change';
const A = 'iqn.2026-11.io.nodetgt.test:a';
const B = 'iqn.2026-11.io.nodetgt.test:b';
const ALICE = { user: 'alice', secret: 'alice-secret-1234' };
const BOB = { user: 'bob', secret: 'bob-secret-56789' };

interface Setup {
  dir: string;
  file: string;
  c: ChildTarget;
}

function configText(targetExtra: Record<string, unknown> = {}): string {
  const config = {
    portals: ['127.0.0.1:0'],
    workers: 2,
    nopInInterval: 0,
    targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '16M' }], ...targetExtra }],
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

async function setup(text: string): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-change-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, text, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  return { dir, file, c: await startChildTarget(['--config', file]) };
}

async function teardown(s: Setup): Promise<void> {
  await s.c.stop();
  fs.rmSync(s.dir, { recursive: true, force: true });
}

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, input });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The login status: 0 accepted, 0x0202 not allowed (ACL), 0x0201 authentication failed. */
async function login(port: number, initiatorName: string, chap?: ChapCredentials): Promise<number> {
  const ini = await TestInitiator.connect(port);
  try {
    return (await ini.login({ targetName: IQN, initiatorName, ...(chap ? { chap } : {}) })).status;
  } finally {
    ini.close();
  }
}

/** Twice: with two workers, both see the change (the portal spreads new sessions over them). */
async function loginTwice(port: number, name: string, chap?: ChapCredentials): Promise<number[]> {
  return [await login(port, name, chap), await login(port, name, chap)];
}

const fileDoc = (file: string) =>
  JSON.parse(fs.readFileSync(file, 'utf8')) as { targets: Array<Record<string, unknown>> } & Record<
    string,
    unknown
  >;

test.serial(
  'acl add/remove: new logins follow on every worker; written to the file; a restart keeps it',
  async (t) => {
    let s = await setup(configText({ acl: { initiators: [A] } }));
    try {
      t.deepEqual(await loginTwice(s.c.port, B), [0x0202, 0x0202], 'B not allowed yet');
      const add = cli(['acl', 'add', IQN, '--initiator', B, '--config', s.file]);
      t.is(add.status, 0, add.stderr);
      t.regex(add.stdout, /added to the ACL.*\napplied live: target .*: acl\nsaved to /);
      t.deepEqual(await loginTwice(s.c.port, B), [0, 0], 'B may log in now');
      const rm = cli(['acl', 'remove', IQN, '--initiator', A, '--config', s.file]);
      t.is(rm.status, 0, rm.stderr);
      t.deepEqual(await loginTwice(s.c.port, A), [0x0202, 0x0202], 'A may not any more');
      t.deepEqual(fileDoc(s.file).targets[0].acl, { initiators: [B] });
      t.is(fs.statSync(s.file).mode & 0o777, 0o644, 'no secret in it: the mode stays');
      const last = cli(['acl', 'remove', IQN, '--initiator', B, '--config', s.file]);
      t.is(last.status, 1, 'the last entry would open the target');
      t.regex(last.stderr, /any initiator.*--force/);
      const dup = cli(['acl', 'add', IQN, '--initiator', B, '--config', s.file]);
      t.is(dup.status, 1);
      t.regex(dup.stderr, /already/);

      await s.c.stop();
      s = { ...s, c: await startChildTarget(['--config', s.file]) };
      t.is(await login(s.c.port, B), 0, 'after a restart from the file: B allowed');
      t.is(await login(s.c.port, A), 0x0202, 'A still not');
    } finally {
      await teardown(s);
    }
  },
);

test.serial(
  'account add (secret from stdin) and bind: CHAP login works; unbind: refused; file 0600, no secret shown',
  async (t) => {
    const s = await setup(configText());
    try {
      const add = cli(['account', 'add', 'alice', '--config', s.file], `${ALICE.secret}\n`);
      t.is(add.status, 0, add.stderr);
      t.notRegex(add.stdout + add.stderr, /alice-secret/);
      const secretFile = path.join(s.dir, 'bob.secret');
      fs.writeFileSync(secretFile, `${BOB.secret}\n`);
      t.is(cli(['account', 'add', 'bob', '--secret-file', secretFile, '--config', s.file]).status, 0);
      t.is(fs.statSync(s.file).mode & 0o777, 0o600, 'holds secrets now: 0600');
      t.is(await login(s.c.port, A), 0, 'not bound yet: no CHAP asked');

      for (const u of ['alice', 'bob']) {
        const bind = cli(['account', 'bind', u, IQN, '--config', s.file]);
        t.is(bind.status, 0, bind.stderr);
      }
      t.deepEqual(await loginTwice(s.c.port, A, ALICE), [0, 0], 'CHAP as alice');
      t.deepEqual(await loginTwice(s.c.port, A), [0x0201, 0x0201], 'without CHAP: refused');
      t.is(await login(s.c.port, A, { ...ALICE, secret: 'wrong-secret-000' }), 0x0201);

      const shown = cli(['show', 'accounts', '--json', '--config', s.file]);
      t.is(shown.status, 0, shown.stderr);
      t.notRegex(shown.stdout, /secret/);
      t.deepEqual(JSON.parse(shown.stdout), [
        { scope: IQN, user: 'alice', direction: 'incoming' },
        { scope: IQN, user: 'bob', direction: 'incoming' },
      ]);

      const unbind = cli(['account', 'unbind', 'alice', IQN, '--config', s.file]);
      t.is(unbind.status, 0, unbind.stderr);
      t.deepEqual(await loginTwice(s.c.port, A, ALICE), [0x0201, 0x0201], 'alice refused once unbound');
      t.is(await login(s.c.port, A, BOB), 0, 'bob still in');
      const doc = fileDoc(s.file);
      t.deepEqual(doc.targets[0].auth, { incoming: ['bob'] });
      t.deepEqual(doc.accounts, [ALICE, BOB]);
      t.is(fs.statSync(s.file).mode & 0o777, 0o600);

      const removeBound = cli(['account', 'remove', 'bob', '--config', s.file]);
      t.is(removeBound.status, 1);
      t.regex(removeBound.stderr, /bound to target .*unbind it first/);
      t.is(cli(['account', 'remove', 'alice', '--config', s.file]).status, 0);
      const empty = cli(['account', 'add', 'carol', '--config', s.file], '\n');
      t.is(empty.status, 1);
      t.regex(empty.stderr, /empty CHAP secret refused/);
      const short = cli(['account', 'add', 'dave', '--config', s.file], 'short\n');
      t.is(short.status, 0);
      t.regex(short.stderr, /warning: the secret of dave is shorter than 12/);
      t.notRegex(s.c.log(), /secret-|short\b/, 'no secret in the log');
    } finally {
      await teardown(s);
    }
  },
);

test.serial(
  'targets and LUNs live: add, resize, remove (refused in use, forced done); sessions see it; the file follows',
  async (t) => {
    let s = await setup(configText({ acl: { initiators: [A] } }));
    const ini = await TestInitiator.connect(s.c.port);
    try {
      t.is((await ini.login({ targetName: IQN, initiatorName: A })).status, 0);
      t.deepEqual(await reportLuns(ini), [0]);

      const add = cli(['lun', 'add', IQN, '--null', '--size', '8MiB', '--config', s.file]);
      t.is(add.status, 0, add.stderr);
      t.regex(add.stdout, /LUN 1 added.*\napplied live: target .*: LUN 1 added\nsaved to /);
      t.deepEqual(await drainUnitAttentions(ini, 0), ['06/3f/0e'], 'REPORTED LUNS DATA HAS CHANGED');
      t.deepEqual(await reportLuns(ini), [0, 1], 'the running session sees LUN 1');
      t.is(await capacity(ini, 1), 8 * 1024 * 1024);

      const img = path.join(s.dir, 'disk5.img');
      const file5 = cli(['lun', 'add', IQN, '--lun', '5', '--path', img, '--size', '4M', '--config', s.file]);
      t.is(file5.status, 0, file5.stderr);
      t.is(fs.statSync(img).size, 4 * 1024 * 1024, 'provisioned sparse at its size');
      t.is((await write(ini, 5, 0, Buffer.alloc(4096, 0x5a))).status, 0, 'the new file LUN takes a write');

      const grow = cli(['lun', 'resize', IQN, '5', '8M', '--config', s.file]);
      t.is(grow.status, 0, grow.stderr);
      t.deepEqual(await drainUnitAttentions(ini, 5), ['06/2a/09'], 'CAPACITY DATA HAS CHANGED');
      t.is(await capacity(ini, 5), 8 * 1024 * 1024);
      t.is(fs.statSync(img).size, 8 * 1024 * 1024);
      t.regex(cli(['lun', 'resize', IQN, '5', '4M', '--config', s.file]).stderr, /shrink.*--force/);

      // In use: a session is logged in to the target.
      const busy = cli(['lun', 'remove', IQN, '5', '--config', s.file]);
      t.is(busy.status, 1, 'a LUN in use is not removed without --force');
      t.regex(busy.stderr, /--force/);
      t.deepEqual(await reportLuns(ini), [0, 1, 5]);
      const forced = cli(['lun', 'remove', IQN, '5', '--force', '--config', s.file]);
      t.is(forced.status, 0, forced.stderr);
      t.deepEqual(await drainUnitAttentions(ini, 0), ['06/3f/0e']);
      t.deepEqual(await reportLuns(ini), [0, 1]);
      t.is(senseOf(await read(ini, 5, 0, 1)), '05/25/00', 'LOGICAL UNIT NOT SUPPORTED afterwards');

      const NEW = 'iqn.2026-11.io.nodetgt.test:new';
      const tadd = cli(['target', 'add', NEW, '--config', s.file]);
      t.is(tadd.status, 0, tadd.stderr);
      t.regex(tadd.stderr, /no ACL and no CHAP yet/);
      const lnew = cli(['lun', 'add', NEW, '--null', '--size', '8M', '--config', s.file]);
      t.is(lnew.status, 0, lnew.stderr);
      const other = await TestInitiator.connect(s.c.port);
      t.is((await other.login({ targetName: NEW, initiatorName: B })).status, 0, 'the new target serves');
      t.deepEqual(await reportLuns(other), [0]);
      other.close();
      const trm = cli(['target', 'remove', NEW, '--config', s.file]);
      t.is(trm.status, 0, trm.stderr);
      t.is(await login(s.c.port, B), 0x0202, 'the original target still refuses B');
      // LUN 1 was there through LUN 5's removal: it reports the inventory change once, then serves.
      t.deepEqual(await drainUnitAttentions(ini, 1), ['06/3f/0e']);
      t.is((await read(ini, 1, 0, 1)).status, 0, 'the first session went on through all of it');
      t.regex(cli(['target', 'remove', IQN, '--config', s.file]).stderr, /only target/);

      const doc = fileDoc(s.file);
      t.deepEqual(
        doc.targets.map((x) => x.name),
        [IQN],
      );
      t.deepEqual(doc.targets[0].luns, [
        { lun: 0, backstore: 'null', size: '16M' },
        { lun: 1, backstore: 'null', size: '8MiB' },
      ]);
      ini.close();
      await s.c.stop();
      s = { ...s, c: await startChildTarget(['--config', s.file]) };
      const again = await TestInitiator.connect(s.c.port);
      t.is((await again.login({ targetName: IQN, initiatorName: A })).status, 0);
      t.deepEqual(await reportLuns(again), [0, 1], 'a restart from the file comes back the same');
      again.close();
    } finally {
      ini.close();
      await teardown(s);
    }
  },
);

test.serial('--save-only writes the file without applying; the running target is unchanged', async (t) => {
  const s = await setup(configText({ acl: { initiators: [A] } }));
  try {
    const saved = cli(['lun', 'add', IQN, '--null', '--size', '8M', '--save-only', '--config', s.file]);
    t.is(saved.status, 0, saved.stderr);
    t.regex(saved.stdout, /LUN 1 added.*\nnot applied now.*\nsaved to /);
    t.deepEqual(fileDoc(s.file).targets[0].luns, [
      { lun: 0, backstore: 'null', size: '16M' },
      { lun: 1, backstore: 'null', size: '8M' },
    ]);
    const luns = JSON.parse(cli(['show', 'luns', '--json', '--config', s.file]).stdout) as unknown[];
    t.is(luns.length, 1, 'the running target still serves one LUN');
    t.regex(cli(['lun', 'remove', IQN, '3', '--config', s.file]).stderr, /has no LUN 3/);
    t.regex(
      cli(['lun', 'add', IQN, '--lun', '0', '--null', '--size', '8M', '--config', s.file]).stderr,
      /already has LUN 0/,
    );
  } finally {
    await teardown(s);
  }
});

test('usage errors exit 2 before asking anyone; refusals exit 1', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-change-usage-'));
  const sock = ['--state-dir', dir];
  const usage = [
    ['lun', 'add', IQN, '--size', '8M'],
    ['lun', 'add', IQN, '--null'],
    ['lun', 'add', IQN, '--null', '--size', '100'],
    ['lun', 'add', IQN, '--path', 'x', '--block-size', '1024'],
    ['lun', 'remove', IQN, 'zero'],
    ['lun', 'resize', IQN, '0'],
    ['acl', 'add', 'not-an-iqn', '--network', '10.0.0.0/8'],
    ['acl', 'add', IQN],
    ['acl', 'add', IQN, '--network', '10.0.0.0/40'],
    ['account', 'add', 'alice', '--secret', 'on-the-command-line'],
    ['account', 'bind', 'alice'],
    ['target', 'rename', IQN],
    ['target'],
  ];
  for (const args of usage) {
    const r = cli([...args, ...sock]);
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /^nodetgt: .+\n/);
  }
  t.regex(
    cli(['account', 'add', 'alice', '--secret', 'x', ...sock]).stderr,
    /never taken on the command line/,
  );
  const help = cli(['lun', '--help']);
  t.is(help.status, 0);
  t.regex(help.stdout, /nodetgt lun add IQN/);
  t.notRegex(help.stdout, /nodetgt acl/);
  const noTarget = cli(['acl', 'add', IQN, '--network', '10.0.0.0/8', ...sock]);
  t.is(noTarget.status, 1);
  t.regex(noTarget.stderr, /no target is running there/);
});

test.serial('no config file: a change applies live only and says it is not persisted', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-change-nofile-'));
  const name = 'iqn.2026-11.io.nodetgt:default';
  const c = await startChildTarget(
    ['--portal', '127.0.0.1:0', '--lun', 'null:16M', '--workers', '1', '--state-dir', dir],
    { cwd: dir },
  );
  const tryLogin = async (initiatorName: string) => {
    const ini = await TestInitiator.connect(c.port);
    try {
      return (await ini.login({ targetName: name, initiatorName })).status;
    } finally {
      ini.close();
    }
  };
  try {
    t.is(await tryLogin(B), 0);
    const r = cli(['acl', 'add', name, '--initiator', A, '--state-dir', dir]);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /not persisted: no config file/);
    t.is(await tryLogin(B), 0x0202, 'live: only A now');
    t.is(await tryLogin(A), 0);
    const again = cli(['acl', 'add', name, '--initiator', A, '--state-dir', dir]);
    t.regex(again.stderr, /already/, 'the next change starts from the live one');
    const save = cli(['acl', 'add', name, '--initiator', B, '--save-only', '--state-dir', dir]);
    t.is(save.status, 1);
    t.regex(save.stderr, /--save-only: not persisted: no config file/);
    t.deepEqual(
      fs.readdirSync(dir).filter((f) => f.endsWith('.json')),
      [],
      'no file appeared',
    );
  } finally {
    await c.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
