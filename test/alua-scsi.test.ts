/**
 * Implicit ALUA inside one process (issue 13 part 2): the `alua` config and the identity it requires, INQUIRY
 * TPGS and the VPD 83h port designators, REPORT TARGET PORT GROUPS in both formats, the commands each asymmetric
 * access state lets through, and the live plan and CLI edit of a group's state. The two-gateway tests over the
 * network are in alua.test.ts.
 */
import test from 'ava';
import { normalizeAlua, sharedNaa, type AluaConfig } from '../src/config/alua';
import { applyChange } from '../src/config/edit';
import { normalizeConfig, type Config } from '../src/config/schema';
import { planChange } from '../src/portal/reload';
import { TargetPortGroups } from '../src/scsi/port-groups';
import { fixture, good, sense } from './scsi-helpers';
import {
  ANO,
  AO,
  designators,
  identityOf83,
  inquiryCdb,
  parseRtpg,
  rtpgCdb,
  STANDBY,
  tpgsOf,
  TRANSITIONING,
  UNAVAILABLE,
} from './helpers/alua';

const T = 'iqn.2026-11.io.nodetgt.test:alua';
const NOT_READY = 0x02;
const ILLEGAL = 0x05;
const UNIT_ATTENTION = 0x06;

function alua(localGroup: number, states: [string, string] = ['active-optimized', 'standby']): AluaConfig {
  return normalizeAlua(
    {
      localGroup,
      groups: [
        { id: 1, state: states[0], preferred: true },
        { id: 2, state: states[1] },
      ],
    },
    'alua',
  )!;
}

function gateway(localGroup: number, states?: [string, string]) {
  const ports = new TargetPortGroups(alua(localGroup, states));
  return { ports, ...fixture({}, { ports }) };
}

