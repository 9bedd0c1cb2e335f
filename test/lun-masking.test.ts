/**
 * Per-initiator LUN masking and read-only mapping end to end (targets[].hosts), with two workers: host A sees
 * LUNs 0 and 1 read-write, host B only LUN 1 read-only. Checked with TestInitiator (REPORT LUNS, the masked
 * LUN 0 as absent, writes, WP, LUN RESET), with libiscsi's tools (iscsi-ls -s, iscsi-inq,
 * iscsi-readcapacity16) and with iscsi-test-cu's ReadOnly suite, which must pass for B and find nothing to
 * test for A; and a SIGHUP that changes B's mapping under its open session.
 * Serial: each test starts a target; the machine is small.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, type ScsiResult } from './helpers/initiator';
import { startChildTarget } from './helpers/child-target';
import { waitFor } from './helpers/flood';
import { run } from './helpers/run';
import { allSkipped, iscsiTestCuAvailable, runIscsiTestCu } from './helpers/iscsi-test-cu';

const A = 'iqn.2026-11.io.nodetgt.test:host-a';
const B = 'iqn.2026-11.io.nodetgt.test:host-b';
/** Matches no mapping: sees what every initiator saw before masking. */
const C = 'iqn.2026-11.io.nodetgt.test:host-c';
const BS = 512;

const LUNS = [
  { lun: 0, path: 'l0.img', size: '16M' },
  { lun: 1, path: 'l1.img', size: '16M' },
];
const HOSTS = [
  { initiator: A, luns: [0, 1] },
  { initiator: B, luns: [1], readOnly: true },
];

