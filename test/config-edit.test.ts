/**
 * The configuration changes of `nodetgt target|lun|acl|account` as pure edits of the raw document
 * (src/config/edit.ts), the atomic write-back (src/config/write-back.ts), and the change handler that ties
 * them to applyConfig (src/portal/change.ts): a failed apply writes nothing, a failed write is reported.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ConfigChange, ControlAnswer } from '../src/admin/protocol';
import { applyChange, EditError, type EditContext } from '../src/config/edit';
import { normalizeConfig, shortSecrets, type Config } from '../src/config/schema';
import { fileSource, memorySource } from '../src/config/source';
import { formatLike, holdsSecrets, writeFileAtomic } from '../src/config/write-back';
import type { ApplyReport } from '../src/portal/apply';
import { changeHandler } from '../src/portal/change';
import { planChange } from '../src/portal/reload';

const planReload = (a: Config, b: Config) =>
  planChange(a, b, { force: false, inFlight: () => 0, capacity: (l) => l.size ?? 0, freshSlot: 100 });

const T = 'iqn.2026-11.io.nodetgt.test:edit';
const U = 'iqn.2026-11.io.nodetgt.test:other';
const I = 'iqn.2026-11.io.nodetgt.test:ini';

function base(): Record<string, unknown> {
  return {
    portals: ['127.0.0.1:0'],
    targets: [
      {
        name: T,
        luns: [{ lun: 0, backstore: 'null', size: '16M' }],
        acl: { initiators: [I] },
      },
    ],
  };
}

function ctx(o: Partial<EditContext> = {}): EditContext {
  return { sessions: () => 0, lunBytes: () => undefined, force: false, ...o };
}

const edit = (change: ConfigChange, raw: unknown = base(), c = ctx()) => applyChange(raw, change, c);
const target = (doc: Record<string, unknown>, i = 0) => (doc.targets as Array<Record<string, unknown>>)[i];
const refused = (t: import('ava').ExecutionContext, f: () => unknown, re: RegExp) =>
  t.throws(f, { instanceOf: EditError, message: re });

test('target add/remove: appended with its alias; duplicates, unknown, last and busy targets refused', (t) => {
  const raw = base();
  const added = edit({ kind: 'target-add', target: U, alias: 'two' }, raw);
  t.deepEqual(target(added.doc, 1), { name: U, alias: 'two', luns: [] });
  t.regex(added.warnings[0], /no ACL and no CHAP/);
  t.is(target(raw).name, T, 'the input document is not changed');
  t.is((raw.targets as unknown[]).length, 1);
  normalizeConfig(added.doc); // valid
  refused(t, () => edit({ kind: 'target-add', target: T.toUpperCase() }), /exists/);
  const removed = edit({ kind: 'target-remove', target: U }, added.doc);
  t.deepEqual(removed.doc, raw);
  refused(t, () => edit({ kind: 'target-remove', target: U }), /no target/);
  refused(t, () => edit({ kind: 'target-remove', target: T }), /only target/);
  const busy = ctx({ sessions: (n) => (n === U ? 2 : 0) });
  refused(t, () => edit({ kind: 'target-remove', target: U }, added.doc, busy), /2 session\(s\).*--force/);
  t.notThrows(() => edit({ kind: 'target-remove', target: U }, added.doc, { ...busy, force: true }));
});

test('lun add: lowest free number or the one asked; file, null, options; duplicate LUN refused', (t) => {
  const a = edit({
    kind: 'lun-add',
    target: T,
    path: '/tmp/x.img',
    size: '1G',
    readOnly: true,
    blockSize: 4096,
  });
  t.deepEqual((target(a.doc).luns as unknown[])[1], {
    lun: 1,
    path: '/tmp/x.img',
    size: '1G',
    readOnly: true,
    blockSize: 4096,
  });
  const b = edit({ kind: 'lun-add', target: T, lun: 7, size: '8M' }, a.doc);
  t.deepEqual((target(b.doc).luns as unknown[])[2], { lun: 7, backstore: 'null', size: '8M' });
  t.is(normalizeConfig(b.doc).targets[0].luns.length, 3);
  refused(t, () => edit({ kind: 'lun-add', target: T, lun: 0, size: '8M' }), /already has LUN 0/);
  refused(t, () => edit({ kind: 'lun-add', target: U, size: '8M' }), /no target/);
  refused(t, () => edit({ kind: 'lun-add', target: T }), /needs a size/);
});

test('lun remove and resize: unknown LUN, in use, shrinking and cd refused without force', (t) => {
  const removed = edit({ kind: 'lun-remove', target: T, lun: 0 });
  t.deepEqual(target(removed.doc).luns, []);
  refused(t, () => edit({ kind: 'lun-remove', target: T, lun: 3 }), /has no LUN 3/);
  const inUse = ctx({ sessions: () => 1 });
  refused(
    t,
    () => edit({ kind: 'lun-remove', target: T, lun: 0 }, base(), inUse),
    /LUN 0 not removed.*1 session/,
  );
  const grown = edit(
    { kind: 'lun-resize', target: T, lun: 0, size: '32M' },
    base(),
    ctx({ lunBytes: () => 16 << 20 }),
  );
  t.is((target(grown.doc).luns as Array<Record<string, unknown>>)[0].size, '32M');
  const shrink = ctx({ lunBytes: () => 16 << 20 });
  refused(
    t,
    () => edit({ kind: 'lun-resize', target: T, lun: 0, size: '8M' }, base(), shrink),
    /shrink.*--force/,
  );
  t.notThrows(() =>
    edit({ kind: 'lun-resize', target: T, lun: 0, size: '8M' }, base(), { ...shrink, force: true }),
  );
  refused(t, () => edit({ kind: 'lun-resize', target: T, lun: 0, size: 'huge' }), /invalid size/);
  const cd = base();
  target(cd).luns = [{ lun: 0, type: 'cd', path: '/x.iso' }];
  refused(t, () => edit({ kind: 'lun-resize', target: T, lun: 0, size: '1G' }, cd), /is a cd/);
});

test('acl add/remove: names case-insensitively, networks; the last entry only with force', (t) => {
  const a = edit({ kind: 'acl-add', target: T, network: '10.0.0.0/8' });
  t.deepEqual(target(a.doc).acl, { initiators: [I], networks: ['10.0.0.0/8'] });
  refused(t, () => edit({ kind: 'acl-add', target: T, initiator: I.toUpperCase() }), /already/);
  const r = edit({ kind: 'acl-remove', target: T, initiator: I.toUpperCase() }, a.doc);
  t.deepEqual(target(r.doc).acl, { networks: ['10.0.0.0/8'] }, 'an emptied list goes');
  refused(t, () => edit({ kind: 'acl-remove', target: T, initiator: U }), /not in the ACL/);
  refused(t, () => edit({ kind: 'acl-remove', target: T, initiator: I }), /any initiator.*--force/);
  const forced = edit({ kind: 'acl-remove', target: T, initiator: I }, base(), ctx({ force: true }));
  t.false('acl' in target(forced.doc), 'an emptied ACL goes');
  refused(t, () => edit({ kind: 'acl-add', target: T }), /one --initiator NAME or one --network/);
});

test('accounts: stored once, bound by name, unbound; the normalizer resolves the names', (t) => {
  const added = edit({ kind: 'account-add', user: 'alice', secret: 'alice-secret-123' });
  t.deepEqual(added.doc.accounts, [{ user: 'alice', secret: 'alice-secret-123' }]);
  t.deepEqual(added.warnings, []);
  t.regex(edit({ kind: 'account-add', user: 'bob', secret: 'short' }).warnings[0], /shorter than 12/);
  refused(t, () => edit({ kind: 'account-add', user: 'alice', secret: 'x'.repeat(12) }, added.doc), /exists/);
  refused(t, () => edit({ kind: 'account-add', user: 'carol', secret: '' }), /empty CHAP secret/);
  const bound = edit({ kind: 'account-bind', user: 'alice', scope: { target: T } }, added.doc);
  t.deepEqual(target(bound.doc).auth, { incoming: ['alice'] });
  const disco = edit({ kind: 'account-bind', user: 'alice', scope: { discovery: true } }, bound.doc);
  t.deepEqual(disco.doc.discoveryAuth, { incoming: ['alice'] });
  const out = edit({ kind: 'account-bind', user: 'alice', scope: { target: T }, outgoing: true }, disco.doc);
  t.deepEqual(target(out.doc).auth, { incoming: ['alice'], outgoing: 'alice' });
  const c = normalizeConfig(out.doc);
  t.deepEqual(c.targets[0].auth, {
    incoming: [{ user: 'alice', secret: 'alice-secret-123' }],
    outgoing: { user: 'alice', secret: 'alice-secret-123' },
  });
  t.deepEqual(
    c.discoveryAuth?.incoming.map((x) => x.user),
    ['alice'],
  );
  t.deepEqual(shortSecrets(normalizeConfig(edit({ kind: 'account-add', user: 'b', secret: 'short' }).doc)), [
    "config.accounts[0] (user 'b')",
  ]);
  refused(
    t,
    () => edit({ kind: 'account-bind', user: 'zed', scope: { target: T } }, added.doc),
    /no account zed/,
  );
  refused(t, () => edit({ kind: 'account-bind', user: 'alice', scope: { target: T } }, bound.doc), /already/);
  refused(
    t,
    () => edit({ kind: 'account-bind', user: 'alice', scope: { target: T }, outgoing: true }, added.doc),
    /no incoming account/,
  );
  refused(
    t,
    () => edit({ kind: 'account-remove', user: 'alice' }, out.doc),
    /bound to target .*, discovery|bound to discovery, target/,
  );
  refused(
    t,
    () => edit({ kind: 'account-unbind', user: 'alice', scope: { target: T } }, bound.doc),
    /last incoming.*--force/,
  );
  const un = edit(
    { kind: 'account-unbind', user: 'alice', scope: { target: T } },
    out.doc,
    ctx({ force: true }),
  );
  t.false('auth' in target(un.doc), 'the last incoming account takes the outgoing one with it');
  const unOut = edit(
    { kind: 'account-unbind', user: 'alice', scope: { target: T }, outgoing: true },
    out.doc,
  );
  t.deepEqual(target(unOut.doc).auth, { incoming: ['alice'] });
  const gone = edit({ kind: 'account-remove', user: 'alice' }, added.doc);
  t.false('accounts' in gone.doc);
  refused(t, () => edit({ kind: 'account-remove', user: 'alice' }), /no account alice/);
  const inline = base();
  target(inline).auth = { incoming: [{ user: 'dave', secret: 'dave-secret-1234' }, 'alice'] };
  inline.accounts = [{ user: 'alice', secret: 'alice-secret-123' }];
  refused(t, () => edit({ kind: 'account-remove', user: 'dave' }, inline), /written inline in target/);
  const unInline = edit({ kind: 'account-unbind', user: 'dave', scope: { target: T } }, inline);
  t.deepEqual(target(unInline.doc).auth, { incoming: ['alice'] }, 'an inline account unbinds too');
});

test('schema: an account name nobody stored, or stored twice, is an error naming the place', (t) => {
  const raw = base();
  target(raw).auth = { incoming: ['ghost'] };
  t.throws(() => normalizeConfig(raw), { message: /targets\[0\]\.auth\.incoming\[0\]: no account 'ghost'/ });
  raw.accounts = [
    { user: 'ghost', secret: 'ghost-secret-12' },
    { user: 'ghost', secret: 'ghost-secret-34' },
  ];
  t.throws(() => normalizeConfig(raw), { message: /accounts\[1\]: duplicate account 'ghost'/ });
});

test('formatLike keeps the indentation, a compact file compact, short lists on a line, the final newline', (t) => {
  const doc = { a: [1, 2], b: { c: 'x'.repeat(120) } };
  t.is(
    formatLike(doc, '{\n    "a": 1\n}\n'),
    `{\n    "a": [1, 2],\n    "b": {\n        "c": "${'x'.repeat(120)}"\n    }\n}\n`,
  );
  t.is(formatLike({ a: [1] }, '{"a":[]}'), '{"a":[1]}');
  t.is(formatLike({ a: [1] }, '{\n\t"a": []\n}'), '{\n\t"a": [1]\n}');
  t.true(holdsSecrets({ targets: [{ auth: { incoming: [{ user: 'u', secret: 's' }] } }] }));
  t.false(holdsSecrets({ targets: [{ auth: { incoming: ['u'] } }] }));
});

function tmpFile(text: string, mode: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-wb-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
  return file;
}

test('writeFileAtomic: replaces the content, keeps the mode, tightens it for secrets, follows a link', async (t) => {
  const file = tmpFile('{}\n', 0o640);
  await writeFileAtomic(file, '{"a":1}\n', false);
  t.is(fs.readFileSync(file, 'utf8'), '{"a":1}\n');
  t.is(fs.statSync(file).mode & 0o7777, 0o640);
  await writeFileAtomic(file, '{"secret":"s"}\n', true);
  t.is(fs.statSync(file).mode & 0o7777, 0o600, 'group read taken away once it holds a secret');
  const link = path.join(path.dirname(file), 'link.json');
  fs.symlinkSync(file, link);
  await writeFileAtomic(link, '{"b":2}\n', true);
  t.true(fs.lstatSync(link).isSymbolicLink(), 'the link stays a link');
  t.is(fs.readFileSync(file, 'utf8'), '{"b":2}\n');
  t.deepEqual(
    fs.readdirSync(path.dirname(file)).sort(),
    ['config.json', 'link.json'],
    'no temporary file left',
  );
});

test('writeFileAtomic: a failed rename leaves the old file and no temporary file, and says which file', async (t) => {
  const file = tmpFile('{"old":true}\n', 0o600);
  const io = {
    open: fs.promises.open,
    rename: () => Promise.reject(Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' })),
  };
  await t.throwsAsync(writeFileAtomic(file, '{"new":true}\n', false, io), {
    message: new RegExp(`cannot write ${file}: EIO`),
  });
  t.is(fs.readFileSync(file, 'utf8'), '{"old":true}\n');
  t.deepEqual(fs.readdirSync(path.dirname(file)), ['config.json']);
});

/** A change handler over a real file, with a fake engine. */
function handler(file: string, report: ApplyReport, writeFile?: typeof writeFileAtomic) {
  const applied: unknown[] = [];
  const source = fileSource(file, (raw) => normalizeConfig(raw, path.dirname(file)));
  const change = changeHandler({
    source,
    applyConfig: (next) => {
      applied.push(next);
      return Promise.resolve(report);
    },
    editContext: (force) => Promise.resolve(ctx({ force })),
    writeFile,
  });
  return { change, applied };
}

