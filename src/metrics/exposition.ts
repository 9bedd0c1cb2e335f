/**
 * The exposition: prom-client registries (Prometheus text and OpenMetrics) whose metrics are collectors over
 * shared memory. Nothing is counted here; a scrape takes one snapshot of the rows (instance counters, LU
 * statistics, session slots, event-loop figures) into series objects kept from scrape to scrape
 * (src/metrics/series.ts), and every metric hands its part of them to prom-client, which writes the text.
 *
 * The metrics are objects with the shape prom-client's Registry reads from a registered metric (name, help,
 * type, aggregator and get() resolving to the values, as typed by MetricObjectWithValues): prom-client's own
 * Histogram can only observe(), and ours are bucket counts already summed in shared memory. One set of objects
 * per registry, because the OpenMetrics registry rewrites a counter's name in place.
 */
import * as fs from 'node:fs';
import {
  Gauge,
  Registry,
  collectDefaultMetrics,
  type Metric,
  type OpenMetricsContentType,
  type RegistryContentType,
} from 'prom-client';
import { COUNTERS, LU_FAULTS } from './counters';
import { HIST_OPS } from './lu-stats';
import { HELP, LU_HELP, snake } from './names';
import { RUNTIME_FIELDS, type RuntimeField } from './runtime';
import {
  BACKSTORE_METRIC,
  LATENCY_METRIC,
  Scraper,
  type LuSeries,
  type MetricsSource,
  type Series,
  type Snapshot,
} from './series';
import { SSN_FIELDS, type SsnField } from './session-stats';

export type { MetricsSource } from './series';

/** prom-client's MetricType is an enum of these strings; the Registry only formats the string. */
type MetricType = 'counter' | 'gauge' | 'histogram';

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

/** A registry's format, as the index of a series' memo: 0 Prometheus text, 1 OpenMetrics. */
type Format = 0 | 1;

/** prom-client's Registry writes one metric's text with this method; Registry.metrics() calls it per metric. */
type WriteMetric = (metric: object) => Promise<string>;
const registryWrite = (Registry.prototype as unknown as { getMetricsAsString?: WriteMetric })
  .getMetricsAsString;

/** Lines per block of a metric's kept text (SnapshotMetric.text). */
const BLOCK = 64;

/** A string of its own (not a slice of a larger one, which it would keep alive). */
const flat = (line: string): string => (' ' + line).slice(1);

class SnapshotMetric {
  readonly aggregator = 'sum' as const;
  /** The HELP and TYPE lines per format, as prom-client wrote them. */
  private readonly head: [string | undefined, string | undefined] = [undefined, undefined];
  /**
   * The last scrape's series per format, in their order, its text, and that text in blocks of BLOCK lines
   * (each block with the newline before each of its lines).
   */
  private readonly lastValues: [Series[], Series[]] = [[], []];
  private readonly last: [string | undefined, string | undefined] = [undefined, undefined];
  private readonly blocks: [string[], string[]] = [[], []];
  /** The head and the blocks encoded, each made when first asked for after it changed. */
  private readonly headBytes: [Buffer | undefined, Buffer | undefined] = [undefined, undefined];
  private readonly blockBytes: [Array<Buffer | undefined>, Array<Buffer | undefined>] = [[], []];
  constructor(
    public name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly values: (s: Snapshot) => Series[],
    private readonly snap: () => Snapshot,
  ) {}
  get(): Promise<{ name: string; help: string; type: MetricType; aggregator: 'sum'; values: Series[] }> {
    return this.with(this.values(this.snap()));
  }
  reset(): void {}

  private with(values: Series[]) {
    const { name, help, type, aggregator } = this;
    return Promise.resolve({ name, help, type, aggregator, values });
  }

  /** This metric with only `values`, for the registry to write. */
  private part(values: Series[]): object {
    const { name, help, type, aggregator } = this;
    return { name, help, type, aggregator, get: () => this.with(values) };
  }

