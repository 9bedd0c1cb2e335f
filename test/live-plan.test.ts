/**
 * The plan of a live configuration change (src/portal/reload.ts planChange), without a target: what is applied,
 * what needs a restart, what is refused, and which slot each LU gets.
 */
import test from 'ava';
import { MAX_LUS, normalizeConfig, type Config } from '../src/config/schema';
import { planChange, type PlanContext } from '../src/portal/reload';

const T = 'iqn.2026-11.io.nodetgt.test:plan';
const U = 'iqn.2026-11.io.nodetgt.test:other';

type Raw = Record<string, unknown>;

function cfg(targets: Raw[], extra: Raw = {}): Config {
  return normalizeConfig({ portals: ['127.0.0.1:0'], targets, ...extra }, '/srv');
}

const lun = (n: number, more: Raw = {}): Raw => ({ lun: n, path: `lun${n}.img`, size: '8M', ...more });

/** A running configuration: the kernel chose port 3261, LUs were provisioned. */
function running(targets: Raw[], extra: Raw = {}): Config {
  const c = cfg(targets, extra);
  c.portals[0].port = 3261;
  for (const t of c.targets)
    for (const l of t.luns) l.identity = { serial: `S${l.slot}`, naa: '3000000000000001' };
  return c;
}

function ctx(over: Partial<PlanContext> = {}): PlanContext {
  return { force: false, inFlight: () => 0, capacity: (l) => l.size ?? 0, freshSlot: 100, ...over };
}

test('nothing changed: nothing applied; a port 0 in the file is the port the kernel chose', (t) => {
  const now = running([{ name: T, luns: [lun(0)] }]);
  const p = planChange(now, cfg([{ name: T, luns: [lun(0)] }]), ctx());
  t.deepEqual(p.applied, []);
  t.deepEqual(p.needsRestart, []);
  t.deepEqual(p.changedTargets, []);
  t.is(p.targets[0].luns[0], now.targets[0].luns[0], 'the running LU (identity, slot) stays as it is');
});

test('ACL, alias, CHAP and discovery CHAP apply live; global keys need a restart and the live part still applies', (t) => {
  const now = running([{ name: T, luns: [lun(0)] }]);
  const next = cfg(
    [
      {
        name: T,
        alias: 'disk',
        acl: { initiators: ['iqn.2026-11.io.nodetgt.test:a'] },
        auth: { incoming: [{ user: 'u', secret: 'a-long-secret-1' }] },
        luns: [lun(0)],
      },
    ],
    {
      queueDepth: 64,
      portals: ['127.0.0.1:3270'],
      discoveryAuth: { incoming: [{ user: 'd', secret: 'x-long-secret' }] },
    },
  );
  const p = planChange(now, next, ctx());
  t.deepEqual(p.applied, [`target ${T}: acl`, `target ${T}: alias`, `target ${T}: auth`, 'discoveryAuth']);
  t.deepEqual(p.needsRestart.sort(), ['portals changed', 'queueDepth changed']);
  t.deepEqual(p.changedTargets, [T]);
  t.deepEqual(p.discoveryAuth?.value?.incoming[0].user, 'd');
  t.deepEqual(p.addLuns, []);
  t.deepEqual(p.lunSetChanged, []);
});

test('a LUN added gets a slot no LU ever had while there are any; the others keep theirs', (t) => {
  const now = running([
    { name: T, luns: [lun(0), lun(1)] },
    { name: U, luns: [lun(5)] },
  ]);
  const p = planChange(
    now,
    cfg([
      { name: T, luns: [lun(0), lun(1), lun(2)] },
      { name: U, luns: [lun(5)] },
    ]),
    ctx({ freshSlot: 7 }),
  );
  t.deepEqual(p.applied, [`target ${T}: LUN 2 added`]);
  t.is(p.addLuns.length, 1);
  t.is(p.addLuns[0].lun.slot, 7);
  t.is(p.addLuns[0].lun.identity, undefined, 'to be provisioned');
  t.deepEqual(
    p.targets.map((x) => x.luns.map((l) => l.slot)),
    [[0, 1, 7], [2]],
  );
  t.deepEqual(p.lunSetChanged, [T]);
  t.deepEqual(p.changedTargets, [T]);
});

