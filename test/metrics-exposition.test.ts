/**
 * The exposition in this process, over shared memory filled by hand: series objects are kept from scrape to
 * scrape (src/metrics/series.ts), so what these tests check is that a scrape still shows the values of its own
 * moment, that what is gone (a session, an LU, a worker thread) is gone and what is new appears, and that the
 * text of a line is the one prom-client's own metrics write for the same labels and value.
 */
import test from 'ava';
import * as fs from 'node:fs';
import { Gauge, Registry } from 'prom-client';
import { normalizeConfig, type Config } from '../src/config/schema';
import { claimRow, createCounterShared, releaseRow } from '../src/metrics/counters';
import {
  Exposition,
  OPEN_FDS_MAX_AGE_MS,
  OPENMETRICS_TYPE,
  type MetricsSource,
} from '../src/metrics/exposition';
import { LuStats, allocateLuStats } from '../src/metrics/lu-stats';
import { GAUGES } from '../src/metrics/names';
import { MAX_SESSION_SLOTS, claimSessionStats } from '../src/metrics/session-stats';

const A = 'iqn.2026-11.io.nodetgt.test:a';
const B = 'iqn.2026-11.io.nodetgt.test:b';
const INI = 'iqn.2026-11.io.nodetgt.test:host';

const configOf = (targets: Array<{ name: string; luns: number[] }>): Config =>
  normalizeConfig({
    portals: ['127.0.0.1:3260'],
    targets: targets.map((t) => ({
      name: t.name,
      luns: t.luns.map((lun) => ({ lun, backstore: 'null', size: '1M' })),
    })),
  });

const series = (body: string, name: string, labels?: string) =>
  Number(new RegExp(`^${name}${labels === undefined ? '' : `\\{${labels}\\}`} (\\S+)$`, 'm').exec(body)?.[1]);
const has = (body: string, name: string, labels: string) =>
  new RegExp(`^${name}\\{${labels}\\} `, 'm').test(body);
const READ = 0x28;

function world(targets: Array<{ name: string; luns: number[] }>) {
  const counters = createCounterShared();
  const state = { config: configOf(targets) };
  const lus: Array<{ stats: SharedArrayBuffer }> = [];
  const stats = () =>
    state.config.targets.flatMap((t) => t.luns).map((l) => (lus[l.slot] ??= { stats: allocateLuStats() }));
  stats();
  const tuning: Array<{ labels: { check: string; subject: string }; value: number }> = [];
  const source: MetricsSource = {
    counters,
    config: () => state.config,
    lus,
    inFlight: () => 0,
    tuning: () => tuning,
  };
  return { counters, state, lus, stats, tuning, source };
}

