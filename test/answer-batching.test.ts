/**
 * Commands answered at once still leave together. A READ or WRITE that the backstore serves from memory or the
 * page cache is answered while the parser is still inside the chunk that carried it (Backstore.readNow and
 * writeNow, ScsiDispatcher.execute returning a value). Commands that arrive in one chunk must then get their
 * answers in one write, not a write each: Connection.send holds an answer back while PduParser.pduFollows.
 *
 * Counted as system calls of the target's own thread (/proc/self/task/<tid>/io: the target runs in-process on
 * one worker thread; the thread is the one that wrote an answer for each of the commands sent one at a time
 * first). syscw there is the answers' socket writes; syscr is the socket reads that brought the commands plus
 * the backstore's own reads (a preadv2 from the page cache, or from tmpfs where the range is not known to be
 * allocated), as many per command as the commands sent one at a time made. The initiator's writes (the test's
 * main thread) and any other thread's are left out: the process-wide count this test first used once saw 31
 * writes in a clean-clone CI run, with nothing to tell whose.
 *
 * How many reads the kernel hands the chunk over in, and how many writes a batch of answers takes, depend on
 * the machine's socket buffers at that moment. The rule judged is that the answers leave in no more writes than
 * the reads that brought their commands, plus one, on a round whose commands came in at most MAX_READS reads
 * (where the rule tells batching from none: one answer a write is 16); a round that misses is measured again
 * (inOneChunk). Each command moves one 512-byte block, so that the 16 commands and their answers fit a TCP
 * segment each way. WRITEs are counted on tmpfs only: on a disk file the backstore's own pwritev2 calls are
 * write system calls of the thread too.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestTarget, TEST_TARGET, type TestTarget } from './helpers/target';
import { TestInitiator, defaultOperationalKeys } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

const N = 16;
const BLOCK = 512;
/** A measured round whose commands came in more reads than this is measured again (ROUNDS at most). */
const MAX_READS = 4;
const ROUNDS = 5;

interface Io {
  reads: number;
  writes: number;
}