const ok = (a: ControlAnswer) => (a.ok ? a.change! : undefined);

test('change handler: applied live, then written back with the key order and indentation kept', async (t) => {
  const text = `${JSON.stringify(base(), null, 2)}\n`;
  const file = tmpFile(text, 0o644);
  const { change, applied } = handler(file, { applied: ['acl'], needsRestart: [] });
  const a = await change({ op: 'change', change: { kind: 'acl-add', target: T, network: '10.0.0.0/8' } });
  t.deepEqual(ok(a)?.persisted, { file });
  t.deepEqual(ok(a)?.applied, ['acl']);
  t.is(applied.length, 1);
  const back = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  t.deepEqual(Object.keys(back), ['portals', 'targets']);
  t.deepEqual(target(back).acl, { initiators: [I], networks: ['10.0.0.0/8'] });
  t.is(fs.statSync(file).mode & 0o777, 0o644, 'no secret: the mode stays');
  const s = await change({
    op: 'change',
    change: { kind: 'account-add', user: 'al', secret: 'al-secret-1234' },
  });
  t.truthy(ok(s));
  t.is(fs.statSync(file).mode & 0o777, 0o600, 'a secret in it: 0600');
  t.notRegex(JSON.stringify(s), /al-secret/, 'the answer never holds the secret');
});

