/**
 * The series a scrape fills, kept from one scrape to the next. Every label set is one frozen object for the life
 * of what it names (an LU, a session, a worker thread, a target, a tuning check), and every series one object
 * whose value each scrape overwrites.
 *
 * Why: prom-client's Registry formats a value's `sharedLabels` once per object (a WeakMap cache keyed by it) and
 * its `labels` again at every scrape. So every label set here goes in sharedLabels and `labels` is one constant
 * empty object: a scrape formats no label and allocates no object per series, and what is left per series is
 * prom-client writing its line. Before, each scrape built a label object per series (a histogram bucket: the
 * LU's labels, op and le), which prom-client then formatted and escaped, and the garbage of it all was
 * collected on the portal thread; the output text is the same (test/metrics-exposition.test.ts).
 *
 * A scrape reads the shared memory once into these objects (take()); the metrics of src/metrics/exposition.ts
 * hand the objects to prom-client. Sessions are the exception: there can be thousands, so a scrape reads them
 * into typed arrays by slot (SessionSlots), and an object for prom-client is made only for a line written again.
 */
import type { Config } from '../config/schema';
import { COUNTERS, LU_FAULTS, MAX_ROWS, readLuFaults, type CounterShared } from './counters';
import { HIST_OPS, LATENCY_BOUNDS, LU_OPS, readLuStats, type Histogram } from './lu-stats';
import { RUNTIME_FIELDS } from './runtime';
import { MAX_SESSION_SLOTS, SSN_FIELDS, SessionStatsReader, type SessionSlots } from './session-stats';

/** What the exposition reads: the shared rows and the live configuration (LUs and targets come and go). */
export interface MetricsSource {
  counters: CounterShared;
  config: () => Config;
  /** LU shared memory by LU slot (the portal's live array). */
  lus: ReadonlyArray<{ stats?: SharedArrayBuffer } | undefined>;
  /** Commands in flight on the LU of a slot, all workers (the portal reads the LU shared memory). */
  inFlight: (slot: number) => number;
  /** The tuning checks' gauge (src/tuning/monitor.ts): one value per check and subject. */
  tuning?: () => Array<{ labels: { check: string; subject: string }; value: number }>;
}

export type Labels = Readonly<Record<string, string | number>>;

/** The `labels` of every series: prom-client formats them at each scrape, so there are none. */
export const NO_LABELS: Labels = Object.freeze({});

/** One series as prom-client's Registry reads a metric's values (MetricValue, metricName and sharedLabels). */
export interface Series {
  metricName: string | undefined;
  labels: Labels;
  sharedLabels: Labels;
  value: number;
  /**
   * The line prom-client wrote for this series at an earlier scrape, per format (0 Prometheus text,
   * 1 OpenMetrics), and the value it was written for (src/metrics/exposition.ts writes a line again only when
   * the value changed; NaN until one is written, and a NaN value is always written again). The values are
   * fields of the series itself, so that the check at each scrape reads this object and nothing else (a scrape
   * each second finds all of this out of the CPU caches). prom-client reads none of these. So a series belongs
   * to one metric only.
   */
  lines: [string | undefined, string | undefined];
  lineValue0: number;
  lineValue1: number;
}

function series(labels: Labels, metricName?: string): Series {
  return {
    metricName,
    labels: NO_LABELS,
    sharedLabels: labels,
    value: 0,
    lines: [undefined, undefined],
    lineValue0: NaN,
    lineValue1: NaN,
  };
}

const frozen = (o: Record<string, string | number>): Labels => Object.freeze(o);

export const SENSE_KEYS = [
  'no_sense',
  'recovered_error',
  'not_ready',
  'medium_error',
  'hardware_error',
  'illegal_request',
  'unit_attention',
  'data_protect',
  'blank_check',
  'vendor_specific',
  'copy_aborted',
  'aborted_command',
  'reserved_0c',
  'volume_overflow',
  'miscompare',
  'completed',
];

export const LATENCY_METRIC = 'nodetgt_lu_latency_seconds';
export const BACKSTORE_METRIC = 'nodetgt_lu_backstore_latency_seconds';