  /**
   * Brings the kept lines and blocks of this format up to this scrape. Every line is written by prom-client
   * (`write`, the registry's own method), but only the lines of series whose value changed since the last
   * scrape in this format are written again: with 1,000 idle sessions open, their 7,000 lines are the same at
   * every scrape, and writing them was most of a scrape's cost (about 1.8 µs a line). A series keeps its line
   * (src/metrics/series.ts); its labels never change. Returns whether the text changed, or the whole text as
   * prom-client wrote it should it not be one line per value.
   */
  private async update(format: Format, write: WriteMetric): Promise<boolean | string> {
    const values = this.values(this.snap());
    const stale: Series[] = [];
    // Blocks of BLOCK series with a line written again: only those are joined again.
    const dirty: boolean[] = [];
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if ((format === 0 ? v.lineValue0 : v.lineValue1) !== v.value) {
        stale.push(v);
        dirty[(i / BLOCK) | 0] = true;
      }
    }
    if (stale.length > 0 || this.head[format] === undefined) {
      // The registry may have renamed the metric (an OpenMetrics counter loses `_total`): `this` is read now.
      const text = await write(this.part(stale));
      const lines = text.split('\n');
      // One line per value after HELP and TYPE (label values are escaped, so no line holds a newline). Should a
      // prom-client write anything else, nothing is kept and the whole metric is written as it is.
      if (lines.length !== stale.length + 2) return write(this.part(values));
      const head = `${lines[0]}\n${lines[1]}`;
      if (head !== this.head[format]) {
        this.head[format] = head;
        this.headBytes[format] = Buffer.from(head);
        this.last[format] = undefined;
      }
      for (let i = 0; i < stale.length; i++) {
        // Flattened: a line split out of the text would keep all of that text alive while it is cached.
        const v = stale[i];
        v.lines[format] = flat(lines[i + 2]);
        if (format === 0) v.lineValue0 = v.value;
        else v.lineValue1 = v.value;
      }
    }
    // A block is joined again when a line of it was written again or its series are not those of the last
    // scrape (a session came or went); with one session of 1,000 doing I/O, one block of each metric is.
    const before = this.lastValues[format];
    const blocks = this.blocks[format];
    const blockBytes = this.blockBytes[format];
    const n = Math.ceil(values.length / BLOCK);
    let changed = before.length !== values.length;
    for (let b = 0; b < n; b++) {
      const end = Math.min(values.length, (b + 1) * BLOCK);
      // The block's text holds the lines of the same places of the last scrape's series, and they are these.
      let same = !dirty[b] && blocks[b] !== undefined && Math.min(before.length, (b + 1) * BLOCK) === end;
      for (let i = b * BLOCK; i < end && same; i++) same = values[i] === before[i];
      if (same) continue;
      changed = true;
      // Each block begins with the newline that ends the line before it (the head's or the last block's).
      let text = '';
      for (let i = b * BLOCK; i < end; i++) text += '\n' + values[i].lines[format]!;
      blocks[b] = text;
      blockBytes[b] = undefined;
    }
    blocks.length = n;
    blockBytes.length = n;
    this.lastValues[format] = values;
    // The whole text kept for text() is of the blocks as they were: gone once one changed (by either caller).
    if (changed) this.last[format] = undefined;
    return changed;
  }

  /** The metric's text (for Registry.metrics(), a string). */
  async text(format: Format, write: WriteMetric): Promise<string> {
    const changed = await this.update(format, write);
    if (typeof changed === 'string') return changed;
    // Nothing changed: the last text itself (no concatenation of the blocks either).
    if (this.last[format] !== undefined) return this.last[format];
    // Concatenated, not joined: V8 keeps the result as a rope of the blocks, and the registry's join of every
    // metric's text then copies the characters once (a join here would copy the whole text one time more).
    let text = this.head[format]!;
    for (const b of this.blocks[format]) text += b;
    return (this.last[format] = text);
  }

  /** The metric's text as bytes: the head's and each block's, each encoded once while it stays the same. */
  async bytes(format: Format, write: WriteMetric): Promise<Buffer[]> {
    const changed = await this.update(format, write);
    if (typeof changed === 'string') return [Buffer.from(changed)];
    const blocks = this.blocks[format];
    const bytes = this.blockBytes[format];
    const out: Buffer[] = [this.headBytes[format]!];
    for (let b = 0; b < blocks.length; b++) out.push((bytes[b] ??= Buffer.from(blocks[b])));
    return out;
  }
}

/** A prom-client registry that has the metrics of a snapshot write only their changed lines. */
class SnapshotRegistry<T extends RegistryContentType> extends Registry<T> {
  private get format(): Format {
    return this.contentType === Registry.OPENMETRICS_CONTENT_TYPE ? 1 : 0;
  }
  private readonly write = (m: object) => registryWrite!.call(this, m);

  getMetricsAsString(metric: object): Promise<string> {
    if (!(metric instanceof SnapshotMetric)) return this.write(metric);
    return metric.text(this.format, this.write);
  }

  /**
   * What metrics() returns, as bytes, assembled as prom-client's Registry.metrics() assembles it (an
   * OpenMetrics counter named without `_total`, metrics apart by a blank line in the text format and ended by
   * `# EOF` in OpenMetrics), but from the metrics' encoded parts: a scrape neither joins the 1.2 MB of text
   * that 1,000 sessions make nor encodes it again; what it copies is the bytes, once.
   */
  async metricsBytes(): Promise<Buffer> {
    const open = this.format === 1;
    const parts = await Promise.all(
      this.getMetricsAsArray().map(async (registered): Promise<Buffer[]> => {
        const metric = registered as unknown as { name: string; type: string };
        if (open && metric.type === 'counter') metric.name = metric.name.replace(/_total$/, '');
        if (metric instanceof SnapshotMetric) return metric.bytes(this.format, this.write);
        return [Buffer.from(await this.write(metric))];
      }),
    );
    const between = Buffer.from(open ? '\n' : '\n\n');
    const all: Buffer[] = [];
    parts.forEach((p, i) => {
      if (i > 0) all.push(between);
      all.push(...p);
    });
    all.push(Buffer.from(open ? '\n# EOF\n' : '\n'));
    return Buffer.concat(all);
  }
}

