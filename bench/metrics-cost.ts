/**
 * What metrics cost, on a real `nodetgt serve` (a child process: 2 workers, a null LU, /metrics on loopback)
 * driven from this process by the TypeScript initiator over loopback.
 *
 *  1. Sessions: N sessions really open (default 0, 500 and 1000; limits and the descriptor limit raised to fit),
 *     then 20 scrapes of /metrics one after the other: median and max time, the series count checked (seven per
 *     session), and the target's CPU time per scrape (whole process and its portal thread, the process's idle
 *     CPU over the same time subtracted: the lower of 2 s before and 2 s after). Then every session logs out
 *     and the session series must be gone.
 *  2. CPU per I/O: the target's CPU time per 4K read at QD32. CPU per scrape / CPU per I/O is the number of
 *     reads one scrape displaces when the target is CPU-bound; over the IOPS measured, the share of 4K QD32 I/O
 *     capacity a 1 s scrape takes. CPU time is read from the kernel's clock (bench/lib/cpuclock.ts), so other
 *     users of the machine slow it less than they slow wall-clock IOPS.
 *  3. A/B: one session, 4K QD32 reads for `seconds` without scrapes (A) and with a scrape every second (B) made
 *     from a process of its own (bench/lib/scraper.ts, as Prometheus scrapes from its own process), in
 *     `rounds` rounds whose order alternates (A B, then B A: a drift of the machine during a round weighs on
 *     both sides, not always on the second). Per side: IOPS, the target's CPU per I/O split by thread (portal,
 *     the worker serving the session, the rest: V8's GC helpers, libuv's pool), and this process's (the
 *     initiator's) CPU per I/O; medians with min .. max. Then the B/A ratios of each round's pair, and a RESULT
 *     line with the median IOPS and CPU-per-I/O change against the 2% bound. --control 1 runs the same rounds
 *     with no scrape in B either: the A/A spread it prints is the noise floor of that machine at that time.
 *
 *   node dist/bench/metrics-cost.js [--rounds 6] [--seconds 5] [--sessions 1000] [--scrapes 20] [--ab 0|1]
 *                                   [--control 0|1] [--ab-open 0|1] [--profile DIR]
 *
 * --ab-open 1 keeps the sessions of step 1 open, idle, through the A/B: each scrape then carries their series.
 *
 * --ab 0 runs only the rounds without scrapes (CPU per I/O), for a machine too loaded for a wall-clock A/B.
 *
 * --profile DIR runs the target with --cpu-prof into DIR (one .cpuprofile per thread; the portal thread's is the
 * one whose name holds the target's pid and thread 0) and stops it with SIGTERM, so that the profiles are written.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestInitiator } from '../test/helpers/initiator';
import { CpuClock } from './lib/cpuclock';
import { Scraper } from './lib/scraper';
import { medianCi } from './lib/stats';
import { threadRunTime } from './lib/sys';

const IQN = 'iqn.2026-11.io.nodetgt.bench:metrics';
const BIN = path.resolve(__dirname, '../../bin/nodetgt.js');
/** Scrapes before the measured ones, at each number of sessions (see scrapeCost). */
const WARM_UP_SCRAPES = 200;
/** The per-session metrics (iscsiSsnStatsTable and iscsiSsnCxnErrorStatsTable columns). */
const PER_SESSION = 7;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const load = () => os.loadavg()[0].toFixed(2);

interface Child {
  proc: ChildProcess;
  port: number;
  metricsPort: number;
  stop(): Promise<void>;
}