/** One histogram: a bucket per bound, +Inf, then _sum and _count. */
export class HistogramSeries {
  readonly all: Series[];
  constructor(name: string, labels: Labels) {
    const bucket = `${name}_bucket`;
    this.all = [
      ...LATENCY_BOUNDS.map((le) => series(frozen({ ...labels, le }), bucket)),
      series(frozen({ ...labels, le: '+Inf' }), bucket),
      series(labels, `${name}_sum`),
      series(labels, `${name}_count`),
    ];
  }
  set(h: Histogram): void {
    const a = this.all;
    const n = LATENCY_BOUNDS.length;
    for (let i = 0; i < n; i++) a[i].value = h.cumulative[i];
    a[n].value = h.count;
    a[n + 1].value = h.sum;
    a[n + 2].value = h.count;
  }
}

/** The series of one LU (labels target, lun). */
export class LuSeries {
  readonly offline: Series;
  readonly faults: Series[];
  readonly inFlight: Series;
  readonly commands: Series[];
  readonly readBytes: Series;
  readonly writtenBytes: Series;
  readonly senseKeys: Series[];
  readonly conflicts: Series;
  readonly latency: HistogramSeries[];
  readonly backstore: HistogramSeries[];
  /** Its statistics were read at the last scrape (the LU is served: it has shared memory with statistics). */
  live = false;
  constructor(target: string, lun: number) {
    const labels = frozen({ target, lun });
    const one = () => series(labels);
    this.offline = one();
    this.faults = LU_FAULTS.map(one);
    this.inFlight = one();
    this.commands = LU_OPS.map((op) => series(frozen({ ...labels, op })));
    this.readBytes = one();
    this.writtenBytes = one();
    this.senseKeys = SENSE_KEYS.map((k) => series(frozen({ ...labels, sense_key: k })));
    this.conflicts = one();
    const byOp = HIST_OPS.map((op) => frozen({ ...labels, op }));
    this.latency = byOp.map((l) => new HistogramSeries(LATENCY_METRIC, l));
    this.backstore = byOp.map((l) => new HistogramSeries(BACKSTORE_METRIC, l));
  }
}

/** The series of one thread's counter row (label thread: "portal" or the worker's thread id). */
export class ThreadSeries {
  readonly connections: Series;
  readonly runtime: Series[];
  constructor(
    readonly row: number,
    thread: string,
  ) {
    const labels = frozen({ thread });
    this.connections = series(labels);
    this.runtime = RUNTIME_FIELDS.map(() => series(labels));
  }
}

/** The series of one target (label target): its sessions' sums and its session count. */
export class TargetSeries {
  readonly ssn: Series[];
  readonly sessions: Series;
  constructor(readonly name: string) {
    const labels = frozen({ target: name });
    this.ssn = SSN_FIELDS.map(() => series(labels));
    this.sessions = series(labels);
  }
}

/** Everything one scrape shows, in the order of the exposition. */
export interface Snapshot {
  /**
   * Changes when a list below (other than sessions) is not the list of the last scrape: a thread, LU, target or
   * tuning check came or went, or an LU's statistics appeared or went. While it stays the same, every list is
   * the same array of the same series, so a metric can keep what it made of them.
   */
  version: number;
  /** Instance counters, COUNTERS order, summed over every thread. */
  counters: Series[];
  /** Threads with a counter row, by row; row 0 is the portal. */
  threads: ThreadSeries[];
  /** Configured LUs, in configuration order. */
  lus: LuSeries[];
  /** Sessions logged in, by slot (overwritten by the next scrape). */
  sessions: SessionSlots;
  /** Configured targets, in configuration order. */
  targets: TargetSeries[];
  tuning: Series[];
}

/** Level fields of a session (not added to the target's totals of ended sessions). */
const SSN_LEVEL = SSN_FIELDS.map((f) => f === 'connections');

/** Keep the objects of what is still there and make the new ones; what is gone is dropped with the old map. */
function carry<K, V>(old: Map<K, V>, next: Map<K, V>, key: K, make: () => V): V {
  let v = old.get(key);
  if (v === undefined) v = make();
  next.set(key, v);
  return v;
}

