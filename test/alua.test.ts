/**
 * Two gateways, one target, one image (issue 13 part 2): two `nodetgt serve` processes on two loopback ports export
 * the same target IQN over the same backing file, gateway A as target port group 1 (active/optimized), B as group
 * 2 (standby). What a host's multipath needs from them: INQUIRY TPGS, VPD 83h designators equal where they name
 * the LU and different where they name the port, the same REPORT TARGET PORT GROUPS from both, I/O refused through
 * the standby port; then failover: A is killed with SIGKILL under a write stream, B is made active/optimized by the
 * live change command, the multipath client (helpers/multipath.ts) moves to B, and every acknowledged write is
 * there. The file backstore stands in for RBD: nothing here depends on the backstore. And the same state change
 * made by editing the file and sending SIGHUP.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN } from './helpers/child-target';
import { diskWorkspace } from './helpers/disk-workspace';
import {
  AO,
  identityOf83,
  inquiryCdb,
  parseRtpg,
  rtpgCdb,
  STANDBY,
  STANDBY_SENSE,
  STATE_CHANGED,
  tpgsOf,
  UNAVAILABLE,
} from './helpers/alua';
import {
  chunksDifferingIn,
  chunksDifferingThrough,
  gatewaySession,
  missingFailoverSteps,
  reportedGroups,
  setAluaState,
  startGateway,
  writeThroughFailover,
  type Gateway,
} from './helpers/gateways';
import { drainUnitAttentions, read, senseOf, TUR } from './helpers/live';
import { MultipathClient } from './helpers/multipath';
import { sharedNaa } from '../src/config/alua';
import { run } from './helpers/run';
import { cdb10 } from './scsi-helpers';

const IQN = 'iqn.2026-11.io.nodetgt.test:alua';
const HOST = 'iqn.2026-11.io.nodetgt.test:host';
const SERIAL = 'ALUA-IMG-0001';
const IMAGE_BYTES = 8 * 1024 * 1024;
const CHUNK = 64 * 1024;

const ws = diskWorkspace('nodetgt-alua-');

/** One gateway: its own config file and state directory, the shared image file, this gateway's group. */
async function gateway(name: string, group: number, states: [string, string]): Promise<Gateway> {
  const luns = [{ lun: 0, path: path.join(ws.dir, 'image.img'), serial: SERIAL }];
  const g = await startGateway({ dir: ws.dir, name, iqn: IQN, group, states, luns });
  ws.children.push(g.c);
  return g;
}

const session = (port: number, initiatorName = HOST) => gatewaySession(port, IQN, initiatorName);
const setState = (g: Gateway, group: number, state: string) => setAluaState(g, IQN, group, state);