test('slots wrap around past MAX_LUS to the lowest free one, never a live LU’s; none free: refused', (t) => {
  const now = running([{ name: T, luns: [lun(0), lun(1), lun(2)] }]); // slots 0, 1, 2
  const next = cfg([{ name: T, luns: [lun(0), lun(1), lun(2), lun(3), lun(4)] }]);
  const p = planChange(now, next, ctx({ freshSlot: MAX_LUS - 1 }));
  t.deepEqual(
    p.addLuns.map((c) => c.lun.slot),
    [MAX_LUS - 1, 3],
  );
  // Every slot but the three live ones is (pretend) taken by making the live set that large.
  const big = running([
    { name: T, luns: Array.from({ length: MAX_LUS }, (_, i) => ({ lun: i, backstore: 'null', size: '1M' })) },
  ]);
  const more = cfg([
    {
      name: T,
      luns: [
        ...Array.from({ length: MAX_LUS - 1 }, (_, i) => ({ lun: i, backstore: 'null', size: '1M' })),
        { lun: 9999, backstore: 'null', size: '1M' },
      ],
    },
  ]);
  const r = planChange(big, more, ctx({ freshSlot: 0 }));
  t.is(
    r.refused,
    `more than ${MAX_LUS} LUs in all`,
    'the slot of the LU removed in the same change is not reused at once',
  );
  t.deepEqual(r.applied, []);
});

test('removing a LUN with I/O in flight is refused as a whole unless forced', (t) => {
  const now = running([{ name: T, alias: 'a', luns: [lun(0), lun(1)] }]);
  const next = cfg([{ name: T, alias: 'b', luns: [lun(0)] }]);
  const inFlight = (slot: number) => (slot === 1 ? 3 : 0);
  const p = planChange(now, next, ctx({ inFlight }));
  t.is(p.refused, `LUN 1 of ${T} has I/O in flight`);
  t.deepEqual(p.applied, [], 'not even the alias');
  t.deepEqual(p.removeLuns, []);
  t.is(p.targets, now.targets);
  const f = planChange(now, next, ctx({ inFlight, force: true }));
  t.is(f.refused, undefined);
  t.deepEqual(f.applied, [`target ${T}: LUN 1 removed`, `target ${T}: alias`]);
  t.deepEqual(
    f.removeLuns.map((c) => [c.target, c.lun.lun, c.lun.slot]),
    [[T, 1, 1]],
  );
  t.deepEqual(f.lunSetChanged, [T]);
  // Idle: no force needed.
  t.is(planChange(now, next, ctx()).refused, undefined);
});

test('a LUN grows live; shrinking is refused unless forced; a size no longer given changes nothing', (t) => {
  const now = running([{ name: T, luns: [lun(0), lun(1, { backstore: 'null', path: undefined })] }]);
  const grow = planChange(
    now,
    cfg([
      {
        name: T,
        luns: [lun(0, { size: '16M' }), lun(1, { backstore: 'null', path: undefined, size: '1G' })],
      },
    ]),
    ctx(),
  );
  t.deepEqual(grow.applied, [
    `target ${T}: LUN 0 resized from 8388608 to 16777216 bytes`,
    `target ${T}: LUN 1 resized from 8388608 to 1073741824 bytes`,
  ]);
  t.deepEqual(
    grow.resizeLuns.map((r) => [r.lun.slot, r.from, r.to]),
    [
      [0, 8 << 20, 16 << 20],
      [1, 8 << 20, 1 << 30],
    ],
  );
  t.is(grow.targets[0].luns[0].identity?.serial, 'S0', 'the same LU, identity kept');
  t.deepEqual(grow.lunSetChanged, [], 'no REPORTED LUNS DATA HAS CHANGED for a resize');
  const shrink = cfg([
    { name: T, luns: [lun(0, { size: '4M' }), lun(1, { backstore: 'null', path: undefined })] },
  ]);
  t.is(
    planChange(now, shrink, ctx()).refused,
    `LUN 0 of ${T}: shrinking it from 8388608 to 4194304 bytes would drop data (force to apply)`,
  );
  t.deepEqual(
    planChange(now, shrink, ctx({ force: true })).resizeLuns.map((r) => r.to),
    [4 << 20],
  );
  // A file adopted without a size: its capacity is what the file holds.
  const adopted = running([{ name: T, luns: [lun(0, { size: undefined })] }]);
  const same = planChange(
    adopted,
    cfg([{ name: T, luns: [lun(0, { size: '8M' })] }]),
    ctx({ capacity: () => 8 << 20 }),
  );
  t.deepEqual(same.resizeLuns, [], 'already that size');
  const dropped = planChange(
    now,
    cfg([{ name: T, luns: [lun(0, { size: undefined }), lun(1, { backstore: 'null', path: undefined })] }]),
    ctx(),
  );
  t.deepEqual(dropped.resizeLuns, []);
  t.deepEqual(dropped.applied, []);
  t.deepEqual(dropped.changedTargets, [T], 'the workers keep the configuration as it now reads');
});