/** `nodetgt serve` sized for `sessions` sessions: connection limits and descriptors to match. */
async function startTarget(sessions: number, dir: string, profile?: string): Promise<Child> {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      portals: ['127.0.0.1:0'],
      metrics: '127.0.0.1:0',
      workers: 2,
      nopInInterval: 0,
      queueDepth: 64,
      stateDir: path.join(dir, 'state'),
      limits: {
        maxConnections: sessions + 64,
        maxSessions: sessions + 64,
        maxPendingLogins: 64,
        maxPendingLoginsPerAddress: 64,
      },
      targets: [{ name: IQN, luns: [{ lun: 0, backstore: 'null', size: '1G' }] }],
    }),
  );
  const nofile = 2 * sessions + 1024;
  const proc = spawn(
    'prlimit',
    [
      `--nofile=${nofile}:${nofile}`,
      process.execPath,
      ...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []),
      BIN,
      'serve',
      '--config',
      file,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODETGT_LOG: 'info' },
    },
  );
  let out = '';
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  // With --profile, SIGTERM: the target shuts down and its threads write their profiles (SIGKILL after 30 s).
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(profile ? 'SIGTERM' : 'SIGKILL');
      const late = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(late);
    }
    await exited;
  };
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // The ports come from the start-up lines (info); nothing is logged at info while the bench measures.
  for (let i = 0; i < 600 && !/portal listening/.test(out); i++) {
    if (proc.exitCode !== null) throw new Error(`nodetgt exited: ${out}`);
    await sleep(50);
  }
  const grab = (what: string) =>
    Number(new RegExp(`${what} listening address=\\S*?:(\\d+)\\s`).exec(out)?.[1]);
  const port = grab('portal');
  const metricsPort = grab('metrics');
  if (!port || !metricsPort) {
    await stop();
    throw new Error(`nodetgt did not report its ports: ${out}`);
  }
  return { proc, port, metricsPort, stop };
}

function scrape(port: number): Promise<{ ms: number; body: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ ms: performance.now() - t0, body }));
      })
      .on('error', reject);
  });
}

const count = (body: string, re: RegExp) => (body.match(re) ?? []).length;
const sessionSeries = (body: string) => count(body, /^nodetgt_session_\w+\{/gm);
const allSeries = (body: string) => count(body, /^nodetgt_\S+ \S+$/gm);

async function iops(ini: TestInitiator, seconds: number, qd: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const loop = async (k: number) => {
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x28;
    cdb.writeUInt16BE(8, 7);
    for (let lba = k * 7919; performance.now() < end; lba = (lba + 162013) % 200000) {
      cdb.writeUInt32BE(lba * 8, 2);
      await ini.scsi(cdb, { edtl: 4096, read: true });
      done++;
    }
  };
  await Promise.all(Array.from({ length: qd }, (_, k) => loop(k)));
  return done;
}

async function openSessions(port: number, open: TestInitiator[], n: number): Promise<void> {
  while (open.length < n) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(32, n - open.length) }, async () => {
        const s = await TestInitiator.connect(port);
        const r = await s.login({ targetName: IQN });
        if (r.status !== 0) throw new Error(`login ${open.length}: status 0x${r.status.toString(16)}`);
        return s;
      }),
    );
    open.push(...batch);
  }
}

/**
 * CPU time of the target in µs: the whole process from its CPU clock, and its portal thread (the main thread,
 * tid = pid, which serves /metrics) from the scheduler's run time of that thread in /proc (ns).
 */
async function cpu(clock: CpuClock, pid: number): Promise<{ t: number; proc: number; portal: number }> {
  const r = await clock.read([pid]);
  let portal = NaN;
  try {
    portal = Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
  } catch {
    /* no schedstat: the portal figure stays NaN */
  }
  return { t: r.mono, proc: r.cpu[0] ?? NaN, portal };
}

interface ScrapeCost {
  sessions: number;
  medianMs: number;
  maxMs: number;
  series: number;
  procUs: number;
  portalUs: number;
}

async function scrapeCost(c: Child, clock: CpuClock, n: number, scrapes: number): Promise<ScrapeCost> {
  const pid = c.proc.pid!;
  // Warm-up: the first scrapes of a process (or of new label sets) compile and allocate what later ones reuse.
  // V8 compiles the scrape's code on its own threads for the first few dozen scrapes (about 5 ms of CPU per
  // scrape at first, 0.2 ms after 300), which is not what a scrape of a running target costs.
  for (let i = 0; i < WARM_UP_SCRAPES; i++) await scrape(c.metricsPort);
  // Idle: what the target spends with nobody scraping (event-loop sampling, timers), per second, over 2 s before
  // and 2 s after the scrapes. The lower of the two is subtracted: the first window after start-up or after
  // logins still holds their compilation and garbage collection, which would otherwise be taken off the scrapes
  // (it made the figure negative on a loaded machine).
  const idle = async () => {
    const i0 = await cpu(clock, pid);
    await sleep(2000);
    const i1 = await cpu(clock, pid);
    return { proc: (i1.proc - i0.proc) / (i1.t - i0.t), portal: (i1.portal - i0.portal) / (i1.t - i0.t) };
  };
  const before = await idle();
  const times: number[] = [];
  let body = '';
  const c0 = await cpu(clock, pid);
  for (let i = 0; i < scrapes; i++) {
    const s = await scrape(c.metricsPort);
    times.push(s.ms);
    body = s.body;
  }
  const c1 = await cpu(clock, pid);
  const secs = c1.t - c0.t;
  const after = await idle();
  const idleProc = Math.min(before.proc, after.proc);
  const idlePortal = Math.min(before.portal, after.portal);
  const got = sessionSeries(body);
  if (got !== n * PER_SESSION)
    throw new Error(`${n} sessions open: ${got} session series, expected ${n * PER_SESSION}`);
  return {
    sessions: n,
    medianMs: median(times),
    maxMs: Math.max(...times),
    series: allSeries(body),
    procUs: (c1.proc - c0.proc - idleProc * secs) / scrapes,
    portalUs: (c1.portal - c0.portal - idlePortal * secs) / scrapes,
  };
}

