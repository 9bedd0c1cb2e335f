/**
 * The exposition: prom-client registries (Prometheus text and OpenMetrics) whose metrics are collectors over
 * shared memory. Nothing is counted here; a scrape takes one snapshot of the rows (instance counters, LU
 * statistics, session slots, event-loop figures) and every metric formats its part of it.
 *
 * The metrics are objects with the shape prom-client's Registry reads from a registered metric (name, help,
 * type, aggregator and get() resolving to the values, as typed by MetricObjectWithValues): prom-client's own
 * Histogram can only observe(), and ours are bucket counts already summed in shared memory. One set of objects
 * per registry, because the OpenMetrics registry rewrites a counter's name in place.
 */
import {
  Registry,
  collectDefaultMetrics,
  type Metric,
  type MetricValue,
  type OpenMetricsContentType,
  type RegistryContentType,
} from 'prom-client';
import type { Config } from '../config/schema';
import { COUNTERS, LU_FAULTS, readCounters, readLuFaults, type CounterShared } from './counters';
import {
  HIST_OPS,
  LATENCY_BOUNDS,
  LU_OPS,
  readLuStats,
  type Histogram,
  type LuStatsTotals,
} from './lu-stats';
import { HELP, LU_HELP, snake } from './names';
import { readRuntime, RUNTIME_FIELDS, type RuntimeField } from './runtime';
import { SSN_FIELDS, SessionStatsReader, type SessionRow, type SsnField } from './session-stats';

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

/** prom-client's MetricType is an enum of these strings; the Registry only formats the string. */
type MetricType = 'counter' | 'gauge' | 'histogram';
type Labels = Record<string, string | number>;
type Values = Array<MetricValue<string> & { metricName?: string; sharedLabels?: Labels }>;

/**
 * prom-client's Registry formats a value's `sharedLabels` once per object (a WeakMap cache keyed by it) and
 * its `labels` again at every scrape, and defaults a missing sharedLabels to a new {} (a WeakMap entry per
 * series per scrape). With 1,000 sessions (7,000 session series) that formatting and its garbage were most of
 * a scrape. So a session's labels, one object for the session's life (src/metrics/session-stats.ts), go in
 * sharedLabels, formatted once for its seven series and every scrape; every other value gets this constant.
 * The text is the same either way; the output tests (test/metrics*.test.ts) read it.
 */
const NO_LABELS: Labels = Object.freeze({});

interface Snapshot {
  counters: ReturnType<typeof readCounters>;
  lus: Array<{ labels: Labels; offline: boolean; slot: number; stats?: LuStatsTotals; inFlight: number }>;
  sessions: SessionRow[];
  targets: Array<{ labels: Labels; slot: number; sessions: SessionRow[] }>;
}

