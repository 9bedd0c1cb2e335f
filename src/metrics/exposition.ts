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
  NO_LABELS,
  Scraper,
  type LuSeries,
  type MetricsSource,
  type Series,
  type Snapshot,
} from './series';
import { MAX_SESSION_SLOTS, SSN_FIELDS, type SessionSlots, type SsnField } from './session-stats';

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

const RUNTIME_METRICS: Record<RuntimeField, [string, string, ('counter' | 'gauge')?]> = {
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
  idlePollCaught: [
    'nodetgt_worker_idle_poll_caught_total',
    'Times the thread looked for work before sleeping (idlePoll) and found it, so did not sleep',
    'counter',
  ],
  idlePollMissed: [
    'nodetgt_worker_idle_poll_missed_total',
    'Times the thread looked for work before sleeping (idlePoll), found none, and slept',
    'counter',
  ],
  idlePollSeconds: [
    'nodetgt_worker_idle_poll_seconds_total',
    'Time the thread spent looking for work before sleeping (idlePoll)',
    'counter',
  ],
  idlePollShared: [
    'nodetgt_worker_idle_poll_shared_total',
    "Times another task ran on the thread's CPU while it looked for work (looking then pauses for 200 ms)",
    'counter',
  ],
};

/** A registry's format, as the index of a series' memo: 0 Prometheus text, 1 OpenMetrics. */
type Format = 0 | 1;

/** prom-client's Registry writes one metric's text with this method; Registry.metrics() calls it per metric. */
type WriteMetric = (metric: object) => Promise<string>;
const registryWrite = (Registry.prototype as unknown as { getMetricsAsString?: WriteMetric })
  .getMetricsAsString;

/** Lines per block of a metric's kept text (KeptMetric). */
const BLOCK = 64;

/** A string of its own (not a slice of a larger one, which it would keep alive). */
const flat = (line: string): string => (' ' + line).slice(1);

/** What prom-client's Registry reads of one value (MetricValue with metricName and sharedLabels). */
type Sample = Pick<Series, 'metricName' | 'labels' | 'sharedLabels' | 'value'>;

/**
 * A metric whose text is kept from scrape to scrape. Every line is written by prom-client (the registry's own
 * method), but only the lines of series whose value changed since the last scrape in the same format are written
 * again: with 1,000 idle sessions open, their 7,000 lines are the same at every scrape, and writing them was most
 * of a scrape's cost (about 1.8 µs a line). The text is kept in blocks of BLOCK lines, each joined again only
 * when a line of it changed or its series did (a session came or went), and each encoded once while it stays the
 * same. A scrape goes in three steps, so that the registry can take every metric's snapshot values at once and
 * await prom-client only where lines are written (SnapshotRegistry):
 *  1. begin() (synchronous): finds the lines to write again and returns them as a metric for prom-client, or
 *     undefined when there are none;
 *  2. written(): takes prom-client's text of them;
 *  3. text() or bytes() (synchronous): joins the blocks that changed and returns the metric's text.
 */
abstract class KeptMetric {
  readonly aggregator = 'sum' as const;
  /** The HELP and TYPE lines per format (0 Prometheus text, 1 OpenMetrics), as prom-client wrote them. */
  private readonly head: [string | undefined, string | undefined] = [undefined, undefined];
  private readonly headBytes: [Buffer | undefined, Buffer | undefined] = [undefined, undefined];
  /** The text in blocks, each with the newline before each of its lines, and the blocks encoded. */
  private readonly blocks: [string[], string[]] = [[], []];
  private readonly blockBytes: [Array<Buffer | undefined>, Array<Buffer | undefined>] = [[], []];
  /** The whole text of the blocks as they are (text()), undefined once one changed. */
  private readonly last: [string | undefined, string | undefined] = [undefined, undefined];
  /** The whole text as prom-client wrote it, for a scrape whose lines could not be kept (written()). */
  private readonly whole: [string | undefined, string | undefined] = [undefined, undefined];
  /** The number of values begin() handed to prom-client. */
  private readonly count: [number, number] = [0, 0];

  constructor(
    public name: string,
    readonly help: string,
    readonly type: MetricType,
  ) {}