const delta = (a: Map<number, number>, b: Map<number, number>, tid: number) =>
  (b.get(tid) ?? 0) - (a.get(tid) ?? 0);

/** The thread other than the portal that ran most between two readings: the worker serving the I/O. */
function busiest(a: Map<number, number>, b: Map<number, number>, pid: number): number {
  let best = 0;
  for (const tid of b.keys()) if (tid !== pid && delta(a, b, tid) > delta(a, b, best)) best = tid;
  return best;
}

/** One timed run of 4K QD32 reads, with or without a scrape each second. CPU figures are µs per I/O. */
interface Phase {
  scraping: boolean;
  iops: number;
  load: string;
  scrapes: number;
  /** The whole target process. */
  cpuPerIo: number;
  /** Its portal thread (serves /metrics). */
  portalPerIo: number;
  /** The worker thread serving the session. */
  workerPerIo: number;
  /** Every other thread of the target: V8's GC helpers, libuv's pool, the idle worker. */
  otherPerIo: number;
  /** This process: the TypeScript initiator. */
  benchPerIo: number;
  /** The scrape client's process (bench/lib/scraper.ts), ms of CPU per scrape (NaN without scrapes). */
  scraperMsPerScrape: number;
  /** Bytes of the last scrape. */
  scrapeBytes: number;
}

async function phase(
  ini: TestInitiator,
  c: Child,
  scraper: Scraper,
  clock: CpuClock,
  worker: number,
  seconds: number,
  scraping: boolean,
  control: boolean,
): Promise<Phase> {
  const pid = c.proc.pid!;
  const la = load();
  let scrapes = 0;
  let scrapeBytes = 0;
  let pending: Promise<unknown> = Promise.resolve();
  // The scrape runs in the scraper's process, as Prometheus does in its own: this process's event loop (the
  // initiator's) only sends it a message.
  const once = () =>
    (pending = scraper.scrape(c.metricsPort).then((r) => {
      if (r.status !== 200) throw new Error(`scrape: HTTP ${r.status}`);
      scrapeBytes = r.bytes;
      scrapes++;
    }));
  // The first scrape half a second in, then one a second: `seconds` scrapes in the phase.
  let timer: NodeJS.Timeout | undefined;
  const first =
    scraping && !control
      ? setTimeout(() => {
          once();
          timer = setInterval(once, 1000);
        }, 500)
      : undefined;
  const t0 = threadRunTime(pid);
  const c0 = await cpu(clock, pid);
  const b0 = process.cpuUsage();
  const s0 = scraper.cpuMicros();
  const ios = await iops(ini, seconds, 32);
  clearTimeout(first);
  clearInterval(timer);
  // A scrape still running is the phase's: its CPU is counted here even though no I/O is left to slow.
  await pending;
  const b1 = process.cpuUsage(b0);
  const s1 = scraper.cpuMicros();
  const c1 = await cpu(clock, pid);
  const t1 = threadRunTime(pid);
  const proc = c1.proc - c0.proc;
  const portal = delta(t0, t1, pid);
  const work = delta(t0, t1, worker);
  return {
    scraping,
    iops: ios / seconds,
    load: la,
    scrapes,
    cpuPerIo: proc / ios,
    portalPerIo: portal / ios,
    workerPerIo: work / ios,
    otherPerIo: (proc - portal - work) / ios,
    benchPerIo: (b1.user + b1.system) / ios,
    scraperMsPerScrape: scrapes ? (s1 - s0) / scrapes / 1000 : NaN,
    scrapeBytes,
  };
}

