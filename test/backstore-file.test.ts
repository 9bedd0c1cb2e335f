import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openFileBackstore } from '../src/backstore/file';
import { openNullBackstore } from '../src/backstore/null';
import { allocAligned, isAligned } from '../src/native';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-bs-'));
test.after.always(() => fs.rmSync(tmp, { recursive: true, force: true }));
const GiB = 1 << 30;
const MiB = 1 << 20;

test('creates a sparse 1 GiB file, with its parent directories', async (t) => {
  const file = path.join(tmp, 'a', 'b', 'lun0.img');
  const bs = await openFileBackstore({ path: file, size: GiB });
  const st = fs.statSync(file);
  t.is(st.size, GiB);
  t.true(st.blocks < 64, `sparse: ${st.blocks} blocks allocated`);
  t.is(st.mode & 0o777, 0o600);
  t.is(bs.sizeBytes, GiB);
  t.is(bs.blockSize, 512);
  t.false(bs.readOnly);
  t.true(bs.writeCacheEnabled);
  t.true(bs.thinProvisioned, 'ext4/xfs/tmpfs punch holes');
  await bs.close();
  await bs.close(); // idempotent
});

test('round trip: vectored writes (plain and FUA), reads, flush', async (t) => {
  const file = path.join(tmp, 'rt.img');
  const bs = await openFileBackstore({ path: file, size: 64 * MiB, blockSize: 4096 });
  t.is(bs.blockSize, 4096);
  const a = randomBytes(8192);
  const b = randomBytes(12288);
  await bs.write(40960, [a, b], false);
  const c = randomBytes(MiB);
  await bs.write(63 * MiB, [c], true);
  await bs.flush();
  const back = Buffer.alloc(a.length + b.length);
  await bs.read(40960, back);
  t.true(back.equals(Buffer.concat([a, b])));
  const back2 = Buffer.alloc(MiB);
  await bs.read(63 * MiB, back2);
  t.true(back2.equals(c));
  const never = Buffer.alloc(4096, 0xee);
  await bs.read(0, never);
  t.true(never.equals(Buffer.alloc(4096)), 'unwritten blocks read as zeros');
  // Many at once.
  const blocks = Array.from({ length: 64 }, () => randomBytes(4096));
  await Promise.all(blocks.map((blk, i) => bs.write(i * 8192, [blk], i % 2 === 0)));
  const outs = blocks.map(() => Buffer.alloc(4096));
  await Promise.all(outs.map((o, i) => bs.read(i * 8192, o)));
  t.true(outs.every((o, i) => o.equals(blocks[i])));
  await t.throwsAsync(bs.read(64 * MiB - 4096, Buffer.alloc(8192)), { instanceOf: RangeError });
  await t.throwsAsync(bs.write(-4096, [Buffer.alloc(4096)], false), { instanceOf: RangeError });
  await bs.close();
  await t.throwsAsync(bs.read(0, Buffer.alloc(512)), { message: /closed/ });
});

test('reopening uses the file as it is; a size mismatch is refused', async (t) => {
  const file = path.join(tmp, 'reopen.img');
  await (await openFileBackstore({ path: file, size: 8 * MiB })).close();
  const again = await openFileBackstore({ path: file });
  t.is(again.sizeBytes, 8 * MiB);
  await again.close();
  const same = await openFileBackstore({ path: file, size: 8 * MiB });
  t.is(same.sizeBytes, 8 * MiB);
  await same.close();
  await t.throwsAsync(openFileBackstore({ path: file, size: 16 * MiB }), {
    message: /8388608 bytes, configured size is 16777216/,
  });
  await t.throwsAsync(openFileBackstore({ path: file, size: 4 * MiB }), { message: /configured size/ });
});

