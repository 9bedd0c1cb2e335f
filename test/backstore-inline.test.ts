/**
 * Inline I/O in the file backstore (src/backstore/file.ts, native/inline-io.cc): which files take the inline
 * path, that small transfers on tmpfs never touch the io_uring ring while large ones do, and that the results
 * are the same either way, short reads of a shrunk file included.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INLINE_MAX_BYTES, openFileBackstore } from '../src/backstore/file';
import {
  fsMagic,
  preadInline,
  pwriteInline,
  Ring,
  RWF_NOWAIT,
  TMPFS_MAGIC,
  allocAligned,
} from '../src/native';

const MiB = 1 << 20;
const shm = fs.mkdtempSync('/dev/shm/nodetgt-inline-');
const disk = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-inline-'));
test.after.always(() => {
  fs.rmSync(shm, { recursive: true, force: true });
  fs.rmSync(disk, { recursive: true, force: true });
});

const magicOf = (dir: string): number => {
  const fd = fs.openSync(dir, 'r');
  try {
    return fsMagic(fd);
  } finally {
    fs.closeSync(fd);
  }
};

const completions = () => Ring.forThisThread().stats().completions;

test.serial('native: preadInline/pwriteInline move bytes and report -errno', (t) => {
  const file = path.join(shm, 'raw.img');
  fs.writeFileSync(file, Buffer.alloc(8192));
  const fd = fs.openSync(file, 'r+');
  try {
    const a = randomBytes(1000);
    const b = randomBytes(3096);
    t.is(pwriteInline(fd, [a, b], 4096, 0), 4096);
    const back = Buffer.alloc(4096);
    t.is(preadInline(fd, back, 4096, 0), 4096);
    t.true(back.equals(Buffer.concat([a, b])));
    t.is(preadInline(fd, back, 8192, 0), 0, 'at the end of the file');
    t.is(preadInline(fd, back.subarray(0, 100), 8100, 0), 92, 'short at the end of the file');
    t.is(preadInline(-1, back, 0, 0), -9, 'EBADF');
    t.throws(
      () =>
        pwriteInline(
          fd,
          Array.from({ length: 65 }, () => a),
          0,
          0,
        ),
      { instanceOf: TypeError },
    );
  } finally {
    fs.closeSync(fd);
  }
  t.is(magicOf(shm), TMPFS_MAGIC, '/dev/shm is tmpfs');
});

test.serial(
  'tmpfs: transfers up to INLINE_MAX_BYTES bypass the ring, larger ones use it; data identical',
  async (t) => {
    const bs = await openFileBackstore({ path: path.join(shm, 'a.img'), size: 16 * MiB, blockSize: 4096 });
    t.is(bs.inline, 'memory');
    const small = randomBytes(4096);
    const parts = [randomBytes(512), randomBytes(3584), randomBytes(INLINE_MAX_BYTES - 4096)];
    const before = completions();
    await bs.write(8192, [small], false);
    await bs.write(MiB, parts, true); // FUA on memory: inline too
    const back = Buffer.alloc(4096);
    await bs.read(8192, back);
    t.true(back.equals(small));
    const back2 = Buffer.alloc(INLINE_MAX_BYTES);
    await bs.read(MiB, back2);
    t.true(back2.equals(Buffer.concat(parts)));
    t.is(completions(), before, 'no io_uring completion for the inline transfers');

    const big = randomBytes(MiB);
    await bs.write(4 * MiB, [big], false);
    const bigBack = Buffer.alloc(MiB);
    await bs.read(4 * MiB, bigBack);
    t.true(bigBack.equals(big));
    t.is(completions(), before + 2, 'the 1 MiB write and read went through the ring');

    // More buffers than one inline call takes: through the ring, same bytes.
    const many = Array.from({ length: 100 }, () => randomBytes(512));
    await bs.write(8 * MiB, many, false);
    const manyBack = Buffer.alloc(100 * 512);
    await bs.read(8 * MiB, manyBack);
    t.true(manyBack.equals(Buffer.concat(many)));
    await bs.close();
  },
);

test.serial(
  'tmpfs: a file shrunk behind the LU fails inline reads across its new end (ESHRUNK), not zeros',
  async (t) => {
    const file = path.join(shm, 'shrink.img');
    const bs = await openFileBackstore({ path: file, size: 4 * MiB, blockSize: 512 });
    await bs.write(0, [Buffer.alloc(4 * MiB, 7)], false);
    fs.truncateSync(file, MiB + 1024);
    const inside = Buffer.alloc(1024);
    await bs.read(MiB, inside);
    t.true(inside.equals(Buffer.alloc(1024, 7)), 'what is still there reads back');
    // Straddling the new end: the inline read is short, the rest comes back 0 from the ring.
    await t.throwsAsync(bs.read(MiB, Buffer.alloc(4096)), { code: 'ESHRUNK' });
    await t.throwsAsync(bs.read(2 * MiB, Buffer.alloc(4096)), { code: 'ESHRUNK' });
    await bs.close();
  },
);

test.serial(
  'modes: other file systems try RWF_NOWAIT, O_DIRECT never goes inline; results are right',
  async (t) => {
    const file = path.join(disk, 'b.img');
    const bs = await openFileBackstore({ path: file, size: 8 * MiB, blockSize: 4096 });
    t.is(bs.inline, magicOf(disk) === TMPFS_MAGIC ? 'memory' : 'nowait');
    const data = randomBytes(8192);
    await bs.write(4096, [data], false); // where the kernel cannot write without blocking, the ring does it
    await bs.write(16384, [data], true); // FUA: never inline off memory file systems
    const back = Buffer.alloc(8192);
    await bs.read(4096, back); // in the page cache now: served inline where RWF_NOWAIT is supported
    t.true(back.equals(data));
    await bs.read(16384, back);
    t.true(back.equals(data));
    const fd = fs.openSync(file, 'r');
    try {
      const r = preadInline(fd, Buffer.alloc(4096), 4096, RWF_NOWAIT);
      t.true(r === 4096 || r === -11 || r === -95, `cached page: read, EAGAIN or EOPNOTSUPP, not ${r}`);
    } finally {
      fs.closeSync(fd);
    }
    await bs.close();

    const direct = await openFileBackstore({ path: file, direct: true, blockSize: 4096 });
    t.is(direct.inline, 'off');
    const before = completions();
    const aligned = allocAligned(8192);
    await direct.read(4096, aligned);
    t.true(aligned.equals(data));
    t.is(completions(), before + 1, 'O_DIRECT reads go through the ring');
    await direct.close();
  },
);