test.serial(
  'two gateways: INQUIRY, VPD 83h, RTPG consistent; standby refuses I/O; SIGKILL of A, B flipped live, multipath fails over with the data intact',
  async (t) => {
    fs.writeFileSync(path.join(ws.dir, 'image.img'), Buffer.alloc(0));
    fs.truncateSync(path.join(ws.dir, 'image.img'), IMAGE_BYTES);
    const a = await gateway('a', 1, ['active-optimized', 'standby']);
    const b = await gateway('b', 2, ['active-optimized', 'standby']);
    const sa = await session(a.c.port, `${HOST}-probe`);
    const sb = await session(b.c.port, `${HOST}-probe`);
    try {
      // ---- INQUIRY and VPD 83h, through each gateway
      const ids = [];
      for (const s of [sa, sb]) {
        const std = await s.scsi(inquiryCdb(false, 0, 96), { edtl: 96, read: true });
        t.is(tpgsOf(std.data), 1, 'TPGS 01b: implicit ALUA');
        t.is(std.data[6] & 0x10, 0x10, 'MULTIP');
        const serial = await s.scsi(inquiryCdb(true, 0x80), { edtl: 1024, read: true });
        const page = await s.scsi(inquiryCdb(true, 0x83), { edtl: 1024, read: true });
        ids.push({ serial: serial.data.toString('ascii', 4), ...identityOf83(page.data) });
      }
      t.is(ids[0].serial, SERIAL);
      t.is(ids[1].serial, SERIAL, 'the same unit serial number through both gateways');
      t.is(ids[0].naa, ids[1].naa, 'the same NAA designator: one device for multipath');
      t.deepEqual([ids[0].relativePort, ids[0].group], [1, 1], 'gateway A: port 1 of group 1');
      t.deepEqual([ids[1].relativePort, ids[1].group], [2, 2], 'gateway B: port 2 of group 2');

      // ---- libiscsi's decoding agrees. Through A only: libiscsi's connect sends TEST UNIT READY after the login and
      // gives up on anything but GOOD or a unit attention, so through the standby gateway it reports 04h/0Bh.
      const url = (g: Gateway) => `iscsi://127.0.0.1:${g.c.port}/${IQN}/0`;
      const std = await run('iscsi-inq', ['-i', `${HOST}-libiscsi`, url(a)], 30_000);
      t.regex(std.stdout, /^TPGS:1$/m, `iscsi-inq: TPGS 1 (${std.stderr})`);
      const vpd = await run('iscsi-inq', ['-i', `${HOST}-libiscsi`, '-e', '1', '-c', '131', url(a)], 30_000);
      t.regex(vpd.stdout, /Designator Type:\(5\) TARGET_PORT_GROUP/);
      t.regex(vpd.stdout, /Designator Type:\(4\) RELATIVE_TARGET_PORT/);
      t.regex(vpd.stdout, new RegExp(`Designator:\\[NODETGT ${SERIAL}\\]`));
      const viaB = await run('iscsi-inq', ['-i', `${HOST}-libiscsi`, url(b)], 30_000);
      t.regex(viaB.stderr, /NOT READY.*0x040b/, 'libiscsi through B: NOT READY, 04h/0Bh');

      // ---- REPORT TARGET PORT GROUPS: both gateways report both groups, the same way, in both formats
      for (const extended of [false, true]) {
        const answers = [await reportedGroups(sa, extended), await reportedGroups(sb, extended)];
        t.deepEqual(answers[0], [
          [1, AO, [1]],
          [2, STANDBY, [2]],
        ]);
        t.deepEqual(answers[1], answers[0], `the same groups through A and B (extended header: ${extended})`);
      }

      // ---- standby refuses I/O, active serves it
      t.is(
        senseOf(await read(sb, 0, 0, 1)),
        STANDBY_SENSE,
        'READ through B: NOT READY, TARGET PORT IN STANDBY STATE',
      );
      const wb = await sb.scsi(cdb10(0x2a, 0, 1, 0x08), {
        edtl: 512,
        write: true,
        data: Buffer.alloc(512, 0xee),
      });
      t.is(senseOf(wb), STANDBY_SENSE, 'WRITE through B refused');
      t.is(senseOf(await sb.scsi(TUR, { edtl: 0 })), STANDBY_SENSE, 'TEST UNIT READY through B');
      t.is((await read(sa, 0, 0, 1)).status, 0, 'READ through A');
      t.deepEqual(
        fs.readFileSync(path.join(ws.dir, 'image.img')).subarray(0, 512),
        Buffer.alloc(512),
        'B wrote nothing',
      );

      // ---- failover
      const mp = await MultipathClient.open(
        [
          { name: 'A', port: a.c.port },
          { name: 'B', port: b.c.port },
        ],
        { target: IQN, initiatorName: HOST, noPathTimeoutMs: 60_000 },
      );
      t.is(mp.current?.name, 'A', 'the client uses the optimized path');
      t.is(mp.naa, ids[0].naa);
      const chunks = { count: 96, chunkBytes: CHUNK, seed: 100 };
      // A write stream; A dies under it (SIGKILL), and B is made active/optimized live while the client waits.
      const written = await writeThroughFailover(mp, {
        ...chunks,
        killAt: 40,
        kill: () => {
          t.is(mp.current?.name, 'A');
          return a.c.stop('SIGKILL');
        },
        failover: async () => {
          t.false(a.c.alive(), 'gateway A is gone');
          // The cluster manager's move: A's group unavailable, B's active/optimized (B's own configuration).
          t.regex(
            await setState(b, 1, 'unavailable'),
            /target port group 1 of .*: active-optimized -> unavailable/,
          );
          t.regex(
            await setState(b, 2, 'active-optimized'),
            /target port group 2 of .*: standby -> active-optimized/,
          );
        },
      });
      t.log(mp.events.join('\n'));
      t.is(mp.current?.name, 'B', 'the client moved to B');
      t.deepEqual(
        written,
        Array.from({ length: 96 }, (_, i) => i),
        'every write was acknowledged once',
      );
      t.deepEqual(missingFailoverSteps(mp, 'A', 'B'), [], mp.events.join('; '));

      // ---- the data written before and after the failover, read through B and straight from the image
      t.deepEqual(await chunksDifferingThrough(mp, chunks), [], 'every chunk reads back through B');
      const image = fs.readFileSync(path.join(ws.dir, 'image.img'));
      t.deepEqual(chunksDifferingIn(image, chunks), [], 'all 96 chunks are in the image');

      // ---- the probe session on B hears of the change once, then B serves it
      t.deepEqual(await drainUnitAttentions(sb, 0), [STATE_CHANGED], 'ASYMMETRIC ACCESS STATE CHANGED, once');
      t.is((await read(sb, 0, 0, 1)).status, 0, 'READ through B now served');
      const after = parseRtpg((await sb.scsi(rtpgCdb(true), { edtl: 1024, read: true })).data, true);
      t.deepEqual(
        after.groups.map((g) => [g.id, g.state, g.status]),
        [
          [1, UNAVAILABLE, 2],
          [2, AO, 2],
        ],
        'RTPG: states altered by implicit behaviour (STATUS CODE 02h)',
      );

      // ---- a LUN added live to the ALUA target serves the same port groups (and needs its serial)
      const addLun = (serial: string[]) =>
        run(process.execPath, [
          BIN,
          'lun',
          'add',
          IQN,
          '--path',
          path.join(ws.dir, 'image2.img'),
          '--size',
          '1M',
          ...serial,
          '--config',
          b.file,
        ]);
      const refused = await addLun([]);
      t.is(refused.code, 1);
      t.regex(refused.stderr, /'serial' is required on a target with 'alua'/);
      t.is((await addLun(['--serial', 'ALUA-IMG-0002'])).code, 0);
      t.deepEqual(await drainUnitAttentions(sb, 0), ['06/3f/0e'], 'REPORTED LUNS DATA HAS CHANGED');
      const std1 = await sb.scsi(inquiryCdb(false, 0, 96), { lun: 1, edtl: 96, read: true });
      t.is(tpgsOf(std1.data), 1, 'the new LU reports TPGS 01b');
      const id1 = identityOf83(
        (await sb.scsi(inquiryCdb(true, 0x83), { lun: 1, edtl: 1024, read: true })).data,
      );
      t.deepEqual([id1.relativePort, id1.group], [2, 2]);
      t.is(id1.naa, sharedNaa(IQN, 'ALUA-IMG-0002'), 'its NAA derived from target and serial');
      await setState(b, 2, 'standby');
      const shown = await run(process.execPath, [BIN, 'show', 'targets', '--config', b.file]);
      t.regex(
        shown.stdout,
        /1:unavailable 2:standby\*/,
        `nodetgt show targets: ${shown.stdout}${shown.stderr}`,
      );
      t.is(senseOf(await sb.scsi(TUR, { lun: 1, edtl: 0 })), STATE_CHANGED, 'the new LU hears of the change');
      t.is(senseOf(await read(sb, 1, 0, 1)), '02/04/0b', 'the new LU is behind the same standby gate');
      t.is(senseOf(await read(sb, 0, 0, 1)), '06/2a/06', 'LUN 0 hears of the change too');
      mp.close();
    } finally {
      sa.socket.destroy();
      sb.socket.destroy();
    }
  },
);