const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(2)}%`;
const range = (xs: number[], f: (x: number) => string) =>
  `${f(median(xs))} (${f(Math.min(...xs))} .. ${f(Math.max(...xs))})`;

/** The A/B summary: medians with min..max per side, the paired per-round differences, and one result line. */
function report(phases: Phase[], costs: ScrapeCost[], ab: boolean, control: boolean, seconds: number): void {
  const A = phases.filter((p) => !p.scraping);
  const B = phases.filter((p) => p.scraping);
  const rows: Array<[string, (p: Phase) => number, (x: number) => string]> = [
    ['IOPS', (p) => p.iops, (x) => x.toFixed(0)],
    ['target CPU µs/IO', (p) => p.cpuPerIo, (x) => x.toFixed(2)],
    ['  portal thread', (p) => p.portalPerIo, (x) => x.toFixed(2)],
    ['  serving worker', (p) => p.workerPerIo, (x) => x.toFixed(2)],
    ['  other threads', (p) => p.otherPerIo, (x) => x.toFixed(2)],
    ['bench (initiator) CPU µs/IO', (p) => p.benchPerIo, (x) => x.toFixed(2)],
  ];
  const bName = control ? 'B = A again (control)' : 'B: scrape 1/s from another process';
  console.log(`\n${A.length} rounds of ${seconds} s, medians (min .. max); A: no scrape; ${ab ? bName : ''}`);
  for (const [name, f, fmt] of rows) {
    const a = range(A.map(f), fmt);
    console.log(`${name.padEnd(28)} A ${a.padEnd(30)}${ab ? ` B ${range(B.map(f), fmt)}` : ''}`);
  }
  const cpuIo = median(A.map((p) => p.cpuPerIo));
  const ma = median(A.map((p) => p.iops));
  if (ab) {
    // Paired: A and B of one round ran back to back, so their ratio is less exposed to the machine's drift
    // than the ratio of the two medians.
    const pairs = A.map((a, i) => ({ a, b: B[i] }));
    if (!control)
      console.log(
        `scrape client (its own process, body discarded): ${range(
          B.map((p) => p.scraperMsPerScrape),
          (x) => x.toFixed(2),
        )} ms CPU per scrape, ` + `${(median(B.map((p) => p.scrapeBytes)) / 1024).toFixed(0)} KiB per scrape`,
      );
    const dIops = pairs.map(({ a, b }) => b.iops / a.iops - 1);
    const dCpu = pairs.map(({ a, b }) => b.cpuPerIo / a.cpuPerIo - 1);
    const dUs = pairs.map(({ a, b }) => b.cpuPerIo - a.cpuPerIo);
    console.log(
      `B-A per round, median (min .. max): IOPS ${range(dIops, pct)}; target CPU per I/O ${range(dCpu, pct)}`,
    );
    const perScrape = (median(dUs) * ma) / 1000;
    const ci = medianCi(dIops);
    const ciText = ci
      ? `95% confidence interval of the median ${pct(ci[0])} .. ${pct(ci[1])}`
      : 'too few rounds for an interval';
    // Shown only when the whole interval lies within the bound: a median inside it with an interval reaching
    // past it is noise, not a result.
    const verdict = !ci
      ? 'NOT RESOLVED (run at least 6 rounds)'
      : ci[0] >= -0.02 && ci[1] <= 0.02
        ? 'WITHIN the 2% bound'
        : Math.abs(median(dIops)) > 0.02 && (ci[1] < -0.02 || ci[0] > 0.02)
          ? 'OUTSIDE the 2% bound'
          : 'NOT RESOLVED at this noise (idle machine, more rounds, --control 1)';
    console.log(
      `RESULT${control ? ' (control: B did not scrape)' : ''}: scraping every second moved 4K QD32 IOPS by ` +
        `${pct(median(dIops))} (median of ${pairs.length} paired rounds, ${ciText}; rounds ` +
        `${pct(Math.min(...dIops))} .. ${pct(Math.max(...dIops))}) and the target's CPU per I/O by ` +
        `${pct(median(dCpu))} (${pct(Math.min(...dCpu))} .. ${pct(Math.max(...dCpu))}; ${median(dUs).toFixed(2)} ` +
        `µs/IO, about ${perScrape.toFixed(1)} ms per scrape at ${ma.toFixed(0)} IOPS): ${verdict}.`,
    );
  }
  for (const k of costs) {
    const displaced = k.procUs / cpuIo;
    console.log(
      `${k.sessions} sessions: a scrape costs ${(k.procUs / 1000).toFixed(2)} ms CPU = ${displaced.toFixed(0)} ` +
        `reads at ${cpuIo.toFixed(1)} µs CPU each; scraping every second at ${ma.toFixed(0)} IOPS takes ` +
        `${((displaced / ma) * 100).toFixed(2)}% of the I/O capacity`,
    );
  }
}