/** `next` if its items are not those of `last` (by identity), else `last` itself: a list kept while the same. */
function same<T>(last: T[], next: T[]): T[] {
  if (last.length !== next.length) return next;
  for (let i = 0; i < next.length; i++) if (last[i] !== next[i]) return next;
  return last;
}

export class Scraper {
  private readonly counters: Series[] = COUNTERS.map(() => series(NO_LABELS));
  private threads = new Map<number, ThreadSeries>();
  private lus = new Map<string, LuSeries>();
  private targets = new Map<string, TargetSeries>();
  /**
   * By check and subject: each pass of the checks (src/tuning/monitor.ts, once a minute) hands new label
   * objects, and a check that is still there keeps its series.
   */
  private tuning = new Map<string, Series>();
  private readonly reader: SessionStatsReader;
  private readonly totals = new Float64Array(COUNTERS.length);
  private readonly ended = new Float64Array(SSN_FIELDS.length);
  /** Per slot: the index in slotTargetsOf of its session's target (-1: none), for the generation beside it. */
  private readonly slotTarget = new Int32Array(MAX_SESSION_SLOTS);
  private readonly slotTargetGen = new Int32Array(MAX_SESSION_SLOTS);
  private slotTargetsOf: TargetSeries[] = [];
  /** The sessions' sums per target, SSN_FIELDS order. */
  private sums = new Float64Array(0);
  private last: Snapshot | undefined;

  constructor(private readonly source: MetricsSource) {
    this.reader = new SessionStatsReader(source.counters.sessions);
  }

  /** Read the shared memory once into the series. */
  take(): Snapshot {
    const config = this.source.config();
    const last = this.last;
    const threads = this.readThreads();
    const lus = this.readLus(config);
    const live = lus.map((l) => l.live);
    const { sessions, targets } = this.readSessions(config);
    const tuning = this.readTuning();
    const snap: Snapshot = {
      version: 0,
      counters: this.readCounters(),
      threads: last ? same(last.threads, threads) : threads,
      lus: last ? same(last.lus, lus) : lus,
      sessions,
      targets: last ? same(last.targets, targets) : targets,
      tuning: last ? same(last.tuning, tuning) : tuning,
    };
    const kept =
      last !== undefined &&
      snap.threads === last.threads &&
      snap.lus === last.lus &&
      snap.targets === last.targets &&
      snap.tuning === last.tuning &&
      live.every((l, i) => l === this.live[i]);
    snap.version = kept ? last.version : (last?.version ?? 0) + 1;
    this.live = live;
    return (this.last = snap);
  }

  /** The live flags of the last scrape's LUs (a metric of live LUs only changes its list with them). */
  private live: boolean[] = [];

  private readTuning(): Series[] {
    const list = this.source.tuning?.() ?? [];
    // The monitor hands the same array, of the same label objects, until its next pass (once a minute): the
    // same series then.
    if (list.length === this.tuningLabels.length && list.every((t, i) => t.labels === this.tuningLabels[i])) {
      for (let i = 0; i < list.length; i++) this.tuningOut[i].value = list[i].value;
      return this.tuningOut;
    }
    const next = new Map<string, Series>();
    const out = list.map((t) => {
      const s = carry(this.tuning, next, `${t.labels.check}\u0000${t.labels.subject}`, () =>
        series(frozen({ check: t.labels.check, subject: t.labels.subject })),
      );
      s.value = t.value;
      return s;
    });
    this.tuning = next;
    this.tuningLabels = list.map((t) => t.labels);
    return (this.tuningOut = out);
  }
  private tuningLabels: object[] = [];
  private tuningOut: Series[] = [];

  private readCounters(): Series[] {
    const claims = new Int32Array(this.source.counters.claims);
    const all = new Float64Array(this.source.counters.values);
    const n = COUNTERS.length;
    const totals = this.totals.fill(0);
    for (let r = 0; r < MAX_ROWS; r++) {
      if (r > 0 && Atomics.load(claims, r) === 0) continue;
      for (let i = 0, o = r * n; i < n; i++) totals[i] += all[o + i];
    }
    for (let i = 0; i < n; i++) this.counters[i].value = totals[i];
    return this.counters;
  }