/** syscr and syscw of each thread of this process. */
function threadIo(): Map<number, Io> {
  const out = new Map<number, Io>();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/self/task/${tid}/io`, 'utf8');
    } catch {
      continue; // the thread ended after the listing
    }
    const r = /^syscr:\s*(\d+)$/m.exec(text);
    const w = /^syscw:\s*(\d+)$/m.exec(text);
    if (!r || !w) throw new Error(`no syscr/syscw in /proc/self/task/${tid}/io`);
    out.set(Number(tid), { reads: Number(r[1]), writes: Number(w[1]) });
  }
  return out;
}

function delta(before: Map<number, Io>, after: Map<number, Io>, tid: number): Io {
  const a = after.get(tid) ?? { reads: 0, writes: 0 };
  const b = before.get(tid) ?? { reads: 0, writes: 0 };
  return { reads: a.reads - b.reads, writes: a.writes - b.writes };
}

/** Every thread's system calls between two snapshots, for the failure message. */
function describe(before: Map<number, Io>, after: Map<number, Io>, target: number): string {
  const parts: string[] = [];
  for (const tid of after.keys()) {
    const d = delta(before, after, tid);
    if (d.reads === 0 && d.writes === 0) continue;
    const who = tid === target ? 'target' : tid === process.pid ? 'main' : `thread ${tid}`;
    parts.push(`${who}: ${d.reads} reads, ${d.writes} writes`);
  }
  return parts.join('; ');
}

/** The thread that serves the connection, and the read system calls its backstore makes per command. */
interface TargetThread {
  tid: number;
  backstoreReads: number;
}

/**
 * The thread that serves the connection: the one, other than the main thread (the initiator), that wrote
 * while `commandsOneAtATime` ran N commands one round trip each (an answer each, so N writes at least). Each
 * of those commands came in a read of its own: the thread's other reads are the backstore's.
 */
async function targetThread(commandsOneAtATime: () => Promise<void>): Promise<TargetThread> {
  const before = threadIo();
  await commandsOneAtATime();
  const after = threadIo();
  let tid = -1;
  let most = 0;
  for (const t of after.keys()) {
    if (t === process.pid) continue;
    const w = delta(before, after, t).writes;
    if (w > most) [tid, most] = [t, w];
  }
  if (most < N)
    throw new Error(
      `no thread wrote the ${N} answers of commands sent one at a time (${describe(before, after, -1)})`,
    );
  return { tid, backstoreReads: Math.max(0, Math.round(delta(before, after, tid).reads / N) - 1) };
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

/**
 * Send the commands `start` makes in one write (the socket corked around them) and judge the round: its
 * commands came in at most MAX_READS reads of the target's thread (so that the rule tells batching from none),
 * and their answers left in no more writes than those reads, plus one. A round that misses either is measured
 * again, ROUNDS at most: a machine under memory pressure can clamp the socket buffers for a moment, so that
 * the commands come in pieces or a batch of answers leaves in parts. Answers sent a write each miss the rule
 * in every round. `check` sees each round's results.
 */
async function inOneChunk<T>(
  t: ExecutionContext,
  ini: TestInitiator,
  target: TargetThread,
  start: () => Promise<T>[],
  check: (results: T[]) => void,
): Promise<void> {
  const missed: string[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const before = threadIo();
    ini.socket.cork();
    const pending = start();
    ini.socket.uncork();
    check(await Promise.all(pending));
    const after = threadIo();
    const d = delta(before, after, target.tid);
    const reads = d.reads - N * target.backstoreReads;
    t.true(reads >= 1, `the target's thread read no chunk (${describe(before, after, target.tid)})`);
    if (reads <= MAX_READS && d.writes <= reads + 1) {
      t.log(`round ${round}: ${N} commands in ${reads} read(s), answered in ${d.writes} write(s)`);
      return;
    }
    missed.push(
      `round ${round}: ${d.writes} answer writes for commands that came in ${reads} reads ` +
        `(${describe(before, after, target.tid)}; ${target.backstoreReads} backstore reads a command)`,
    );
  }
  t.fail(`no round of ${N} commands in one chunk was answered in one write per read: ${missed.join('; ')}`);
}

const read1 = (lba: number) => cdb10(0x28, lba, 1);
const write1 = (lba: number) => cdb10(0x2a, lba, 1);

for (const where of ['tmpfs', 'disk'] as const) {
  test.serial(
    `${N} READs in one chunk, answered at once, come back in one write, not ${N} (LU on ${where})`,
    async (t) => {
      await withTarget(where, async (tt) => {
        const ini = await session(t, tt);
        const blocks = Array.from({ length: N }, () => randomBytes(BLOCK));
        for (let i = 0; i < N; i++) {
          const w = await ini.scsi(write1(i), { edtl: BLOCK, write: true, data: blocks[i] });
          t.is(w.status, 0);
        }
        // Once one at a time: the data is in the page cache (or the mapping) after this.
        const target = await targetThread(async () => {
          for (let i = 0; i < N; i++)
            t.true((await ini.scsi(read1(i), { edtl: BLOCK, read: true })).data.equals(blocks[i]));
        });
        await inOneChunk(
          t,
          ini,
          target,
          () => blocks.map((_, i) => ini.scsi(read1(i), { edtl: BLOCK, read: true })),
          (results) =>
            results.forEach((r, i) => {
              t.is(r.status, 0);
              t.true(r.data.equals(blocks[i]), `block ${i}`);
            }),
        );
        await ini.logout();
      });
    },
  );

  if (where === 'tmpfs')
    test.serial(
      `${N} WRITEs with immediate data in one chunk are answered in one write (LU on ${where})`,
      async (t) => {
        await withTarget(where, async (tt) => {
          const ini = await session(t, tt);
          const blocks = Array.from({ length: N }, () => randomBytes(BLOCK));
          // The blocks written once first, so that their pages are there for the writes measured.
          const target = await targetThread(async () => {
            for (let i = 0; i < N; i++) {
              const w = await ini.scsi(write1(i), { edtl: BLOCK, write: true, data: randomBytes(BLOCK) });
              t.is(w.status, 0);
            }
          });
          await inOneChunk(
            t,
            ini,
            target,
            () => blocks.map((data, i) => ini.scsi(write1(i), { edtl: BLOCK, write: true, data })),
            (results) => results.forEach((r) => t.is(r.status, 0)),
          );
          for (let i = 0; i < N; i++)
            t.true((await ini.scsi(read1(i), { edtl: BLOCK, read: true })).data.equals(blocks[i]));
          await ini.logout();
        });
      },
    );
}

