/**
 * The Ceph RBD backstore against a real one-node cluster (scripts/ceph-cluster.sh: mon, mgr, memstore OSD on
 * 127.0.0.1), started once for this file. Two `nodetgt serve` processes (two gateways on two ports) export the
 * same target and the same image, created through the config's `create`.
 *
 * Skipped, and reported as skipped with the reason, only when the Ceph binaries are not installed. When they
 * are and the addon was built without librbd, the tests fail: CI installs both.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ceph as cephCli, clusterForFile, clusterScript, ifCeph, rbd, rbdLun } from './helpers/ceph';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { read as liveRead, reportLuns, senseOf as liveSense } from './helpers/live';
import { TestInitiator, type ScsiResult } from './helpers/initiator';
import { RbdImage } from '../src/native/rbd';
import { iscsiImageOpts, runQemu, sha256File, writeRandomFile } from './helpers/qemu';
import { cdb10, cdb16, cdbCaw, pattern } from './scsi-helpers';

const TARGET = 'iqn.2026-11.io.nodetgt.test:rbd';
const BS = 512;

ifCeph('RBD backstore', suite);

function suite(): void {
  const gw: ChildTarget[] = [];
  const sessions: TestInitiator[] = [];
  const cl = clusterForFile('nodetgt-rbd-', async () => {
    for (const s of sessions) s.close();
    for (const g of gw) await g.stop();
  });

  const ceph = (...args: string[]) => cephCli(cl, ...args);

  const startGateway = (i: number): Promise<ChildTarget> =>
    startChildTargetWithConfig(
      {
        workers: 2,
        stateDir: path.join(cl.tmp, `state${i}`),
        targets: [
          {
            name: TARGET,
            luns: [
              rbdLun(cl, 0, 'lun0', {
                size: '1G',
                create: true,
                opTimeout: 5,
                serial: 'RBDTEST0001',
                naa: '3000000000000abc',
              }),
            ],
          },
        ],
      },
      { timeoutMs: 60_000 },
    );

  test.serial.before(async (t) => {
    t.timeout(180_000);
    // Two gateways of one target on one image; the first creates it (1 GiB). Same identity on both, as a
    // multipath initiator needs; reservations and COMPARE AND WRITE are shared through the cluster.
    for (let i = 0; i < 2; i++) gw.push(await startGateway(i));
    for (const g of gw) await servedByEveryWorker(g);
  });

  /**
   * Every worker of the gateway serves the image: a worker without it would answer LOGICAL UNIT NOT SUPPORTED to
   * the sessions it happens to serve. The portal listens before its workers have opened their LUs; it says
   * "workers ready" once they have, naming an LU some worker could not open; such a worker opens it again later
   * when the error may pass (a loaded machine's open can outlast opTimeout) and says "LU online".
   */
  async function servedByEveryWorker(g: ChildTarget): Promise<void> {
    const until = Date.now() + 90_000;
    for (;;) {
      const out = g.log();
      if (/workers ready/.test(out)) {
        let missing = 0;
        for (const m of out.matchAll(/LU not served by every worker[^\n]*servedBy="?(\d+) of (\d+)/g))
          missing += Number(m[2]) - Number(m[1]);
        if ((out.match(/LU online/g) ?? []).length >= missing) return;
      }
      if (Date.now() > until || !g.alive())
        throw new Error(`a gateway does not serve the image on every worker:\n${out}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  // A failed test shows what the gateways said (which worker lacks the image, and why).
  test.afterEach.always((t) => {
    if (t.passed) return;
    gw.forEach((g, i) => t.log(`gateway ${i} output (last 6000 characters):\n${g.log().slice(-6000)}`));
  });

  async function login(g: number, name: string): Promise<TestInitiator> {
    const ini = await TestInitiator.connect(gw[g].port);
    const r = await ini.login({ targetName: TARGET, initiatorName: `iqn.2026-11.io.nodetgt.test:${name}` });
    if (r.status !== 0) throw new Error(`login to gateway ${g} as ${name}: ${r.status}`);
    sessions.push(ini);
    return ini;
  }

  const write = (i: TestInitiator, lba: number, data: Buffer, fua = false) =>
    i.scsi(cdb10(0x2a, lba, data.length / BS, fua ? 0x08 : 0), { edtl: data.length, write: true, data });
  const read = (i: TestInitiator, lba: number, blocks: number) =>
    i.scsi(cdb10(0x28, lba, blocks), { edtl: blocks * BS, read: true });

  /** PERSISTENT RESERVE OUT (service action, type, RESERVATION KEY, SERVICE ACTION RESERVATION KEY). */
  const prOut = (sa: number, type: number, k: bigint, saKey: bigint): [Buffer, Buffer] => {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x5f;
    cdb[1] = sa;
    cdb[2] = type;
    cdb.writeUInt32BE(24, 5);
    const d = Buffer.alloc(24);
    d.writeBigUInt64BE(k, 0);
    d.writeBigUInt64BE(saKey, 8);
    return [cdb, d];
  };
  const send = (i: TestInitiator, [cdb, data]: [Buffer, Buffer]) =>
    i.scsi(cdb, { edtl: 24, write: true, data });

  function good(t: ExecutionContext, r: ScsiResult, what: string): void {
    t.is(r.status, 0, `${what}: status ${r.status} sense ${r.sense?.toString('hex')}`);
  }

  function senseOf(r: ScsiResult): { key: number; asc: number; ascq: number; info: number } | null {
    if (r.status !== 2 || r.sense === null) return null;
    return { key: r.sense[2] & 0x0f, asc: r.sense[12], ascq: r.sense[13], info: r.sense.readUInt32BE(3) };
  }

  test.serial(
    'the image is created through the config, and qemu-img copies 32 MiB in and out unchanged',
    async (t) => {
      t.timeout(180_000);
      const src = path.join(cl.tmp, 'in.raw');
      const back = path.join(cl.tmp, 'out.raw');
      writeRandomFile(src, 32 << 20);
      const opts = { port: gw[0].port, target: TARGET, lun: 0 };
      await runQemu(
        'qemu-img',
        ['convert', '-n', '-f', 'raw', '--target-image-opts', src, iscsiImageOpts(opts)],
        120_000,
      );
      // Read back through the other gateway.
      const from = iscsiImageOpts({ ...opts, port: gw[1].port });
      await runQemu(
        'qemu-img',
        ['dd', '--image-opts', '-O', 'raw', 'bs=1M', 'count=32', `if=${from}`, `of=${back}`],
        120_000,
      );
      t.is(await sha256File(back), await sha256File(src));
      const info = await rbd(cl, 'info', '--format', 'json', `${cl.pool}/lun0`);
      const img = JSON.parse(info) as { size: number; features: string[] };
      t.is(img.size, 1 << 30);
      t.false(img.features.includes('exclusive-lock'), 'created without exclusive-lock');
    },
  );

  test.serial('WRITE with FUA, SYNCHRONIZE CACHE, UNMAP and WRITE SAME through librbd', async (t) => {
    const a = await login(0, 'ops');
    const data = pattern(8 * BS, 7);
    good(t, await write(a, 1000, data, true), 'WRITE FUA');
    const r = await read(a, 1000, 8);
    good(t, r, 'READ');
    t.true(r.data.equals(data));
    good(t, await a.scsi(cdb10(0x35, 0, 0), { edtl: 0 }), 'SYNCHRONIZE CACHE');
    // UNMAP two blocks in the middle (a partial object: still zeros when read back).
    const list = Buffer.alloc(24);
    list.writeUInt16BE(22, 0);
    list.writeUInt16BE(16, 2);
    list.writeBigUInt64BE(1002n, 8);
    list.writeUInt32BE(2, 16);
    const unmap = Buffer.alloc(10);
    unmap[0] = 0x42;
    unmap.writeUInt16BE(24, 7);
    good(t, await a.scsi(unmap, { edtl: 24, write: true, data: list }), 'UNMAP');
    const after = (await read(a, 1000, 8)).data;
    t.true(
      after.subarray(2 * BS, 4 * BS).every((b) => b === 0),
      'unmapped blocks read as zeros',
    );
    t.true(after.subarray(0, 2 * BS).equals(data.subarray(0, 2 * BS)), 'blocks before kept');
    t.true(after.subarray(4 * BS).equals(data.subarray(4 * BS)), 'blocks after kept');
    // WRITE SAME(10): a block repeated over 64 blocks, then zeros (write_zeroes).
    const block = pattern(BS, 3);
    const ws = cdb10(0x41, 5000, 64);
    good(t, await a.scsi(ws, { edtl: BS, write: true, data: block }), 'WRITE SAME');
    const same = (await read(a, 5000, 64)).data;
    let all = true;
    for (let i = 0; i < 64; i++) all &&= same.subarray(i * BS, (i + 1) * BS).equals(block);
    t.true(all, 'every block is the pattern');
    good(t, await a.scsi(ws, { edtl: BS, write: true, data: Buffer.alloc(BS) }), 'WRITE SAME zeros');
    t.true((await read(a, 5000, 64)).data.every((b) => b === 0));
  });

  test.serial(
    'COMPARE AND WRITE: a match writes, a miscompare reports the offset, longer than librbd takes is refused',
    async (t) => {
      const a = await login(0, 'caw');
      const old = pattern(BS, 11);
      good(t, await write(a, 3000, old), 'WRITE');
      const next = pattern(BS, 12);
      good(
        t,
        await a.scsi(cdbCaw(3000, 1), { edtl: 2 * BS, write: true, data: Buffer.concat([old, next]) }),
        'CAW',
      );
      t.true((await read(a, 3000, 1)).data.equals(next));
      const wrong = Buffer.from(next);
      wrong[77] ^= 0xff;
      const mis = await a.scsi(cdbCaw(3000, 1), {
        edtl: 2 * BS,
        write: true,
        data: Buffer.concat([wrong, old]),
      });
      t.deepEqual(senseOf(mis), { key: 0x0e, asc: 0x1d, ascq: 0, info: 77 }, 'MISCOMPARE at byte 77');
      t.true((await read(a, 3000, 1)).data.equals(next), 'nothing written');
      // librbd compares one 512-byte sector at most: the Block Limits VPD page says 1, and 2 blocks are refused.
      const vpd = await a.scsi(Buffer.from([0x12, 0x01, 0xb0, 0x00, 0x40, 0x00]), { edtl: 64, read: true });
      good(t, vpd, 'INQUIRY Block Limits');
      t.is(vpd.data[5], 1, 'MAXIMUM COMPARE AND WRITE LENGTH 1');
      const two = await a.scsi(cdbCaw(3000, 2), { edtl: 4 * BS, write: true, data: Buffer.alloc(4 * BS) });
      t.deepEqual(
        senseOf(two) && [senseOf(two)!.key, senseOf(two)!.asc],
        [0x05, 0x24],
        'INVALID FIELD IN CDB',
      );
    },
  );

  test.serial(
    'GET LBA STATUS reports what librbd stores: a written object mapped, others and a discarded one deallocated',
    async (t) => {
      const a = await login(0, 'lba-status');
      // 4 MiB objects of 512-byte blocks: object 128 starts at LBA 1048576; nothing else writes near it.
      const OBJ = 8192;
      const first = 128 * OBJ;
      const status = async (lba: number) => {
        const cdb = cdb16(0x9e, lba, 0, 0x12);
        cdb.writeUInt32BE(8 + 16 * 4, 10); // ALLOCATION LENGTH: 4 descriptors
        const r = await a.scsi(cdb, { edtl: 8 + 16 * 4, read: true });
        good(t, r, 'GET LBA STATUS');
        const n = (r.data.readUInt32BE(0) - 4) / 16;
        return Array.from({ length: n }, (_, i) => {
          const d = r.data.subarray(8 + 16 * i);
          return {
            lba: Number(d.readBigUInt64BE(0)),
            blocks: d.readUInt32BE(8),
            mapped: (d[12] & 0x0f) === 0,
          };
        });
      };
      good(t, await write(a, first + 16, pattern(8 * BS, 31)), 'WRITE in object 128');
      const before = await status(first - OBJ);
      t.log(JSON.stringify(before));
      t.is(before[0].mapped, false, 'object 127, never written: deallocated');
      t.true(before[0].lba === first - OBJ && before[0].blocks >= OBJ, 'the whole of object 127');
      const m = before[1];
      t.true(m.mapped && m.lba <= first + 16 && m.lba + m.blocks >= first + 24, 'the written blocks mapped');
      // UNMAP the whole object: librbd removes it, and it reads as deallocated again.
      const list = Buffer.alloc(24);
      list.writeUInt16BE(22, 0);
      list.writeUInt16BE(16, 2);
      list.writeBigUInt64BE(BigInt(first), 8);
      list.writeUInt32BE(OBJ, 16);
      const unmap = Buffer.alloc(10);
      unmap[0] = 0x42;
      unmap.writeUInt16BE(24, 7);
      good(t, await a.scsi(unmap, { edtl: 24, write: true, data: list }), 'UNMAP object 128');
      const after = await status(first);
      t.is(after[0].mapped, false, 'deallocated after UNMAP');
      t.true(after[0].blocks >= OBJ, `the whole object (${after[0].blocks} blocks)`);
    },
  );

  test.serial(
    'WRITE ATOMIC(16): the file LU limits (no ALUA: the journal in the cluster is on); across an object boundary too',
    async (t) => {
      const a = await login(0, 'atomic');
      const vpd = await a.scsi(Buffer.from([0x12, 0x01, 0xb0, 0x00, 0x40, 0x00]), { edtl: 64, read: true });
      good(t, vpd, 'INQUIRY Block Limits');
      t.deepEqual(
        [vpd.data.readUInt32BE(44), vpd.data.readUInt32BE(48), vpd.data.readUInt32BE(52)],
        [2048, 8, 8],
        'MAXIMUM ATOMIC TRANSFER LENGTH 1 MiB; ATOMIC ALIGNMENT and TRANSFER LENGTH GRANULARITY 4 KiB',
      );
      const atomic = (lba: number, blocks: number, data: Buffer) =>
        a.scsi(cdb16(0x9c, lba, blocks), { edtl: data.length, write: true, data });
      const data = pattern(8 * BS, 41);
      // The last 8 blocks of an object: inside it, one RADOS op.
      good(t, await atomic(8192 * 3 - 8, 8, data), 'WRITE ATOMIC 8 blocks');
      t.true((await read(a, 8192 * 3 - 8, 8)).data.equals(data), 'written');
      // Across the boundary of objects 2 and 3: through the journal.
      const across = pattern(16 * BS, 42);
      good(t, await atomic(8192 * 3 - 8, 16, across), 'WRITE ATOMIC 16 blocks across an object boundary');
      t.true((await read(a, 8192 * 3 - 8, 16)).data.equals(across), 'written whole');
      const refused = async (lba: number, blocks: number, what: string) => {
        const r = await atomic(lba, blocks, Buffer.alloc(blocks * BS));
        t.deepEqual(
          senseOf(r) && [senseOf(r)!.key, senseOf(r)!.asc],
          [0x05, 0x24],
          `${what}: INVALID FIELD IN CDB`,
        );
      };
      await refused(8192 * 3 - 4, 8, 'unaligned');
      await refused(0, 2056, 'over the maximum');
    },
  );

  test.serial(
    "two gateways: each sees the other one's writes, and COMPARE AND WRITE races have one winner",
    async (t) => {
      t.timeout(120_000);
      const a = await login(0, 'race-a');
      const b = await login(1, 'race-b');
      const data = pattern(16 * BS, 21);
      good(t, await write(a, 20000, data), 'WRITE through A');
      t.true((await read(b, 20000, 16)).data.equals(data), 'B reads what A wrote');
      good(t, await write(b, 20000, data.subarray(0, BS)), 'WRITE through B');
      const lba = 40000;
      let current = pattern(BS, 100);
      good(t, await write(a, lba, current), 'seed');
      const ROUNDS = 100;
      let wins = 0;
      for (let round = 1; round <= ROUNDS; round++) {
        const mine = [pattern(BS, 1000 + round), pattern(BS, 2000 + round)];
        const rs = await Promise.all(
          [a, b].map((s, i) =>
            s.scsi(cdbCaw(lba, 1), { edtl: 2 * BS, write: true, data: Buffer.concat([current, mine[i]]) }),
          ),
        );
        const winners = rs.map((r, i) => (r.status === 0 ? i : -1)).filter((i) => i >= 0);
        if (winners.length !== 1 || rs.some((r) => r.status !== 0 && senseOf(r)?.key !== 0x0e)) {
          t.fail(
            `round ${round}: statuses ${rs.map((r) => r.status)} sense ${rs.map((r) => r.sense?.toString('hex'))}`,
          );
          return;
        }
        const now = (await read(round % 2 ? a : b, lba, 1)).data;
        if (!now.equals(mine[winners[0]])) {
          t.fail(`round ${round}: the block is not what the winner wrote`);
          return;
        }
        wins += winners[0];
        current = now;
      }
      t.log(`gateway B won ${wins} of ${ROUNDS} rounds`);
      t.pass();
    },
  );

  test.serial(
    'a reservation made through gateway A keeps another initiator out through gateway B',
    async (t) => {
      const holder = await login(0, 'pr-holder');
      const other = await login(1, 'pr-other');
      const WRITE_EXCLUSIVE = 1;
      good(t, await send(holder, prOut(0, 0, 0n, 0xabcn)), 'REGISTER through A');
      good(t, await send(holder, prOut(1, WRITE_EXCLUSIVE, 0xabcn, 0n)), 'RESERVE through A');
      const blocked = await write(other, 100, pattern(BS, 5));
      t.is(blocked.status, 0x18, 'RESERVATION CONFLICT through B');
      good(t, await read(other, 100, 1), 'READ through B is allowed under WRITE EXCLUSIVE');
      // PERSISTENT RESERVE IN READ RESERVATION through B shows A's reservation.
      const prIn = Buffer.alloc(10);
      prIn[0] = 0x5e;
      prIn[1] = 1;
      prIn.writeUInt16BE(64, 7);
      const res = await other.scsi(prIn, { edtl: 64, read: true });
      good(t, res, 'READ RESERVATION');
      t.is(res.data.readUInt32BE(4), 16, 'one reservation reported');
      t.is(res.data.readBigUInt64BE(8), 0xabcn);
      good(t, await write(holder, 100, pattern(BS, 6)), 'the holder writes through A');
      good(t, await send(holder, prOut(3, 0, 0xabcn, 0n)), 'CLEAR through A');
      good(t, await write(other, 100, pattern(BS, 7)), 'B writes again after CLEAR');
    },
  );

  test.serial(
    'registrations made at once through both gateways all land (compare-and-swap retries)',
    async (t) => {
      t.timeout(120_000);
      const N = 6;
      const inis = await Promise.all(Array.from({ length: 2 * N }, (_, i) => login(i % 2, `reg-${i}`)));
      const rs = await Promise.all(inis.map((i, n) => send(i, prOut(0, 0, 0n, 0x1000n + BigInt(n)))));
      for (const r of rs) good(t, r, 'REGISTER');
      for (const g of [0, 1]) {
        const keys = Buffer.alloc(10);
        keys[0] = 0x5e;
        keys.writeUInt16BE(1024, 7);
        const r = await inis[g].scsi(keys, { edtl: 1024, read: true });
        good(t, r, 'READ KEYS');
        const n = r.data.readUInt32BE(4) / 8;
        const got = Array.from({ length: n }, (_, k) => r.data.readBigUInt64BE(8 + 8 * k)).sort();
        t.deepEqual(
          got,
          Array.from({ length: 2 * N }, (_, k) => 0x1000n + BigInt(k)),
          `every key, through gateway ${g}`,
        );
      }
      // Unregister them all again (key 0 as the new key), so later tests meet no registrations.
      for (const r of await Promise.all(inis.map((i, n) => send(i, prOut(0, 0, 0x1000n + BigInt(n), 0n)))))
        good(t, r, 'unregister');
    },
  );

  test.serial(
    'missing pool, missing image, wrong credentials, unreachable cluster: those LUNs offline and named, the others serve',
    async (t) => {
      t.timeout(120_000);
      const dead = path.join(cl.tmp, 'dead.conf');
      // A mon nobody listens on.
      fs.writeFileSync(
        dead,
        fs.readFileSync(cl.conf, 'utf8').replace(/^mon host = .*$/m, 'mon host = [v2:127.0.0.1:9]'),
      );
      // Wrong credentials: client.admin with a key the cluster never issued (a keyring of its own).
      const badKeyring = path.join(cl.tmp, 'bad.keyring');
      fs.writeFileSync(badKeyring, '[client.admin]\n\tkey = AQBvrytnAAAAABAAyc0v1HNs9y1Fm8PBgWtrzA==\n');
      const badKey = path.join(cl.tmp, 'badkey.conf');
      const conf = fs.readFileSync(cl.conf, 'utf8');
      fs.writeFileSync(
        badKey,
        /^\s*keyring\s*=.*$/m.test(conf)
          ? conf.replace(/^\s*keyring\s*=.*$/m, `keyring = ${badKeyring}`)
          : conf.replace(/^\[global\]$/m, `[global]\nkeyring = ${badKeyring}`),
      );
      const lunOf = (lun: number, o: Record<string, unknown>) =>
        rbdLun(cl, lun, 'lun0', { opTimeout: 3, ...o });
      const g = await startChildTargetWithConfig(
        {
          workers: 1,
          stateDir: path.join(cl.tmp, 'state-bad'),
          targets: [
            {
              name: TARGET,
              luns: [
                lunOf(0, { pool: 'nopool' }),
                lunOf(1, { image: 'nosuchimage' }),
                lunOf(2, { cephConf: dead }),
                { lun: 3, backstore: 'null', size: '1M' },
                // Wrong credentials: an entity without a key, and client.admin with a wrong key.
                lunOf(4, { clientId: 'nobody', image: 'cred4' }),
                lunOf(5, { cephConf: badKey, image: 'cred5' }),
              ],
            },
          ],
        },
        { timeoutMs: 60_000 },
      );
      gw.push(g);
      const ini = await TestInitiator.connect(g.port);
      sessions.push(ini);
      t.is(
        (await ini.login({ targetName: TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:bad' })).status,
        0,
      );
      const rl = await ini.scsi(Buffer.from([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), {
        edtl: 256,
        read: true,
      });
      good(t, rl, 'REPORT LUNS');
      t.is(rl.data.readUInt32BE(0), 8, 'one LUN reported');
      t.is(rl.data.readUInt16BE(8) & 0x3fff, 3, 'the null LUN serves');
      const log = g.log();
      t.log(
        log
          .split('\n')
          .filter((l) => l.includes('LU offline'))
          .join('\n'),
      );
      t.regex(log, /LU offline[^\n]*lun=0[^\n]*opening pool nopool/);
      t.regex(log, /LU offline[^\n]*lun=1[^\n]*nosuchimage[^\n]*ENOENT/);
      t.regex(log, /LU offline[^\n]*lun=2[^\n]*connecting to the cluster/);
      t.regex(log, /LU offline[^\n]*lun=4[^\n]*connecting to the cluster as client\.nobody: EACCES/);
      t.regex(log, /LU offline[^\n]*lun=5[^\n]*connecting to the cluster as client\.admin: EACCES/);
      await g.stop();
    },
  );

  test.serial(
    'an OSD that stops answering: I/O ends in CHECK CONDITION, the gateway lives, and I/O resumes',
    async (t) => {
      t.timeout(180_000);
      const a = await login(0, 'fault');
      good(t, await write(a, 60000, pattern(BS, 1)), 'WRITE before');
      await clusterScript(cl, 'pause-osd');
      let r: ScsiResult;
      try {
        r = await write(a, 60000, pattern(BS, 2));
      } finally {
        await clusterScript(cl, 'resume-osd');
      }
      t.not(r.status, 0, 'never GOOD');
      t.deepEqual(senseOf(r) && [senseOf(r)!.key, senseOf(r)!.asc, senseOf(r)!.ascq], [0x04, 0x08, 0x01]);
      t.true(gw[0].alive(), 'gateway A still runs');
      // The OSD answers again (it may first have to be marked up again): I/O resumes.
      const until = Date.now() + 90_000;
      let last: ScsiResult | null = null;
      while (Date.now() < until) {
        last = await write(a, 60000, pattern(BS, 3));
        if (last.status === 0) break;
        await new Promise((res) => setTimeout(res, 1000));
      }
      good(t, last!, 'WRITE after the OSD resumed');
      t.true((await read(a, 60000, 1)).data.equals(pattern(BS, 3)));
    },
  );

  test.serial(
    'a worker that cannot open the image (the OSD paused) opens it by itself once the OSD answers',
    async (t) => {
      t.timeout(180_000);
      // A standby gateway of the image: its portal does nothing in the cluster at start-up (no journal to replay:
      // it does not write), so its workers are the first to need the OSD. Each worker's open times out
      // (opTimeout 3 s), a transient error: it tries again later, doubling its wait, until the OSD is back.
      const count = (g: ChildTarget, re: RegExp) => (g.log().match(re) ?? []).length;
      const waitFor = async (g: ChildTarget, what: string, ok: () => boolean, ms: number) => {
        const until = Date.now() + ms;
        while (!ok()) {
          if (Date.now() > until || !g.alive()) throw new Error(`${what} not seen in ${ms} ms:\n${g.log()}`);
          await new Promise((res) => setTimeout(res, 200));
        }
      };
      await clusterScript(cl, 'pause-osd');
      let g: ChildTarget;
      let ini: TestInitiator;
      try {
        g = await startChildTargetWithConfig(
          {
            workers: 2,
            stateDir: path.join(cl.tmp, 'state-late'),
            targets: [
              {
                name: TARGET,
                alua: {
                  localGroup: 2,
                  groups: [
                    { id: 1, state: 'active-optimized' },
                    { id: 2, state: 'standby' },
                  ],
                },
                luns: [
                  rbdLun(cl, 0, 'lun0', { opTimeout: 3, serial: 'RBDTEST0001', naa: '3000000000000abc' }),
                ],
              },
            ],
          },
          { timeoutMs: 60_000 },
        );
        gw.push(g); // stopped by the file's teardown whatever happens
        // Both workers failed once and will try again; the portal's report follows their start-up.
        await waitFor(g, 'two failed opens', () => count(g, /LU offline: [^\n]*retry=later/g) >= 2, 60_000);
        await waitFor(g, 'the workers ready report', () => /workers ready/.test(g.log()), 10_000);
        t.regex(
          g.log(),
          /LU offline: cannot open its backing store [^\n]*lun=0[^\n]*ETIMEDOUT[^\n]*retry=later/,
        );
        t.regex(g.log(), /LU not served by every worker[^\n]*servedBy="0 of 2"/);
        // A session logged in meanwhile: no LUN to see yet.
        ini = await TestInitiator.connect(g.port);
        sessions.push(ini);
        const r = await ini.login({ targetName: TARGET, initiatorName: 'iqn.2026-11.io.nodetgt.test:late' });
        t.is(r.status, 0);
        t.deepEqual(await reportLuns(ini), []);
      } finally {
        await clusterScript(cl, 'resume-osd');
      }
      await waitFor(g, 'LU online on both workers', () => count(g, /LU online[^\n]*lun=0/g) >= 2, 120_000);
      t.log(
        g
          .log()
          .split('\n')
          .filter((l) => /LU |workers ready/.test(l))
          .join('\n'),
      );
      // The session sees it now; a standby port answers a media command NOT READY, TARGET PORT IN STANDBY STATE
      // (not LOGICAL UNIT NOT SUPPORTED: the LU is there).
      t.deepEqual(await reportLuns(ini), [0]);
      const rd = await liveRead(ini, 0, 0, 1);
      t.is(liveSense(rd), '02/04/0b');
      t.true(g.alive());
      await g.stop();
    },
  );

  test.serial(
    'gateway A killed with kill -9 in a stream of FUA writes: every acknowledged write reads back through B',
    async (t) => {
      t.timeout(120_000);
      const a = await login(0, 'stream-a');
      const acked: number[] = [];
      let stop = false;
      const stream = (async () => {
        for (let n = 0; !stop; n++) {
          const r = await write(a, 100_000 + n, pattern(BS, 50_000 + n), true).catch(() => null);
          if (r === null || r.status !== 0) break;
          acked.push(n);
        }
      })();
      while (acked.length < 200) await new Promise((res) => setTimeout(res, 5));
      await gw[0].stop('SIGKILL');
      stop = true;
      await stream;
      t.log(`${acked.length} FUA writes acknowledged before the kill`);
      const b = await login(1, 'stream-b');
      const back = await read(b, 100_000, acked.length);
      good(t, back, 'READ through B');
      let bad = -1;
      for (const n of acked)
        if (!back.data.subarray(n * BS, (n + 1) * BS).equals(pattern(BS, 50_000 + n))) {
          bad = n;
          break;
        }
      t.is(bad, -1, 'every acknowledged write is in the image');
      // B shuts down cleanly: every backstore flushed, the image closed, exit 0.
      for (const s of sessions.splice(0)) s.close();
      gw[1].proc.kill('SIGTERM');
      const code = await new Promise<number | null>((res) => gw[1].proc.once('exit', (c) => res(c)));
      t.is(code, 0, `gateway B exits 0 after SIGTERM: ${gw[1].log().split('\n').slice(-3).join(' | ')}`);
      await gw[1].stop(); // removes its config directory
      // Both gateways again, for what follows; the restarted A serves what it wrote before it was killed.
      for (let i = 0; i < 2; i++) gw[i] = await startGateway(i);
      for (const g of gw.slice(0, 2)) await servedByEveryWorker(g);
      const again = await login(0, 'stream-again');
      t.true(
        (await read(again, 100_000, 1)).data.equals(pattern(BS, 50_000)),
        'restarted A reads the stream',
      );
    },
  );

  test.serial('blocklisted gateways answer CHECK CONDITION, never GOOD, and stay up', async (t) => {
    t.timeout(120_000);
    const a = await login(0, 'fenced-a');
    const b = await login(1, 'fenced-b');
    good(t, await write(a, 70000, pattern(BS, 1)), 'WRITE before');
    // Every client on 127.0.0.1 (both gateways; the CLI talks to the mon, which a blocklist does not fence).
    await ceph('osd', 'blocklist', 'add', '127.0.0.1:0/0');
    try {
      for (const [name, s] of [
        ['A', a],
        ['B', b],
      ] as const) {
        let r = await write(s, 70000, pattern(BS, 2));
        // The first op may race the new OSD map; the gateway's client learns it is fenced within a few ops.
        for (let i = 0; i < 20 && r.status === 0; i++) {
          await new Promise((res) => setTimeout(res, 500));
          r = await write(s, 70000, pattern(BS, 2));
        }
        t.is(r.status, 2, `gateway ${name}: CHECK CONDITION`);
        t.log(`gateway ${name} sense: ${r.sense?.subarray(0, 18).toString('hex')}`);
        t.is(senseOf(r)?.key, 0x04, 'HARDWARE ERROR');
        t.is(senseOf(r)?.asc, 0x08, 'LOGICAL UNIT COMMUNICATION FAILURE/TIME-OUT');
      }
      t.true(gw[0].alive() && gw[1].alive(), 'both gateways still run');
    } finally {
      await ceph('osd', 'blocklist', 'rm', '127.0.0.1:0/0').catch(() => undefined);
    }
  });

  // Regression: the addon's completion loop polled librbd again after the batch's JavaScript had closed the image,
  // while rbd_close ran on the thread pool (SIGSEGV in rbd_poll_io_events, seen in rbd-atomic-crash.test.ts).
  test.serial(
    'an image closed from a completion handler is not polled again (in-process, 100 rounds)',
    async (t) => {
      t.timeout(120_000);
      const opts = { conf: cl.conf, pool: cl.pool, image: 'close-race', createSize: 4 << 20 };
      await (await RbdImage.open(opts)).close();
      let rounds = 0;
      for (let i = 0; i < 100; i++) {
        const img = await RbdImage.open(opts);
        let closing: Promise<void> | undefined;
        // Two reads in flight: the first handler to run closes the image inside the batch's callback scope, then
        // holds the loop thread long enough for rbd_close to finish on the thread pool: a poll after that
        // touches a destroyed image.
        const reads = [0, 4096].map((at) =>
          img.read(at, Buffer.alloc(4096)).then(() => {
            if (closing) return;
            closing = img.close();
            const until = Date.now() + 20;
            while (Date.now() < until);
          }),
        );
        await Promise.all(reads);
        await closing;
        rounds++;
      }
      t.is(rounds, 100);
    },
  );
}