test('change handler: needsRestart or refused writes nothing; an invalid result is an error', async (t) => {
  const text = `${JSON.stringify(base(), null, 2)}\n`;
  const file = tmpFile(text, 0o600);
  const restart = handler(file, { applied: [], needsRestart: ['target x: LUNs changed'] });
  const a = ok(await restart.change({ op: 'change', change: { kind: 'lun-remove', target: T, lun: 0 } }));
  t.deepEqual(a?.needsRestart, ['target x: LUNs changed']);
  t.deepEqual(a?.persisted, { not: 'not written: the running target did not take the change' });
  t.is(fs.readFileSync(file, 'utf8'), text);
  const no = handler(file, { applied: [], needsRestart: [], refused: 'LUN 0 in use' });
  const r = ok(await no.change({ op: 'change', change: { kind: 'lun-remove', target: T, lun: 0 } }));
  t.is(r?.refused, 'LUN 0 in use');
  t.is(fs.readFileSync(file, 'utf8'), text);
  const saveOnly = await restart.change({
    op: 'change',
    change: { kind: 'lun-remove', target: T, lun: 0 },
    saveOnly: true,
  });
  t.deepEqual(ok(saveOnly)?.persisted, { file });
  t.is(restart.applied.length, 1, '--save-only applies nothing');
  t.deepEqual(target(JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>).luns, []);
  const bad = await restart.change({
    op: 'change',
    change: { kind: 'acl-add', target: T, network: '300.1.1.1/8' },
  });
  t.false(bad.ok);
  t.regex(bad.ok ? '' : bad.error, /invalid.*acl\.networks\[0\]/);
  const unknown = await restart.change({
    op: 'change',
    change: { kind: 'drop-all' } as unknown as ConfigChange,
  });
  t.false(unknown.ok);
});