test.serial(
  'SIGHUP: a group state edited in the file is applied live, with ASYMMETRIC ACCESS STATE CHANGED',
  async (t) => {
    const image = path.join(ws.dir, 'image.img');
    if (!fs.existsSync(image)) fs.writeFileSync(image, Buffer.alloc(IMAGE_BYTES));
    const g = await gateway('hup', 2, ['active-optimized', 'standby']);
    const s = await session(g.c.port);
    try {
      t.is(senseOf(await read(s, 0, 0, 1)), STANDBY_SENSE);
      const doc = JSON.parse(fs.readFileSync(g.file, 'utf8')) as {
        targets: Array<{ alua: { groups: Array<{ state: string }> } }>;
      };
      doc.targets[0].alua.groups[1].state = 'active-non-optimized';
      fs.writeFileSync(g.file, JSON.stringify(doc));
      const from = g.c.log().length;
      g.c.proc.kill('SIGHUP');
      const deadline = Date.now() + 15_000;
      while (!/SIGHUP: configuration reloaded/.test(g.c.log().slice(from)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      t.regex(g.c.log().slice(from), /alua \(this gateway's group 2 is active-non-optimized\)/);
      t.deepEqual(await drainUnitAttentions(s, 0), [STATE_CHANGED]);
      t.is((await read(s, 0, 0, 1)).status, 0, 'active/non-optimized serves I/O');
    } finally {
      s.socket.destroy();
      await g.c.stop();
    }
  },
);
