/**
 * Live configuration changes on a running target with sessions on both of its workers: a LUN added, resized and
 * removed, targets added and removed, by SIGHUP on a real `nodetgt serve`, and by RunningTarget.applyConfig
 * (what the live administration commands call) for what SIGHUP never does: forcing a removal under I/O.
 * And the must-show: a LUN added while qemu-img bench writes to another LUN of the target, without error.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTarget, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { waitFor } from './helpers/flood';
import { loginAs, startTestTarget, TEST_TARGET } from './helpers/target';
import { runQemu } from './helpers/qemu';
import {
  capacity,
  drainUnitAttentions,
  heldWrite,
  read,
  reportLuns,
  senseOf,
  write,
  workersWithConnections,
} from './helpers/live';
import { pattern } from './scsi-helpers';

const IQN = 'iqn.2026-11.io.nodetgt.test:live';
const IQN2 = 'iqn.2026-11.io.nodetgt.test:live2';
const MIB = 1024 * 1024;
const LUN_NOT_SUPPORTED = '05/25/00';
const REPORTED_LUNS_CHANGED = '06/3f/0e';
const CAPACITY_CHANGED = '06/2a/09';

interface Live {
  c: ChildTarget;
  dir: string;
  /** Write the targets into the config file, SIGHUP, and return what the target logged about it. */
  hup(targets: unknown[]): Promise<string>;
}

async function startLive(targets: unknown[]): Promise<Live> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-live-'));
  const file = path.join(dir, 'config.json');
  const save = (ts: unknown[]) =>
    fs.writeFileSync(
      file,
      JSON.stringify({
        portals: ['127.0.0.1:0'],
        metrics: '127.0.0.1:0',
        workers: 2,
        nopInInterval: 0,
        targets: ts,
      }),
    );
  save(targets);
  const c = await startChildTarget(['--config', file]);
  const done = /SIGHUP: (configuration reloaded|configuration change refused)[^\n]*\n/;
  return {
    c,
    dir,
    async hup(ts) {
      const from = c.log().length;
      save(ts);
      c.proc.kill('SIGHUP');
      if (!(await waitFor(() => done.test(c.log().slice(from)), 15000)))
        throw new Error(`no answer to SIGHUP; log:\n${c.log().slice(from)}`);
      return c.log().slice(from);
    },
  };
}

async function session(port: number, name: string, target = IQN): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(port);
  const r = await ini.login({ targetName: target, initiatorName: `iqn.2026-11.io.nodetgt.test:${name}` });
  if (r.status !== 0) throw new Error(`login as ${name}: 0x${r.status.toString(16)}`);
  return ini;
}

const sparseBytes = (file: string) => fs.statSync(file).blocks * 512;

