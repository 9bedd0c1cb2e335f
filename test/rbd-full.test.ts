/**
 * A full Ceph pool under an RBD LUN (issue 13): writes that need space end at once in CHECK CONDITION, DATA
 * PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (27h/07h, SBC-4 4.7.3.6), never GOOD and never a time-out;
 * reads, overwrites of written space and UNMAP keep working; raising the quota lets writes through again.
 *
 * Its own one-node cluster (scripts/ceph-cluster.sh), a pool `q` with a 16 MiB quota and one gateway with an
 * RBD LUN there whose opTimeout is 10 s: librados, left to itself, holds a write to a pool flagged full until
 * the flag goes, and the command would end only in that time-out (or never). Skipped, with the reason, only
 * when the Ceph binaries are not installed.
 */
import test, { type ExecutionContext } from 'ava';
import * as path from 'node:path';
import { ceph as cephCli, clusterForFile, ifCeph, rbdLun } from './helpers/ceph';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator, type ScsiResult } from './helpers/initiator';
import { cdb10, cdbCaw, pattern } from './scsi-helpers';

const TARGET = 'iqn.2026-11.io.nodetgt.test:rbd-full';
const BS = 512;
const MIB = 1 << 20;
const POOL = 'q';
const QUOTA = 16 * MIB;
const OP_TIMEOUT_S = 10;
/** "Well within opTimeout": the OSD answers a refused write in milliseconds; half the time-out is generous. */
const FAST_MS = (OP_TIMEOUT_S * 1000) / 2;

ifCeph('RBD on a full pool', suite);

