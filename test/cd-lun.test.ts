/**
 * The cd LUN type end to end: its configuration (JSON and --lun cd:PATH), the refusal of a missing image,
 * and an image's bytes read back over iSCSI through a cd LUN by our TestInitiator and the INQUIRY data as libiscsi's iscsi-inq decodes it.
 */
import test from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildConfig, parseServeArgs } from '../src/cli/main';
import { ConfigError, normalizeConfig } from '../src/config/schema';
import { prepareBackingFiles } from '../src/backstore/prepare';
import { TestInitiator } from './helpers/initiator';
import { startTestTarget, TEST_TARGET } from './helpers/target';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-cd-'));
const iso = path.join(dir, 'image.iso');
const BLOCKS = 300;
const content = Buffer.alloc(BLOCKS * 2048);
for (let i = 0; i < content.length; i += 4) content.writeUInt32BE(i / 4, i);
fs.writeFileSync(iso, content);
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

const execFileAsync = promisify(execFile);

function iscsiInqAvailable(): boolean {
  return spawnSync('iscsi-inq', ['--help'], { stdio: 'ignore' }).error === undefined;
}

async function iscsiInq(args: string[]): Promise<string> {
  const r = await execFileAsync('iscsi-inq', ['-i', 'iqn.2026-11.io.nodetgt.test:init1', ...args], {
    timeout: 20_000,
  });
  return r.stdout;
}

const target = (luns: unknown[]) => ({ targets: [{ name: 'iqn.2026-11.io.example:t', luns }] });

test('config: a cd LUN is read-only and removable with 2048-byte blocks, whatever readOnly says', (t) => {
  const c = normalizeConfig(target([{ lun: 0, type: 'cd', path: 'image.iso', readOnly: false }]), dir);
  const l = c.targets[0].luns[0];
  t.deepEqual([l.type, l.readOnly, l.removable, l.blockSize, l.path], ['cd', true, true, 2048, iso]);
  const d = normalizeConfig(target([{ lun: 0, path: 'd.img', size: '1M' }]), dir).targets[0].luns[0];
  t.deepEqual([d.type, d.removable], ['disk', false]);
  const r = normalizeConfig(target([{ lun: 0, path: 'd.img', removable: true }]), dir).targets[0].luns[0];
  t.true(r.removable);
});

test('config: settings a cd LUN cannot have are refused with the reason', (t) => {
  const bad = (l: Record<string, unknown>, msg: RegExp) =>
    t.throws(() => normalizeConfig(target([{ lun: 0, ...l }]), dir), {
      instanceOf: ConfigError,
      message: msg,
    });
  bad({ type: 'cd', path: 'image.iso', size: '1M' }, /existing image.*'size' is not allowed/);
  bad({ type: 'cd', path: 'image.iso', blockSize: 512 }, /'blockSize' is 2048/);
  bad({ type: 'cd', backstore: 'null' }, /'backstore' must be 'file'/);
  bad({ type: 'cd' }, /'path' \(the ISO image\) is required/);
  bad({ type: 'cd', path: 'image.iso', removable: false }, /always 'removable'/);
  bad({ type: 'tape', path: 'x' }, /'type' must be 'disk' or 'cd'/);
});

test('an ISO path that does not exist is a clear error at start-up, and nothing is created', async (t) => {
  const missing = path.join(dir, 'missing.iso');
  const c = normalizeConfig(
    { stateDir: path.join(dir, 'state'), ...target([{ lun: 0, type: 'cd', path: missing }]) },
    dir,
  );
  await t.throwsAsync(prepareBackingFiles(c), {
    instanceOf: ConfigError,
    message:
      /missing\.iso.*the cd image does not exist \(a cd LUN serves an existing ISO, never creates one\)/,
  });
  t.false(fs.existsSync(missing));
});

test('--lun cd:PATH makes a cd LUN', (t) => {
  const c = buildConfig(parseServeArgs(['--lun', 'a.img:1G', '--lun', 'cd:/srv/x.iso']), '/srv');
  t.deepEqual(
    c.targets[0].luns.map((l) => [l.lun, l.type, l.path, l.readOnly]),
    [
      [0, 'disk', '/srv/a.img', false],
      [1, 'cd', '/srv/x.iso', true],
    ],
  );
});

test.serial(
  'the image reads back through a cd LUN: TestInitiator reads every byte; iscsi-inq sees an MMC device',
  async (t) => {
    const tt = await startTestTarget({ luns: [{ lun: 0, type: 'cd', path: iso }] });
    try {
      const ini = await TestInitiator.connect(tt.port);
      t.is((await ini.login({ targetName: TEST_TARGET })).status, 0);
      const inq = await ini.scsi(Buffer.from([0x12, 0, 0, 0, 36, 0]), { edtl: 36, read: true });
      t.deepEqual([inq.data[0], inq.data[1]], [0x05, 0x80]);
      const cap = await ini.scsi(Buffer.from([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), { edtl: 8, read: true });
      t.deepEqual([cap.data.readUInt32BE(0), cap.data.readUInt32BE(4)], [BLOCKS - 1, 2048]);
      const read = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      read.writeUInt16BE(BLOCKS, 7);
      const r = await ini.scsi(read, { edtl: BLOCKS * 2048, read: true });
      t.is(r.status, 0);
      t.true(r.data.equals(content), 'every byte of the image');
      const w = Buffer.from([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      const refused = await ini.scsi(w, { edtl: 2048, write: true, data: Buffer.alloc(2048) });
      t.deepEqual([refused.status, refused.sense![2] & 0x0f, refused.sense![12]], [2, 0x05, 0x20]);
      ini.close();

      // The target runs in this process: the tool must run asynchronously, or it waits on a blocked event loop.
      if (!iscsiInqAvailable())
        return t.log('iscsi-inq not installed (apt-get install libiscsi-bin): not run');
      const std = await iscsiInq([tt.url(0)]);
      t.regex(std, /Peripheral Device Type:MMC/);
      t.regex(std, /Removable:1/);
      const vpd = await iscsiInq(['-e', '1', '-c', '0', tt.url(0)]);
      t.regex(vpd, /0x80/);
      t.notRegex(vpd, /0xb0/i, 'no Block Limits page on an MMC LU');
    } finally {
      await tt.close();
    }
  },
);
