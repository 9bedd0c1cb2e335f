/**
 * Two gateways, one Ceph RBD image, implicit ALUA: issue 13 part 2 end to end. A one-node cluster
 * (scripts/ceph-cluster.sh), started once for this file; gateway A (target port group 1, active/optimized)
 * creates the image through its config, gateway B (group 2, standby) opens the same image; both export the same
 * target IQN with the same serial and NAA on two loopback ports. The multipath client writes a FUA stream
 * through A; A is killed with SIGKILL mid-stream; the test, as the cluster manager, fences A's librados client
 * with `ceph osd blocklist add` (its address learnt from the image's watchers) and only then makes B
 * active/optimized with `nodetgt alua state`; the client hears of it and moves to B, and every acknowledged write
 * reads back through B and from the image itself (`rbd export`).
 *
 * Skipped, with the reason, only when the Ceph binaries are not installed.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as alua from './helpers/alua';
import { ceph, clusterForFile, ifCeph, rbd, rbdLun, imageWatchers } from './helpers/ceph';
import * as gw from './helpers/gateways';
import type { TestInitiator } from './helpers/initiator';
import { drainUnitAttentions, read, senseOf, TUR } from './helpers/live';
import { MultipathClient } from './helpers/multipath';
import { cdb10 } from './scsi-helpers';

const IQN = 'iqn.2026-11.io.nodetgt.test:alua-rbd';
const HOST = 'iqn.2026-11.io.nodetgt.test:mp-host';
const IMAGE = 'alua0';
const SERIAL = 'ALUA-RBD-0001';
const NAA = '30000000000a1ab0';
/** Workers per gateway (gateways.ts starts 2): each opens the image, with its own watch. */
const WORKERS = 2;
const chunks = { count: 96, chunkBytes: 64 * 1024, seed: 300 };
/** librados' default watch timeout (osd_client_watch_timeout): a dead client's watch outlives it this long. */
const WATCH_TIMEOUT_MS = 30_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

ifCeph('ALUA over RBD', suite);