test('clear errors: missing without size, not a file, bad sizes, unwritable', async (t) => {
  await t.throwsAsync(openFileBackstore({ path: path.join(tmp, 'nope.img') }), {
    message: /does not exist \(give a size/,
  });
  await t.throwsAsync(openFileBackstore({ path: path.join(tmp, 'nope2.img'), size: MiB, readOnly: true }), {
    message: /read-only backstore does not create/,
  });
  await t.throwsAsync(openFileBackstore({ path: tmp }), { message: /not a regular file or block device/ });
  await t.throwsAsync(openFileBackstore({ path: path.join(tmp, 'odd.img'), size: 1000 }), {
    message: /multiple of the block size/,
  });
  await t.throwsAsync(openFileBackstore({ path: '/dev/null' }), {
    message: /not a regular file or block device/,
  });
  const tiny = path.join(tmp, 'tiny.img');
  fs.writeFileSync(tiny, Buffer.alloc(100));
  await t.throwsAsync(openFileBackstore({ path: tiny }), { message: /smaller than one 512-byte block/ });
  await t.throwsAsync(openFileBackstore({ path: '/proc/nodetgt-no/such.img', size: MiB }), {
    message: /cannot create the parent directory/,
  });
  fs.writeFileSync(path.join(tmp, 'plainfile'), '');
  await t.throwsAsync(openFileBackstore({ path: path.join(tmp, 'plainfile', 'sub', 'x.img'), size: MiB }), {
    message: /ENOTDIR/,
  });
  const odd = path.join(tmp, 'ragged.img');
  fs.writeFileSync(odd, Buffer.alloc(4096 + 100));
  const r = await openFileBackstore({ path: odd });
  t.is(r.sizeBytes, 4096, 'a ragged tail is not exposed');
  await r.close();
});

/** uid and gid of `nobody`, for dropping root privileges in a child process. */
function nobody(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'nobody'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

test('a backing file it may not write is refused with "cannot open for writing" (EACCES), also for root', async (t) => {
  // Root opens any file whatever its mode, so the check runs in a child process that, when started as root,
  // drops to nobody first (setgroups/setgid/setuid). The same child opens the file read-only as a control:
  // the refusal must come from the missing write permission, not from an unreachable path.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-perm-'));
  try {
    fs.chmodSync(dir, 0o755);
    const locked = path.join(dir, 'locked.img');
    const data = randomBytes(4096);
    fs.writeFileSync(locked, data);
    fs.chmodSync(locked, 0o444);
    const asRoot = process.getuid?.() === 0;
    const who = asRoot ? nobody() : { uid: -1, gid: -1 };
    const script = `
      const [uid, gid, mod, file] = process.argv.slice(1).map((a, i) => (i < 2 ? Number(a) : a));
      if (uid >= 0) {
        process.setgroups([]);
        process.setgid(gid);
        process.setuid(uid);
      }
      const { openFileBackstore } = require(mod);
      const err = (e) => ({ message: e.message, code: e.code });
      (async () => {
        const out = { uid: process.getuid(), euid: process.geteuid() };
        try {
          await openFileBackstore({ path: file });
          out.rw = 'opened';
        } catch (e) {
          out.rw = err(e);
        }
        try {
          const bs = await openFileBackstore({ path: file, readOnly: true });
          const b = Buffer.alloc(4096);
          await bs.read(0, b);
          await bs.close();
          out.ro = b.toString('hex');
        } catch (e) {
          out.ro = err(e);
        }
        console.log(JSON.stringify(out));
      })();
    `;
    const mod = path.join(__dirname, '..', 'src', 'backstore', 'file.js');
    const r = spawnSync(process.execPath, ['-e', script, String(who.uid), String(who.gid), mod, locked], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    t.is(r.error, undefined, String(r.error));
    t.is(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      uid: number;
      euid: number;
      rw: unknown;
      ro: unknown;
    };
    if (asRoot) t.deepEqual([out.uid, out.euid], [who.uid, who.uid], 'the child runs as nobody');
    else t.not(out.euid, 0);
    t.like(out.rw, { code: 'EACCES' });
    t.regex((out.rw as { message?: string }).message ?? '', /locked\.img.*cannot open for writing.*EACCES/);
    t.is(out.ro, data.toString('hex'), 'the same child reads the file when it asks only to read');
    t.true(fs.readFileSync(locked).equals(data), 'the file is untouched');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('read-only: reads work, writes, unmaps and creation are refused', async (t) => {
  const file = path.join(tmp, 'ro.img');
  const data = randomBytes(4096);
  fs.writeFileSync(file, data);
  fs.chmodSync(file, 0o444); // opening it for writing would fail for non-root users
  const bs = await openFileBackstore({ path: file, readOnly: true });
  t.true(bs.readOnly);
  t.false(bs.thinProvisioned);
  const back = Buffer.alloc(4096);
  await bs.read(0, back);
  t.true(back.equals(data));
  await t.throwsAsync(bs.write(0, [Buffer.alloc(512)], false), { code: 'EROFS' });
  await t.throwsAsync(bs.unmap(0, 512), { code: 'EROFS' });
  await bs.flush();
  await bs.close();
  t.true(fs.readFileSync(file).equals(data));
});

test('unmap punches holes: zeros back, blocks freed, size kept', async (t) => {
  const file = path.join(tmp, 'unmap.img');
  const bs = await openFileBackstore({ path: file, size: 16 * MiB });
  const data = randomBytes(8 * MiB);
  await bs.write(0, [data], false);
  await bs.flush();
  const before = fs.statSync(file).blocks;
  await bs.unmap(MiB, 4 * MiB);
  const after = fs.statSync(file);
  t.is(after.size, 16 * MiB);
  t.true(before - after.blocks >= (4 * MiB) / 512 - 16, `blocks ${before} -> ${after.blocks}`);
  const back = Buffer.alloc(8 * MiB);
  await bs.read(0, back);
  t.true(back.subarray(MiB, 5 * MiB).equals(Buffer.alloc(4 * MiB)));
  t.true(back.subarray(0, MiB).equals(data.subarray(0, MiB)));
  t.true(back.subarray(5 * MiB).equals(data.subarray(5 * MiB)));
  await t.throwsAsync(bs.unmap(15 * MiB, 2 * MiB), { instanceOf: RangeError });
  await bs.close();
});

test('mapping(): the allocation map of a sparse file follows writes and punched holes', async (t) => {
  // The expected extents below are in 4 KiB file system blocks (ext4, xfs, tmpfs on x86-64).
  const fsBlock = fs.statfsSync(tmp).bsize;
  if (fsBlock !== 4096)
    return t.fail(
      `file system block ${fsBlock} bytes, not 4096: this test needs a 4 KiB-block file system for its temp dir`,
    );
  const file = path.join(tmp, 'map.img');
  const size = 16 * MiB;
  const bs = await openFileBackstore({ path: file, size });
  const ext = (offset: number, length: number, mapped: boolean) => ({ offset, length, mapped });
  t.deepEqual(await bs.mapping(0, size), [ext(0, size, false)]);
  // Not flushed: data still in the page cache is mapped already.
  await bs.write(MiB, [randomBytes(4096)], false);
  await bs.write(4 * MiB + 512, [randomBytes(8192)], false); // touches file system blocks 4M .. 4M+12K
  await bs.write(size - 512, [randomBytes(512)], false);
  t.deepEqual(await bs.mapping(0, size), [
    ext(0, MiB, false),
    ext(MiB, 4096, true),
    ext(MiB + 4096, 3 * MiB - 4096, false),
    ext(4 * MiB, 12288, true),
    ext(4 * MiB + 12288, size - 4096 - (4 * MiB + 12288), false),
    ext(size - 4096, 4096, true),
  ]);
  // Any start inside an extent, any length: the map of exactly that range.
  t.deepEqual(await bs.mapping(MiB + 1024, 8192), [
    ext(MiB + 1024, 3072, true),
    ext(MiB + 4096, 5120, false),
  ]);
  t.deepEqual(await bs.mapping(2 * MiB, 512), [ext(2 * MiB, 512, false)]);
  t.deepEqual(await bs.mapping(0, 0), []);
  // maxExtents: a prefix.
  t.deepEqual(await bs.mapping(0, size, 2), [ext(0, MiB, false), ext(MiB, 4096, true)]);

  // A hole punched in part of a file system block zeroes it but leaves it allocated: still mapped.
  await bs.unmap(4 * MiB + 1024, 1024);
  t.deepEqual((await bs.mapping(4 * MiB, 12288))[0], ext(4 * MiB, 12288, true));
  // A whole block punched is deallocated; the ones around stay mapped.
  await bs.unmap(4 * MiB + 4096, 4096);
  t.deepEqual(await bs.mapping(4 * MiB, 12288), [
    ext(4 * MiB, 4096, true),
    ext(4 * MiB + 4096, 4096, false),
    ext(4 * MiB + 8192, 4096, true),
  ]);
  await bs.unmap(0, size);
  t.deepEqual(await bs.mapping(0, size), [ext(0, size, false)]);
  await bs.flush();

  await t.throwsAsync(bs.mapping(size - 512, 1024), { instanceOf: RangeError });
  await bs.close();
  await t.throwsAsync(bs.mapping(0, 512), { message: /closed/ });
});

test('mapping(): a fully written file is one mapped extent; 4096-byte blocks', async (t) => {
  const file = path.join(tmp, 'map4k.img');
  const bs = await openFileBackstore({ path: file, size: 4 * MiB, blockSize: 4096 });
  await bs.write(0, [randomBytes(4 * MiB)], false);
  t.deepEqual(await bs.mapping(0, 4 * MiB), [{ offset: 0, length: 4 * MiB, mapped: true }]);
  t.deepEqual(await bs.mapping(8192, 4096, 1), [{ offset: 8192, length: 4096, mapped: true }]);
  await bs.close();
});

test('mapping(): null backstore reports everything deallocated', async (t) => {
  const nb = await openNullBackstore({ size: '1M' });
  t.deepEqual(await nb.mapping(4096, 8192), [{ offset: 4096, length: 8192, mapped: false }]);
  t.deepEqual(await nb.mapping(0, 0), []);
  await t.throwsAsync(nb.mapping(0, 2 * MiB), { instanceOf: RangeError });
});

test('O_DIRECT: aligned buffers go straight through, misaligned ones through a bounce buffer', async (t) => {
  const file = path.join(tmp, 'direct.img');
  const bs = await openFileBackstore({ path: file, size: 8 * MiB, direct: true, blockSize: 4096 });
  t.true(bs.direct);
  const aligned = allocAligned(65536);
  t.true(isAligned(aligned, 4096));
  randomBytes(65536).copy(aligned);
  await bs.write(0, [aligned.subarray(0, 32768), aligned.subarray(32768)], true);
  const back = allocAligned(65536);
  await bs.read(0, back);
  t.true(back.equals(aligned));
  const odd = Buffer.alloc(8192 + 1).subarray(1); // surely not 4096-aligned
  randomBytes(8192).copy(odd);
  t.false(isAligned(odd, 4096));
  await bs.write(65536, [odd], false);
  const oddBack = Buffer.alloc(8192 + 3).subarray(3);
  await bs.read(65536, oddBack);
  t.true(oddBack.equals(odd));
  await bs.unmap(0, 65536);
  await bs.read(0, back);
  t.true(back.equals(Buffer.alloc(65536)));
  await bs.close();
});

test('close while operations are in flight: those started complete, later ones fail cleanly, then the fd closes', async (t) => {
  t.timeout(60_000); // nothing may hang: close() must settle after the last completion
  const file = path.join(tmp, 'close.img');
  const bs = await openFileBackstore({ path: file, size: 32 * MiB });
  const openFds = () =>
    fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === file;
      } catch {
        return false; // the readdir's own descriptor, gone by now
      }
    }).length;
  t.is(openFds(), 1, 'the backstore holds the file open');

  const order: string[] = [];
  const settle = (name: string, p: Promise<void>) =>
    p.then(
      () => {
        order.push(name);
        return null;
      },
      (e: unknown) => {
        order.push(name);
        return e;
      },
    );
  // 16 writes of 1 MiB (every fourth with FUA) and a flush, all submitted in this turn: in flight at close().
  const writes = Array.from({ length: 16 }, (_, i) =>
    settle(`write ${i}`, bs.write(i * MiB, [Buffer.alloc(MiB, i + 1)], i % 4 === 0)),
  );
  const flush = settle('flush', bs.flush());
  const closed = settle('close', bs.close());
  // Everything after close() is refused at once with a clean error, and never reaches the file.
  const late = await Promise.all([
    settle('late write', bs.write(16 * MiB, [Buffer.alloc(MiB, 0xee)], false)),
    settle('late read', bs.read(0, Buffer.alloc(512))),
    settle('late flush', bs.flush()),
    settle('late unmap', bs.unmap(0, MiB)),
    settle(
      'late mapping',
      bs.mapping(0, MiB).then(() => undefined),
    ),
  ]);
  for (const e of late) t.regex(String((e as Error | null)?.message), /close\.img.*closed/);

  const errors = await Promise.all(writes);
  t.deepEqual(
    errors.map((e) => (e === null ? 'ok' : String(e))),
    Array<string>(16).fill('ok'),
    'every write started before close() completed',
  );
  t.is(await flush, null, 'the flush started before close() completed');
  t.is(await closed, null, 'close() resolved');
  t.is(order.at(-1), 'close', `close() settled last: ${order.join(', ')}`);
  t.is(order.length, 16 + 1 + 5 + 1);
  t.is(openFds(), 0, 'the descriptor is closed');
  await bs.close(); // again: the same settled promise

  // The file holds exactly the writes that completed, and nothing from the refused one.
  const back = fs.readFileSync(file);
  t.is(back.length, 32 * MiB);
  const wrong: number[] = [];
  for (let i = 0; i < 32; i++)
    if (!back.subarray(i * MiB, (i + 1) * MiB).equals(Buffer.alloc(MiB, i < 16 ? i + 1 : 0))) wrong.push(i);
  t.deepEqual(wrong, [], 'MiB regions whose content is not what was written');
});

test('null backstore: zeros, discarded writes, bounds', async (t) => {
  const bs = await openNullBackstore({ size: '1T', blockSize: 4096 });
  t.is(bs.sizeBytes, 2 ** 40);
  const buf = Buffer.alloc(8192, 0xaa);
  await bs.write(0, [buf], true);
  await bs.read(0, buf);
  t.true(buf.equals(Buffer.alloc(8192)));
  await bs.flush();
  await bs.unmap(0, 2 ** 39);
  await t.throwsAsync(bs.read(2 ** 40, Buffer.alloc(512)), { instanceOf: RangeError });
  const ro = await openNullBackstore({ size: MiB, readOnly: true });
  await t.throwsAsync(ro.write(0, [Buffer.alloc(512)], false), { code: 'EROFS' });
  await t.throwsAsync(openNullBackstore({ size: 1000 }), { instanceOf: RangeError });
  await bs.close();
});

function attachLoop(file: string): string | null {
  try {
    return execFileSync('losetup', ['-f', '--show', file], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null; // not root, or no loop devices here
  }
}

test.serial(
  'block device (loop): size from BLKGETSIZE64, round trip buffered and O_DIRECT, unmap',
  async (t) => {
    const file = path.join(tmp, 'loop.img');
    fs.writeFileSync(file, Buffer.alloc(0));
    fs.truncateSync(file, 32 * MiB);
    const dev = attachLoop(file);
    if (dev === null) return t.fail('losetup unavailable: this test needs root and loop devices');
    try {
      for (const direct of [false, true]) {
        const bs = await openFileBackstore({ path: dev, direct });
        t.true(bs.isBlockDevice);
        t.is(bs.sizeBytes, 32 * MiB);
        t.false(bs.thinProvisioned, 'never promised on a block device');
        const data = randomBytes(MiB);
        const src = direct ? allocAligned(MiB) : data;
        data.copy(src);
        await bs.write(8192, [src], true);
        const back = direct ? allocAligned(MiB) : Buffer.alloc(MiB);
        await bs.read(8192, back);
        t.true(back.equals(data));
        await bs.unmap(8192, 65536);
        await bs.read(8192, back);
        t.true(back.subarray(0, 65536).equals(Buffer.alloc(65536)));
        t.true(back.subarray(65536).equals(data.subarray(65536)));
        t.deepEqual(await bs.mapping(0, bs.sizeBytes), [{ offset: 0, length: 32 * MiB, mapped: true }]);
        await bs.flush();
        await bs.close();
      }
      await t.throwsAsync(openFileBackstore({ path: dev, size: 64 * MiB }), {
        message: /device is 33554432 bytes/,
      });
      const part = await openFileBackstore({ path: dev, size: 16 * MiB });
      t.is(part.sizeBytes, 16 * MiB, 'a prefix of a device may be exposed');
      await part.close();
    } finally {
      execFileSync('losetup', ['-d', dev]);
    }
  },
);