  /** Every value of this scrape (for a plain registry, which writes every line). */
  protected abstract all(): Sample[];
  /** The values whose lines this scrape writes again, in the order of the text. */
  protected abstract stale(format: Format): Sample[];
  /** Keep the lines prom-client wrote for stale(format)'s values (lines[i] for the i-th). */
  protected abstract keep(format: Format, lines: string[]): void;
  /** Join again (setBlock) the blocks whose lines or series changed; returns the number of blocks. */
  protected abstract join(format: Format): number;

  get(): Promise<{ name: string; help: string; type: MetricType; aggregator: 'sum'; values: Sample[] }> {
    return this.with(this.all());
  }
  reset(): void {}

  private with(values: Sample[]) {
    const { name, help, type, aggregator } = this;
    return Promise.resolve({ name, help, type, aggregator, values });
  }

  /**
   * This metric with only `values`, for the registry to write. The registry may have renamed the metric (an
   * OpenMetrics counter loses `_total`): `this.name` is read now.
   */
  private part(values: Sample[]): object {
    const { name, help, type, aggregator } = this;
    return { name, help, type, aggregator, get: () => this.with(values) };
  }

  /** Step 1: what prom-client must write for this scrape, or undefined when nothing. */
  begin(format: Format): object | undefined {
    this.whole[format] = undefined;
    const stale = this.stale(format);
    this.count[format] = stale.length;
    if (stale.length === 0 && this.head[format] !== undefined) return undefined;
    return this.part(stale);
  }

  /**
   * Step 2: prom-client's text of begin()'s part. One line per value after HELP and TYPE (label values are
   * escaped, so no line holds a newline). Should a prom-client write anything else, nothing is kept: returns the
   * whole metric for the registry to write, and that text is the metric's for this scrape (wrote()).
   */
  written(format: Format, text: string): object | undefined {
    const lines = text.split('\n');
    if (lines.length !== this.count[format] + 2) return this.part(this.all());
    const head = `${lines[0]}\n${lines[1]}`;
    if (head !== this.head[format]) {
      this.head[format] = head;
      this.headBytes[format] = Buffer.from(head);
      this.last[format] = undefined;
    }
    // Flattened: a line split out of the text would keep all of that text alive while it is kept.
    this.keep(format, lines.slice(2).map(flat));
    return undefined;
  }

  /** The whole text prom-client wrote when written() returned a part. */
  wrote(format: Format, text: string): void {
    this.whole[format] = text;
  }

  /** For join(): block `b`'s text is now `text`. */
  protected setBlock(format: Format, b: number, text: string): void {
    this.blocks[format][b] = text;
    this.blockBytes[format][b] = undefined;
    this.last[format] = undefined;
  }

  private update(format: Format): void {
    const n = this.join(format);
    const blocks = this.blocks[format];
    if (blocks.length !== n) {
      // Blocks never joined (a per-session metric's empty slots) are empty.
      for (let b = 0; b < n; b++) blocks[b] ??= '';
      blocks.length = n;
      this.blockBytes[format].length = n;
      this.last[format] = undefined;
    }
  }

  /** Step 3, as a string (for Registry.metrics()). */
  text(format: Format): string {
    if (this.whole[format] !== undefined) return this.whole[format];
    this.update(format);
    if (this.last[format] !== undefined) return this.last[format];
    // Concatenated, not joined: V8 keeps the result as a rope of the blocks, and the registry's join of every
    // metric's text then copies the characters once (a join here would copy the whole text one time more).
    let text = this.head[format]!;
    for (const b of this.blocks[format]) text += b;
    return (this.last[format] = text);
  }

  /** Step 3, as bytes pushed to `out`: the head's and each block's, each encoded once while it stays the same. */
  bytes(format: Format, out: Buffer[]): void {
    if (this.whole[format] !== undefined) {
      out.push(Buffer.from(this.whole[format]));
      return;
    }
    this.update(format);
    out.push(this.headBytes[format]!);
    const blocks = this.blocks[format];
    const bytes = this.blockBytes[format];
    for (let b = 0; b < blocks.length; b++)
      if (blocks[b].length > 0) out.push((bytes[b] ??= Buffer.from(blocks[b])));
  }
}

