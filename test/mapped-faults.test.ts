/**
 * The mapped copies of a tmpfs LU (src/backstore/file.ts, native/memmap.cc) against a real target process: a
 * page the mapping can no longer give (the file truncated under the target, a full tmpfs) raises SIGBUS inside a
 * copy. The target must answer the command with the protocol's sense (MEDIUM ERROR past the new end, DATA
 * PROTECT / SPACE ALLOCATION FAILED for a full tmpfs), never die of the signal, and another session on another
 * LU must see nothing of it.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startChildTarget, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';
import { cdb10 } from './scsi-helpers';

const IQN = 'iqn.2026-12.io.nodetgt.test:mapped';
const MiB = 1 << 20;
const senseOf = (s: Buffer | null) => (s ? [s[2] & 0x0f, s[12], s[13]] : null);
const pattern = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
};

function start(lun0: string, lun1: string, dir: string): Promise<ChildTarget> {
  return startChildTarget(
    [
      '--portal',
      '127.0.0.1:0',
      '--target',
      IQN,
      '--lun',
      `${lun0}:8M`,
      '--lun',
      `${lun1}:8M`,
      '--workers',
      '1',
      '--state-dir',
      path.join(dir, 'state'),
    ],
    { cwd: dir },
  );
}

/** The other session: reads back what it wrote to LUN 1, GOOD, every time it is asked. */
interface Witness {
  check: () => Promise<boolean>;
  close: () => void;
}

async function witness(port: number): Promise<Witness> {
  const ini = await TestInitiator.connect(port);
  if ((await ini.login({ targetName: IQN, initiatorName: 'iqn.2026-12.test:witness' })).status !== 0)
    throw new Error('witness login failed');
  const data = pattern(64 * 1024, 5);
  const w = await ini.scsi(cdb10(0x2a, 256, 128), { edtl: data.length, write: true, data, lun: 1 });
  if (w.status !== 0) throw new Error('witness write failed');
  return {
    check: async () => {
      const r = await ini.scsi(cdb10(0x28, 256 + 8, 8), { edtl: 4096, read: true, lun: 1 });
      return r.status === 0 && r.data.equals(data.subarray(4096, 8192));
    },
    close: () => ini.close(),
  };
}

/** The target lived through it, said nothing of a SIGBUS, and the other session still reads its LU. */
async function unharmed(t: ExecutionContext, child: ChildTarget, other: Witness): Promise<void> {
  t.true(await other.check(), 'the other session reads its LU');
  t.true(child.alive(), 'the target is alive');
  t.notRegex(child.log(), /SIGBUS/);
  other.close();
}

test.serial(
  'tmpfs LU truncated under the target after mapped reads: MEDIUM ERROR past the new end, no SIGBUS, other session unharmed',
  async (t) => {
    t.timeout(120_000);
    const dir = fs.mkdtempSync('/dev/shm/nodetgt-mapped-faults-');
    const file = path.join(dir, 'lun0.img');
    let child: ChildTarget | undefined;
    try {
      child = await start(file, path.join(dir, 'lun1.img'), dir);
      const other = await witness(child.port);
      const ini = await TestInitiator.connect(child.port);
      t.is((await ini.login({ targetName: IQN })).status, 0);
      // Written whole by 256 KiB writes (through the ring), so that the 4 KiB reads after find every 2 MiB chunk
      // whole and go through the mapping of the file, which then holds every page.
      const data = pattern(256 * 1024, 1);
      for (let lba = 0; lba < 16384; lba += 512) {
        const w = await ini.scsi(cdb10(0x2a, lba, 512), { edtl: data.length, write: true, data });
        t.is(w.status, 0);
      }
      for (const lba of [0, 4096, 8192, 12288, 16376]) {
        const r = await ini.scsi(cdb10(0x28, lba, 8), { edtl: 4096, read: true });
        t.is(r.status, 0);
        t.true(r.data.equals(data.subarray((lba % 512) * 512, (lba % 512) * 512 + 4096)), `read at ${lba}`);
      }
      t.true(await other.check());

      fs.truncateSync(file, 4 * MiB);
      // Right away, before the periodic size check: a copy to or from a mapped page past 4 MiB raises SIGBUS.
      // The write must fail, not extend the file again over a hole as pwrite would.
      const write = await ini.scsi(cdb10(0x2a, 12288, 8), {
        edtl: 4096,
        write: true,
        data: data.subarray(0, 4096),
      });
      t.is(write.status, 2);
      t.deepEqual(senseOf(write.sense), [0x3, 0x0c, 0x00], 'MEDIUM ERROR, WRITE ERROR');
      t.is(fs.statSync(file).size, 4 * MiB, 'not re-extended');
      const past = await ini.scsi(cdb10(0x28, 12288 + 8, 8), { edtl: 4096, read: true });
      t.is(past.status, 2);
      t.deepEqual(senseOf(past.sense), [0x3, 0x11, 0x00], 'MEDIUM ERROR, UNRECOVERED READ ERROR');
      const before = await ini.scsi(cdb10(0x28, 4096, 8), { edtl: 4096, read: true });
      t.is(before.status, 0, 'before the new end: still the data');
      t.true(before.data.equals(data.subarray(0, 4096)));
      t.regex(child.log(), /backing file shrank/, 'the LU says so');
      await unharmed(t, child, other);
      ini.close();
    } finally {
      await child?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

test.serial(
  'a full tmpfs under the target: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT, no SIGBUS; reads and another session go on',
  async (t) => {
    t.timeout(120_000);
    // A 1 MiB tmpfs of its own (mount(2): root, as the suite's network namespace tests).
    if (process.getuid?.() !== 0) return t.fail('needs root to mount a small tmpfs');
    const dir = fs.mkdtempSync('/dev/shm/nodetgt-mapped-full-');
    const small = path.join(dir, 'small');
    fs.mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    let child: ChildTarget | undefined;
    try {
      // An 8 MiB thin LU on 1 MiB of tmpfs.
      child = await start(path.join(small, 'lun0.img'), path.join(dir, 'lun1.img'), dir);
      const other = await witness(child.port);
      const ini = await TestInitiator.connect(child.port);
      t.is((await ini.login({ targetName: IQN })).status, 0);
      const data = pattern(64 * 1024, 9);
      let refused: { lba: number; sense: number[] | null } | undefined;
      for (let lba = 0; lba < 16384 && !refused; lba += 128) {
        const w = await ini.scsi(cdb10(0x2a, lba, 128), { edtl: data.length, write: true, data });
        if (w.status !== 0) refused = { lba, sense: senseOf(w.sense) };
      }
      t.truthy(refused, 'a write is refused once the tmpfs is full');
      t.deepEqual(refused!.sense, [0x7, 0x27, 0x07]);
      t.true(refused!.lba >= 1024 && refused!.lba <= 2048, `after about 1 MiB (LBA ${refused!.lba})`);
      const r = await ini.scsi(cdb10(0x28, 0, 8), { edtl: 4096, read: true });
      t.is(r.status, 0);
      t.true(r.data.equals(data.subarray(0, 4096)), 'what was written reads back');
      await unharmed(t, child, other);
      ini.close();
    } finally {
      await child?.stop();
      execFileSync('umount', [small]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
