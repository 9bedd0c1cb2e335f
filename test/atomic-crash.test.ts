/**
 * WRITE ATOMIC(16) against the real target process: end to end through TestInitiator (written whole, read back,
 * refused where it must be), and kill -9 at the points the test hook offers (NODETGT_TEST_HOOKS=1,
 * NODETGT_TEST_ATOMIC_CRASH) followed by a restart on the same state directory: a crash once the journal record
 * is durable, or half-way through the in-place write, ends with all of the new data; a crash while the record is
 * still being written ends with all of the old.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { TestInitiator } from './helpers/initiator';

const IQN = 'iqn.2026-11.io.nodetgt.test:atomic';
const BS = 512;
const LBA = 64;
/** 128 KiB: more than one Data-Out burst, so "half of the in-place write" is a real half. */
const BLOCKS = 256;
const OLD = Buffer.alloc(BLOCKS * BS, 0x0d);
const NEW = Buffer.alloc(BLOCKS * BS, 0xa7);

function config(dir: string): Record<string, unknown> {
  const ro = path.join(dir, 'ro.img');
  if (!fs.existsSync(ro)) fs.writeFileSync(ro, Buffer.alloc(4 * 1024 * 1024)); // a read-only LUN is never created
  return {
    workers: 2,
    stateDir: path.join(dir, 'state'),
    targets: [
      {
        name: IQN,
        luns: [
          { lun: 0, path: path.join(dir, 'disk.img'), size: '4M' },
          { lun: 1, path: ro, readOnly: true },
        ],
      },
    ],
  };
}

function cdb16(op: number, lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = op;
  c.writeBigUInt64BE(BigInt(lba), 2);
  if (op === 0x9c) c.writeUInt16BE(blocks, 12);
  else c.writeUInt32BE(blocks, 10);
  return c;
}

async function session(c: ChildTarget): Promise<TestInitiator> {
  const i = await TestInitiator.connect(c.port);
  const r = await i.login({ targetName: IQN });
  if (r.status !== 0) throw new Error(`login failed: ${r.status}`);
  return i;
}

/** A command, sent again while answered with a unit attention (a new session after a restart gets one). */
async function command(
  i: TestInitiator,
  cdb: Buffer,
  o: { data?: Buffer; read?: number; lun?: number } = {},
) {
  for (let n = 0; ; n++) {
    const r = await i.scsi(
      cdb,
      o.data
        ? { lun: o.lun, edtl: o.data.length, write: true, data: o.data }
        : { lun: o.lun, edtl: o.read ?? 0, read: o.read !== undefined },
    );
    if (r.status === 2 && r.sense && (r.sense[2] & 0x0f) === 0x06 && n < 5) continue;
    return r;
  }
}

const senseOf = (r: { sense: Buffer | null }) => r.sense && [r.sense[2] & 0x0f, r.sense[12], r.sense[13]];

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-atomic-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('end to end: WRITE ATOMIC(16) writes all of its blocks; refusals over iSCSI', async (t) => {
  const dir = tempDir(t);
  const c = await startChildTargetWithConfig(config(dir));
  t.teardown(() => c.stop());
  const i = await session(c);
  const data = Buffer.alloc(16 * BS);
  for (let b = 0; b < 16; b++) data.fill(b + 1, b * BS, (b + 1) * BS);
  t.is((await command(i, cdb16(0x9c, 8, 16), { data })).status, 0);
  const back = await command(i, cdb16(0x88, 8, 16), { read: data.length });
  t.is(back.status, 0);
  t.true(back.data.equals(data));
  const vpd = await command(i, Buffer.from([0x12, 1, 0xb0, 0, 64, 0]), { read: 64 });
  const max = vpd.data.readUInt32BE(44);
  const unit = vpd.data.readUInt32BE(48);
  t.true(max >= 256 && unit >= 1, `max ${max}, alignment ${unit}`);
  const blocks = 8192;
  t.deepEqual(
    senseOf(await command(i, cdb16(0x9c, blocks - unit, 2 * unit), { data: Buffer.alloc(2 * unit * BS) })),
    [0x05, 0x21, 0],
  );
  t.deepEqual(
    senseOf(await command(i, cdb16(0x9c, 0, max + unit), { data: Buffer.alloc((max + unit) * BS) })),
    [0x05, 0x24, 0],
  );
  if (unit > 1)
    t.deepEqual(
      senseOf(await command(i, cdb16(0x9c, 1, unit), { data: Buffer.alloc(unit * BS) })),
      [0x05, 0x24, 0],
    );
  t.deepEqual(
    senseOf(await command(i, cdb16(0x9c, 0, unit), { lun: 1, data: Buffer.alloc(unit * BS) })),
    [0x07, 0x27, 0],
  );
  t.true(
    (await command(i, cdb16(0x88, 8, 16), { read: data.length })).data.equals(data),
    'refusals wrote nothing',
  );
  await i.logout();
});

