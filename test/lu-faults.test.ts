/**
 * The backstore never lies: a LU's identity is stored at provisioning (never derived from its path), a LU whose
 * backing file disappeared is not re-created blank, a file that shrank under the target gives MEDIUM ERROR
 * instead of zeros, and every backstore fault is counted per LU and logged.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTarget, BIN, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { run } from './helpers/run';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { readLuFaults } from '../src/metrics/counters';
import { normalizeConfig, ConfigError } from '../src/config/schema';
import { prepareBackingFiles } from '../src/backstore/prepare';
import { cdb10 } from './scsi-helpers';

const IQN = 'iqn.2026-11.io.nodetgt.test:faults';
const MiB = 1024 * 1024;

const tmp = (what: string) => fs.mkdtempSync(path.join(os.tmpdir(), `nodetgt-${what}-`));

async function serial(port: number, lun: number): Promise<string> {
  const r = await run(
    'iscsi-inq',
    ['-e', '1', '-c', '128', `iscsi://127.0.0.1:${port}/${IQN}/${lun}`],
    30000,
  );
  const m = /Unit Serial Number:\[([^\]]*)\]/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`iscsi-inq LUN ${lun}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return m[1];
}

async function lunsListed(port: number): Promise<number[]> {
  const r = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${port}`], 30000);
  if (r.code !== 0) throw new Error(`iscsi-ls: exit ${r.code}\n${r.stdout}${r.stderr}`);
  return [...r.stdout.matchAll(/^Lun:(\d+)/gm)].map((m) => Number(m[1]));
}

/** [sense key, ASC, ASCQ] of a fixed-format sense buffer. */
const senseOf = (s: Buffer | null) => (s ? [s[2] & 0x0f, s[12], s[13]] : null);