test('change handler: a failed write after a live apply is reported as such; the file is as it was', async (t) => {
  const text = `${JSON.stringify(base(), null, 2)}\n`;
  const file = tmpFile(text, 0o600);
  const failing = () => Promise.reject(new Error(`cannot write ${file}: ENOSPC`));
  const { change } = handler(file, { applied: ['target t: acl'], needsRestart: [] }, failing);
  const a = await change({ op: 'change', change: { kind: 'acl-add', target: T, network: '10.0.0.0/8' } });
  t.false(a.ok);
  t.regex(
    a.ok ? '' : a.error,
    /applied live \(target t: acl\) but not saved: cannot write .*ENOSPC.*--save-only/,
  );
  t.is(fs.readFileSync(file, 'utf8'), text);
});

test('change handler without a file: applied live, kept in memory for the next change, not persisted', async (t) => {
  const src = memorySource(base(), 'no config file', (raw) => normalizeConfig(raw));
  const change = changeHandler({
    source: src,
    applyConfig: () => Promise.resolve({ applied: ['acl'], needsRestart: [] }),
    editContext: () => Promise.resolve(ctx()),
  });
  const a = ok(await change({ op: 'change', change: { kind: 'acl-add', target: T, network: '10.0.0.0/8' } }));
  t.deepEqual(a?.persisted, { not: 'not persisted: no config file' });
  const again = await change({ op: 'change', change: { kind: 'acl-add', target: T, network: '10.0.0.0/8' } });
  t.regex(again.ok ? '' : again.error, /already/, 'the second change sees the first');
  const save = await change({
    op: 'change',
    change: { kind: 'acl-add', target: T, network: '10.1.0.0/16' },
    saveOnly: true,
  });
  t.regex(save.ok ? '' : save.error, /--save-only: not persisted: no config file/);
});

test('planChange: start-up fields and a kernel-chosen port are no change; CHAP accounts apply live', (t) => {
  const running = normalizeConfig(base());
  running.portals[0].port = 41234; // what the kernel gave port 0
  Object.assign(running.targets[0].luns[0], { prFile: '/x/pr', atomicJournalDir: '/x/j', identity: {} });
  const same = planReload(running, normalizeConfig(base()));
  t.deepEqual([same.applied, same.needsRestart], [[], []]);
  const withAuth = base();
  withAuth.accounts = [{ user: 'al', secret: 'al-secret-1234' }];
  target(withAuth).auth = { incoming: ['al'] };
  withAuth.discoveryAuth = { incoming: ['al'] };
  const plan = planReload(running, normalizeConfig(withAuth));
  t.deepEqual(plan.needsRestart, []);
  t.deepEqual(plan.applied, [`target ${T}: auth`, 'discoveryAuth', 'account store']);
  t.deepEqual(plan.targets[0].auth?.incoming, [{ user: 'al', secret: 'al-secret-1234' }]);
  t.deepEqual(
    plan.discoveryAuth?.value?.incoming.map((a) => a.user),
    ['al'],
  );
});
