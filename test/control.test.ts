/**
 * The control socket and `nodetgt show sessions` / `nodetgt session close` against a real target process with
 * two workers: the list holds exactly the sessions the test opened, with the fields an operator reads; the
 * socket is 0600; another user is refused by the file's mode, and — if the mode is loosened by hand — by the
 * peer credentials check, which logs and counts the refusal; closing a session by TSIH ends it and only it.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN, startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { waitFor } from './helpers/flood';
import { cdb10 } from './scsi-helpers';
import type { SessionInfo } from '../src/admin/protocol';

const IQN = 'iqn.2026-11.io.nodetgt.test:admin';
const NOBODY = 65534;

interface Setup {
  c: ChildTarget;
  stateDir: string;
  sock: string;
}

async function target(): Promise<Setup> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-admin-'));
  const c = await startChildTargetWithConfig({
    workers: 2,
    stateDir,
    targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '64M' }] }],
  });
  return { c, stateDir, sock: path.join(stateDir, 'control.sock') };
}

function cli(args: string[], uid?: number) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, uid });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function login(
  c: ChildTarget,
  name: string,
  digests = false,
): Promise<{ ini: TestInitiator; tsih: number }> {
  const ini = await TestInitiator.connect(c.port);
  const keys: Array<[string, string]> = digests
    ? [
        ['HeaderDigest', 'CRC32C'],
        ['DataDigest', 'CRC32C'],
      ]
    : [];
  const r = await ini.login({ targetName: IQN, initiatorName: `iqn.2026-11.io.nodetgt.test:${name}`, keys });
  if (r.status !== 0) throw new Error(`login ${r.status}`);
  return { ini, tsih: r.tsih };
}

test.serial(
  'show sessions lists exactly the open sessions, with their fields; the socket is 0600',
  async (t) => {
    const { c, stateDir, sock } = await target();
    try {
      t.is(fs.statSync(sock).mode & 0o777, 0o600, 'socket mode');
      const a = await login(c, 'a');
      const b = await login(c, 'b', true);
      const r = await a.ini.scsi(cdb10(0x28, 0, 64), { edtl: 64 * 512, read: true });
      t.is(r.status, 0);
      const out = cli(['show', 'sessions', '--json', '--state-dir', stateDir]);
      t.is(out.status, 0, out.stderr);
      const rows = JSON.parse(out.stdout) as SessionInfo[];
      t.log(out.stdout.length > 0 ? cli(['show', 'sessions', '--state-dir', stateDir]).stdout : '');
      t.deepEqual(
        rows.map((x) => x.initiator).sort(),
        ['iqn.2026-11.io.nodetgt.test:a', 'iqn.2026-11.io.nodetgt.test:b'],
        'exactly the two sessions',
      );
      const ra = rows.find((x) => x.initiator.endsWith(':a'))!;
      const rb = rows.find((x) => x.initiator.endsWith(':b'))!;
      t.is(ra.tsih, a.tsih);
      t.is(rb.tsih, b.tsih);
      t.is(ra.target, IQN);
      t.is(ra.cid, 0);
      t.is(ra.state, 'ffp');
      t.is(ra.type, 'Normal');
      t.regex(ra.isid, /^[0-9a-f]{12}$/);
      t.is(ra.peer, `127.0.0.1:${a.ini.socket.localPort}`);
      t.is(rb.peer, `127.0.0.1:${b.ini.socket.localPort}`);
      t.deepEqual(
        [ra.headerDigest, ra.dataDigest, rb.headerDigest, rb.dataDigest],
        ['None', 'None', 'CRC32C', 'CRC32C'],
      );
      t.true(ra.maxRecvDataSegmentLength.initiator > 0 && ra.maxRecvDataSegmentLength.target > 0);
      t.true(ra.maxBurstLength > 0);
      t.not(ra.worker, rb.worker, 'two sessions, two workers');
      t.true(ra.ageSeconds >= 0 && ra.ageSeconds < 60);
      t.true(ra.bytesOut >= 64 * 512, `bytes out ${ra.bytesOut} include the 32 KiB read`);
      t.true(ra.bytesIn >= 48 * 2, `bytes in ${ra.bytesIn}`);
      const table = cli(['show', 'sessions', '--state-dir', stateDir]);
      t.is(table.status, 0);
      t.regex(table.stdout, /^TARGET\s+TSIH\s+ISID\s+INITIATOR/);
      t.is(table.stdout.trim().split('\n').length, 3, 'header and two rows');
      a.ini.close();
      b.ini.close();
    } finally {
      await c.stop();
    }
  },
);

test.serial('session close TSIH ends that session only; an unknown TSIH is an error', async (t) => {
  const { c, stateDir } = await target();
  try {
    const a = await login(c, 'a');
    const b = await login(c, 'b');
    const closed = cli(['session', 'close', String(a.tsih), '--state-dir', stateDir]);
    t.is(closed.status, 0, closed.stderr);
    t.regex(closed.stdout, new RegExp(`closed session ${a.tsih}`));
    await a.ini.closedPromise;
    t.pass('the closed session dropped');
    t.is((await b.ini.nop(Buffer.from('still')))?.data.toString(), 'still', 'the other session goes on');
    const rows = JSON.parse(
      cli(['show', 'sessions', '--json', '--state-dir', stateDir]).stdout,
    ) as SessionInfo[];
    t.deepEqual(
      rows.map((x) => x.tsih),
      [b.tsih],
    );
    const unknown = cli(['session', 'close', '999', '--state-dir', stateDir]);
    t.is(unknown.status, 1);
    t.regex(unknown.stderr, /no session with TSIH 999/);
    t.true(await waitFor(() => /session closed by the operator/.test(c.log()), 5000), 'logged');
    b.ini.close();
  } finally {
    await c.stop();
  }
});

test.serial(
  'another user: refused by the socket mode; with the mode loosened, by the peer credentials (logged, counted)',
  async (t) => {
    if (process.getuid?.() !== 0) return t.pass('needs root to run a client as another user');
    const { c, stateDir, sock } = await target();
    try {
      const denied = cli(['show', 'sessions', '--socket', sock], NOBODY);
      t.is(denied.status, 1);
      t.regex(denied.stderr, /permission denied/);
      // An operator loosens the modes by hand: the peer credentials check still refuses another user.
      fs.chmodSync(stateDir, 0o755);
      fs.chmodSync(sock, 0o666);
      for (let d = path.dirname(stateDir); d !== '/'; d = path.dirname(d))
        t.truthy(fs.statSync(d).mode & 0o001, `${d} is traversable by others`);
      const refused = cli(['show', 'sessions', '--socket', sock], NOBODY);
      t.is(refused.status, 1);
      t.regex(refused.stderr, /permission denied: only the user running the target/);
      const refusedLine = /control socket: request refused, not the user running the target uid=65534/;
      t.true(await waitFor(() => refusedLine.test(c.log()), 5000), 'the refusal is logged with the uid');
      const m = await c.metrics();
      t.is(m.nodetgt_control_refused_total, 1);
      const ok = cli(['show', 'sessions', '--json', '--socket', sock]);
      t.is(ok.status, 0, 'the target user (root here) is served');
      t.true(m.nodetgt_control_requests_total >= 0);
    } finally {
      await c.stop();
    }
  },
);

test('no target running: a clear error naming the socket', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-admin-none-'));
  const r = cli(['show', 'sessions', '--state-dir', dir]);
  t.is(r.status, 1);
  t.regex(r.stderr, /control\.sock: no target is running there/);
  const bad = cli(['show', 'everything', '--state-dir', dir]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /not a command/);
});

test.serial('show targets, luns and accounts: the configuration as served, never a secret', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-admin-show-'));
  const img = path.join(stateDir, 'disk.img');
  const c = await startChildTargetWithConfig({
    workers: 2,
    stateDir,
    targets: [
      {
        name: IQN,
        alias: 'the admin test',
        acl: { initiators: ['iqn.2026-11.io.nodetgt.test:a'] },
        auth: {
          incoming: [{ user: 'alice', secret: 'alicesecret-1234' }],
          outgoing: { user: 'tgt', secret: 'targetsecret-5678' },
        },
        luns: [
          { lun: 0, backstore: 'null', size: '64M' },
          { lun: 3, path: img, size: '8M', readOnly: false },
        ],
      },
    ],
    discoveryAuth: { incoming: [{ user: 'disco', secret: 'discosecret-9012' }] },
  });
  try {
    const json = (what: string) => {
      const r = cli(['show', what, '--json', '--state-dir', stateDir]);
      t.is(r.status, 0, r.stderr);
      t.notRegex(r.stdout, /secret-/, 'no secret in the output');
      return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    };
    const targets = json('targets');
    t.deepEqual(targets, [
      {
        name: IQN,
        alias: 'the admin test',
        luns: 2,
        sessions: 0,
        aclInitiators: ['iqn.2026-11.io.nodetgt.test:a'],
        aclNetworks: [],
        auth: 'mutual chap',
      },
    ]);
    const luns = json('luns');
    t.deepEqual(
      luns.map((l) => [l.lun, l.sizeBytes, l.blockSize, l.readOnly, l.backing]),
      [
        [0, 64 * 1024 * 1024, 512, false, 'null'],
        [3, 8 * 1024 * 1024, 512, false, img],
      ],
    );
    t.regex(String(luns[1].serial), /^[0-9A-F]{16}$/);
    t.regex(String(luns[1].naa), /^3[0-9a-f]{15}$/);
    t.deepEqual(json('accounts'), [
      { scope: '(discovery)', user: 'disco', direction: 'incoming' },
      { scope: IQN, user: 'alice', direction: 'incoming' },
      { scope: IQN, user: 'tgt', direction: 'outgoing' },
    ]);
    const tableOut = cli(['show', 'luns', '--state-dir', stateDir]);
    t.regex(tableOut.stdout, /^TARGET\s+LUN\s+TYPE\s+SIZE/);
    t.regex(tableOut.stdout, /disk\s+8388608\s+512\s+rw/);
  } finally {
    await c.stop();
  }
});

test.serial(
  'bad requests on the control socket get an error answer; a session and the socket go on',
  async (t) => {
    const { c, stateDir, sock } = await target();
    try {
      const a = await login(c, 'a');
      const ask = (payload: string) =>
        new Promise<string>((resolve) => {
          const s = net.connect(sock);
          let got = '';
          s.setEncoding('utf8');
          s.on('data', (d: string) => (got += d));
          s.on('close', () => resolve(got));
          s.on('error', () => resolve(got));
          s.once('connect', () => s.write(payload));
          setTimeout(() => s.end(), 500);
        });
      t.regex(await ask('this is not json\n'), /"ok":false,"error":"not JSON"/);
      t.regex(await ask('{"op":"drop","what":"tables"}\n'), /"ok":false,"error":"unknown request/);
      t.regex(await ask('{"op":"session-close","tsih":-4}\n'), /"ok":false/);
      t.regex(await ask(`${'x'.repeat(70 * 1024)}`), /"error":"request too long"/);
      t.is((await a.ini.nop(Buffer.from('ok')))?.data.toString(), 'ok', 'the session is unaffected');
      const rows = JSON.parse(
        cli(['show', 'sessions', '--json', '--state-dir', stateDir]).stdout,
      ) as SessionInfo[];
      t.is(rows.length, 1, 'the socket still serves');
      t.true(c.alive());
      a.ini.close();
    } finally {
      await c.stop();
    }
  },
);

test('a target that never answers: the CLI gives up with a clear error instead of hanging', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-admin-mute-'));
  const sock = path.join(dir, 'control.sock');
  const mute = net.createServer(() => undefined); // accepts, reads nothing, says nothing
  await new Promise<void>((r) => mute.listen(sock, () => r()));
  try {
    const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'show', 'sessions', '--socket', sock], {
        env: { ...process.env, NODETGT_CONTROL_TIMEOUT_MS: '500' },
      });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (status) => resolve({ status, stderr }));
    });
    t.is(r.status, 1);
    t.regex(r.stderr, /no answer within 0\.5 s/);
  } finally {
    mute.close();
  }
});