/** A metric over series objects of the snapshot (instance counters, threads, LUs, targets, tuning checks). */
class SeriesMetric extends KeptMetric {
  /** This snapshot version's series (the list is the same while the version is). */
  private values: Series[] = [];
  private version = -1;
  /** Per format: the series the blocks were joined for, the values written again, and their blocks. */
  private readonly joined: [Series[], Series[]] = [[], []];
  private readonly pending: [Series[], Series[]] = [[], []];
  private readonly dirty: [boolean[], boolean[]] = [[], []];
  constructor(
    name: string,
    help: string,
    type: MetricType,
    private readonly select: (s: Snapshot) => Series[],
    private readonly snap: () => Snapshot,
  ) {
    super(name, help, type);
  }

  private current(): Series[] {
    const s = this.snap();
    if (s.version !== this.version) {
      this.values = this.select(s);
      this.version = s.version;
    }
    return this.values;
  }

  protected all(): Series[] {
    return this.current();
  }

  protected stale(format: Format): Series[] {
    const values = this.current();
    const stale: Series[] = [];
    const dirty = this.dirty[format];
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      // A NaN value is never equal to the value it was written for: it is written again each time.
      if ((format === 0 ? v.lineValue0 : v.lineValue1) !== v.value) {
        stale.push(v);
        dirty[(i / BLOCK) | 0] = true;
      }
    }
    return (this.pending[format] = stale);
  }

  protected keep(format: Format, lines: string[]): void {
    const stale = this.pending[format];
    for (let i = 0; i < stale.length; i++) {
      const v = stale[i];
      v.lines[format] = lines[i];
      if (format === 0) v.lineValue0 = v.value;
      else v.lineValue1 = v.value;
    }
  }

  protected join(format: Format): number {
    const values = this.values;
    const before = this.joined[format];
    const dirty = this.dirty[format];
    const n = Math.ceil(values.length / BLOCK);
    for (let b = 0; b < n; b++) {
      const end = Math.min(values.length, (b + 1) * BLOCK);
      // The block's text holds the lines of the same places of the series it was joined for, and they are these
      // (the same list while the snapshot's version is the same).
      let same = !dirty[b] && b < Math.ceil(before.length / BLOCK);
      if (same && values !== before) {
        same = Math.min(before.length, (b + 1) * BLOCK) === end;
        for (let i = b * BLOCK; i < end && same; i++) same = values[i] === before[i];
      }
      if (same) continue;
      let text = '';
      for (let i = b * BLOCK; i < end; i++) text += '\n' + values[i].lines[format]!;
      this.setBlock(format, b, text);
    }
    dirty.length = 0;
    this.joined[format] = values;
    return n;
  }
}

const SLOT_BLOCKS = MAX_SESSION_SLOTS / BLOCK;

/**
 * A per-session metric (one SSN_FIELDS field). Its text is in blocks of BLOCK session slots, in slot order, and
 * what a scrape compares is typed arrays by slot: the session shown in the slot (its generation) and the value
 * against the generation and value each kept line was written for. An object for prom-client is made only for a
 * line written again; an idle session costs a scrape two array reads per metric and nothing else.
 */
class SessionMetric extends KeptMetric {
  /** Per format, by slot: the kept line and the generation and value it was written for (0: none). */
  private readonly lines: [Array<string | undefined>, Array<string | undefined>] = [[], []];
  private readonly lineGen = [new Int32Array(MAX_SESSION_SLOTS), new Int32Array(MAX_SESSION_SLOTS)];
  private readonly lineValue = [new Float64Array(MAX_SESSION_SLOTS), new Float64Array(MAX_SESSION_SLOTS)];
  /** Per format, by slot: the generation whose line is in the slot's block text (0: none). */
  private readonly inBlock = [new Int32Array(MAX_SESSION_SLOTS), new Int32Array(MAX_SESSION_SLOTS)];
  /** Per format: the slots written again this scrape, the blocks to join again, and how far the blocks reach. */
  private readonly pending: [number[], number[]] = [[], []];
  private readonly dirty = [new Uint8Array(SLOT_BLOCKS), new Uint8Array(SLOT_BLOCKS)];
  private readonly reach = [0, 0];
  constructor(
    name: string,
    help: string,
    type: MetricType,
    private readonly field: number,
    private readonly snap: () => Snapshot,
  ) {
    super(name, help, type);
  }

  private sample(s: SessionSlots, slot: number): Sample {
    return {
      metricName: undefined,
      labels: NO_LABELS,
      sharedLabels: s.labels[slot]!,
      value: s.values[slot * SSN_FIELDS.length + this.field],
    };
  }