test('identity is stored at provisioning; a LU whose file disappeared stays offline, the others serve; `provision` makes a new blank LU with a new identity', async (t) => {
  t.timeout(180_000);
  const dir = tmp('identity');
  const args = [
    '--portal',
    '127.0.0.1:0',
    '--target',
    IQN,
    '--lun',
    `${path.join(dir, 'a.img')}:8M`,
    '--lun',
    `${path.join(dir, 'b.img')}:8M`,
    '--workers',
    '1',
    '--state-dir',
    path.join(dir, 'state'),
  ];
  let child: ChildTarget | undefined;
  try {
    child = await startChildTarget(args, { cwd: dir });
    const a1 = await serial(child.port, 0);
    const b1 = await serial(child.port, 1);
    t.regex(a1, /^[0-9A-F]{16}$/);
    t.not(a1, b1);
    await child.stop('SIGTERM');

    // Restarted: the same identities, read from the provisioning records.
    child = await startChildTarget(args, { cwd: dir });
    t.is(await serial(child.port, 0), a1);
    t.is(await serial(child.port, 1), b1);
    await child.stop('SIGTERM');

    // The backing file of LUN 0 disappears: the restart names it, creates nothing, and serves LUN 1.
    fs.rmSync(path.join(dir, 'a.img'));
    child = await startChildTarget(args, { cwd: dir });
    const offline = child
      .log()
      .split('\n')
      .find((l) => l.includes('LU offline'));
    t.truthy(offline, child.log());
    t.regex(offline!, new RegExp(`target=${IQN.replace(/\./g, '\\.')} lun=0 `));
    t.true(offline!.includes(path.join(dir, 'a.img')), offline);
    t.false(fs.existsSync(path.join(dir, 'a.img')), 'no new blank file');
    t.deepEqual(await lunsListed(child.port), [1]);
    t.is(await serial(child.port, 1), b1);
    const gone = await run('iscsi-inq', [`iscsi://127.0.0.1:${child.port}/${IQN}/0`], 30000);
    t.not(gone.code, 0, 'LUN 0 is not served');
    await child.stop('SIGTERM');

    // Re-provisioned explicitly: a new blank file, a new identity.
    const p = await run(process.execPath, [BIN, 'provision', ...args.slice(2)], 30000);
    t.is(p.code, 0, p.stderr);
    const m = new RegExp(`${IQN.replace(/\./g, '\\.')} LUN 0: reprovisioned serial ([0-9A-F]{16})`).exec(
      p.stdout,
    );
    t.truthy(m, p.stdout);
    t.not(m![1], a1);
    t.regex(p.stdout, new RegExp(`LUN 1: ready serial ${b1}`));
    const st = fs.statSync(path.join(dir, 'a.img'));
    t.is(st.size, 8 * MiB);
    t.is(st.blocks, 0, 'created sparse');
    child = await startChildTarget(args, { cwd: dir });
    t.deepEqual(await lunsListed(child.port), [0, 1]);
    t.is(await serial(child.port, 0), m![1]);
  } finally {
    await child?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a backing file truncated under the target: noticed without a read, MEDIUM ERROR past the new end, writes there refused without re-extending the file, counted', async (t) => {
  t.timeout(120_000);
  const dir = tmp('shrink');
  const file = path.join(dir, 'lun0.img');
  let child: ChildTarget | undefined;
  const other = path.join(dir, 'lun1.img');
  try {
    child = await startChildTarget(
      [
        '--portal',
        '127.0.0.1:0',
        '--target',
        IQN,
        '--lun',
        `${file}:8M`,
        '--lun',
        `${other}:8M`,
        '--workers',
        '1',
        '--state-dir',
        path.join(dir, 'state'),
        '--metrics',
        '127.0.0.1:0',
      ],
      { cwd: dir },
    );
    const ini = await TestInitiator.connect(child.port);
    t.is((await ini.login({ targetName: IQN })).status, 0);
    const data = Buffer.alloc(MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    // Data everywhere: 8 x 1 MiB.
    for (let lba = 0; lba < 16384; lba += 2048) {
      const w = await ini.scsi(cdb10(0x2a, lba, 2048), { edtl: MiB, write: true, data });
      t.is(w.status, 0);
    }
    fs.truncateSync(file, 4 * MiB);
    // The periodic size check notices it although nobody reads there.
    const deadline = Date.now() + 30_000;
    while (!child.log().includes('backing file shrank') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    const line = child
      .log()
      .split('\n')
      .find((l) => l.includes('backing file shrank'));
    t.truthy(line, child.log());
    t.regex(line!, /lun=0 /);
    t.true(line!.includes('4194304'), line);

    // Before the new end: the data. Past it: MEDIUM ERROR, UNRECOVERED READ ERROR, never zeros with GOOD.
    const before = await ini.scsi(cdb10(0x28, 2048, 2048), { edtl: MiB, read: true });
    t.is(before.status, 0);
    t.true(before.data.equals(data));
    const past = await ini.scsi(cdb10(0x28, 8192, 8), { edtl: 4096, read: true });
    t.is(past.status, 2);
    t.deepEqual(senseOf(past.sense), [0x3, 0x11, 0x00]);
    const straddling = await ini.scsi(cdb10(0x28, 8184, 16), { edtl: 8192, read: true });
    t.is(straddling.status, 2);
    t.deepEqual(senseOf(straddling.sense), [0x3, 0x11, 0x00]);
    // A write there would re-extend the file over a hole: refused, MEDIUM ERROR, WRITE ERROR.
    const w = await ini.scsi(cdb10(0x2a, 12288, 8), {
      edtl: 4096,
      write: true,
      data: data.subarray(0, 4096),
    });
    t.is(w.status, 2);
    t.deepEqual(senseOf(w.sense), [0x3, 0x0c, 0x00]);
    t.is(fs.statSync(file).size, 4 * MiB, 'the file was not re-extended');
    // The other LUN is unharmed.
    const ok = await ini.scsi(cdb10(0x28, 16376, 8), { edtl: 4096, read: true, lun: 1 });
    t.is(ok.status, 0);

    const mport = Number(/metrics listening address=\S*?:(\d+)/.exec(child.log())![1]);
    const text = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
    t.regex(
      text,
      new RegExp(`nodetgt_lu_backing_shrunk\\{target="${IQN.replace(/\./g, '\\.')}",lun="0"\\} 1`),
    );
    t.regex(text, /nodetgt_lu_backing_shrunk\{target="[^"]+",lun="1"\} 0/);
    t.regex(text, /nodetgt_lu_read_errors_total\{target="[^"]+",lun="0"\} 2\b/);
    t.regex(text, /nodetgt_lu_write_errors_total\{target="[^"]+",lun="0"\} 1\b/);
    t.regex(text, /nodetgt_lu_read_errors_total\{target="[^"]+",lun="1"\} 0\b/);
    ini.close();
  } finally {
    await child?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('ENOSPC on a full file system: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT, counted per LU and in the metrics', async (t) => {
  t.timeout(60_000);
  const mnt = tmp('enospc');
  // A 1 MiB tmpfs under an 8 MiB sparse LUN (root only: the tests run as root here and in CI).
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', mnt]);
  const tt = await startTestTarget({
    workers: 1,
    luns: [{ lun: 0, path: path.join(mnt, 'lun0.img'), size: '8M' }],
  });
  try {
    const ini = await TestInitiator.connect(tt.port);
    t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
    const data = Buffer.alloc(MiB, 0x5a);
    const results = [];
    for (let lba = 0; lba < 8192; lba += 2048)
      results.push(await ini.scsi(cdb10(0x2a, lba, 2048), { edtl: MiB, write: true, data }));
    const refused = results.filter((r) => r.status === 2);
    t.true(refused.length >= 2, `${refused.length} of 4 writes of 1 MiB into 1 MiB of space refused`);
    for (const r of refused) t.deepEqual(senseOf(r.sense), [0x7, 0x27, 0x07]);
    const slot = tt.target.config.targets[0].luns[0].slot;
    const faults = readLuFaults(tt.target.counters, slot);
    t.is(faults.noSpace, refused.length);
    t.is(faults.writeErrors, 0, 'ENOSPC is counted as noSpace, not as an I/O error');
    t.regex(
      (await tt.target.metrics()).body,
      new RegExp(`nodetgt_lu_no_space_errors_total\\{target="[^"]+",lun="0"\\} ${refused.length}\\n`),
    );
    ini.close();
  } finally {
    await tt.close();
    execFileSync('umount', [mnt]);
    fs.rmSync(mnt, { recursive: true, force: true });
  }
});

test('provisioning: an identity set in the configuration is used and stored; a bad one is refused', async (t) => {
  const dir = tmp('prov');
  try {
    const cfg = (serial?: string, naa?: string) =>
      normalizeConfig(
        {
          targets: [
            {
              name: IQN,
              luns: [
                { lun: 0, path: 'x.img', size: '1M', ...(serial ? { serial } : {}), ...(naa ? { naa } : {}) },
              ],
            },
          ],
        },
        dir,
      );
    const c1 = cfg('SN-0001', '5001405abcdef012');
    const [r1] = await prepareBackingFiles(c1);
    t.is(r1.state, 'created');
    t.deepEqual(c1.targets[0].luns[0].identity, { serial: 'SN-0001', naa: '5001405abcdef012' });
    // Later without them in the configuration: the stored identity stays.
    const c2 = cfg();
    const [r2] = await prepareBackingFiles(c2);
    t.is(r2.state, 'ready');
    t.deepEqual(c2.targets[0].luns[0].identity, { serial: 'SN-0001', naa: '5001405abcdef012' });
    const recs = fs.readdirSync(path.join(dir, '.nodetgt', 'luns'));
    t.is(recs.length, 1);
    t.throws(() => cfg('has space'), { instanceOf: ConfigError, message: /serial/ });
    t.throws(() => cfg(undefined, '1234'), { instanceOf: ConfigError, message: /naa/ });
    t.throws(() => cfg(undefined, '4001405abcdef012'), { instanceOf: ConfigError, message: /naa/ });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