/**
 * Gathered answers (Connection.gather: small whole answers copied together, written at the end of the turn)
 * and a READ whose Data-In takes several PDUs, sent from its own buffers through the stream, in one chunk:
 * every byte arrives and the answers keep their order (the initiator checks that StatSN goes up by one per
 * response, and the data digests when they are on). MaxRecvDataSegmentLength 8192 makes a 64 KiB READ eight
 * Data-In PDUs of the size a single small READ's would be.
 */
for (const digests of [false, true])
  test.serial(
    `gathered answers and a many-PDU READ in one turn keep their order (digests ${digests ? 'on' : 'off'})`,
    async (t) => {
      await withTarget('tmpfs', async (tt) => {
        const ini = await TestInitiator.connect(tt.port);
        const d = digests ? 'CRC32C' : 'None';
        const keys = defaultOperationalKeys().map(([k, v]): [string, string] =>
          k === 'HeaderDigest' || k === 'DataDigest'
            ? [k, d]
            : k === 'MaxRecvDataSegmentLength'
              ? [k, '8192']
              : [k, v],
        );
        const lr = await ini.login({
          targetName: TEST_TARGET,
          initiatorName: 'iqn.2026-12.io.nodetgt.test:gather',
          keys,
        });
        t.is(lr.status, 0);
        t.is(ini.dataDigest, digests);
        const big = randomBytes(128 * BLOCK);
        t.is(
          (await ini.scsi(cdb10(0x2a, 1000, 128), { edtl: big.length, write: true, data: big })).status,
          0,
        );
        const small = Array.from({ length: 8 }, () => randomBytes(BLOCK));
        for (let i = 0; i < small.length; i++)
          t.is((await ini.scsi(write1(i), { edtl: BLOCK, write: true, data: small[i] })).status, 0);
        for (let round = 0; round < 4; round++) {
          const fresh = randomBytes(BLOCK);
          ini.socket.cork();
          const pending = [
            ini.scsi(read1(round), { edtl: BLOCK, read: true }),
            ini.scsi(cdb10(0x28, 1000, 128), { edtl: big.length, read: true }),
            ini.scsi(read1(round + 1), { edtl: BLOCK, read: true }),
            ini.scsi(write1(500 + round), { edtl: BLOCK, write: true, data: fresh }),
            ini.scsi(read1(round + 2), { edtl: BLOCK, read: true }),
          ];
          ini.socket.uncork();
          const [a, b, c, w, e] = await Promise.all(pending);
          for (const r of [a, b, c, w, e]) t.is(r.status, 0);
          t.true(a.data.equals(small[round]), `round ${round}: first small READ`);
          t.true(b.data.equals(big), `round ${round}: the 64 KiB READ`);
          t.true(c.data.equals(small[round + 1]), `round ${round}: second small READ`);
          t.true(e.data.equals(small[round + 2]), `round ${round}: third small READ`);
          t.true((await ini.scsi(read1(500 + round), { edtl: BLOCK, read: true })).data.equals(fresh));
        }
        await ini.logout();
      });
    },
  );