const READ10 = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const WRITE10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0];
const TUR = [0, 0, 0, 0, 0, 0];
const MODE_SENSE6 = [0x1a, 0, 0x3f, 0, 0xff, 0];
const READ_CAPACITY10 = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const REPORT_LUNS = [0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
const PR_IN_READ_KEYS = [0x5e, 0, 0, 0, 0, 0, 0, 0, 0xff, 0];
const REQUEST_SENSE = [0x03, 0, 0, 0, 0xff, 0];
const STPG = [0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0];

// ---- configuration ------------------------------------------------------------------------------------

test('alua config: ports default to [id], port to the local group’s only one; bad layouts are refused', (t) => {
  const a = alua(2);
  t.deepEqual(
    a.groups.map((g) => g.ports),
    [[1], [2]],
  );
  t.is(a.port, 2);
  t.is(a.localGroup, 2);
  const bad = (raw: unknown, re: RegExp) => t.throws(() => normalizeAlua(raw, 'alua'), { message: re });
  const g = (id: number, more = {}) => ({ id, state: 'standby', ...more });
  bad({ localGroup: 3, groups: [g(1)] }, /'localGroup' must be the id of one of the groups/);
  bad({ localGroup: 1, groups: [g(1), g(1)] }, /'id' 1 is used by another group/);
  bad({ localGroup: 1, groups: [g(1, { ports: [5] }), g(2, { ports: [5] })] }, /port 5 is in another group/);
  bad({ localGroup: 1, groups: [g(1, { ports: [5, 6] })] }, /'port' is required: group 1 has several/);
  bad({ localGroup: 1, port: 7, groups: [g(1, { ports: [5, 6] })] }, /'port' 7 is not one of group 1/);
  bad({ localGroup: 0, groups: [g(0)] }, /'ports' is required for group 0/);
  bad({ localGroup: 1, groups: [g(1, { state: 'offline' })] }, /'state' must be one of/);
  bad({ localGroup: 1, groups: [] }, /'groups' must be a non-empty list/);
  t.is(normalizeAlua({ localGroup: 1, port: 6, groups: [g(1, { ports: [5, 6] })] }, 'alua')!.port, 6);
});

test('an ALUA target needs each LU’s serial; its NAA is derived from target and serial, the same on every gateway', (t) => {
  const conf = (localGroup: number, lun: Record<string, unknown>) =>
    normalizeConfig(
      {
        targets: [
          {
            name: T,
            luns: [lun],
            alua: {
              localGroup,
              groups: [
                { id: 1, state: 'active-optimized' },
                { id: 2, state: 'standby' },
              ],
            },
          },
        ],
      },
      '/tmp',
    );
  t.throws(() => conf(1, { lun: 0, path: 'x.img', size: '1M' }), {
    message: /'serial' is required on a target with 'alua'/,
  });
  const a = conf(1, { lun: 0, path: 'x.img', size: '1M', serial: 'IMG0001' }).targets[0].luns[0];
  const b = conf(2, { lun: 0, path: 'x.img', size: '1M', serial: 'IMG0001' }).targets[0].luns[0];
  t.is(a.naa, sharedNaa(T, 'IMG0001'));
  t.is(a.naa, b.naa, 'both gateways derive the same NAA');
  t.regex(a.naa!, /^3[0-9a-f]{15}$/, 'NAA 3h, locally assigned');
  t.not(sharedNaa(T, 'IMG0002'), a.naa, 'another serial, another NAA');
  const own = conf(1, { lun: 0, path: 'x.img', size: '1M', serial: 'S', naa: '5001405abcdef012' });
  t.is(own.targets[0].luns[0].naa, '5001405abcdef012', "the operator's own NAA wins");
});

// ---- INQUIRY -----------------------------------------------------------------------------------------

test('INQUIRY: TPGS 01b with ALUA, 00b without; VPD 83h adds the target port group and this port', async (t) => {
  const plain = fixture();
  const std0 = (await plain.run(inquiryCdb(false, 0))).dataIn!;
  t.is(tpgsOf(std0), 0);
  t.is(std0[6] & 0x10, 0, 'MULTIP 0: one port');
  const p83 = identityOf83((await plain.run(inquiryCdb(true, 0x83))).dataIn!);
  t.is(p83.relativePort, 1);
  t.is(p83.group, undefined, 'no target port group designator without ALUA');

  const b = gateway(2);
  const std = (await b.run(inquiryCdb(false, 0))).dataIn!;
  t.is(tpgsOf(std), 1, 'implicit ALUA only');
  t.is(std[5] & 0x08, 0x08, '3PC still set');
  t.is(std[6] & 0x10, 0x10, 'MULTIP: the target has two ports');
  const page = (await b.run(inquiryCdb(true, 0x83))).dataIn!;
  const id = identityOf83(page);
  t.is(id.relativePort, 2);
  t.is(id.group, 2);
  const tpg = designators(page).find((d) => d.type === 5)!;
  t.deepEqual([tpg.codeSet, tpg.piv, tpg.protocol, tpg.assoc, tpg.value.length], [1, true, 5, 1, 4]);
});

// ---- REPORT TARGET PORT GROUPS ----------------------------------------------------------------------------

test('REPORT TARGET PORT GROUPS: length-only and extended formats, states, PREF, supported states, ports', async (t) => {
  const f = gateway(1);
  for (const extended of [false, true]) {
    const r = await f.run(rtpgCdb(extended));
    good(t, r);
    const d = parseRtpg(r.dataIn!, extended);
    t.is(d.length, r.dataIn!.length - 4, 'RETURN DATA LENGTH counts the bytes after itself');
    t.is(r.dataIn!.length, (extended ? 8 : 4) + 2 * 12);
    if (extended) t.deepEqual([d.formatType, d.transitionTime], [1, 0]);
    t.deepEqual(d.groups, [
      { preferred: true, state: AO, supported: 0x8f, id: 1, status: 0, ports: [1] },
      { preferred: false, state: STANDBY, supported: 0x8f, id: 2, status: 0, ports: [2] },
    ]);
  }
  const short = await f.run(rtpgCdb(false, 6));
  good(t, short);
  t.is(short.dataIn!.length, 6, 'cut to the allocation length');
  t.is(short.dataIn!.readUInt32BE(0), 24, 'with the full length');
  const reserved = rtpgCdb(false);
  reserved[1] = 0x40 | 0x0a; // PARAMETER DATA FORMAT 010b
  sense(t, await f.run(reserved), ILLEGAL, 0x24, 0);
});

test('REPORT TARGET PORT GROUPS: a state changed live is reported with STATUS CODE 02h (implicit)', async (t) => {
  const f = gateway(2);
  f.ports.update(alua(2, ['standby', 'active-optimized']));
  const d = parseRtpg((await f.run(rtpgCdb(true))).dataIn!, true);
  t.deepEqual(
    d.groups.map((g) => [g.id, g.state, g.status]),
    [
      [1, STANDBY, 2],
      [2, AO, 2],
    ],
  );
  t.is(f.ports.localState, 'active-optimized');
});

test('without ALUA: REPORT TARGET PORT GROUPS is not offered (INVALID FIELD IN CDB, and not in RSOC)', async (t) => {
  const plain = fixture();
  sense(t, await plain.run(rtpgCdb(false)), ILLEGAL, 0x24, 0);
  const rsoc = (cdb: number[]) => plain.run(cdb);
  const one = [0xa3, 0x0c, 0x02, 0xa3, 0, 0x0a, 0, 0, 0, 64, 0, 0];
  t.is((await rsoc(one)).dataIn![1] & 7, 1, 'RSOC: not supported');
  const f = gateway(1);
  t.is((await f.run(one)).dataIn![1] & 7, 3, 'RSOC: supported with ALUA');
});

test('SET TARGET PORT GROUPS is refused: implicit ALUA only (INVALID COMMAND OPERATION CODE)', async (t) => {
  for (const local of [1, 2]) sense(t, await gateway(local).run(STPG), ILLEGAL, 0x20, 0);
});

// ---- access states --------------------------------------------------------------------------------------

test('standby: only INQUIRY, REPORT LUNS, RTPG, REQUEST SENSE, MODE, PR IN, READ CAPACITY; the rest 04h/0Bh', async (t) => {
  const f = gateway(2);
  for (const cdb of [READ10, TUR, [0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    sense(t, await f.run(cdb), NOT_READY, 0x04, 0x0b);
  sense(t, await f.run(WRITE10, { data: Buffer.alloc(512, 0x55) }), NOT_READY, 0x04, 0x0b);
  for (const cdb of [
    inquiryCdb(false, 0),
    REPORT_LUNS,
    rtpgCdb(false),
    REQUEST_SENSE,
    MODE_SENSE6,
    PR_IN_READ_KEYS,
    READ_CAPACITY10,
  ])
    good(t, await f.run(cdb));
  const block = Buffer.alloc(512, 1);
  await f.store.read(0, block);
  t.deepEqual(block, Buffer.alloc(512), 'nothing was written');
});

test('unavailable (04h/0Ch) and transitioning (04h/0Ah) let through only INQUIRY, REPORT LUNS, RTPG, REQUEST SENSE', async (t) => {
  for (const [state, ascq] of [
    ['unavailable', 0x0c],
    ['transitioning', 0x0a],
  ] as const) {
    const f = gateway(2, ['active-optimized', state]);
    for (const cdb of [READ10, TUR, MODE_SENSE6, READ_CAPACITY10, PR_IN_READ_KEYS])
      sense(t, await f.run(cdb), NOT_READY, 0x04, ascq);
    for (const cdb of [inquiryCdb(false, 0), REPORT_LUNS, rtpgCdb(false), REQUEST_SENSE])
      good(t, await f.run(cdb));
    const groups = parseRtpg((await f.run(rtpgCdb(false))).dataIn!, false).groups;
    t.is(groups[1].state, state === 'unavailable' ? UNAVAILABLE : TRANSITIONING);
  }
});

test('active/optimized and active/non-optimized serve everything', async (t) => {
  for (const f of [gateway(1), gateway(2, ['standby', 'active-non-optimized'])]) {
    good(t, await f.run(WRITE10, { data: Buffer.alloc(512, 7) }));
    good(t, await f.run(READ10));
    good(t, await f.run(TUR));
  }
  const d = parseRtpg(
    (await gateway(2, ['standby', 'active-non-optimized']).run(rtpgCdb(false))).dataIn!,
    false,
  );
  t.is(d.groups[1].state, ANO);
});

test('a pending unit attention is reported before the standby refusal; a live state change takes effect at once', async (t) => {
  const f = gateway(2);
  f.lu.noteNexus('n1');
  f.lu.establishUnitAttention([0x2a, 0x06]);
  sense(t, await f.run(READ10, { nexus: 'n1' }), UNIT_ATTENTION, 0x2a, 0x06);
  sense(t, await f.run(READ10, { nexus: 'n1' }), NOT_READY, 0x04, 0x0b);
  f.ports.update(alua(2, ['standby', 'active-optimized']));
  good(t, await f.run(READ10, { nexus: 'n1' }));
});

test('a write through a standby port is refused before its Data-Out is solicited, unless a unit attention comes first', (t) => {
  const f = gateway(2);
  const cdb = Buffer.from(WRITE10);
  f.lu.noteNexus('n1');
  const refused = f.disp.admitDataOut({ cdb, lun: 0, nexus: 'n1' });
  t.true('sense' in refused);
  if ('sense' in refused) t.deepEqual([refused.sense[2], refused.sense[12], refused.sense[13]], [2, 4, 0x0b]);
  f.lu.establishUnitAttention([0x2a, 0x06]);
  t.deepEqual(
    f.disp.admitDataOut({ cdb, lun: 0, nexus: 'n1' }),
    { dataOut: 512 },
    'the UA is execute’s to report',
  );
  t.deepEqual(
    gateway(1).disp.admitDataOut({ cdb, lun: 0, nexus: 'n1' }),
    { dataOut: 512 },
    'active: admitted',
  );
});

// ---- live change: plan and CLI edit ---------------------------------------------------------------------

function config(localGroup: number, states: [string, string]): Config {
  const c = normalizeConfig(
    {
      targets: [
        {
          name: T,
          luns: [{ lun: 0, backstore: 'null', size: '1M', serial: 'S0' }],
          alua: {
            localGroup,
            groups: [
              { id: 1, state: states[0] },
              { id: 2, state: states[1] },
            ],
          },
        },
      ],
    },
    '/tmp',
  );
  c.targets[0].luns[0].identity = { serial: 'S0', naa: c.targets[0].luns[0].naa! };
  return c;
}

test('live plan: a group state change is applied live and raises ASYMMETRIC ACCESS STATE CHANGED; a port change INQUIRY DATA CHANGED', (t) => {
  const ctx = { force: false, inFlight: () => 0, capacity: () => 1 << 20, freshSlot: 1 };
  const now = config(2, ['active-optimized', 'standby']);
  const flip = planChange(now, config(2, ['standby', 'active-optimized']), ctx);
  t.is(flip.refused, undefined);
  t.deepEqual(flip.needsRestart, []);
  t.deepEqual(flip.accessStatesChanged, [T]);
  t.deepEqual(flip.portGroupsChanged, []);
  t.deepEqual(flip.changedTargets, [T]);
  t.true(flip.applied.some((a) => a.includes("alua (this gateway's group 2 is active-optimized)")));
  t.deepEqual(flip.removeLuns, [], 'the LUs stay');
  // The other group's state alone changes what RTPG reports: still a state change.
  const other = planChange(now, config(2, ['unavailable', 'standby']), ctx);
  t.deepEqual(other.accessStatesChanged, [T]);
  const moved = planChange(now, config(1, ['active-optimized', 'standby']), ctx);
  t.deepEqual(moved.portGroupsChanged, [T], 'another local group: VPD 83h changes');
  t.deepEqual(moved.accessStatesChanged, [T], 'and this port’s state with it');
});

test('`nodetgt alua state` edits only the group’s state in the raw document', (t) => {
  const raw = {
    targets: [
      {
        name: T,
        luns: [{ lun: 0, backstore: 'null', size: '1M', serial: 'S0' }],
        alua: {
          localGroup: 2,
          groups: [
            { id: 1, state: 'active-optimized' },
            { id: 2, state: 'standby' },
          ],
        },
      },
    ],
  };
  const ctx = { sessions: () => 0, lunBytes: () => undefined, force: false };
  const r = applyChange(raw, { kind: 'alua-state', target: T, group: 2, state: 'active-optimized' }, ctx);
  t.is(r.summary, `target port group 2 of ${T}: standby -> active-optimized`);
  const after = (r.doc.targets as Array<{ alua: AluaConfig }>)[0].alua;
  t.deepEqual(after.groups, [
    { id: 1, state: 'active-optimized' },
    { id: 2, state: 'active-optimized' },
  ]);
  t.is(raw.targets[0].alua.groups[1].state, 'standby', 'the input is not modified');
  t.throws(() => applyChange(raw, { kind: 'alua-state', target: T, group: 9, state: 'standby' }, ctx), {
    message: /has no target port group 9/,
  });
});