function suite(): void {
  let gw: ChildTarget | null = null;
  const sessions: TestInitiator[] = [];
  const cl = clusterForFile('nodetgt-rbd-full-', async () => {
    for (const s of sessions) s.close();
    await gw?.stop();
  });
  const ceph = (...args: string[]) => cephCli(cl, ...args);

  /** The pool's flags in the cluster's OSD map ('full', 'full_quota', ...). */
  async function poolFlags(): Promise<string[]> {
    const dump = JSON.parse(await ceph('osd', 'dump', '--format', 'json')) as {
      pools: Array<{ pool_name: string; flags_names: string }>;
    };
    return dump.pools.find((p) => p.pool_name === POOL)?.flags_names.split(',') ?? [];
  }

  /** Poll the OSD map (the mon sets and clears the flag from the PG stats, every few seconds). */
  async function waitForFull(t: ExecutionContext, full: boolean, limitMs: number): Promise<void> {
    const t0 = Date.now();
    for (;;) {
      const flags = await poolFlags();
      if (flags.includes('full') === full) {
        t.log(
          `pool ${full ? 'flagged full' : 'no longer full'} after ${Date.now() - t0} ms (${flags.join(',')})`,
        );
        return;
      }
      if (Date.now() - t0 > limitMs)
        throw new Error(
          `pool ${POOL} still ${full ? 'not ' : ''}full after ${limitMs} ms: ${flags.join(',')}`,
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  test.serial.before(async (t) => {
    t.timeout(120_000);
    await ceph('osd', 'pool', 'create', POOL, '8', '8', 'replicated');
    await ceph('osd', 'pool', 'set', POOL, 'size', '1', '--yes-i-really-mean-it');
    await ceph('osd', 'pool', 'application', 'enable', POOL, 'rbd');
    await ceph('osd', 'pool', 'set-quota', POOL, 'max_bytes', String(QUOTA));
    gw = await startChildTargetWithConfig(
      {
        workers: 1,
        stateDir: path.join(cl.tmp, 'state'),
        targets: [
          {
            name: TARGET,
            luns: [
              rbdLun(cl, 0, 'full0', { pool: POOL, size: '256M', create: true, opTimeout: OP_TIMEOUT_S }),
            ],
          },
        ],
      },
      { timeoutMs: 60_000 },
    );
    if (/LU offline/.test(gw.log())) throw new Error(`the gateway could not open the image:\n${gw.log()}`);
  });

  async function login(name: string): Promise<TestInitiator> {
    const ini = await TestInitiator.connect(gw!.port);
    const r = await ini.login({ targetName: TARGET, initiatorName: `iqn.2026-11.io.nodetgt.test:${name}` });
    if (r.status !== 0) throw new Error(`login as ${name}: ${r.status}`);
    sessions.push(ini);
    return ini;
  }

  /** The command's result and how long it took; a command still pending after 3 opTimeouts fails the test. */
  async function timed(what: string, run: Promise<ScsiResult>): Promise<{ r: ScsiResult; ms: number }> {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: no answer in ${3 * OP_TIMEOUT_S} s`)),
        3 * OP_TIMEOUT_S * 1000,
      );
    });
    try {
      const r = await Promise.race([run, limit]);
      return { r, ms: Date.now() - t0 };
    } finally {
      clearTimeout(timer);
    }
  }

  const write = (i: TestInitiator, lba: number, data: Buffer) =>
    i.scsi(cdb10(0x2a, lba, data.length / BS), { edtl: data.length, write: true, data });
  const read = (i: TestInitiator, lba: number, blocks: number) =>
    i.scsi(cdb10(0x28, lba, blocks), { edtl: blocks * BS, read: true });

  const senseOf = (r: ScsiResult): string =>
    r.status === 2 && r.sense !== null
      ? [r.sense[2] & 0x0f, r.sense[12], r.sense[13]].map((b) => b.toString(16).padStart(2, '0')).join('/')
      : `status ${r.status}`;
  const SPACE_ALLOCATION_FAILED = '07/27/07';

  /** A per-LU counter of LUN 0 in the Prometheus text. */
  const luCounter = (text: string, name: string): number => {
    const m = new RegExp(`^${name}\\{target="${TARGET}",lun="0"\\} (\\d+)$`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  };

  function good(t: ExecutionContext, r: ScsiResult, what: string): void {
    t.is(r.status, 0, `${what}: ${senseOf(r)}`);
  }

  test.serial(
    'a pool past its quota: DATA PROTECT 27/07 at once for writes that need space; reads, overwrites and UNMAP work; writes resume once the quota is raised',
    async (t) => {
      t.timeout(150_000);
      const a = await login('full');
      // Fill 20 MiB of a 16 MiB quota (5 objects of 4 MiB). A quota is enforced once the mon flags the pool,
      // a few seconds after the PG stats show it: until then writes pass; after, they are refused.
      const FILL = 20 * MIB;
      const chunk = (n: number) => pattern(MIB, 100 + n);
      let refusedWhileFilling = 0;
      for (let n = 0; n < FILL / MIB; n++) {
        const { r } = await timed(`fill ${n}`, write(a, (n * MIB) / BS, chunk(n)));
        if (r.status !== 0) {
          t.is(senseOf(r), SPACE_ALLOCATION_FAILED, `fill write ${n}`);
          refusedWhileFilling++;
        }
      }
      t.log(`${refusedWhileFilling} of ${FILL / MIB} fill writes refused (the pool got flagged meanwhile)`);
      await waitForFull(t, true, 60_000);

      // A write into space never written (a new object): refused by the OSD, not held by librados.
      const fresh = (128 * MIB) / BS;
      const w = await timed('WRITE to a full pool', write(a, fresh, pattern(8 * BS, 1)));
      t.is(
        senseOf(w.r),
        SPACE_ALLOCATION_FAILED,
        'WRITE: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT',
      );
      t.true(w.ms < FAST_MS, `answered in ${w.ms} ms, well within the ${OP_TIMEOUT_S} s opTimeout`);
      t.log(`WRITE refused in ${w.ms} ms`);
      const ws = await timed(
        'WRITE SAME to a full pool',
        a.scsi(cdb10(0x41, fresh + 8192, 64), { edtl: BS, write: true, data: pattern(BS, 2) }),
      );
      t.is(senseOf(ws.r), SPACE_ALLOCATION_FAILED, `WRITE SAME (${ws.ms} ms)`);
      t.true(ws.ms < FAST_MS, `WRITE SAME answered in ${ws.ms} ms`);
      const caw = await timed(
        'COMPARE AND WRITE to a full pool',
        a.scsi(cdbCaw(fresh + 16384, 1), {
          edtl: 2 * BS,
          write: true,
          data: Buffer.concat([Buffer.alloc(BS), pattern(BS, 3)]),
        }),
      );
      t.is(senseOf(caw.r), SPACE_ALLOCATION_FAILED, `COMPARE AND WRITE (${caw.ms} ms)`);
      t.true(caw.ms < FAST_MS, `COMPARE AND WRITE answered in ${caw.ms} ms`);
      // Counted as refusals for lack of space (EDQUOT like ENOSPC), not as write errors.
      const m = await (await fetch(`http://127.0.0.1:${gw!.metricsPort}/metrics`)).text();
      t.is(luCounter(m, 'nodetgt_lu_no_space_errors_total'), refusedWhileFilling + 3, 'no-space refusals');
      t.is(luCounter(m, 'nodetgt_lu_write_errors_total'), 0, 'no write errors');
      // Nothing of the refused writes landed.
      const none = await timed('READ the refused range', read(a, fresh, 8));
      good(t, none.r, 'READ of the refused range');
      t.true(
        none.r.data.every((b) => b === 0),
        'the refused WRITE left nothing',
      );

      // Reads of what is there, an overwrite that takes no new space, SYNCHRONIZE CACHE and UNMAP all work.
      const back = await timed('READ on a full pool', read(a, 0, MIB / BS));
      good(t, back.r, 'READ on a full pool');
      t.true(back.r.data.equals(chunk(0)), 'READ returns what was written');
      const over = pattern(8 * BS, 4);
      good(t, (await timed('overwrite', write(a, 0, over))).r, 'an overwrite of written space');
      t.true((await read(a, 0, 8)).data.equals(over), 'the overwrite reads back');
      good(
        t,
        (await timed('SYNCHRONIZE CACHE', a.scsi(cdb10(0x35, 0, 0), { edtl: 0 }))).r,
        'SYNCHRONIZE CACHE',
      );
      // UNMAP the last 4 MiB object written: space comes back (reads as zeros).
      const list = Buffer.alloc(24);
      list.writeUInt16BE(22, 0);
      list.writeUInt16BE(16, 2);
      list.writeBigUInt64BE(BigInt((16 * MIB) / BS), 8);
      list.writeUInt32BE((4 * MIB) / BS, 16);
      const unmap = Buffer.alloc(10);
      unmap[0] = 0x42;
      unmap.writeUInt16BE(24, 7);
      good(
        t,
        (await timed('UNMAP', a.scsi(unmap, { edtl: 24, write: true, data: list }))).r,
        'UNMAP on a full pool',
      );
      t.true(
        (await read(a, (16 * MIB) / BS, 8)).data.every((b) => b === 0),
        'unmapped blocks read as zeros',
      );

      // Raise the quota: once the mon clears the flag, writes that need space succeed again.
      await ceph('osd', 'pool', 'set-quota', POOL, 'max_bytes', String(256 * MIB));
      await waitForFull(t, false, 60_000);
      const data = pattern(8 * BS, 5);
      const again = await timed('WRITE after the quota was raised', write(a, fresh, data));
      good(t, again.r, 'WRITE after the quota was raised');
      t.log(`WRITE after the quota was raised: GOOD in ${again.ms} ms`);
      t.true((await read(a, fresh, 8)).data.equals(data), 'and it reads back');
      t.true(gw!.alive(), 'the gateway never went down');
      t.notRegex(gw!.log(), /uncaught|FATAL|Segmentation/i);
    },
  );

  test.serial(
    'a full cluster (an OSD past its full ratio): DATA PROTECT 27/07 at once, reads work, writes resume below the ratio',
    async (t) => {
      t.timeout(120_000);
      const a = await login('cluster-full');
      // On its own: no quota left from the test before, and blocks to read back in another object (4 MiB).
      await ceph('osd', 'pool', 'set-quota', POOL, 'max_bytes', '0');
      await waitForFull(t, false, 60_000);
      const lba = (160 * MIB) / BS;
      const kept = (200 * MIB) / BS;
      const keptData = pattern(8 * BS, 8);
      good(t, (await timed('WRITE before', write(a, kept, keptData))).r, 'WRITE before the cluster is full');
      // The OSD holds a few MiB of a 3 GiB memstore: ratios far below that make it full, and the mon flags every
      // pool on it full (not full_quota). All three are set, at once: the OSD takes the largest of them as its full
      // ratio, so the order they land in does not matter (nearfull <= backfillfull <= full once all are in).
      const ratios = (r: [string, string, string]) =>
        Promise.all(
          ['set-nearfull-ratio', 'set-backfillfull-ratio', 'set-full-ratio'].map((c, i) =>
            ceph('osd', c, r[i]),
          ),
        );
      await ratios(['0.0001', '0.0002', '0.0003']);
      try {
        await waitForFull(t, true, 60_000);
        t.false((await poolFlags()).includes('full_quota'), 'full from the OSD, not from a quota');
        const w = await timed('WRITE to a full cluster', write(a, lba, pattern(8 * BS, 6)));
        t.is(
          senseOf(w.r),
          SPACE_ALLOCATION_FAILED,
          'WRITE: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT',
        );
        t.true(w.ms < FAST_MS, `answered in ${w.ms} ms`);
        t.log(`WRITE refused in ${w.ms} ms`);
        const r = await timed('READ on a full cluster', read(a, kept, 8));
        good(t, r.r, 'READ on a full cluster');
        t.true(r.r.data.equals(keptData), 'READ returns what was written');
      } finally {
        await ratios(['0.85', '0.9', '0.95']);
      }
      await waitForFull(t, false, 60_000);
      const data = pattern(8 * BS, 7);
      const below = await timed('WRITE below the ratio', write(a, lba, data));
      good(t, below.r, 'WRITE below the full ratio');
      t.log(`WRITE below the full ratio: GOOD in ${below.ms} ms`);
      t.true((await read(a, lba, 8)).data.equals(data), 'and it reads back');
      t.true(gw!.alive(), 'the gateway never went down');
    },
  );
}