function suite(): void {
  const started: gw.Gateway[] = [];
  const sessions: TestInitiator[] = [];
  const cl = clusterForFile('nodetgt-alua-rbd-', async () => {
    for (const s of sessions) s.socket.destroy();
    for (const g of started) await g.c.stop();
  });

  /** Gateway A creates the image (`create: true`); B only opens it. Same identity on both. */
  async function gateway(name: string, group: number, create: boolean): Promise<gw.Gateway> {
    const lun = rbdLun(cl, 0, IMAGE, {
      ...(create ? { size: '64M', create: true } : {}),
      opTimeout: 5,
      serial: SERIAL,
      naa: NAA,
    });
    const states = ['active-optimized', 'standby'];
    const g = await gw.startGateway({
      dir: cl.tmp,
      name,
      iqn: IQN,
      group,
      states,
      luns: [lun],
      timeoutMs: 60_000,
    });
    started.push(g);
    // Every worker must have opened the image, or it would answer LOGICAL UNIT NOT SUPPORTED.
    if (/LU offline/.test(g.c.log()))
      throw new Error(`gateway ${name} could not open the image:\n${g.c.log()}`);
    return g;
  }

  /**
   * The image's watchers once `n` gateway processes watch it with one watch per worker each (a worker opens the
   * image after the portal listens; a session on a worker that has not would find no LU).
   */
  async function watchers(n: number): Promise<Map<string, number>> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const w = await imageWatchers(cl, IMAGE);
      if ((w.size === n && [...w.values()].every((c) => c === WORKERS)) || Date.now() > deadline) return w;
      await sleep(200);
    }
  }

  async function probe(g: gw.Gateway): Promise<TestInitiator> {
    const s = await gw.gatewaySession(g.c.port, IQN, `${HOST}-probe`);
    sessions.push(s);
    return s;
  }

  test.serial(
    'RBD image behind two ALUA gateways: SIGKILL of A mid-stream, A fenced by blocklist, B made optimized, every acknowledged write intact',
    async (t) => {
      t.timeout(240_000);
      const a = await gateway('a', 1, true);
      // A's librados client, the one the cluster manager will fence: the only watcher of the image so far.
      const onlyA = await watchers(1);
      t.deepEqual([...onlyA.values()], [WORKERS], `A alone watches the image: ${[...onlyA].join(', ')}`);
      const aAddr = [...onlyA.keys()][0];
      const b = await gateway('b', 2, false);
      const both = await watchers(2);
      t.deepEqual([...both.values()], [WORKERS, WORKERS], `A and B watch the image: ${[...both].join(', ')}`);
      t.true(both.has(aAddr));
      t.log(`A's client ${aAddr}; B's ${[...both.keys()].filter((x) => x !== aAddr).join(', ')}`);
      const info = JSON.parse(await rbd(cl, 'info', '--format', 'json', `${cl.pool}/${IMAGE}`)) as {
        size: number;
        features: string[];
      };
      t.is(info.size, 64 << 20, 'created by A with its configured size');
      t.deepEqual(info.features, ['layering'], 'layering only: no exclusive lock to bounce between gateways');

      const sa = await probe(a);
      const sb = await probe(b);
      // ---- one device through both ports, one set of groups, reported the same through both
      const ids = [];
      for (const s of [sa, sb]) {
        const std = await s.scsi(alua.inquiryCdb(false, 0, 96), { edtl: 96, read: true });
        t.is(alua.tpgsOf(std.data), 1, 'TPGS 01b: implicit ALUA');
        ids.push(
          alua.identityOf83((await s.scsi(alua.inquiryCdb(true, 0x83), { edtl: 1024, read: true })).data),
        );
      }
      t.deepEqual(ids, [
        { naa: NAA, relativePort: 1, group: 1 },
        { naa: NAA, relativePort: 2, group: 2 },
      ]);
      for (const extended of [false, true]) {
        const viaA = await gw.reportedGroups(sa, extended);
        t.deepEqual(viaA, [
          [1, alua.AO, [1]],
          [2, alua.STANDBY, [2]],
        ]);
        t.deepEqual(
          await gw.reportedGroups(sb, extended),
          viaA,
          `RTPG the same through A and B (${extended})`,
        );
      }
      // ---- the standby gateway refuses I/O: its librbd handle never writes while A does
      t.is(senseOf(await read(sb, 0, 0, 1)), alua.STANDBY_SENSE, 'READ through B');
      const one = Buffer.alloc(512, 0xee);
      const wb = await sb.scsi(cdb10(0x2a, 0, 1, 0x08), { edtl: 512, write: true, data: one });
      t.is(senseOf(wb), alua.STANDBY_SENSE, 'WRITE FUA through B');
      t.is(senseOf(await sb.scsi(TUR, { edtl: 0 })), alua.STANDBY_SENSE, 'TEST UNIT READY through B');

      // ---- the stream, the kill, the fence, the flip
      const mp = await MultipathClient.open(
        [
          { name: 'A', port: a.c.port },
          { name: 'B', port: b.c.port },
        ],
        { target: IQN, initiatorName: HOST, noPathTimeoutMs: 120_000 },
      );
      try {
        t.is(mp.current?.name, 'A', 'the client uses the optimized path');
        t.is(mp.naa, NAA);
        let killedAt = 0;
        const written = await gw.writeThroughFailover(mp, {
          ...chunks,
          killAt: 40,
          kill: () => {
            t.is(mp.current?.name, 'A', 'the first 40 writes went through A');
            killedAt = Date.now();
            return a.c.stop('SIGKILL');
          },
          failover: async () => {
            t.false(a.c.alive(), 'gateway A is gone');
            // Fence first: from this OSD map on, A's client (were it only cut off, not dead) can write no more.
            await ceph(cl, 'osd', 'blocklist', 'add', aAddr);
            t.true((await ceph(cl, 'osd', 'blocklist', 'ls')).includes(aAddr), 'A listed as blocklisted');
            // The OSD drops a blocklisted client's watches at once; a dead client's otherwise stays until the
            // watch times out. A's watch gone well before that shows the OSD applied the fence to A's client.
            let left = await imageWatchers(cl, IMAGE);
            while (left.has(aAddr) && Date.now() - killedAt < WATCH_TIMEOUT_MS / 2) {
              await sleep(200);
              left = await imageWatchers(cl, IMAGE);
            }
            t.false(
              left.has(aAddr),
              `A's watch dropped by the fence, ${Date.now() - killedAt} ms after the kill`,
            );
            t.is(left.size, 1, "B's watch stays: only A was fenced");
            t.log(`kill to fenced: ${Date.now() - killedAt} ms`);
            // Then the flip, on the surviving gateway.
            t.regex(await gw.setAluaState(b, IQN, 1, 'unavailable'), /active-optimized -> unavailable/);
            t.regex(await gw.setAluaState(b, IQN, 2, 'active-optimized'), /standby -> active-optimized/);
          },
        });
        t.log(`kill to the last write acknowledged through B: ${Date.now() - killedAt} ms`);
        t.log(mp.events.join('\n'));
        t.is(mp.current?.name, 'B', 'the client moved to B');
        t.deepEqual(
          written,
          Array.from({ length: chunks.count }, (_, i) => i),
          'every write acknowledged once, before and after the kill',
        );
        t.deepEqual(gw.missingFailoverSteps(mp, 'A', 'B'), [], mp.events.join('; '));

        // ---- the data: through B, and in the image itself
        t.deepEqual(await gw.chunksDifferingThrough(mp, chunks), [], 'every chunk reads back through B');
        const exported = path.join(cl.tmp, 'export.raw');
        await rbd(cl, 'export', `${cl.pool}/${IMAGE}`, exported);
        t.deepEqual(
          gw.chunksDifferingIn(fs.readFileSync(exported), chunks),
          [],
          'every chunk is in the image',
        );
      } finally {
        mp.close();
      }

      // ---- B's other session hears of the change once, then is served; RTPG says who changed what
      t.deepEqual(
        await drainUnitAttentions(sb, 0),
        [alua.STATE_CHANGED],
        'ASYMMETRIC ACCESS STATE CHANGED, once',
      );
      t.is((await read(sb, 0, 0, 1)).status, 0, 'READ through B served');
      t.deepEqual(await gw.reportedGroups(sb, true), [
        [1, alua.UNAVAILABLE, [1]],
        [2, alua.AO, [2]],
      ]);
      t.true(b.c.alive(), 'gateway B still runs');
    },
  );
}