/** Log every open session out and check that their series are gone. */
async function logoutAll(c: Child, open: TestInitiator[]): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < open.length; i += 64)
    await Promise.all(
      open.slice(i, i + 64).map(async (s) => {
        await s.logout();
        s.close();
      }),
    );
  let left = -1;
  for (let i = 0; i < 200 && left !== 0; i++) {
    left = sessionSeries((await scrape(c.metricsPort)).body);
    if (left) await sleep(50);
  }
  console.log(
    `all ${open.length} logged out in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${left} session series left`,
  );
  open.length = 0;
}

async function main(): Promise<void> {
  const rounds = arg('rounds', 6);
  const seconds = arg('seconds', 5);
  const sessions = arg('sessions', 1000);
  const scrapes = arg('scrapes', 20);
  const ab = arg('ab', 1) !== 0;
  const aa = arg('control', 0) !== 0;
  // --ab-open 1: the sessions of step 1 stay open (idle) through the A/B, so each scrape carries their series.
  const abOpen = arg('ab-open', 0) !== 0;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-metrics-cost-'));
  const clock = await new CpuClock().open();
  const scraper = await Scraper.start();
  const pi = process.argv.indexOf('--profile');
  const profile = pi > 0 ? path.resolve(process.argv[pi + 1]) : undefined;
  const c = await startTarget(sessions, dir, profile);
  const pid = c.proc.pid!;
  const open: TestInitiator[] = [];
  console.log(
    `${new Date().toISOString()} ${os.cpus().length} CPUs, load ${load()}; CPU clock: ${clock.method}`,
  );
  try {
    // 1. Scrape time and CPU by sessions open.
    const costs: ScrapeCost[] = [];
    for (const n of [0, Math.floor(sessions / 2), sessions]) {
      const t0 = performance.now();
      await openSessions(c.port, open, n);
      const opened = ((performance.now() - t0) / 1000).toFixed(1);
      const k = await scrapeCost(c, clock, n, scrapes);
      costs.push(k);
      console.log(
        `${n} sessions open (opened in ${opened} s, load ${load()}): ${scrapes} scrapes, median ${k.medianMs.toFixed(1)} ms, ` +
          `max ${k.maxMs.toFixed(1)} ms; ${k.series} series (${n * PER_SESSION} of sessions); target CPU per scrape ` +
          `${(k.procUs / 1000).toFixed(2)} ms (portal thread ${(k.portalUs / 1000).toFixed(2)} ms)`,
      );
    }
    if (!abOpen) await logoutAll(c, open);

    // 2 and 3. CPU per I/O and the A/B.
    const ini = await TestInitiator.connect(c.port);
    await ini.login({ targetName: IQN });
    // Warm-up; the thread that served it is the worker that owns the session.
    const w0 = threadRunTime(pid);
    await iops(ini, 1, 32);
    const worker = busiest(w0, threadRunTime(pid), pid);
    const phases: Phase[] = [];
    for (let r = 0; r < rounds; r++) {
      // A then B in odd rounds, B then A in even ones: a drift of the machine during a round (load arriving,
      // heaps growing) then weighs on both sides instead of always on the second.
      const order = !ab ? [false] : r % 2 === 0 ? [false, true] : [true, false];
      const line: string[] = [];
      for (const scraping of order) {
        const p = await phase(ini, c, scraper, clock, worker, seconds, scraping, ab && aa);
        phases.push(p);
        line.push(
          `${p.scraping ? 'B' : 'A'} ${p.iops.toFixed(0)} IOPS, ${p.cpuPerIo.toFixed(1)} µs/IO ` +
            `(load ${p.load}${p.scrapes ? `, ${p.scrapes} scrapes` : ''})`,
        );
      }
      console.log(`round ${r + 1}: ${line.join('; ')}`);
    }
    await ini.logout();
    ini.close();
    if (abOpen) await logoutAll(c, open);
    if (rounds > 0) report(phases, costs, ab, aa, seconds);
  } finally {
    for (const s of open) s.close();
    await c.stop();
    scraper.stop();
    clock.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exitCode = 1;
});