const REPORT_LUNS = Buffer.from([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
const TUR = Buffer.alloc(6);
const INQUIRY = Buffer.from([0x12, 0, 0, 0, 96, 0]);
const MODE_SENSE6 = Buffer.from([0x1a, 0, 0x3f, 0, 255, 0]);
const MODE_SENSE10 = Buffer.from([0x5a, 0, 0x3f, 0, 0, 0, 0, 0x10, 0, 0]);

const rw10 = (op: number, lba: number) => Buffer.from([op, 0, 0, 0, lba >> 8, lba & 0xff, 0, 0, 1, 0]);

async function login(port: number, name: string): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(port);
  const r = await ini.login({ targetName: TEST_TARGET, initiatorName: name });
  if (r.status !== 0) {
    ini.close();
    throw new Error(`login as ${name}: status 0x${r.status.toString(16)}`);
  }
  return ini;
}

/** One session per name, in order (each added to `sessions` for the test's cleanup). */
async function loginEach(sessions: TestInitiator[], port: number, names: string[]): Promise<TestInitiator[]> {
  for (const name of names) sessions.push(await login(port, name));
  return sessions.slice(-names.length);
}

async function reportLuns(ini: TestInitiator, lun = 0): Promise<number[]> {
  const r = await ini.scsi(REPORT_LUNS, { lun, edtl: 256, read: true });
  if (r.status !== 0) throw new Error(`REPORT LUNS: status ${r.status}`);
  const out: number[] = [];
  for (let i = 8; i < 8 + r.data.readUInt32BE(0); i += 8) out.push(r.data[i + 1]);
  return out;
}

function senseOf(r: ScsiResult): [number, number, number] | null {
  if (!r.sense) return null;
  return [r.sense[2] & 0x0f, r.sense[12], r.sense[13]];
}

function write(ini: TestInitiator, lun: number, lba: number, fill: number): Promise<ScsiResult> {
  return ini.scsi(rw10(0x2a, lba), { lun, edtl: BS, write: true, data: Buffer.alloc(BS, fill) });
}

async function wp(ini: TestInitiator, lun: number): Promise<[number, number]> {
  const six = await ini.scsi(MODE_SENSE6, { lun, edtl: 255, read: true });
  const ten = await ini.scsi(MODE_SENSE10, { lun, edtl: 4096, read: true });
  return [six.data[2] & 0x80, ten.data[3] & 0x80];
}

function target(): Promise<TestTarget> {
  return startTestTarget({ workers: 2, targets: [{ name: TEST_TARGET, luns: LUNS, hosts: HOSTS }] });
}

test.serial(
  'two hosts, two views: REPORT LUNS, masked LUN 0 absent, read-only for B only, WP per host',
  async (t) => {
    const tt = await target();
    const sessions: TestInitiator[] = [];
    try {
      const [a, b, c] = await loginEach(sessions, tt.port, [A, B, C]);
      t.deepEqual(await reportLuns(a), [0, 1]);
      t.deepEqual(await reportLuns(b), [1], 'B: REPORT LUNS through the masked LUN 0');
      t.deepEqual(await reportLuns(b, 1), [1]);
      t.deepEqual(await reportLuns(c), [0, 1], 'an initiator no mapping names sees every LUN');

      // LUN 0 does not exist for B: INQUIRY answers with peripheral qualifier 011b, the rest 05/25/00.
      const inq = await b.scsi(INQUIRY, { lun: 0, edtl: 96, read: true });
      t.is(inq.status, 0);
      t.is(inq.data[0], 0x7f);
      t.is((await a.scsi(INQUIRY, { lun: 0, edtl: 96, read: true })).data[0], 0x00, 'A: a disk at LUN 0');
      t.deepEqual(senseOf(await b.scsi(TUR, { lun: 0, edtl: 0 })), [0x05, 0x25, 0x00]);
      t.deepEqual(senseOf(await write(b, 0, 0, 0xee)), [0x05, 0x25, 0x00], 'B: WRITE to LUN 0');
      t.deepEqual(senseOf(await b.scsi(rw10(0x28, 0), { lun: 0, edtl: BS, read: true })), [0x05, 0x25, 0x00]);
      // LOGICAL UNIT RESET of a LUN B does not see: function response 2 (LUN does not exist); A's is done.
      t.is((await b.tmf(5, { lun: 0 })).response, 2);
      t.is((await a.tmf(5, { lun: 0 })).response, 0);
      t.deepEqual(senseOf(await a.scsi(TUR, { lun: 0, edtl: 0 })), [0x06, 0x29, 0x03], 'A: BUS DEVICE RESET');

      // LUN 1: A writes, B may not, B reads A's data.
      t.is((await write(a, 1, 7, 0x5a)).status, 0, 'A writes LUN 1');
      const refused = await write(b, 1, 7, 0xa5);
      t.is(refused.status, 2);
      t.deepEqual(senseOf(refused), [0x07, 0x27, 0x00], 'B: DATA PROTECT, WRITE PROTECTED');
      const ws16 = Buffer.from([0x93, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0]);
      t.deepEqual(
        senseOf(await b.scsi(ws16, { lun: 1, edtl: BS, write: true, data: Buffer.alloc(BS) })),
        [7, 0x27, 0],
      );
      const read = await b.scsi(rw10(0x28, 7), { lun: 1, edtl: BS, read: true });
      t.is(read.status, 0);
      t.true(read.data.equals(Buffer.alloc(BS, 0x5a)), "B reads A's data");
      t.is((await write(c, 1, 8, 0x11)).status, 0, 'C writes LUN 1');
      t.is((await write(a, 0, 0, 0x22)).status, 0, 'A writes LUN 0');

      t.deepEqual(await wp(a, 1), [0, 0], 'A: WP = 0 (MODE SENSE 6 and 10)');
      t.deepEqual(await wp(b, 1), [0x80, 0x80], 'B: WP = 1');
      t.deepEqual(await wp(c, 1), [0, 0]);
    } finally {
      for (const s of sessions) s.close();
      await tt.close();
    }
  },
);

test.serial(
  'libiscsi: iscsi-ls -s, iscsi-inq and iscsi-readcapacity16 see each host its own LUNs',
  async (t) => {
    const tt = await target();
    try {
      const portal = `iscsi://127.0.0.1:${tt.port}`;
      const luns = (out: string) =>
        [...out.matchAll(/^Lun:(\d+)\s+Type:DIRECT_ACCESS/gm)].map((m) => Number(m[1]));
      const lsA = await run('iscsi-ls', ['-s', '-i', A, portal], 30000);
      t.is(lsA.code, 0, lsA.stderr);
      t.deepEqual(luns(lsA.stdout), [0, 1]);
      const lsB = await run('iscsi-ls', ['-s', '-i', B, portal], 30000);
      t.is(lsB.code, 0, lsB.stderr);
      t.deepEqual(luns(lsB.stdout), [1]);

      const inqB0 = await run('iscsi-inq', ['-i', B, `${tt.url(0)}`], 30000);
      t.not(inqB0.code, 0, 'B cannot open LUN 0');
      t.regex(inqB0.stderr, /LOGICAL_UNIT_NOT_SUPPORTED/);
      const inqB1 = await run('iscsi-inq', ['-i', B, `${tt.url(1)}`], 30000);
      t.is(inqB1.code, 0, inqB1.stderr);
      t.regex(inqB1.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
      const inqA0 = await run('iscsi-inq', ['-i', A, `${tt.url(0)}`], 30000);
      t.is(inqA0.code, 0, inqA0.stderr);

      const capB0 = await run('iscsi-readcapacity16', ['-i', B, tt.url(0)], 30000);
      t.not(capB0.code, 0);
      const capB1 = await run('iscsi-readcapacity16', ['-i', B, tt.url(1)], 30000);
      t.is(capB1.code, 0, capB1.stderr);
      t.regex(capB1.stdout, /Total size:16777216/);
    } finally {
      await tt.close();
    }
  },
);

test.serial(
  'iscsi-test-cu ReadOnly passes for B (LUN 1 read-only for it only) and finds A not write protected',
  async (t) => {
    if (!iscsiTestCuAvailable()) return t.fail('iscsi-test-cu is not installed');
    const tt = await target();
    try {
      const forB = await runIscsiTestCu('ReadOnly', { url: tt.url(1), initiator1: B, initiator2: C });
      t.deepEqual(forB.failures, [], forB.failures.map((f) => f.detail).join('\n'));
      t.true(
        forB.ran >= 1 && forB.passed === forB.ran,
        `B: ${forB.passed} of ${forB.ran} passed without a skip`,
      );
      // The same LUN through A: writable, so the suite skips (it reads WP from MODE SENSE).
      const forA = await runIscsiTestCu('ReadOnly', { url: tt.url(1), initiator1: A, initiator2: C });
      t.deepEqual(forA.failures, []);
      t.true(allSkipped(forA), 'A: "Logical unit is not write-protected"');
      // B's refused writes left LUN 1 as A can read it: still zeros where the suite wrote (LBA 0).
      const a = await login(tt.port, A);
      const r = await a.scsi(rw10(0x28, 0), { lun: 1, edtl: BS, read: true });
      a.close();
      t.true(r.data.equals(Buffer.alloc(BS)), 'nothing B sent reached the medium');
    } finally {
      await tt.close();
    }
  },
);

/** Commands until one is GOOD; the unit attentions met on the way, as "ASC/ASCQ" strings. */
async function drainUnitAttentions(t: ExecutionContext, ini: TestInitiator, lun: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await ini.scsi(TUR, { lun, edtl: 0 });
    if (r.status === 0) return seen;
    const s = senseOf(r);
    t.is(s?.[0], 0x06, 'UNIT ATTENTION');
    seen.push(`${s![1].toString(16)}/${s![2].toString(16).padStart(2, '0')}`);
  }
  t.fail('unit attentions never ended');
  return seen;
}

test.serial(
  'SIGHUP: changed mappings reach open sessions on both workers, with unit attentions for that nexus',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-mask-'));
    const file = path.join(dir, 'config.json');
    const config = (hosts: unknown) =>
      JSON.stringify({
        portals: ['127.0.0.1:0'],
        workers: 2,
        nopInInterval: 0,
        controlSocket: false,
        stateDir: path.join(dir, 'state'),
        targets: [
          { name: TEST_TARGET, luns: LUNS.map((l) => ({ ...l, path: path.join(dir, l.path) })), hosts },
        ],
      });
    fs.writeFileSync(file, config(HOSTS));
    const c = await startChildTarget(['--config', file]);
    const sessions: TestInitiator[] = [];
    try {
      // Two B sessions first: the least-loaded balancer puts them on different workers.
      const [b1, b2, a] = await loginEach(sessions, c.port, [B, B, A]);
      const bWorkers = c
        .log()
        .matchAll(/\[(t\d+)\] login .*initiator=iqn\.2026-11\.io\.nodetgt\.test:host-b /g);
      t.is(new Set([...bWorkers].map((m) => m[1])).size, 2, "B's two sessions are on the two workers");
      for (const b of [b1, b2]) {
        t.deepEqual(await reportLuns(b), [1]);
        t.deepEqual(senseOf(await write(b, 1, 3, 1)), [7, 0x27, 0]);
      }

      // B now sees both LUNs, LUN 1 writable, LUN 0 read-only.
      fs.writeFileSync(file, config([HOSTS[0], { initiator: B, readOnly: [0] }]));
      c.proc.kill('SIGHUP');
      t.true(await waitFor(() => /SIGHUP: configuration reloaded/.test(c.log()), 10000), 'reloaded');
      t.regex(c.log(), /applied="target iqn\.2026-11\.io\.nodetgt\.test:disk: hosts/);
      for (const b of [b1, b2]) {
        // LUN 1 stayed, its WP flipped: MODE PARAMETERS CHANGED, then REPORTED LUNS DATA HAS CHANGED.
        t.deepEqual(await drainUnitAttentions(t, b, 1), ['2a/01', '3f/0e']);
        t.deepEqual(
          await drainUnitAttentions(t, b, 0),
          [],
          'the LU newly seen answers at once, as a LUN added live',
        );
        t.deepEqual(await reportLuns(b), [0, 1]);
        t.is((await write(b, 1, 3, 1)).status, 0, 'B writes LUN 1 now');
        t.deepEqual(senseOf(await write(b, 0, 3, 1)), [7, 0x27, 0], 'B may only read LUN 0');
        t.deepEqual(await wp(b, 0), [0x80, 0x80]);
        t.deepEqual(await wp(b, 1), [0, 0]);
      }
      t.deepEqual(await drainUnitAttentions(t, a, 1), [], "A's view did not change: no unit attention");

      // Back to the first mapping: B loses LUN 0 again.
      fs.writeFileSync(file, config(HOSTS));
      c.proc.kill('SIGHUP');
      t.true(
        await waitFor(() => (c.log().match(/SIGHUP: configuration reloaded/g) ?? []).length === 2, 10000),
      );
      for (const b of [b1, b2]) {
        t.deepEqual(await drainUnitAttentions(t, b, 1), ['2a/01', '3f/0e']);
        t.deepEqual(await reportLuns(b), [1]);
        t.deepEqual(senseOf(await b.scsi(TUR, { lun: 0, edtl: 0 })), [5, 0x25, 0]);
      }
    } finally {
      for (const s of sessions) s.close();
      await c.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
