/**
 * The QD1 send path (Connection.sendAlone) copies an answer into a per-connection scratch buffer and writes it
 * uncorked; the scratch may be reused only when the socket wrote it through. Checked on the wire past a full socket
 * buffer: an initiator that stops reading while it goes on sending one command at a time makes the target's
 * answers go out at once, then wait in the stream (its writes partial, or refused with EAGAIN); once it reads
 * again every answer must arrive whole (with digests on, each one checked), each StatSN once, the READs with the
 * bytes written.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { startTestTarget, TEST_TARGET } from './helpers/target';
import { TestInitiator, defaultOperationalKeys, type ScsiResult } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

const BLOCKS = 16; // 8 KiB READs: the largest answer sendAlone() copies into one buffer
const REGIONS = 8;
/** Answers owed while the initiator does not read: ~10 MiB, more than loopback socket buffers hold. */
const COMMANDS = 1200;

for (const digests of [false, true])
  test(`answers written past a full socket buffer arrive whole, each once (digests ${digests ? 'on' : 'off'})`, async (t) => {
    const tt = await startTestTarget({ workers: 1, extra: { queueDepth: 2048 } });
    try {
      const ini = await TestInitiator.connect(tt.port);
      const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
        digests && (k === 'HeaderDigest' || k === 'DataDigest') ? [k, 'CRC32C'] : [k, v],
      );
      const lr = await ini.login({
        targetName: TEST_TARGET,
        initiatorName: `iqn.2026-11.io.nodetgt.test:direct-${digests}`,
        keys,
      });
      t.is(lr.status, 0);
      t.is(ini.dataDigest, digests);
      const regions: Buffer[] = [];
      for (let i = 0; i < REGIONS; i++) {
        const data = randomBytes(BLOCKS * 512);
        regions.push(data);
        const w = await ini.scsi(cdb10(0x2a, i * BLOCKS, BLOCKS), { edtl: data.length, write: true, data });
        t.is(w.status, 0);
      }
      ini.socket.pause();
      const pending: { kind: 'read' | 'write'; region: number; done: Promise<ScsiResult> }[] = [];
      for (let i = 0; i < COMMANDS; i++) {
        const region = i % REGIONS;
        // Every fifth command a WRITE of one block past the regions: an answer that is a header alone.
        const task =
          i % 5 === 4
            ? ini.start(cdb10(0x2a, REGIONS * BLOCKS + (i % 64), 1), {
                edtl: 512,
                write: true,
                data: Buffer.alloc(512, i & 0xff),
                timeoutMs: 120_000,
              })
            : ini.start(cdb10(0x28, region * BLOCKS, BLOCKS), {
                edtl: BLOCKS * 512,
                read: true,
                timeoutMs: 120_000,
              });
        pending.push({ kind: i % 5 === 4 ? 'write' : 'read', region, done: task.done });
        // One command at a time, most of them alone on the connection when the target answers (the QD1 path).
        await new Promise((r) => setTimeout(r, 1));
      }
      await new Promise((r) => setTimeout(r, 500));
      ini.socket.resume();
      const results = await Promise.all(pending.map((p) => p.done));
      // WRITEs may finish after READs sent later: StatSNs follow the answers, not the commands.
      const statSNs = results.map((r) => r.statSN).sort((a, b) => a - b);
      t.deepEqual(
        statSNs,
        statSNs.map((_, i) => statSNs[0]! + i),
        'each StatSN once',
      );
      results.forEach((r, i) => {
        t.is(r.status, 0);
        const p = pending[i]!;
        if (p.kind === 'read' && !r.data.equals(regions[p.region]!)) t.fail(`READ ${i}: data differs`);
      });
      await ini.logout();
    } finally {
      await tt.close();
    }
  });