/**
 * A registry for the snapshot's metrics; a plain one (every line written at every scrape) should a prom-client
 * release not write metrics through getMetricsAsString.
 */
function registry<T extends RegistryContentType>(contentType: T): Registry<T> {
  const r = registryWrite ? new SnapshotRegistry<T>() : new Registry<T>();
  r.setContentType(contentType);
  return r;
}

type Def = [string, string, MetricType, (s: Snapshot) => Series[]];

function luDefs(): Def[] {
  const perLu =
    (f: (l: LuSeries) => Series): ((s: Snapshot) => Series[]) =>
    (s) =>
      s.lus.map(f);
  const live =
    (f: (l: LuSeries) => Series[]): ((s: Snapshot) => Series[]) =>
    (s) =>
      s.lus.filter((l) => l.live).flatMap(f);
  const defs: Def[] = [
    [
      'nodetgt_lu_offline',
      '1 for a configured LU that is not served (its backing file disappeared)',
      'gauge',
      perLu((l) => l.offline),
    ],
    ...LU_FAULTS.map((f, i): Def => {
      const [name, help, type] = LU_HELP[f];
      return [name, help, type, perLu((l) => l.faults[i])];
    }),
    [
      'nodetgt_lu_commands_total',
      'SCSI commands answered per LU and operation (SCSI-MIB scsiLuInCommands)',
      'counter',
      live((l) => l.commands),
    ],
    [
      'nodetgt_lu_read_bytes_total',
      'Bytes read from the LU by initiators (SCSI-MIB scsiLuReadMegaBytes)',
      'counter',
      live((l) => [l.readBytes]),
    ],
    [
      'nodetgt_lu_written_bytes_total',
      'Bytes written to the LU by initiators (SCSI-MIB scsiLuWrittenMegaBytes)',
      'counter',
      live((l) => [l.writtenBytes]),
    ],
    [
      'nodetgt_lu_check_conditions_total',
      'Commands ended in CHECK CONDITION per LU and sense key',
      'counter',
      live((l) => l.senseKeys),
    ],
    [
      'nodetgt_lu_reservation_conflicts_total',
      'Commands ended in RESERVATION CONFLICT per LU',
      'counter',
      live((l) => [l.conflicts]),
    ],
    [
      'nodetgt_lu_commands_in_flight',
      'Commands received and not yet answered per LU, all workers (queue depth)',
      'gauge',
      perLu((l) => l.inFlight),
    ],
    [
      LATENCY_METRIC,
      'Command latency per LU and operation, from arrival to status',
      'histogram',
      live((l) => HIST_OPS.flatMap((_, i) => l.latency[i].all)),
    ],
    [
      BACKSTORE_METRIC,
      "The backstore's share per LU and operation: I/O submitted to completed",
      'histogram',
      live((l) => HIST_OPS.flatMap((_, i) => l.backstore[i].all)),
    ],
  ];
  return defs;
}

function defs(): Def[] {
  const out: Def[] = COUNTERS.map((n, i): Def => {
    const [help, type] = HELP[n];
    return [`nodetgt_${snake(n)}${type === 'counter' ? '_total' : ''}`, help, type, (s) => [s.counters[i]]];
  });
  out.push([
    'nodetgt_tuning_check',
    'Host and path tuning checks (nodetgt tune): 0 ok, 1 warn, 2 fail, -1 unknown',
    'gauge',
    (s) => s.tuning,
  ]);
  out.push([
    'nodetgt_worker_connections',
    'Connections served per worker thread',
    'gauge',
    (s) => s.threads.filter((t) => t.row > 0).map((t) => t.connections),
  ]);
  RUNTIME_FIELDS.forEach((f, i) => {
    const [name, help] = RUNTIME_METRICS[f];
    out.push([name, help, 'gauge', (s) => s.threads.map((t) => t.runtime[i])]);
  });
  out.push(...luDefs());
  SSN_FIELDS.forEach((f, i) => {
    const [suffix, help, type] = SSN_METRICS[f];
    out.push([`nodetgt_session_${suffix}`, `${help}, per session`, type, (s) => s.sessions[i]]);
    out.push([
      `nodetgt_target_${suffix}`,
      `${help}, per target (sessions ended included)`,
      type,
      (s) => s.targets.map((t) => t.ssn[i]),
    ]);
  });
  out.push([
    'nodetgt_target_sessions',
    'Sessions logged in per target (iscsiTgtPortalSessions)',
    'gauge',
    (s) => s.targets.map((t) => t.sessions),
  ]);
  return out;
}