  private readThreads(): ThreadSeries[] {
    const { claims, values, runtime } = this.source.counters;
    const ids = new Int32Array(claims);
    const all = new Float64Array(values);
    const rt = new Float64Array(runtime);
    const cxn = COUNTERS.indexOf('cxnActive');
    const nf = RUNTIME_FIELDS.length;
    const next = new Map<number, ThreadSeries>();
    const out: ThreadSeries[] = [];
    for (let r = 0; r < MAX_ROWS; r++) {
      const id = Atomics.load(ids, r);
      if (r > 0 && id === 0) continue;
      // A row taken by a new thread gets new series (its label is the thread id).
      const key = r * 2 ** 32 + (id >>> 0);
      const t = carry(this.threads, next, key, () => new ThreadSeries(r, r === 0 ? 'portal' : String(id)));
      t.connections.value = all[r * COUNTERS.length + cxn];
      for (let i = 0; i < nf; i++) t.runtime[i].value = rt[r * nf + i];
      out.push(t);
    }
    this.threads = next;
    return out;
  }

  private readLus(config: Config): LuSeries[] {
    const next = new Map<string, LuSeries>();
    const out: LuSeries[] = [];
    for (const t of config.targets)
      for (const l of t.luns) {
        const s = carry(this.lus, next, `${t.name}\n${l.lun}`, () => new LuSeries(t.name, l.lun));
        const m = this.source.lus[l.slot];
        s.offline.value = l.offline !== undefined ? 1 : 0;
        const faults = readLuFaults(this.source.counters, l.slot);
        LU_FAULTS.forEach((f, i) => (s.faults[i].value = faults[f]));
        s.inFlight.value = m ? this.source.inFlight(l.slot) : 0;
        s.live = m?.stats !== undefined;
        if (m?.stats) {
          const st = readLuStats(m.stats);
          LU_OPS.forEach((op, i) => (s.commands[i].value = st.commands[op]));
          s.readBytes.value = st.bytesRead;
          s.writtenBytes.value = st.bytesWritten;
          s.conflicts.value = st.reservationConflicts;
          for (let k = 0; k < SENSE_KEYS.length; k++) s.senseKeys[k].value = st.senseKeys[k];
          for (let h = 0; h < HIST_OPS.length; h++) {
            s.latency[h].set(st.latency[h]);
            s.backstore[h].set(st.backstore[h]);
          }
        }
        out.push(s);
      }
    this.lus = next;
    return out;
  }

  private readSessions(config: Config): { sessions: SessionSlots; targets: TargetSeries[] } {
    const next = new Map<string, TargetSeries>();
    const ended = this.ended;
    const targets = config.targets.map((t) => {
      const s = carry(this.targets, next, t.name, () => new TargetSeries(t.name));
      this.reader.ended(t.slot, ended);
      for (let i = 0; i < s.ssn.length; i++) s.ssn[i].value = SSN_LEVEL[i] ? 0 : ended[i];
      s.sessions.value = 0;
      return s;
    });
    this.targets = next;
    const sessions = this.reader.read();
    // Each slot's target, by index in `targets`, found once per session (and again when the targets change).
    if (same(this.slotTargetsOf, targets) !== this.slotTargetsOf) this.slotTargetGen.fill(0);
    this.slotTargetsOf = targets;
    const nf = SSN_FIELDS.length;
    if (this.sums.length < targets.length * nf) this.sums = new Float64Array(targets.length * nf);
    const sums = this.sums.fill(0);
    const counts = new Int32Array(targets.length);
    for (let slot = 0; slot < sessions.end; slot++) {
      const gen = sessions.gen[slot];
      if (gen === 0) continue;
      if (this.slotTargetGen[slot] !== gen) {
        const name = sessions.labels[slot]!.target;
        this.slotTarget[slot] = targets.findIndex((t) => t.name === name);
        this.slotTargetGen[slot] = gen;
      }
      const t = this.slotTarget[slot];
      if (t < 0) continue;
      for (let i = 0, o = slot * nf; i < nf; i++) sums[t * nf + i] += sessions.values[o + i];
      counts[t]++;
    }
    targets.forEach((t, k) => {
      for (let i = 0; i < nf; i++) t.ssn[i].value += sums[k * nf + i];
      t.sessions.value = counts[k];
    });
    return { sessions, targets };
  }
}