type Point = 'after-journal' | 'mid-write' | 'torn-journal';

async function crashAt(
  t: import('ava').ExecutionContext,
  point: Point,
): Promise<{ disk: Buffer; log: string }> {
  const dir = tempDir(t);
  const crashing = await startChildTargetWithConfig(config(dir), {
    env: { NODETGT_TEST_HOOKS: '1', NODETGT_TEST_ATOMIC_CRASH: point },
  });
  const exited = new Promise<void>((r) => crashing.proc.once('exit', () => r()));
  try {
    const i = await session(crashing);
    t.is((await command(i, cdb16(0x8a, LBA, BLOCKS), { data: OLD })).status, 0);
    await i
      .scsi(cdb16(0x9c, LBA, BLOCKS), { edtl: NEW.length, write: true, data: NEW, timeoutMs: 10_000 })
      .then(
        () => t.fail('WRITE ATOMIC answered although the hook kills the target'),
        () => undefined,
      );
    await exited;
  } finally {
    await crashing.stop();
  }
  t.is(crashing.proc.signalCode, 'SIGKILL');
  const img = path.join(dir, 'disk.img');
  const before = fs.readFileSync(img).subarray(LBA * BS, (LBA + BLOCKS) * BS);
  // What the crash left in place, before any recovery: the hook stopped where it says.
  if (point === 'mid-write') {
    t.true(before.subarray(0, NEW.length / 2).equals(NEW.subarray(0, NEW.length / 2)), 'first half new');
    t.true(before.subarray(NEW.length / 2).equals(OLD.subarray(NEW.length / 2)), 'second half old');
  } else t.true(before.equals(OLD), 'nothing written in place yet');
  const c = await startChildTargetWithConfig(config(dir));
  t.teardown(() => c.stop());
  const i = await session(c);
  const r = await command(i, cdb16(0x88, LBA, BLOCKS), { read: NEW.length });
  t.is(r.status, 0);
  await i.logout();
  return { disk: r.data, log: c.log() };
}

test('kill -9 once the journal record is durable, before the in-place write: restart holds all of the new data', async (t) => {
  const { disk, log } = await crashAt(t, 'after-journal');
  t.true(disk.equals(NEW));
  t.regex(log, /WRITE ATOMIC journal: a complete record was written in place .*lba=64 blocks=256/);
});

test('kill -9 after half of the in-place write: restart holds all of the new data, never a mix', async (t) => {
  const { disk, log } = await crashAt(t, 'mid-write');
  t.true(disk.equals(NEW));
  t.regex(log, /a complete record was written in place/);
});

test('kill -9 while the journal record is written: restart holds all of the old data', async (t) => {
  const { disk, log } = await crashAt(t, 'torn-journal');
  t.true(disk.equals(OLD));
  t.regex(log, /WRITE ATOMIC journal: a torn record was discarded .*why="?short data/);
});