test('any other change of a LUN replaces it: removal and addition at the same LUN, new slot, refused while busy', (t) => {
  const now = running([{ name: T, luns: [lun(0), lun(1)] }]);
  const next = cfg([{ name: T, luns: [lun(0), lun(1, { path: 'other.img', readOnly: true })] }]);
  const p = planChange(now, next, ctx({ freshSlot: 9 }));
  t.deepEqual(p.applied, [`target ${T}: LUN 1 replaced (path, readOnly changed)`]);
  t.deepEqual(
    p.removeLuns.map((c) => c.lun.slot),
    [1],
  );
  t.deepEqual(
    p.addLuns.map((c) => [c.lun.lun, c.lun.slot, c.lun.path]),
    [[1, 9, '/srv/other.img']],
  );
  t.deepEqual(p.lunSetChanged, [T]);
  t.is(
    planChange(now, next, ctx({ inFlight: (s) => (s === 1 ? 1 : 0) })).refused,
    `LUN 1 of ${T} has I/O in flight`,
  );
});

test('targets added and removed; a target whose LUN is busy is not removed unless forced', (t) => {
  const now = running([{ name: T, luns: [lun(0)] }]);
  const next = cfg([{ name: U, luns: [lun(0, { path: 'u0.img' }), lun(3, { path: 'u3.img' })] }]);
  const p = planChange(now, next, ctx({ freshSlot: 4 }));
  t.deepEqual(p.applied, [`target ${T} removed`, `target ${U} added (LUNs 0, 3)`]);
  t.deepEqual(
    p.addTargets[0].luns.map((l) => l.slot),
    [4, 5],
  );
  t.deepEqual(
    p.removeTargets.map((x) => x.name),
    [T],
  );
  t.deepEqual(
    p.targets.map((x) => x.name),
    [U],
  );
  t.is(planChange(now, next, ctx({ inFlight: () => 1 })).refused, `LUN 0 of ${T} has I/O in flight`);
  t.deepEqual(planChange(now, next, ctx({ inFlight: () => 1, force: true })).removeTargets.length, 1);
});

test('session-count rows: a target that stays keeps its row wherever it moves in the file; a new one gets a fresh row', (t) => {
  const now = running([
    { name: T, luns: [lun(0)] },
    { name: U, luns: [lun(1)] },
  ]);
  t.deepEqual(
    now.targets.map((x) => x.slot),
    [0, 1],
  );
  // T removed, U now first in the file, V added: U keeps row 1, V takes row 2 (T's row 0 may still drain).
  const V = 'iqn.2026-11.io.nodetgt.test:third';
  const next = cfg([
    { name: U, luns: [lun(1)] },
    { name: V, luns: [lun(2)] },
  ]);
  t.deepEqual(
    next.targets.map((x) => x.slot),
    [0, 1],
    'the file alone numbers them by place',
  );
  const p = planChange(now, next, ctx());
  t.deepEqual(
    p.targets.map((x) => [x.name, x.slot]),
    [
      [U, 1],
      [V, 2],
    ],
  );
});

test('the fields a running LU carries (slot, identity, offline, files) are not differences', (t) => {
  const now = running([{ name: T, luns: [lun(0)] }]);
  now.targets[0].luns[0].prFile = '/x/pr';
  now.targets[0].luns[0].atomicJournalDir = '/x/j';
  // What the CLI side does: a copy of the running configuration, changed.
  const next = structuredClone(now);
  next.targets[0].luns[0].slot = 42;
  const p = planChange(now, next, ctx());
  t.deepEqual(p.applied, []);
  t.deepEqual(p.needsRestart, []);
  t.deepEqual(p.changedTargets, []);
});