test('each scrape shows its own values; sessions, LUs and threads that go take their series with them', async (t) => {
  const w = world([{ name: A, luns: [0, 1] }]);
  const e = new Exposition(w.source);
  const r1 = claimRow(w.counters, 101);
  const r2 = claimRow(w.counters, 102);
  const lu0 = new LuStats(w.lus[0]!.stats, r1.row);
  // Latencies are only bounded below here (a busy machine may add any delay to them).
  lu0.command(READ, 0, undefined, 4096, 0, performance.now() - 0.03);
  r1.inc('scsiCommands');
  r1.inc('cxnActive');
  const s1 = claimSessionStats(w.counters.sessions, { target: A, initiator: INI, isid: '400000000001' }, 0)!;
  s1.rx(100);
  s1.setConnections(1);
  const ssn1 = `target="${A}",initiator="${INI}",isid="400000000001"`;
  const l0 = `target="${A}",lun="0"`;

  let body = (await e.render()).body;
  t.is(series(body, 'nodetgt_lu_commands_total', `${l0},op="read"`), 1);
  t.is(series(body, 'nodetgt_lu_read_bytes_total', l0), 4096);
  // Buckets from 5 µs: a READ answered from memory takes a few (this one is at least 30 µs).
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="read",le="0.000005"`), 0);
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="read",le="0.00001"`), 0);
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="read",le="0.000025"`), 0);
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="read",le="\\+Inf"`), 1);
  t.is(series(body, 'nodetgt_lu_latency_seconds_count', `${l0},op="read"`), 1);
  t.is(series(body, 'nodetgt_session_rx_data_octets_total', ssn1), 100);
  t.is(series(body, 'nodetgt_session_cmd_pdus_total', ssn1), 1);
  t.is(series(body, 'nodetgt_target_sessions', `target="${A}"`), 1);
  t.is(series(body, 'nodetgt_scsi_commands_total'), 1);
  t.is(series(body, 'nodetgt_worker_connections', 'thread="101"'), 1);
  t.is(series(body, 'nodetgt_worker_connections', 'thread="102"'), 0);

  // New values, a session ended and another begun, a worker replaced by a new thread in its row.
  lu0.command(READ, 0, undefined, 4096, 0, performance.now() - 0.03);
  new LuStats(w.lus[0]!.stats, r2.row).command(0x2a, 0, undefined, 0, 512, performance.now() - 30);
  s1.rx(50);
  s1.release();
  const s2 = claimSessionStats(w.counters.sessions, { target: A, initiator: INI, isid: '400000000002' }, 0)!;
  s2.rx(7);
  s2.setConnections(2);
  r1.inc('scsiCommands', 2);
  releaseRow(w.counters, 102, r1, GAUGES);
  claimRow(w.counters, 103);
  body = (await e.render()).body;
  t.is(series(body, 'nodetgt_lu_commands_total', `${l0},op="read"`), 2);
  t.is(series(body, 'nodetgt_lu_commands_total', `${l0},op="write"`), 1);
  t.is(series(body, 'nodetgt_lu_written_bytes_total', l0), 512);
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="write",le="0.025"`), 0);
  t.is(series(body, 'nodetgt_lu_latency_seconds_bucket', `${l0},op="write",le="\\+Inf"`), 1);
  t.true(series(body, 'nodetgt_lu_latency_seconds_sum', `${l0},op="write"`) >= 0.03);
  t.false(has(body, 'nodetgt_session_rx_data_octets_total', ssn1), 'the ended session has no series');
  t.is(
    series(
      body,
      'nodetgt_session_rx_data_octets_total',
      `target="${A}",initiator="${INI}",isid="400000000002"`,
    ),
    7,
  );
  t.is(series(body, 'nodetgt_target_rx_data_octets_total', `target="${A}"`), 157, 'ended 150 + live 7');
  t.is(series(body, 'nodetgt_target_connections', `target="${A}"`), 2, 'a level: live sessions only');
  t.is(series(body, 'nodetgt_target_sessions', `target="${A}"`), 1);
  t.is(series(body, 'nodetgt_scsi_commands_total'), 3);
  t.false(has(body, 'nodetgt_worker_connections', 'thread="102"'));
  t.is(series(body, 'nodetgt_worker_connections', 'thread="103"'), 0);

  // LU 1 removed, target B added: LU 1's series go, B's appear from zero; OpenMetrics shows the same values.
  w.state.config = configOf([
    { name: A, luns: [0] },
    { name: B, luns: [5] },
  ]);
  w.stats();
  const om = (await e.render(OPENMETRICS_TYPE)).body;
  body = (await e.render()).body;
  for (const text of [body, om]) {
    t.false(has(text, 'nodetgt_lu_offline', `target="${A}",lun="1"`));
    t.is(series(text, 'nodetgt_lu_offline', `target="${B}",lun="5"`), 0);
    t.is(series(text, 'nodetgt_lu_commands_total', `target="${B}",lun="5",op="read"`), 0);
    t.is(series(text, 'nodetgt_lu_commands_total', `${l0},op="read"`), 2);
    t.is(series(text, 'nodetgt_target_sessions', `target="${B}"`), 0);
  }
  t.true(om.endsWith('# EOF\n'));
  s2.release();
});

test('a line is what prom-client writes for the same labels and value, escapes included', async (t) => {
  const w = world([{ name: A, luns: [0] }]);
  const e = new Exposition(w.source);
  const labels = { check: 'mtu', subject: 'eth0 "uplink" \\ a\nb' };
  w.tuning.push({ labels, value: 2 });
  const ref = new Registry();
  new Gauge({
    name: 'nodetgt_tuning_check',
    help: 'h',
    labelNames: ['check', 'subject'],
    registers: [ref],
  }).set(labels, 2);
  new Gauge({ name: 'nodetgt_lu_offline', help: 'h', labelNames: ['target', 'lun'], registers: [ref] }).set(
    { target: A, lun: 0 },
    0,
  );
  const want = (await ref.metrics()).split('\n').filter((l) => l.startsWith('nodetgt_'));
  t.is(want.length, 2);
  for (let i = 0; i < 2; i++) {
    const body = (await e.render()).body;
    for (const line of want) t.true(body.split('\n').includes(line), line);
  }
});

test('lines kept from scrape to scrape: every scrape is what a first scrape (every line written) shows', async (t) => {
  const w = world([{ name: A, luns: [0, 1] }]);
  const e = new Exposition(w.source);
  const row = claimRow(w.counters, 111);
  const lu = new LuStats(w.lus[0]!.stats, row.row);
  const open = [1, 2, 3].map((i) =>
    claimSessionStats(w.counters.sessions, { target: A, initiator: INI, isid: `40000000000${i}` }, 0)!,
  );
  // The process and Node.js collectors are prom-client's own, and their values move between any two scrapes.
  const ours = (body: string) =>
    body.split('\n').filter((l) => !/^(# (HELP|TYPE) )?nodetgt_(process|nodejs)_/.test(l));
  // The text (admin socket) and the bytes (HTTP) of one exposition, in turns: they keep their parts together.
  let turn = 0;
  const check = async (what: string) => {
    for (const accept of [undefined, OPENMETRICS_TYPE]) {
      for (const bytes of turn++ % 2 ? [true, false] : [false, true]) {
        const kept = bytes ? (await e.renderBytes(accept)).body.toString() : (await e.render(accept)).body;
        const fresh = ours((await new Exposition(w.source).render(accept)).body);
        t.deepEqual(ours(kept), fresh, `${what} (${accept ?? 'text'}, ${bytes ? 'bytes' : 'string'})`);
        if (accept) t.true(kept.endsWith('\n# EOF\n'));
        else t.true(kept.endsWith('\n') && !kept.endsWith('\n\n'));
      }
    }
  };
  await check('first');
  await check('nothing changed');
  // One session counts, one ends, one begins; an LU answers; an instance counter moves; LU 1 goes.
  open[0].rx(512);
  open[0].tx(4096);
  open[1].release();
  open.push(claimSessionStats(w.counters.sessions, { target: A, initiator: INI, isid: '400000000009' }, 0)!);
  lu.command(READ, 0, undefined, 4096, 0, performance.now() - 0.2);
  row.inc('scsiCommands');
  await check('values changed, a session gone and one new');
  // Sessions in slots over several blocks of 64 lines: one in the middle counts, one goes.
  const many = Array.from({ length: 150 }, (_, i) =>
    claimSessionStats(
      w.counters.sessions,
      { target: A, initiator: `${INI}${i}`, isid: (0x400000001000 + i).toString(16) },
      0,
    )!,
  );
  many.forEach((s, i) => s.rx(i));
  await check('150 sessions more');
  many[70].tx(1);
  many[64].release();
  await check('one of them counts and one goes');
  // The slot of a session gone, taken by another with the same values: its lines carry the new labels.
  const gone = many[100];
  gone.release();
  const state = new Int32Array(w.counters.sessions.state);
  // A claim searches from the generation counter (modulo the slots): move it to the freed slot.
  while (Atomics.load(state, 0) % MAX_SESSION_SLOTS !== gone.slot)
    claimSessionStats(w.counters.sessions, { target: A, initiator: INI, isid: '4000000fffff' }, 0)!.release();
  const taker = claimSessionStats(
    w.counters.sessions,
    { target: A, initiator: `${INI}-other`, isid: '400000002000' },
    0,
  )!;
  t.is(taker.slot, gone.slot);
  taker.rx(100);
  await check('a slot taken by another session');
  for (const s of many) s.release();
  taker.release();
  w.state.config = configOf([{ name: A, luns: [0] }]);
  await check('an LU removed');
  open[0].rx(1);
  await check('one line changed');
  for (const s of [open[0], open[2], open[3]]) s.release();
  await check('every session gone');
});

test('the open descriptor count is read again only once it is OPEN_FDS_MAX_AGE_MS old', async (t) => {
  let now = 1000;
  const e = new Exposition(world([{ name: A, luns: [0] }]).source, () => now);
  const fds = async () => series((await e.render()).body, 'nodetgt_process_open_fds');
  const before = await fds();
  t.true(before > 0);
  const opened = Array.from({ length: 5 }, () => fs.openSync('/dev/null', 'r'));
  try {
    now += OPEN_FDS_MAX_AGE_MS - 1;
    t.is(await fds(), before, 'not listed again yet');
    now += 1;
    t.is(await fds(), before + 5, 'listed again');
  } finally {
    for (const fd of opened) fs.closeSync(fd);
  }
});
