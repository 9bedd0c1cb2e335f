/**
 * Per-initiator LUN masking and read-only mapping, without a network: the `hosts` setting's validation (with
 * file, line and key), which entry an initiator matches, and the device server answering through a nexus's
 * view (REPORT LUNS, a masked LUN as absent, WRITE refused and MODE SENSE WP for a read-only nexus only).
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildConfig, parseServeArgs } from '../src/cli/main';
import { normalizeConfig, ConfigError, type TargetConfig } from '../src/config/schema';
import { hostFor } from '../src/config/hosts';
import { MemoryBackstore } from '../src/backstore/memory';
import { ScsiDispatcher, type ScsiResult } from '../src/scsi/dispatcher';
import { LogicalUnit } from '../src/scsi/lu';
import { LunView, viewChange } from '../src/scsi/lun-view';
import { planChange } from '../src/portal/reload';
import type { Config } from '../src/config/schema';

const planReload = (a: Config, b: Config) =>
  planChange(a, b, { force: false, inFlight: () => 0, capacity: (l) => l.size ?? 0, freshSlot: 100 });
import { testIdentity, sense, good } from './scsi-helpers';

const T = 'iqn.2026-11.io.example:t';
const ESX1 = 'iqn.1998-01.com.vmware:esx1';

function target(hosts: unknown, luns = [0, 1, 2]): Record<string, unknown> {
  return {
    targets: [{ name: T, luns: luns.map((lun) => ({ lun, backstore: 'null', size: '1M' })), hosts }],
  };
}

function hostsOf(hosts: unknown, luns?: number[]): TargetConfig['hosts'] {
  return normalizeConfig(target(hosts, luns)).targets[0].hosts;
}

function refusal(hosts: unknown, luns?: number[]): ConfigError {
  const e = (() => {
    try {
      normalizeConfig(target(hosts, luns));
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  if (!(e instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(e)}`);
  return e;
}

test('hosts: normalized entries (lower case, prefixes, sorted LUN lists, readOnly true or a list)', (t) => {
  t.deepEqual(
    hostsOf([
      { initiator: 'IQN.1998-01.com.vmware:ESX1', luns: [2, 0], readOnly: [2] },
      { initiator: 'iqn.1998-01.com.vmware:*', luns: [1], readOnly: true },
      { initiator: 'iqn.1991-05.com.microsoft:' },
      { initiator: '*', luns: [], readOnly: false },
    ]),
    [
      { initiator: ESX1, prefix: false, luns: [0, 2], readOnly: [2] },
      { initiator: 'iqn.1998-01.com.vmware:', prefix: true, luns: [1], readOnly: true },
      { initiator: 'iqn.1991-05.com.microsoft:', prefix: true, readOnly: [] },
      { initiator: '', prefix: true, luns: [], readOnly: [] },
    ],
  );
  t.is(hostsOf(undefined), undefined, 'no hosts: none in the config');
  t.is(hostsOf([]), undefined);
});

test('hosts: what is refused, with where and the key', (t) => {
  const cases: Array<[unknown, RegExp, string, string | undefined]> = [
    [{}, /'hosts' must be a list/, 'config.targets[0]', 'hosts'],
    [[{ luns: [0] }], /'initiator' is required/, 'config.targets[0].hosts[0]', 'initiator'],
    [
      [{ initiator: 'host1' }],
      /'initiator': 'host1' is not an iSCSI name/,
      'config.targets[0].hosts[0]',
      'initiator',
    ],
    [[{ initiator: 'iqn.2026-13.x:y' }], /month 13/, 'config.targets[0].hosts[0]', 'initiator'],
    [[{ initiator: 'iqn.*.x' }], /one '\*', at its end/, 'config.targets[0].hosts[0]', 'initiator'],
    [
      [{ initiator: 'host*' }],
      /must start with iqn\., eui\. or naa\./,
      'config.targets[0].hosts[0]',
      'initiator',
    ],
    [
      [{ initiator: ESX1, luns: [0, 7] }],
      /'luns' names LUN 7, which the target has not/,
      'config.targets[0].hosts[0]',
      'luns',
    ],
    [[{ initiator: ESX1, luns: [1, 1] }], /'luns' names LUN 1 twice/, 'config.targets[0].hosts[0]', 'luns'],
    [
      [{ initiator: ESX1, luns: '0' }],
      /'luns' must be a list of LUN numbers/,
      'config.targets[0].hosts[0]',
      'luns',
    ],
    [
      [{ initiator: ESX1, luns: [0], readOnly: [1] }],
      /'readOnly' names LUN 1, which the entry's 'luns' has not/,
      'config.targets[0].hosts[0]',
      'readOnly',
    ],
    [
      [{ initiator: ESX1, readOnly: [9] }],
      /'readOnly' names LUN 9, which the target has not/,
      'config.targets[0].hosts[0]',
      'readOnly',
    ],
    [
      [{ initiator: ESX1, readOnly: 'yes' }],
      /'readOnly' must be a list/,
      'config.targets[0].hosts[0]',
      'readOnly',
    ],
    [[{ initiator: ESX1, lun: [0] }], /unknown setting 'lun'/, 'config.targets[0].hosts[0]', undefined],
    [
      [{ initiator: ESX1 }, { initiator: ESX1.toUpperCase() }],
      /already mapped/,
      'config.targets[0].hosts[1]',
      'initiator',
    ],
  ];
  for (const [hosts, re, where, key] of cases) {
    const e = refusal(hosts);
    t.regex(e.message, re, JSON.stringify(hosts));
    t.is(e.where, where, JSON.stringify(hosts));
    t.is(e.key, key, JSON.stringify(hosts));
  }
});

test('hosts: a config file error names the file, the line and the key', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-hosts-'));
  try {
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify(target([{ initiator: ESX1, luns: [0, 5] }]), null, 2));
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const hostsAt = lines.findIndex((l) => l.includes('"hosts"'));
    const line = lines.findIndex((l, i) => i > hostsAt && l.includes('"luns": [')) + 1;
    const e = t.throws(() => buildConfig(parseServeArgs(['--config', file])));
    t.regex(
      e.message,
      new RegExp(`c\\.json:${line}: config\\.targets\\[0\\]\\.hosts\\[0\\]: 'luns' names LUN 5`),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('hostFor: exact name first (any case), then the longest prefix, else none', (t) => {
  const hosts = hostsOf([
    { initiator: '*', luns: [] },
    { initiator: 'iqn.1998-01.com.vmware:*', luns: [1] },
    { initiator: 'iqn.1998-01.com.vmware:esx*', luns: [2] },
    { initiator: ESX1, luns: [0] },
  ])!;
  t.deepEqual(hostFor(hosts, 'IQN.1998-01.COM.VMWARE:ESX1')?.luns, [0]);
  t.deepEqual(hostFor(hosts, 'iqn.1998-01.com.vmware:esx2')?.luns, [2]);
  t.deepEqual(hostFor(hosts, 'iqn.1998-01.com.vmware:other')?.luns, [1]);
  t.deepEqual(hostFor(hosts, 'iqn.2026-11.io.example:linux')?.luns, []);
  t.is(hostFor(hosts.slice(1), 'iqn.2026-11.io.example:linux'), undefined, 'no match: no mapping');
  t.is(hostFor(undefined, ESX1), undefined);
});

test('planChange: changed hosts are applied live, named in the log', (t) => {
  const before = normalizeConfig(target([{ initiator: ESX1, luns: [0] }]));
  const after = normalizeConfig(target([{ initiator: ESX1, luns: [0, 1], readOnly: [1] }]));
  const plan = planReload(before, after);
  t.deepEqual(plan.needsRestart, []);
  t.deepEqual(plan.applied, [`target ${T}: hosts`]);
  t.deepEqual(plan.targets[0].hosts, after.targets[0].hosts);
  t.deepEqual(plan.changedTargets, [T]);
  t.deepEqual(planReload(after, after).changedTargets, [], 'no change: nothing to send');
  t.deepEqual(
    planReload(after, normalizeConfig(target(undefined))).targets[0].hosts,
    undefined,
    'mappings removed',
  );
});

// ---- the device server through a nexus's view -------------------------------------------------------------

const BS = 512;
const NEXUS = 'iqn.2026-11.io.example:b,i,0x1|' + T;

function twoLuns(): { disp: ScsiDispatcher; lu0: LogicalUnit; lu1: LogicalUnit } {
  const mk = (n: number) => new LogicalUnit(new MemoryBackstore({ sizeBytes: 64 * BS }), testIdentity(T, n));
  const lu0 = mk(0);
  const lu1 = mk(1);
  return {
    disp: new ScsiDispatcher(
      new Map([
        [0, lu0],
        [1, lu1],
      ]),
    ),
    lu0,
    lu1,
  };
}

function exec(
  disp: ScsiDispatcher,
  lun: number,
  cdb: number[],
  view?: LunView,
  data?: Buffer,
): Promise<ScsiResult> {
  return Promise.resolve(
    disp.execute({
      lun,
      cdb: Buffer.from(cdb),
      expectedLength: data?.length ?? 255,
      readFlag: !data,
      writeFlag: !!data,
      dataOut: data ? [data] : [],
      nexus: NEXUS,
      view,
    }),
  );
}

const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
const write10 = (lba: number) => [0x2a, 0, 0, 0, 0, lba, 0, 0, 1, 0];
const MODE_SENSE6 = [0x1a, 0, 0x3f, 0, 255, 0];

function reportedLuns(r: ScsiResult): number[] {
  const d = r.dataIn!;
  const out: number[] = [];
  for (let i = 8; i < 8 + d.readUInt32BE(0); i += 8) out.push(d[i + 1]);
  return out;
}

test('a nexus view: masked LUN 0 is absent (05/25/00, INQUIRY PQ 011b), REPORT LUNS lists only its LUNs', async (t) => {
  const { disp, lu1 } = twoLuns();
  const view = new LunView(new Map([[1, { lu: lu1, readOnly: true }]]));
  // Through LUN 0, masked: REPORT LUNS still answers (SPC-4: LUN 0 or the REPORT LUNS well-known LU).
  const rl0 = await exec(disp, 0, REPORT_LUNS, view);
  good(t, rl0);
  t.deepEqual(reportedLuns(rl0), [1]);
  t.deepEqual(reportedLuns(await exec(disp, 1, REPORT_LUNS, view)), [1]);
  t.deepEqual(reportedLuns(await exec(disp, 0, REPORT_LUNS)), [0, 1], 'no view: every LUN');
  const inq = await exec(disp, 0, [0x12, 0, 0, 0, 36, 0], view);
  good(t, inq);
  t.is(inq.dataIn![0], 0x7f, 'peripheral qualifier 011b, device type 1Fh');
  sense(t, await exec(disp, 0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], view), 0x05, 0x25, 0x00);
  sense(t, await exec(disp, 0, write10(0), view, Buffer.alloc(BS, 1)), 0x05, 0x25, 0x00);
  t.deepEqual(disp.admitDataOut({ cdb: Buffer.from(write10(0)), lun: 0, view }), {
    sense: (await exec(disp, 0, [0, 0, 0, 0, 0, 0], view)).sense!,
  });
  t.is(disp.dataOutLength({ cdb: Buffer.from(write10(0)), lun: 0, view }), null);
  t.is(disp.dataOutLength({ cdb: Buffer.from(write10(0)), lun: 0 }), BS);
});

test('a read-only nexus: writes refused 07/27/00 and WP = 1 for it only; the LU stays writable for others', async (t) => {
  const { disp, lu1 } = twoLuns();
  const ro = new LunView(new Map([[1, { lu: lu1, readOnly: true }]]));
  good(t, await exec(disp, 1, write10(3), undefined, Buffer.alloc(BS, 0xab)));
  sense(t, await exec(disp, 1, write10(3), ro, Buffer.alloc(BS, 0xcd)), 0x07, 0x27, 0x00);
  // WRITE SAME(16), UNMAP-less thick LU: the same refusal; COMPARE AND WRITE too.
  sense(
    t,
    await exec(disp, 1, [0x93, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0], ro, Buffer.alloc(BS)),
    0x07,
    0x27,
    0,
  );
  sense(
    t,
    await exec(disp, 1, [0x89, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0], ro, Buffer.alloc(2 * BS)),
    0x07,
    0x27,
    0,
  );
  const read = await exec(disp, 1, [0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], ro);
  good(t, read);
  t.true(read.dataIn!.equals(Buffer.alloc(BS, 0xab)), 'the read-only nexus reads what the other wrote');
  t.is((await exec(disp, 1, MODE_SENSE6, ro)).dataIn![2] & 0x80, 0x80, 'WP for the read-only nexus');
  t.is((await exec(disp, 1, MODE_SENSE6)).dataIn![2] & 0x80, 0, 'no WP for the others');
  t.false(lu1.writeProtected, "the LU's own write protect is untouched");
});

test('viewChange: inventory and write-protect flips', (t) => {
  const { lu0, lu1 } = twoLuns();
  const a = new LunView(new Map([[1, { lu: lu1, readOnly: true }]]));
  const b = new LunView(new Map([[1, { lu: lu1, readOnly: false }]]));
  const c = new LunView(
    new Map([
      [0, { lu: lu0, readOnly: false }],
      [1, { lu: lu1, readOnly: true }],
    ]),
  );
  t.deepEqual(viewChange(a, a), { inventory: false, writeProtectFlipped: [] });
  t.deepEqual(viewChange(a, b), { inventory: false, writeProtectFlipped: [lu1] });
  t.deepEqual(viewChange(a, c).inventory, true);
  t.deepEqual(viewChange(c, a).inventory, true);
});
