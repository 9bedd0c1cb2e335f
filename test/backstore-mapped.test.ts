/**
 * Mapped copies in the file backstore (src/backstore/file.ts, native/memmap.cc): on tmpfs, small reads and
 * writes are memcpys through a shared mapping of the file. What must hold: the bytes are the file's (both ways,
 * beside ordinary file I/O), a read never allocates a hole of a thin LU (a read fault on a tmpfs hole would),
 * UNMAP's holes stay holes, a file truncated under the LU or a full tmpfs is an error for the command and never a
 * SIGBUS that kills the target, and resize() maps the new size.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAP_CHUNK, MAP_RECHECK, openFileBackstore, type FileBackstore } from '../src/backstore/file';
import {
  memMap,
  memPopulate,
  memRead,
  memResident,
  memUnmap,
  memWrite,
  type MemMapping,
} from '../src/native';

const MiB = 1 << 20;
const shm = fs.mkdtempSync('/dev/shm/nodetgt-mapped-');
const disk = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-mapped-'));
test.after.always(() => {
  fs.rmSync(shm, { recursive: true, force: true });
  fs.rmSync(disk, { recursive: true, force: true });
});

const allocated = (file: string) => fs.statSync(file).blocks * 512;

async function open(name: string, size: number, readOnly = false): Promise<[FileBackstore, string]> {
  const file = path.join(shm, name);
  const bs = await openFileBackstore({ path: file, size, blockSize: 512, readOnly });
  return [bs, file];
}

test.serial('native: memRead/memWrite copy, and answer -errno out of range, read-only or unmapped', (t) => {
  const file = path.join(shm, 'raw.img');
  fs.writeFileSync(file, Buffer.alloc(3 * 4096));
  const fd = fs.openSync(file, 'r+');
  const m = memMap(fd, 3 * 4096, true) as MemMapping;
  t.not(typeof m, 'number');
  const a = randomBytes(1000);
  const b = randomBytes(3096);
  t.is(memWrite(m, [a, b], 4096), 4096);
  t.true(
    fs
      .readFileSync(file)
      .subarray(4096, 8192)
      .equals(Buffer.concat([a, b])),
    'the file has the bytes',
  );
  fs.writeSync(fd, Buffer.alloc(100, 9), 0, 100, 8192);
  const back = Buffer.alloc(100);
  t.is(memRead(m, back, 8192), 100);
  t.true(back.equals(Buffer.alloc(100, 9)), 'and the mapping what write(2) put there');
  t.is(memPopulate(m, 0, 3 * 4096), 0);
  t.is(memResident(m, 0, 3 * 4096), 1, 'every page of a written file is there');
  t.is(memRead(m, back, 3 * 4096 - 99), -34, 'ERANGE past the mapping');
  t.is(memWrite(m, back, 3 * 4096), -34);
  t.throws(
    () =>
      memWrite(
        m,
        Array.from({ length: 65 }, () => a),
        0,
      ),
    { instanceOf: TypeError },
  );
  memUnmap(m);
  t.is(memRead(m, back, 0), -9, 'EBADF once unmapped');
  const ro = memMap(fd, 4096, false) as MemMapping;
  t.is(memWrite(ro, back, 0), -30, 'EROFS');
  t.is(memRead(ro, back, 0), 100);
  memUnmap(ro);
  fs.closeSync(fd);
});

test.serial('native: memResident tells a tmpfs hole from data, within the range asked only', (t) => {
  const file = path.join(shm, 'holes.img');
  const fd = fs.openSync(file, 'w+');
  fs.ftruncateSync(fd, 64 * 4096);
  fs.writeSync(fd, Buffer.alloc(8 * 4096, 1), 0, 8 * 4096, 8 * 4096);
  const m = memMap(fd, 64 * 4096, true) as MemMapping;
  t.is(memResident(m, 8 * 4096, 8 * 4096), 1);
  t.is(memResident(m, 9 * 4096 + 100, 4096), 1, 'unaligned inside the data');
  t.is(memResident(m, 4 * 4096, 8 * 4096), 0, 'a hole before the data');
  t.is(memResident(m, 12 * 4096, 8 * 4096), 0, 'a hole after it');
  t.is(allocated(file), 8 * 4096, 'asking allocated nothing');
  t.is(memResident(m, 60 * 4096, 8 * 4096), -34, 'ERANGE');
  memUnmap(m);
  fs.closeSync(fd);
});

test.serial(
  'native: a copy from past the end of the file is -EFAULT (SIGBUS caught), and the process lives',
  (t) => {
    const file = path.join(shm, 'bus.img');
    fs.writeFileSync(file, Buffer.alloc(4 * 4096, 1));
    const fd = fs.openSync(file, 'r+');
    const m = memMap(fd, 4 * 4096, true) as MemMapping;
    fs.ftruncateSync(fd, 4096);
    const back = Buffer.alloc(4096);
    t.is(memRead(m, back, 0), 4096);
    t.is(memRead(m, back, 2 * 4096), -14, 'EFAULT');
    t.is(memWrite(m, back, 3 * 4096), -14);
    t.is(memRead(m, back, 2 * 4096), -14, 'again: the guard is set up anew each time');
    memUnmap(m);
    fs.closeSync(fd);
  },
);

test.serial('tmpfs: small reads and writes go through the mapping and agree with the file', async (t) => {
  const [bs, file] = await open('a.img', 8 * MiB);
  t.true(bs.mapped);
  // Fill the LU (a thick LU from here on), then overwrite pieces through the store.
  fs.writeFileSync(file, randomBytes(8 * MiB));
  const parts = [randomBytes(512), randomBytes(3584)];
  await bs.write(MiB + 512, parts, false);
  await bs.write(5 * MiB, [randomBytes(4096)], true);
  t.is(bs.mappedWrites, 2);
  const fromFile = fs.readFileSync(file);
  t.true(fromFile.subarray(MiB + 512, MiB + 4608).equals(Buffer.concat(parts)));
  const reads = bs.mappedReads;
  for (const at of [0, MiB + 512, 2 * MiB - 2048, 5 * MiB, 8 * MiB - 4096]) {
    const back = Buffer.alloc(4096);
    await bs.read(at, back);
    t.true(back.equals(fromFile.subarray(at, at + 4096)), `read at ${at}`);
  }
  t.is(bs.mappedReads, reads + 5, 'every small read of a whole chunk, one straddling two chunks included');
  // What write(2) puts in the file is what the next read returns.
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 3 * MiB);
  fs.closeSync(fd);
  const back = Buffer.alloc(4096);
  await bs.read(3 * MiB, back);
  t.true(back.equals(Buffer.alloc(4096, 0x5a)));
  // Large transfers still go the ring's way, with the same bytes.
  const big = randomBytes(MiB);
  await bs.write(6 * MiB, [big], false);
  const bigBack = Buffer.alloc(MiB);
  await bs.read(6 * MiB, bigBack);
  t.true(bigBack.equals(big));
  t.is(bs.mappedWrites, 2);
  await bs.close();
});

test.serial('tmpfs: reads of a thin LU allocate nothing, and UNMAP holes stay holes', async (t) => {
  const [bs, file] = await open('thin.img', 16 * MiB);
  t.true(bs.thinProvisioned);
  t.is(allocated(file), 0);
  const back = Buffer.alloc(4096);
  for (let at = 0; at < 16 * MiB; at += 64 * 1024) await bs.read(at, back);
  t.true(back.equals(Buffer.alloc(4096)), 'holes read as zeros');
  t.is(allocated(file), 0, 'no read allocated a page');
  t.is(bs.mappedReads, 0);

  // One chunk written whole: its reads go through the mapping; the rest stays thin.
  const chunk = randomBytes(MAP_CHUNK);
  for (let at = 0; at < MAP_CHUNK; at += 128 * 1024)
    await bs.write(MAP_CHUNK + at, [chunk.subarray(at, at + 128 * 1024)], false);
  t.is(allocated(file), MAP_CHUNK);
  // The chunk was found holey before: it is asked again after MAP_RECHECK reads.
  for (let i = 0; i <= MAP_RECHECK + 1; i++) await bs.read(MAP_CHUNK + 4096 * i, back);
  t.true(back.equals(chunk.subarray(4096 * (MAP_RECHECK + 1), 4096 * (MAP_RECHECK + 2))));
  t.true(bs.mappedReads > 0, 'a whole chunk is read through the mapping');

  // UNMAP punches a hole in it; reads then see zeros and must not fill the hole again.
  await bs.unmap(MAP_CHUNK + 8192, 4096);
  t.is(allocated(file), MAP_CHUNK - 4096);
  const mapped = bs.mappedReads;
  for (let i = 0; i < 2 * MAP_RECHECK; i++) await bs.read(MAP_CHUNK + 8192, back);
  t.true(back.equals(Buffer.alloc(4096)));
  t.is(allocated(file), MAP_CHUNK - 4096, 'the hole is still a hole');
  t.is(bs.mappedReads, mapped, 'the chunk is holey now: not read through the mapping');
  await bs.close();
});

test.serial(
  'tmpfs: a file truncated under the LU fails the commands past its end (ESHRUNK), no SIGBUS',
  async (t) => {
    const [bs, file] = await open('shrink.img', 8 * MiB);
    await bs.write(0, [Buffer.alloc(8 * MiB, 7)], false);
    const back = Buffer.alloc(4096);
    await bs.read(6 * MiB, back); // mapped and populated
    t.true(bs.mappedReads > 0);
    fs.truncateSync(file, MiB);
    await bs.read(0, back);
    t.true(back.equals(Buffer.alloc(4096, 7)), 'what is still there reads back');
    await t.throwsAsync(bs.read(6 * MiB, back), { code: 'ESHRUNK' });
    await t.throwsAsync(bs.write(6 * MiB, [back], false), { code: 'ESHRUNK' });
    await bs.close();
  },
);

test.serial('tmpfs: a full file system is an error for the write (ENOSPC), no SIGBUS', async (t) => {
  // A tmpfs of its own, 1 MiB: needs mount(2), as root; the test says so rather than pass without it.
  if (process.getuid?.() !== 0) return t.fail('needs root to mount a small tmpfs');
  const mnt = fs.mkdtempSync(path.join(disk, 'small-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
  try {
    const bs = await openFileBackstore({ path: path.join(mnt, 'full.img'), size: 4 * MiB, blockSize: 512 });
    t.true(bs.mapped);
    const data = Buffer.alloc(64 * 1024, 3);
    let error: NodeJS.ErrnoException | undefined;
    let at = 0;
    for (; at < 4 * MiB; at += data.length) {
      try {
        await bs.write(at, [data], false);
      } catch (e) {
        error = e as NodeJS.ErrnoException;
        break;
      }
    }
    t.is(error?.code, 'ENOSPC', `the write at ${at} fails with ENOSPC`);
    t.true(at >= 512 * 1024 && at <= MiB, `after about 1 MiB (${at})`);
    const back = Buffer.alloc(4096);
    await bs.read(0, back);
    t.true(back.equals(Buffer.alloc(4096, 3)), 'what was written is there');
    await bs.close();
  } finally {
    execFileSync('umount', [mnt]);
  }
});

test.serial('tmpfs: read-only LUs read through the mapping; resize() maps the new size', async (t) => {
  const [rw, file] = await open('grow.img', 4 * MiB);
  const data = randomBytes(4 * MiB);
  await rw.write(0, [data], false);
  await rw.close();
  const [ro] = await open('grow.img', 4 * MiB, true);
  t.true(ro.mapped);
  const back = Buffer.alloc(4096);
  await ro.read(3 * MiB, back);
  t.true(back.equals(data.subarray(3 * MiB, 3 * MiB + 4096)));
  t.is(ro.mappedReads, 1);
  await t.throwsAsync(ro.write(0, [back], false), { code: 'EROFS' });
  await ro.close();

  const [bs] = await open('grow.img', 4 * MiB);
  fs.truncateSync(file, 8 * MiB);
  bs.resize(8 * MiB);
  const more = randomBytes(4096);
  await bs.write(7 * MiB, [more], false);
  t.is(bs.mappedWrites, 1, 'the new end is mapped');
  await bs.read(7 * MiB, back);
  t.true(back.equals(more));
  await bs.read(MiB, back);
  t.true(back.equals(data.subarray(MiB, MiB + 4096)), 'the old part still reads');
  await bs.close();
});

test.serial('other file systems and O_DIRECT are not mapped', async (t) => {
  const bs = await openFileBackstore({ path: path.join(disk, 'd.img'), size: 4 * MiB, blockSize: 512 });
  t.is(bs.mapped, bs.inline === 'memory' && fs.statfsSync(disk).type === 0x01021994);
  await bs.close();
});