test.serial(
  'SIGHUP: a LUN added, resized, removed (refused while a command is in flight), a target added and removed; sessions on both workers go on',
  async (t) => {
    const lun0 = { lun: 0, path: 'lun0.img', size: '8M' };
    const lun1 = { lun: 1, path: 'lun1.img', size: '4M' };
    const live = await startLive([{ name: IQN, luns: [lun0] }]);
    const { c, dir } = live;
    const sessions: TestInitiator[] = [];
    try {
      const a = await session(c.port, 'a');
      const b = await session(c.port, 'b');
      sessions.push(a, b);
      t.is((await workersWithConnections(c.metricsPort)).length, 2, 'one session on each worker');
      for (const s of [a, b]) t.deepEqual(await reportLuns(s), [0]);

      // ---- add LUN 1
      let out = await live.hup([{ name: IQN, luns: [lun0, lun1] }]);
      t.regex(out, new RegExp(`applied="target ${IQN}: LUN 1 added`));
      const file1 = path.join(dir, 'lun1.img');
      t.is(fs.statSync(file1).size, 4 * MIB, 'provisioned at its size');
      t.true(sparseBytes(file1) < 4 * MIB, 'sparse');
      for (const [i, s] of [a, b].entries()) {
        t.deepEqual(
          await drainUnitAttentions(s, 0),
          [REPORTED_LUNS_CHANGED],
          `session ${i}: REPORTED LUNS DATA HAS CHANGED`,
        );
        t.deepEqual(await reportLuns(s), [0, 1], `session ${i}: REPORT LUNS lists the new LUN`);
        t.deepEqual(await drainUnitAttentions(s, 1), [], 'the new LUN itself answers at once');
        t.is(await capacity(s, 1), 4 * MIB);
        const data = pattern(8192, 10 + i);
        t.is((await write(s, 1, 16 * i, data)).status, 0, `session ${i} writes the new LUN`);
        t.deepEqual((await read(s, 1, 16 * i, 16)).data, data, `session ${i} reads it back`);
      }
      const seen = fs.readFileSync(file1).subarray(0, 8192);
      t.deepEqual(seen, pattern(8192, 10), 'the data is in the file');

      // ---- grow LUN 1
      out = await live.hup([{ name: IQN, luns: [lun0, { ...lun1, size: '8M' }] }]);
      t.regex(out, new RegExp(`applied="target ${IQN}: LUN 1 resized from 4194304 to 8388608 bytes`));
      t.is(fs.statSync(file1).size, 8 * MIB, 'the file grew');
      for (const [i, s] of [a, b].entries()) {
        t.deepEqual(
          await drainUnitAttentions(s, 1),
          [CAPACITY_CHANGED],
          `session ${i}: CAPACITY DATA HAS CHANGED`,
        );
        t.is(await capacity(s, 1), 8 * MIB, `session ${i}: READ CAPACITY(16) has the new size`);
        t.deepEqual(await drainUnitAttentions(s, 0), [], 'LUN 0 heard nothing');
        const tail = pattern(4096, 30 + i);
        t.is((await write(s, 1, 16383 - 8 * i - 7, tail)).status, 0, 'a write past the old end');
        t.deepEqual((await read(s, 1, 16383 - 8 * i - 7, 8)).data, tail);
      }
      t.deepEqual((await read(a, 1, 0, 16)).data, pattern(8192, 10), 'what was written before stays');

      // ---- shrinking is refused (SIGHUP never forces)
      out = await live.hup([{ name: IQN, luns: [lun0, lun1] }]);
      t.regex(
        out,
        /configuration change refused, nothing applied refused="LUN 1 of \S+: shrinking it from 8388608 to 4194304/,
      );
      t.is(fs.statSync(file1).size, 8 * MIB);
      t.is(await capacity(a, 1), 8 * MIB);

      // ---- removal refused while a command is in flight on the LUN
      const held = heldWrite(a, 1, 100, pattern(4096, 50));
      const r2t = await held.r2t();
      out = await live.hup([{ name: IQN, luns: [lun0] }]);
      t.regex(out, new RegExp(`refused="LUN 1 of ${IQN} has I/O in flight`));
      t.deepEqual(await reportLuns(b), [0, 1], 'nothing changed');
      t.deepEqual(await drainUnitAttentions(b, 0), []);
      held.answer(r2t);
      t.is((await held.done).status, 0, 'the command in flight completes on its LUN');

      // ---- removal once idle
      out = await live.hup([{ name: IQN, luns: [lun0, { ...lun1, size: '8M' }] }]); // back to the running one
      t.regex(out, /nothing changed live/);
      out = await live.hup([{ name: IQN, luns: [lun0] }]);
      t.regex(out, new RegExp(`applied="target ${IQN}: LUN 1 removed`));
      for (const [i, s] of [a, b].entries()) {
        t.deepEqual(
          await drainUnitAttentions(s, 0),
          [REPORTED_LUNS_CHANGED],
          `session ${i}: REPORTED LUNS DATA HAS CHANGED`,
        );
        t.deepEqual(await reportLuns(s), [0]);
        t.is(senseOf(await read(s, 1, 0, 1)), LUN_NOT_SUPPORTED, `session ${i}: the LUN is gone`);
        t.is((await read(s, 0, 0, 1)).status, 0, `session ${i}: LUN 0 serves`);
      }
      t.true(fs.existsSync(file1), 'the backing file is the operator’s: never deleted');

      // ---- a target added, then removed under its session
      out = await live.hup([
        { name: IQN, luns: [lun0] },
        { name: IQN2, luns: [{ lun: 0, path: 't2.img', size: '4M' }] },
      ]);
      t.regex(out, new RegExp(`applied="target ${IQN2} added \\(LUNs 0\\)`));
      const cc = await session(c.port, 'c', IQN2);
      sessions.push(cc);
      t.deepEqual(await reportLuns(cc), [0]);
      t.is((await write(cc, 0, 0, pattern(4096, 70))).status, 0);
      t.deepEqual((await read(cc, 0, 0, 8)).data, pattern(4096, 70));
      out = await live.hup([{ name: IQN, luns: [lun0] }]);
      t.regex(out, new RegExp(`applied="target ${IQN2} removed`));
      t.true(await waitFor(() => cc.closed, 5000), "the removed target's session is closed");
      t.true(
        await waitFor(() => new RegExp(`target removed target=${IQN2} sessionsClosed=1`).test(c.log()), 5000),
      );
      const again = await TestInitiator.connect(c.port);
      t.is((await again.login({ targetName: IQN2 })).status, 0x0203, 'the target is not found any more');
      again.close();
      for (const s of [a, b]) {
        t.deepEqual(await drainUnitAttentions(s, 0), [], 'the other target heard nothing');
        t.is((await s.nop(Buffer.from('on')))?.data.toString(), 'on');
      }
      t.true(c.alive());
      t.notRegex(c.log(), /internal error|worker thread failed/);
    } finally {
      for (const s of sessions) s.close();
      await c.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

/** Paths of the descriptors this process holds (the in-process target's workers are threads of it). */
function openPaths(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd'))
    try {
      out.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // closed in between
    }
  return out;
}

test.serial(
  'applyConfig: a removal under I/O is refused, forced it is done; the command in flight and later ones get LOGICAL UNIT NOT SUPPORTED; the file is closed after it',
  async (t) => {
    const tt = await startTestTarget({
      workers: 2,
      luns: [
        { lun: 0, path: 'lun0.img', size: '8M' },
        { lun: 1, path: 'lun1.img', size: '4M' },
      ],
    });
    const file1 = path.join(tt.dir, 'lun1.img');
    try {
      const a = await loginAs(tt, 'a');
      const b = await loginAs(tt, 'b');
      t.is(tt.target.connectionsPerWorker().size, 2, 'one session on each worker');
      t.true(openPaths().includes(file1), 'the workers hold the LUN file open');
      const held = heldWrite(a, 1, 0, pattern(4096, 3));
      const r2t = await held.r2t();

      const next = tt.target.config;
      next.targets[0].luns = next.targets[0].luns.filter((l) => l.lun !== 1);
      const refused = await tt.target.applyConfig(next);
      t.deepEqual(refused, {
        applied: [],
        needsRestart: [],
        refused: `LUN 1 of ${TEST_TARGET} has I/O in flight`,
      });
      t.deepEqual(await reportLuns(b), [0, 1]);
      t.deepEqual(
        tt.target.config.targets[0].luns.map((l) => l.lun),
        [0, 1],
        'the running configuration did not change',
      );

      const forced = await tt.target.applyConfig(next, { force: true });
      t.deepEqual(forced, { applied: [`target ${TEST_TARGET}: LUN 1 removed`], needsRestart: [] });
      t.deepEqual(
        tt.target.config.targets[0].luns.map((l) => l.lun),
        [0],
      );
      t.true(openPaths().includes(file1), 'still open: a command addressed to it is not answered yet');
      held.answer(r2t);
      t.is(senseOf(await held.done), LUN_NOT_SUPPORTED, 'the command in flight ends without touching the LU');
      t.true(await waitFor(() => !openPaths().includes(file1), 5000), 'closed on every worker once drained');
      t.deepEqual(fs.readFileSync(file1).subarray(0, 4096), Buffer.alloc(4096), 'its data never written');
      for (const [i, s] of [a, b].entries()) {
        t.deepEqual(await drainUnitAttentions(s, 0), [REPORTED_LUNS_CHANGED], `session ${i}`);
        t.deepEqual(await reportLuns(s), [0]);
        t.is(senseOf(await read(s, 1, 0, 1)), LUN_NOT_SUPPORTED);
      }

      // Serialized: two changes at once run one after the other; the second finds the first done.
      const add = tt.target.config;
      add.targets[0].luns.push({
        ...add.targets[0].luns[0],
        lun: 2,
        path: path.join(tt.dir, 'lun2.img'),
        size: 2 * MIB,
      });
      const [r1, r2] = await Promise.all([tt.target.applyConfig(add), tt.target.applyConfig(add)]);
      t.deepEqual(r1.applied, [`target ${TEST_TARGET}: LUN 2 added`]);
      t.deepEqual(r2.applied, []);
      const slots = tt.target.config.targets[0].luns.map((l) => l.slot);
      t.deepEqual(slots, [0, 2], 'a new slot, not the removed LU’s');
      for (const s of [a, b]) {
        t.deepEqual(await drainUnitAttentions(s, 0), [REPORTED_LUNS_CHANGED]);
        t.is(await capacity(s, 2), 2 * MIB);
      }
      a.close();
      b.close();
    } finally {
      await tt.close();
    }
  },
);

test.serial(
  'a LUN added by SIGHUP is seen by a running session while qemu-img bench writes to another LUN of the target, which ends without error',
  async (t) => {
    const lun0 = { lun: 0, path: 'lun0.img', size: '64M' };
    const live = await startLive([{ name: IQN, luns: [lun0] }]);
    const { c, dir } = live;
    const s = await session(c.port, 'watcher');
    try {
      let benchOver = false;
      const bench = runQemu(
        'qemu-img',
        [
          'bench',
          '-f',
          'raw',
          '-t',
          'none',
          '-w',
          '-c',
          '400000',
          '-d',
          '8',
          '-s',
          '4096',
          `iscsi://127.0.0.1:${c.port}/${IQN}/0`,
        ],
        180000,
      ).finally(() => (benchOver = true));
      // The bench is logged in and writing once the target has counted its writes.
      t.true(
        await waitFor(async () => (await c.metrics()).nodetgt_scsi_write_bytes_total > 8 * MIB, 30000),
        'qemu-img bench is writing',
      );
      const out = await live.hup([{ name: IQN, luns: [lun0, { lun: 1, backstore: 'null', size: '1G' }] }]);
      t.regex(out, new RegExp(`applied="target ${IQN}: LUN 1 added`));
      t.deepEqual(await drainUnitAttentions(s, 0), [REPORTED_LUNS_CHANGED]);
      t.deepEqual(await reportLuns(s), [0, 1]);
      t.is(await capacity(s, 1), 1024 * MIB);
      t.false(benchOver, 'qemu-img bench was still running when the session saw the new LUN');
      const r = await bench;
      t.log(`qemu-img bench: ${r.stdout.trim().split('\n').pop()} (${r.ms} ms)`);
      t.regex(r.stdout, /Run completed in/);
      t.notRegex(c.log(), /internal error|worker thread failed/);
    } finally {
      s.close();
      await c.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