  protected all(): Sample[] {
    const s = this.snap().sessions;
    const out: Sample[] = [];
    for (let slot = 0; slot < s.end; slot++) if (s.gen[slot] !== 0) out.push(this.sample(s, slot));
    return out;
  }

  protected stale(format: Format): Sample[] {
    const s = this.snap().sessions;
    const { gen, values } = s;
    const nf = SSN_FIELDS.length;
    const lineGen = this.lineGen[format];
    const lineValue = this.lineValue[format];
    const inBlock = this.inBlock[format];
    const dirty = this.dirty[format];
    const slots = (this.pending[format] = []) as number[];
    const stale: Sample[] = [];
    const end = Math.max(s.end, this.reach[format]);
    for (let slot = 0; slot < end; slot++) {
      const g = gen[slot];
      // A session came, went, or another took its slot: the block is joined again.
      if (g !== inBlock[slot]) dirty[slot >>> 6] = 1;
      if (g === 0) continue;
      if (lineGen[slot] !== g || lineValue[slot] !== values[slot * nf + this.field]) {
        slots.push(slot);
        stale.push(this.sample(s, slot));
        dirty[slot >>> 6] = 1;
      }
    }
    return stale;
  }

  protected keep(format: Format, lines: string[]): void {
    const s = this.snap().sessions;
    const slots = this.pending[format];
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      this.lines[format][slot] = lines[i];
      this.lineGen[format][slot] = s.gen[slot];
      this.lineValue[format][slot] = s.values[slot * SSN_FIELDS.length + this.field];
    }
  }

  protected join(format: Format): number {
    const s = this.snap().sessions;
    const lines = this.lines[format];
    const inBlock = this.inBlock[format];
    const dirty = this.dirty[format];
    for (let b = 0; b < SLOT_BLOCKS; b++) {
      if (dirty[b] === 0) continue;
      dirty[b] = 0;
      let text = '';
      for (let slot = b * BLOCK; slot < (b + 1) * BLOCK; slot++) {
        const g = s.gen[slot];
        inBlock[slot] = g;
        if (g !== 0) text += '\n' + lines[slot]!;
        // A session gone: its line is not kept past it.
        else if (lines[slot] !== undefined) {
          lines[slot] = undefined;
          this.lineGen[format][slot] = 0;
        }
      }
      this.setBlock(format, b, text);
    }
    this.reach[format] = s.end;
    // Every block, empty ones included (bytes() skips those): a block's index is its slots'.
    return SLOT_BLOCKS;
  }
}

/** A prom-client registry whose snapshot metrics write only their changed lines (KeptMetric). */
class SnapshotRegistry<T extends RegistryContentType> extends Registry<T> {
  private get format(): Format {
    return this.contentType === Registry.OPENMETRICS_CONTENT_TYPE ? 1 : 0;
  }
  private readonly write = (m: object) => registryWrite!.call(this, m);

  /** Steps 1 and 2 of a kept metric; step 1 happens before this returns (before any await). */
  private prepare(m: KeptMetric, format: Format): Promise<void> | undefined {
    const part = m.begin(format);
    if (part === undefined) return undefined;
    return this.write(part).then(async (text) => {
      const whole = m.written(format, text);
      if (whole !== undefined) m.wrote(format, await this.write(whole));
    });
  }

  getMetricsAsString(metric: object): Promise<string> {
    if (!(metric instanceof KeptMetric)) return this.write(metric);
    const format = this.format;
    const ready = this.prepare(metric, format);
    return ready ? ready.then(() => metric.text(format)) : Promise.resolve(metric.text(format));
  }

