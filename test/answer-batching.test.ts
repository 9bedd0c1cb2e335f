/**
 * Commands answered at once still leave together. A READ or WRITE that the backstore serves from memory or the
 * page cache is answered while the parser is still inside the chunk that carried it (Backstore.readNow and
 * writeNow, ScsiDispatcher.execute returning a value). Commands that arrive in one chunk must then get their
 * answers in one write, not a write each: Connection.send holds an answer back while PduParser.pduFollows.
 * Counted as write system calls of this process (/proc/self/io, syscw: the target runs in-process; the tests run
 * one after the other so that each counts only its own), and the bytes on the wire checked as usual. WRITEs are
 * counted on tmpfs only: on a disk file the backstore's own pwritev2 calls are write system calls too.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

const N = 16;
const BLOCK = 4096;

function writeCalls(): number {
  const m = /^syscw:\s*(\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'));
  if (!m) throw new Error('no syscw in /proc/self/io');
  return Number(m[1]);
}

/**
 * A target whose LU is on tmpfs (/dev/shm: reads and writes both done at once, through the file's mapping) or
 * in the test's directory on disk (reads done at once from the page cache).
 */
async function withTarget(where: 'tmpfs' | 'disk', fn: (tt: TestTarget) => Promise<void>): Promise<void> {
  const shm = where === 'tmpfs' ? fs.mkdtempSync(path.join('/dev/shm', 'nodetgt-batch-')) : null;
  const luns = shm ? [{ lun: 0, path: path.join(shm, 'lun0.img'), size: '64M' }] : undefined;
  const tt = await startTestTarget({ workers: 1, luns });
  try {
    await fn(tt);
  } finally {
    await tt.close();
    if (shm) fs.rmSync(shm, { recursive: true, force: true });
  }
}

async function session(t: ExecutionContext, tt: TestTarget): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(tt.port);
  const lr = await ini.login({ targetName: TEST_TARGET, initiatorName: 'iqn.2026-12.io.nodetgt.test:batch' });
  t.is(lr.status, 0);
  return ini;
}

/** Send the commands `start` makes in one write (the socket corked around them) and count this process's writes. */
async function inOneChunk<T>(
  ini: TestInitiator,
  start: () => Promise<T>[],
): Promise<{ results: T[]; writes: number }> {
  const before = writeCalls();
  ini.socket.cork();
  const pending = start();
  ini.socket.uncork();
  const results = await Promise.all(pending);
  return { results, writes: writeCalls() - before };
}

for (const where of ['tmpfs', 'disk'] as const) {
  test.serial(
    `${N} READs in one chunk, answered at once, come back in a write or two, not ${N} (LU on ${where})`,
    async (t) => {
      t.true(writeCalls() > 0, 'this kernel counts write calls');
      await withTarget(where, async (tt) => {
        const ini = await session(t, tt);
        const blocks = Array.from({ length: N }, () => randomBytes(BLOCK));
        for (let i = 0; i < N; i++) {
          const w = await ini.scsi(cdb10(0x2a, i * 8, 8), { edtl: BLOCK, write: true, data: blocks[i] });
          t.is(w.status, 0);
        }
        // Once one at a time: the data is in the page cache (or the mapping) after this.
        for (let i = 0; i < N; i++)
          t.true((await ini.scsi(cdb10(0x28, i * 8, 8), { edtl: BLOCK, read: true })).data.equals(blocks[i]));
        const { results, writes } = await inOneChunk(ini, () =>
          blocks.map((_, i) => ini.scsi(cdb10(0x28, i * 8, 8), { edtl: BLOCK, read: true })),
        );
        results.forEach((r, i) => {
          t.is(r.status, 0);
          t.true(r.data.equals(blocks[i]), `block ${i}`);
        });
        // One write of the initiator's, one (or two, when the socket takes a part) of the target's answers, and
        // room for a stray wake-up write of another thread (a V8 platform thread's was seen): one answer a write
        // would be 17.
        t.true(writes <= 6, `${writes} write calls for ${N} commands and their answers`);
        await ini.logout();
      });
    },
  );

  if (where === 'tmpfs')
    test.serial(
      `${N} WRITEs with immediate data in one chunk are answered in a write or two (LU on ${where})`,
      async (t) => {
        await withTarget(where, async (tt) => {
          const ini = await session(t, tt);
          const blocks = Array.from({ length: N }, () => randomBytes(BLOCK));
          // The blocks written once first, so that their pages are there for the writes measured.
          for (let i = 0; i < N; i++) {
            const w = await ini.scsi(cdb10(0x2a, i * 8, 8), {
              edtl: BLOCK,
              write: true,
              data: randomBytes(BLOCK),
            });
            t.is(w.status, 0);
          }
          const { results, writes } = await inOneChunk(ini, () =>
            blocks.map((data, i) => ini.scsi(cdb10(0x2a, i * 8, 8), { edtl: BLOCK, write: true, data })),
          );
          for (const r of results) t.is(r.status, 0);
          t.true(writes <= 6, `${writes} write calls for ${N} commands and their answers`);
          for (let i = 0; i < N; i++)
            t.true(
              (await ini.scsi(cdb10(0x28, i * 8, 8), { edtl: BLOCK, read: true })).data.equals(blocks[i]),
            );
          await ini.logout();
        });
      },
    );
}