const SENSE_KEYS = [
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

/** iscsiSsnStatsTable / iscsiSsnCxnErrorStatsTable names, help and type of the session and target series. */
const SSN_METRICS: Record<SsnField, [string, string, MetricType]> = {
  cmdPdus: ['cmd_pdus_total', 'Command PDUs received (iscsiSsnCmdPDUs)', 'counter'],
  rspPdus: ['rsp_pdus_total', 'Response PDUs sent (iscsiSsnRspPDUs)', 'counter'],
  txDataOctets: ['tx_data_octets_total', 'Data octets sent (iscsiSsnTxDataOctets)', 'counter'],
  rxDataOctets: ['rx_data_octets_total', 'Data octets received (iscsiSsnRxDataOctets)', 'counter'],
  digestErrors: ['digest_errors_total', 'Header or data digest errors (iscsiSsnCxnDigestErrors)', 'counter'],
  timeoutErrors: [
    'timeout_errors_total',
    'Connections ended by a timeout (iscsiSsnCxnTimeoutErrors)',
    'counter',
  ],
  connections: ['connections', 'Connections in the session (iscsiSsnConnectionNumber)', 'gauge'],
};

const RUNTIME_METRICS: Record<RuntimeField, [string, string]> = {
  utilization: [
    'nodetgt_worker_event_loop_utilization',
    'Event-loop utilization of the thread over the last second (0..1)',
  ],
  lagP50: [
    'nodetgt_worker_event_loop_lag_p50_seconds',
    'Median event-loop delay of the thread over the last second',
  ],
  lagP99: [
    'nodetgt_worker_event_loop_lag_p99_seconds',
    '99th percentile event-loop delay of the thread over the last second',
  ],
  lagMax: [
    'nodetgt_worker_event_loop_lag_max_seconds',
    'Longest event-loop delay of the thread over the last second',
  ],
  heapUsed: ['nodetgt_worker_heap_used_bytes', 'V8 heap in use by the thread'],
};

class SnapshotMetric {
  readonly aggregator = 'sum' as const;
  constructor(
    public name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly values: (s: Snapshot) => Values,
    private readonly snap: () => Snapshot,
  ) {}
  get(): Promise<{ name: string; help: string; type: MetricType; aggregator: 'sum'; values: Values }> {
    const { name, help, type, aggregator } = this;
    const values = this.values(this.snap());
    for (const v of values) v.sharedLabels ??= NO_LABELS;
    return Promise.resolve({ name, help, type, aggregator, values });
  }
  reset(): void {}
}

function histogramValues(name: string, labels: Labels, h: Histogram): Values {
  const out: Values = LATENCY_BOUNDS.map((le, i) => ({
    metricName: `${name}_bucket`,
    labels: { ...labels, le },
    value: h.cumulative[i],
  }));
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
  out.push({ metricName: `${name}_sum`, labels, value: h.sum });
  out.push({ metricName: `${name}_count`, labels, value: h.count });
  return out;
}

type Def = [string, string, MetricType, (s: Snapshot) => Values];

function luDefs(src: MetricsSource): Def[] {
  const perLu =
    (f: (l: Snapshot['lus'][number]) => number): ((s: Snapshot) => Values) =>
    (s) =>
      s.lus.map((l) => ({ labels: l.labels, value: f(l) }));
  const live = (s: Snapshot) => s.lus.filter((l) => l.stats !== undefined);
  const defs: Def[] = [
    [
      'nodetgt_lu_offline',
      '1 for a configured LU that is not served (its backing file disappeared)',
      'gauge',
      perLu((l) => (l.offline ? 1 : 0)),
    ],
    ...LU_FAULTS.map((f): Def => {
      const [name, help, type] = LU_HELP[f];
      return [name, help, type, perLu((l) => readLuFaults(src.counters, l.slot)[f])];
    }),
    [
      'nodetgt_lu_commands_total',
      'SCSI commands answered per LU and operation (SCSI-MIB scsiLuInCommands)',
      'counter',
      (s) =>
        live(s).flatMap((l) =>
          LU_OPS.map((op) => ({ labels: { ...l.labels, op }, value: l.stats!.commands[op] })),
        ),
    ],
    [
      'nodetgt_lu_read_bytes_total',
      'Bytes read from the LU by initiators (SCSI-MIB scsiLuReadMegaBytes)',
      'counter',
      (s) => live(s).map((l) => ({ labels: l.labels, value: l.stats!.bytesRead })),
    ],
    [
      'nodetgt_lu_written_bytes_total',
      'Bytes written to the LU by initiators (SCSI-MIB scsiLuWrittenMegaBytes)',
      'counter',
      (s) => live(s).map((l) => ({ labels: l.labels, value: l.stats!.bytesWritten })),
    ],
    [
      'nodetgt_lu_check_conditions_total',
      'Commands ended in CHECK CONDITION per LU and sense key',
      'counter',
      (s) =>
        live(s).flatMap((l) =>
          SENSE_KEYS.map((k, i) => ({ labels: { ...l.labels, sense_key: k }, value: l.stats!.senseKeys[i] })),
        ),
    ],
    [
      'nodetgt_lu_reservation_conflicts_total',
      'Commands ended in RESERVATION CONFLICT per LU',
      'counter',
      (s) => live(s).map((l) => ({ labels: l.labels, value: l.stats!.reservationConflicts })),
    ],
    [
      'nodetgt_lu_commands_in_flight',
      'Commands received and not yet answered per LU, all workers (queue depth)',
      'gauge',
      perLu((l) => l.inFlight),
    ],
  ];
  for (const [name, help, pick] of [
    [
      'nodetgt_lu_latency_seconds',
      'Command latency per LU and operation, from arrival to status',
      (t: LuStatsTotals) => t.latency,
    ],
    [
      'nodetgt_lu_backstore_latency_seconds',
      "The backstore's share per LU and operation: I/O submitted to completed",
      (t: LuStatsTotals) => t.backstore,
    ],
  ] as const)
    defs.push([
      name,
      help,
      'histogram',
      (s) =>
        live(s).flatMap((l) =>
          HIST_OPS.flatMap((op, i) => histogramValues(name, { ...l.labels, op }, pick(l.stats!)[i])),
        ),
    ]);
  return defs;
}

function defs(src: MetricsSource, reader: SessionStatsReader): Def[] {
  const out: Def[] = COUNTERS.map((n): Def => {
    const [help, type] = HELP[n];
    return [
      `nodetgt_${snake(n)}${type === 'counter' ? '_total' : ''}`,
      help,
      type,
      (s) => [{ labels: {}, value: s.counters.total[n] }],
    ];
  });
  out.push([
    'nodetgt_tuning_check',
    'Host and path tuning checks (nodetgt tune): 0 ok, 1 warn, 2 fail, -1 unknown',
    'gauge',
    () => src.tuning?.() ?? [],
  ]);
  const threadLabel = (r: { row: number; threadId: number }) => (r.row === 0 ? 'portal' : String(r.threadId));
  out.push([
    'nodetgt_worker_connections',
    'Connections served per worker thread',
    'gauge',
    (s) =>
      s.counters.rows
        .filter((r) => r.row > 0)
        .map((r) => ({ labels: { thread: threadLabel(r) }, value: r.values.cxnActive })),
  ]);
  for (const f of RUNTIME_FIELDS) {
    const [name, help] = RUNTIME_METRICS[f];
    out.push([
      name,
      help,
      'gauge',
      (s) =>
        s.counters.rows.map((r) => ({
          labels: { thread: threadLabel(r) },
          value: readRuntime(src.counters.runtime, r.row)[f],
        })),
    ]);
  }
  out.push(...luDefs(src));
  for (const f of SSN_FIELDS) {
    const [suffix, help, type] = SSN_METRICS[f];
    out.push([
      `nodetgt_session_${suffix}`,
      `${help}, per session`,
      type,
      (s) => s.sessions.map((r) => ({ labels: NO_LABELS, sharedLabels: r.labels, value: r.values[f] })),
    ]);
    out.push([
      `nodetgt_target_${suffix}`,
      `${help}, per target (sessions ended included)`,
      type,
      (s) =>
        s.targets.map((t) => ({
          labels: t.labels,
          value: t.sessions.reduce(
            (a, r) => a + r.values[f],
            type === 'counter' ? reader.ended(t.slot)[f] : 0,
          ),
        })),
    ]);
  }
  out.push([
    'nodetgt_target_sessions',
    'Sessions logged in per target (iscsiTgtPortalSessions)',
    'gauge',
    (s) => s.targets.map((t) => ({ labels: t.labels, value: t.sessions.length })),
  ]);
  return out;
}

export const PROMETHEUS_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
export const OPENMETRICS_TYPE = Registry.OPENMETRICS_CONTENT_TYPE;

/** Does an Accept header ask for OpenMetrics? Anything malformed or absent gets the Prometheus text format. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => {
    const [type, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return type === 'application/openmetrics-text' && (q === undefined || Number(q.slice(2)) > 0);
  });
}

export class Exposition {
  private readonly prom = new Registry();
  private readonly open = new Registry<OpenMetricsContentType>();
  private readonly reader: SessionStatsReader;
  private snapshot: Snapshot | null = null;

  constructor(private readonly source: MetricsSource) {
    this.reader = new SessionStatsReader(source.counters.sessions);
    const snap = () => this.snapshot!;
    this.open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    for (const registry of [this.prom, this.open] as Array<Registry<RegistryContentType>>) {
      for (const [name, help, type, values] of defs(source, this.reader))
        registry.registerMetric(new SnapshotMetric(name, help, type, values, snap) as unknown as Metric);
      // Process and runtime of the portal thread: CPU, RSS, heap, GC, the main event loop.
      collectDefaultMetrics({ register: registry, prefix: 'nodetgt_' });
      // These three are gauges named like counters, which `promtool check metrics` refuses; handles and requests
      // say little about a target anyway (connections and sessions have their own series).
      for (const n of ['active_handles', 'active_requests', 'active_resources'])
        registry.removeSingleMetric(`nodetgt_nodejs_${n}_total`);
      // The portal thread's event-loop delay is nodetgt_worker_event_loop_lag_*{thread="portal"} (runtime.ts),
      // as every worker's is. prom-client's own set computed a standard deviation over the whole delay
      // histogram at each scrape, the largest single cost of a scrape with no sessions.
      for (const n of ['', '_min', '_max', '_mean', '_stddev', '_p50', '_p90', '_p99'])
        registry.removeSingleMetric(`nodetgt_nodejs_eventloop_lag${n}_seconds`);
    }
  }

  private take(): Snapshot {
    const config = this.source.config();
    const sessions = this.reader.sessions();
    const lus = config.targets.flatMap((t) =>
      t.luns.map((l) => {
        const m = this.source.lus[l.slot];
        return {
          labels: { target: t.name, lun: l.lun },
          offline: l.offline !== undefined,
          slot: l.slot,
          stats: m?.stats ? readLuStats(m.stats) : undefined,
          inFlight: m ? this.source.inFlight(l.slot) : 0,
        };
      }),
    );
    const byTarget = new Map<string, SessionRow[]>();
    for (const r of sessions) {
      const list = byTarget.get(r.labels.target);
      if (list) list.push(r);
      else byTarget.set(r.labels.target, [r]);
    }
    const targets = config.targets.map((t) => ({
      labels: { target: t.name },
      slot: t.slot,
      sessions: byTarget.get(t.name) ?? [],
    }));
    return { counters: readCounters(this.source.counters), lus, sessions, targets };
  }

  /** The exposition in the format the Accept header asks for. */
  async render(accept?: string): Promise<{ contentType: string; body: string }> {
    const registry = wantsOpenMetrics(accept) ? this.open : this.prom;
    // Registry.metrics() calls every metric's get() before its first await: they all see this snapshot.
    this.snapshot = this.take();
    const body = await registry.metrics();
    return { contentType: registry.contentType, body };
  }
}