  /**
   * What metrics() returns, as bytes, assembled as prom-client's Registry.metrics() assembles it (an
   * OpenMetrics counter named without `_total`, metrics apart by a blank line in the text format and ended by
   * `# EOF` in OpenMetrics), but from the metrics' encoded parts: a scrape neither joins the 1.2 MB of text
   * that 1,000 sessions make nor encodes it again. The parts are handed to the socket as they are (one writev):
   * copying them into one buffer cost more than the rest of a scrape, most of it the page faults of a new
   * 1.2 MB buffer. Every kept metric takes its values in one synchronous pass, and only the lines written again
   * (and prom-client's own metrics) are awaited.
   */
  async metricsParts(): Promise<Buffer[]> {
    const format = this.format;
    const open = format === 1;
    const metrics = this.getMetricsAsArray() as unknown as Array<{ name: string; type: string }>;
    const texts: Array<string | undefined> = [];
    const waits: Array<Promise<unknown>> = [];
    for (let i = 0; i < metrics.length; i++) {
      const metric = metrics[i];
      if (open && metric.type === 'counter') metric.name = metric.name.replace(/_total$/, '');
      if (metric instanceof KeptMetric) {
        const ready = this.prepare(metric, format);
        if (ready) waits.push(ready);
      } else waits.push(this.write(metric).then((t) => (texts[i] = t)));
    }
    await Promise.all(waits);
    const between = open ? NEWLINE : BLANK_LINE;
    const all: Buffer[] = [];
    for (let i = 0; i < metrics.length; i++) {
      if (i > 0) all.push(between);
      const metric = metrics[i];
      if (metric instanceof KeptMetric) metric.bytes(format, all);
      else all.push(Buffer.from(texts[i]!));
    }
    all.push(open ? OPENMETRICS_END : NEWLINE);
    return all;
  }
}

const NEWLINE = Buffer.from('\n');
const BLANK_LINE = Buffer.from('\n\n');
const OPENMETRICS_END = Buffer.from('\n# EOF\n');

/**
 * A registry for the snapshot's metrics; a plain one (every line written at every scrape) should a prom-client
 * release not write metrics through getMetricsAsString.
 */
function registry<T extends RegistryContentType>(contentType: T): Registry<T> {
  const r = registryWrite ? new SnapshotRegistry<T>() : new Registry<T>();
  r.setContentType(contentType);
  return r;
}

/** A metric: name, help, type, and its series in a snapshot, or the SSN_FIELDS field of a per-session one. */
type Def = [string, string, MetricType, ((s: Snapshot) => Series[]) | number];

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
    const [name, help, type] = RUNTIME_METRICS[f];
    out.push([name, help, type ?? 'gauge', (s) => s.threads.map((t) => t.runtime[i])]);
  });
  out.push(...luDefs());
  SSN_FIELDS.forEach((f, i) => {
    const [suffix, help, type] = SSN_METRICS[f];
    out.push([`nodetgt_session_${suffix}`, `${help}, per session`, type, i]);
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
        registry.registerMetric(
          (typeof values === 'number'
            ? new SessionMetric(name, help, type, values, snap)
            : new SeriesMetric(name, help, type, values, snap)) as unknown as Metric,
        );
      // Process and runtime of the portal thread: CPU, RSS, heap, GC. Its event-loop lag set is removed below,
      // but prom-client starts that set's delay histogram anyway, one per registry, never stopped: its timer
      // (and the callback each turn of it costs) is put at an hour instead of 10 ms.
      collectDefaultMetrics({
        register: registry,
        prefix: 'nodetgt_',
        eventLoopMonitoringPrecision: UNUSED_LAG_PRECISION_MS,
      });
      // Active handles, requests and resources: the `_total` three are gauges named like counters, which
      // `promtool check metrics` refuses, and the others list every handle at each scrape (with 1,000 sessions,
      // arrays of 2,000 sockets and their class names). They say little about a target: connections and sessions
      // have their own series.
      for (const n of ['active_handles', 'active_requests', 'active_resources'])
        for (const suffix of ['', '_total']) registry.removeSingleMetric(`nodetgt_nodejs_${n}${suffix}`);
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
   * (and metricsParts()) have every metric read its values (KeptMetric.begin(), or get()) before their first
   * await: they all see this snapshot. The next scrape overwrites the same series objects and session arrays, but
   * this one is written out in microtasks, before any other request is read, so two scrapes never mix.
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

  /**
   * The same as bytes, in parts to write in this order (SnapshotRegistry.metricsParts; encoded whole
   * otherwise), for the HTTP response.
   */
  async renderParts(accept?: string): Promise<{ contentType: string; parts: Buffer[]; length: number }> {
    const registry = this.begin(accept);
    const parts =
      registry instanceof SnapshotRegistry
        ? await registry.metricsParts()
        : [Buffer.from(await registry.metrics())];
    let length = 0;
    for (const p of parts) length += p.length;
    return { contentType: registry.contentType, parts, length };
  }

  /** The same as one buffer. */
  async renderBytes(accept?: string): Promise<{ contentType: string; body: Buffer }> {
    const { contentType, parts, length } = await this.renderParts(accept);
    return { contentType, body: Buffer.concat(parts, length) };
  }
}