/**
 * prom-client's process_open_fds lists /proc/self/fd at every scrape: with 1,000 sessions (two descriptors
 * each) that directory read was the largest single cost of a scrape after the text itself. The count is read at
 * most once per OPEN_FDS_MAX_AGE_MS here; Prometheus scrapes every 15 s by default, so it is fresh there, and
 * a scrape each second lists the directory a fifth as often.
 */
export const OPEN_FDS_MAX_AGE_MS = 5000;

const UNUSED_LAG_PRECISION_MS = 3_600_000;

class OpenFds {
  private at = -Infinity;
  private count = 0;
  constructor(private readonly now: () => number = () => performance.now()) {}
  read(): number {
    const t = this.now();
    if (t - this.at >= OPEN_FDS_MAX_AGE_MS) {
      this.at = t;
      try {
        // Less the descriptor the listing itself had open.
        this.count = fs.readdirSync('/proc/self/fd').length - 1;
      } catch {
        /* no /proc: the last count stays, as with prom-client's collector */
      }
    }
    return this.count;
  }
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
  private readonly prom = registry(Registry.PROMETHEUS_CONTENT_TYPE);
  private readonly open = registry<OpenMetricsContentType>(Registry.OPENMETRICS_CONTENT_TYPE);
  private readonly scraper: Scraper;
  private snapshot: Snapshot | null = null;

  constructor(source: MetricsSource, now?: () => number) {
    this.scraper = new Scraper(source);
    const snap = () => this.snapshot!;
    const fds = new OpenFds(now);
    for (const registry of [this.prom, this.open] as Array<Registry<RegistryContentType>>) {
      for (const [name, help, type, values] of defs())
        registry.registerMetric(new SnapshotMetric(name, help, type, values, snap) as unknown as Metric);
      // Process and runtime of the portal thread: CPU, RSS, heap, GC. Its event-loop lag set is removed below,
      // but prom-client starts that set's delay histogram anyway, one per registry, never stopped: its timer
      // (and the callback each turn of it costs) is put at an hour instead of 10 ms.
      collectDefaultMetrics({
        register: registry,
        prefix: 'nodetgt_',
        eventLoopMonitoringPrecision: UNUSED_LAG_PRECISION_MS,
      });
      // These three are gauges named like counters, which `promtool check metrics` refuses; handles and requests
      // say little about a target anyway (connections and sessions have their own series).
      for (const n of ['active_handles', 'active_requests', 'active_resources'])
        registry.removeSingleMetric(`nodetgt_nodejs_${n}_total`);
      // The portal thread's event-loop delay is nodetgt_worker_event_loop_lag_*{thread="portal"} (runtime.ts),
      // as every worker's is. prom-client's own set computed a standard deviation over the whole delay
      // histogram at each scrape, the largest single cost of a scrape with no sessions.
      for (const n of ['', '_min', '_max', '_mean', '_stddev', '_p50', '_p90', '_p99'])
        registry.removeSingleMetric(`nodetgt_nodejs_eventloop_lag${n}_seconds`);
      // The same name and help as prom-client's, read at most every OPEN_FDS_MAX_AGE_MS (OpenFds).
      registry.removeSingleMetric('nodetgt_process_open_fds');
      new Gauge({
        name: 'nodetgt_process_open_fds',
        help: 'Number of open file descriptors.',
        registers: [registry],
        collect() {
          this.set(fds.read());
        },
      });
    }
  }

  /**
   * The registry of the format the Accept header asks for, after taking this scrape's snapshot. Its metrics()
   * (and metricsBytes()) call every metric's get() (or values) before their first await: they all see this
   * snapshot. The next scrape overwrites the same series objects, but this one is written out in microtasks,
   * before any other request is read, so two scrapes never mix.
   */
  private begin(accept: string | undefined): Registry<RegistryContentType> {
    const registry = wantsOpenMetrics(accept) ? this.open : this.prom;
    this.snapshot = this.scraper.take();
    return registry as Registry<RegistryContentType>;
  }

  /** The exposition in the format the Accept header asks for. */
  async render(accept?: string): Promise<{ contentType: string; body: string }> {
    const registry = this.begin(accept);
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** The same as bytes, for the HTTP response (SnapshotRegistry.metricsBytes; encoded whole otherwise). */
  async renderBytes(accept?: string): Promise<{ contentType: string; body: Buffer }> {
    const registry = this.begin(accept);
    const body =
      registry instanceof SnapshotRegistry
        ? await registry.metricsBytes()
        : Buffer.from(await registry.metrics());
    return { contentType: registry.contentType, body };
  }
}
