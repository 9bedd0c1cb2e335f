/**
 * The portal thread: listens, reads each connection's first Login PDU, and hands the socket (a duplicated
 * descriptor plus the bytes already read) to the piscina worker that owns the session, or the least loaded.
 */
import { logReady, readyReport } from './ready';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Piscina } from 'piscina';
import type { Config, PortalConfig } from '../config/schema';
import { createSessionLimitShared } from '../worker/session-limits';
import {
  createCounterShared,
  CounterRow,
  readCounters,
  releaseRow,
  type CounterShared,
} from '../metrics/counters';
import { log, logSettings, setLogFormat, setLogLevel } from '../util/log';
import { dup } from '../native';
import { socketFd } from '../util/socket-fd';
import { Shutdown, type ShutdownReport } from './shutdown';
import { TuningMonitor, TUNING_REFRESH_MS } from '../tuning/monitor';
import { startControlServer } from './control';
import type { AdminResult, AdminTask } from '../admin/protocol';
import { ConfigApplier, type ApplyOptions, type ApplyReport } from './apply';
import type { ConfigSource } from '../config/source';
import { allocateLuShared, luInFlight, releaseLane, type LuSharedMemory } from '../scsi/lu-shared';
import { loadPrState, seedPr } from '../scsi/pr-aptpl';
import { logAtomicRecovery, recoverAtomicJournals } from '../backstore/atomic-journal';
import { rbdLuns, recoverRbdAtomicJournals } from '../backstore/rbd-atomic';
import { soleWriter } from '../config/alua';
import { loginRefusal, readFirstLogin, type FirstLogin } from './first-login';
import { Admission, FdReserve, isFdExhaustion, openFileLimit } from './admission';
import { createAdmissionShared, type Ticket } from '../worker/pending-logins';
import { LoginStatus } from '../pdu/opcodes';
import { randomUUID } from 'node:crypto';
import { AuthFailureLimiter } from './auth-limit';
import { createRoutingShared, TsihTable, type RoutingShared } from '../worker/routing';
import { prepareBackingFiles } from '../backstore/prepare';
import { GAUGES, startMetricsServer } from '../metrics/http';
import { Exposition, type MetricsSource } from '../metrics/exposition';
import { sampleEventLoop } from '../metrics/runtime';
import {
  authFailureChannel,
  FD_PORTAL,
  FD_UNCLAIMED,
  type ConfigResult,
  type ConfigTask,
  type ConnectionTask,
  type RouteHint,
  type ShutdownResult,
  type ShutdownTask,
  type TestKillTask,
  type WorkerInit,
  type WorkerTask,
} from '../worker/task';

/**
 * piscina 5 exports the types of its load balancer only from a private path (piscina/dist/worker_pool), not
 * from its main entry: they are derived here from the public constructor options instead, so that a
 * reshuffle of its files cannot break the build.
 */
type LoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;
type PoolWorker = Parameters<LoadBalancer>[1][number];

/** Descriptors held back for when the process runs out (see FdReserve). */
const FD_RESERVE = 4;

export interface RunningTarget {
  /**
   * The running configuration, normalized, as live changes left it (a copy: build the next one from it and
   * hand that to applyConfig).
   */
  readonly config: Config;
  readonly addresses: net.AddressInfo[];
  readonly counters: CounterShared;
  /** Port of the Prometheus endpoint (0 when disabled). */
  readonly metricsPort: number;
  /** The exposition /metrics would serve now (also without a metrics endpoint: tests, `nodetgt show`). */
  metrics(accept?: string): Promise<{ contentType: string; body: string }>;
  /** Connections currently served, per worker threadId. */
  connectionsPerWorker(): Map<number, number>;
  workerThreadIds(): number[];
  /** TSIHs held by a worker thread (0 once a dead worker's have been released). */
  tsihsOwnedBy(threadId: number): number;
  /** Connections admitted and not ended, and those of them still logging in. */
  admitted(): { total: number; pending: number };
  /**
   * Test only: make a worker fail from inside (see TestKillTask). Does nothing unless the workers were
   * started with NODETGT_TEST_HOOKS=1.
   */
  killWorkerForTest(threadId: number, how: TestKillTask['how']): void;
  /**
   * Apply a configuration (SIGHUP, the live administration commands): targets and LUNs added, removed, resized
   * or changed, ACLs, aliases and CHAP accounts, on every worker, without dropping unrelated sessions. The rest
   * is reported as needing a restart and not applied. Changes run one at a time (src/portal/apply.ts).
   */
  applyConfig(next: Config, opts?: ApplyOptions): Promise<ApplyReport>;
  /**
   * Graceful shutdown (src/portal/shutdown.ts): stop accepting, ask every session to log out within
   * `timeoutSeconds` (default: config.shutdownTimeout), drain, close what is left, flush every backstore.
   * Calling it again returns the same shutdown.
   */
  shutdown(timeoutSeconds?: number): Promise<ShutdownReport>;
  /** Cut a shutdown short (a second signal): close at once, still flushing; starts one if none runs. */
  shutdownNow(): Promise<ShutdownReport>;
  /** Stop at once, without telling the sessions or flushing (tests; the process is not ending). */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Where the configuration came from, for the control socket's changes (none: they are refused). */
  source?: ConfigSource;
}

function workerCount(config: Config): number {
  return config.workers > 0 ? config.workers : Math.max(1, os.availableParallelism());
}

function listen(server: net.Server, p: PortalConfig): Promise<net.AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') reject(new Error(`portal ${p.host}:${p.port}: address already in use`));
      else if (e.code === 'EACCES') reject(new Error(`portal ${p.host}:${p.port}: permission denied`));
      else if (e.code === 'EADDRNOTAVAIL')
        reject(new Error(`portal ${p.host}:${p.port}: no such local address`));
      else reject(e);
    };
    server.once('error', onError);
    server.listen({ host: p.host, port: p.port, backlog: 1024 }, () => {
      server.off('error', onError);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

export async function startTarget(config: Config, opts: StartOptions = {}): Promise<RunningTarget> {
  setLogLevel(config.logLevel);
  setLogFormat(config.logFormat);
  for (const r of await prepareBackingFiles(config)) {
    if (r.state === 'offline') log.error('LU offline', { target: r.target, lun: r.lun, reason: r.reason });
    else if (r.state !== 'ready')
      log.info(`LU ${r.state}`, { target: r.target, lun: r.lun, serial: r.serial });
  }
  // Persistent reservations kept through power loss (APTPL), read before any worker can serve the LU.
  const prState = loadPrState(config);
  for (const r of prState)
    if (r.error !== undefined) log.error('LU offline', { target: r.target, lun: r.lun, reason: r.error });
    else if (r.doc !== null)
      log.info('persistent reservations restored', {
        target: r.target,
        lun: r.lun,
        registrations: r.doc.registrations.length,
        reserved: r.doc.reservation !== null,
      });
  // WRITE ATOMIC journals: a write cut short by a crash is completed or discarded before any worker serves.
  logAtomicRecovery(recoverAtomicJournals(config));
  // The same for RBD LUs, whose journals are in the cluster; one that cannot be brought to rest is not served.
  for (const r of await recoverRbdAtomicJournals(config, { offlineOnError: true }))
    if (r.error !== undefined) log.error('LU offline', { target: r.target, lun: r.lun, reason: r.error });
    else logAtomicRecovery([r]);
  const counters = createCounterShared();
  const portalRow = new CounterRow(counters, 0);
  const stopSampling = sampleEventLoop(counters.runtime, 0);
  const routing: RoutingShared = createRoutingShared();
  const tsihs = new TsihTable(routing);
  const threads = workerCount(config);
  // (InitiatorName, ISID) -> worker threadId, so reinstatement lands where the old session lives.
  const affinity = new Map<string, { threadId: number; conns: number }>();
  const connsPerWorker = new Map<number, number>();
  const admissionShared = createAdmissionShared(config.limits);
  // One shared state per LU, by slot, for every worker (src/scsi/lu-shared.ts).
  const lus: Array<LuSharedMemory | undefined> = [];
  for (const t of config.targets) for (const l of t.luns) lus[l.slot] = allocateLuShared();
  for (const r of prState) if (r.doc !== null) seedPr(lus[r.slot]!, r.doc);
  const authChannel = randomUUID();
  const sessionLimits = createSessionLimitShared();
  const init: WorkerInit = {
    config,
    counters,
    routing,
    admission: admissionShared,
    lus,
    authChannel,
    sessionLimits,
    log: logSettings(),
  };

  const balancer: LoadBalancer = (task, workers) => {
    // queueOptionsSymbol is typed as a plain symbol: the task's own key type cannot be named from outside.
    const hint = (task as unknown as Record<symbol, unknown>)[Piscina.queueOptionsSymbol] as RouteHint | null;
    let chosen: PoolWorker | null = null;
    if (hint && hint.threadId) {
      chosen = workers.find((w) => w.id === hint.threadId && !w.terminating && !w.destroyed) ?? null;
    }
    if (!chosen) {
      // Least loaded by connections: piscina's currentUsage also counts control, reload and tuning tasks in
      // flight, which would send a new session away from a worker that is only answering one of those.
      const conns = (w: PoolWorker) => connsPerWorker.get(w.id) ?? 0;
      for (const w of workers) {
        if (w.terminating || w.destroyed) continue;
        if (chosen === null || conns(w) < conns(chosen)) chosen = w;
      }
    }
    if (chosen && hint) {
      hint.chosen = chosen.id;
      if (hint.connection === false) return chosen;
      connsPerWorker.set(chosen.id, (connsPerWorker.get(chosen.id) ?? 0) + 1);
      if (hint.key) {
        const a = affinity.get(hint.key);
        if (a) a.conns++;
        else affinity.set(hint.key, { threadId: chosen.id, conns: 1 });
      }
    }
    return chosen;
  };

  let pool: Piscina | null = null;
  let closing = false;

  const servers: net.Server[] = [];
  const addresses: net.AddressInfo[] = [];
  const limits = config.limits;
  const admission = new Admission(limits, admissionShared);
  const reserve = new FdReserve(FD_RESERVE);
  const fdLimit = openFileLimit();

  /** Out of descriptors: give one back from the reserve so the process can go on, and count it. */
  const fdExhausted = (where: string, peer: string, e: unknown) => {
    reserve.release();
    portalRow.inc('fdExhausted');
    log.warn('out of file descriptors: connection refused', {
      where,
      peer,
      error: (e as Error).message,
      reserve: reserve.held,
    });
  };

  // Connection tasks not finished yet, and who waits for there to be none (a shutdown).
  let liveConnections = 0;
  let idleWaiters: Array<() => void> = [];
  const idle = () =>
    liveConnections === 0 ? Promise.resolve() : new Promise<void>((r) => idleWaiters.push(r));

  /** The task failed: its descriptor is the portal's to close, unless the worker claimed it first. */
  const takeBackFd = (task: WorkerTask) => {
    if (task.kind !== 'connection') return;
    if (Atomics.compareExchange(task.fdClaim, 0, FD_UNCLAIMED, FD_PORTAL) !== FD_UNCLAIMED) return;
    try {
      fs.closeSync(task.fd);
    } catch (e) {
      log.error('cannot close a descriptor taken back from a failed hand-over', {
        error: (e as Error).message,
      });
    }
  };

  const runTask = (task: WorkerTask, hint: RouteHint, ticket: Ticket | null) => {
    (task as unknown as Record<symbol, unknown>)[Piscina.queueOptionsSymbol] = hint;
    const isConnection = task.kind === 'connection';
    if (isConnection) liveConnections++;
    const finished = () => {
      if (isConnection && --liveConnections === 0) {
        for (const w of idleWaiters) w();
        idleWaiters = [];
      }
      if (ticket) admission.end(ticket);
      reserve.refill();
      const n = (connsPerWorker.get(hint.chosen) ?? 1) - 1;
      if (n <= 0) connsPerWorker.delete(hint.chosen);
      else connsPerWorker.set(hint.chosen, n);
      if (hint.key) {
        const a = affinity.get(hint.key);
        if (a && --a.conns <= 0) affinity.delete(hint.key);
      }
    };
    const failed = (err: Error) => {
      takeBackFd(task);
      finished();
      if (!closing) log.error('connection task failed', { error: err.message });
    };
    try {
      pool!.run(task).then(finished, failed);
    } catch (e) {
      failed(e as Error);
    }
  };

  // Authentication failures reported by the workers, counted per source address (src/portal/auth-limit.ts).
  const limiter = AuthFailureLimiter.fromLimits(limits);
  const authFailures = authFailureChannel(authChannel);
  const updateBlockedGauge = () =>
    portalRow.inc('authBlockedAddresses', limiter.blockedCount() - portalRow.get('authBlockedAddresses'));
  authFailures.onmessage = (ev) => {
    const address = (ev as MessageEvent).data as string;
    if (limiter.failed(address))
      log.warn('too many authentication failures: logins from this address are refused for a while', {
        address,
        failures: limits.authFailuresPerAddress,
        seconds: limits.authBlockTime,
      });
    updateBlockedGauge();
  };
  const gaugeTimer = setInterval(updateBlockedGauge, 1000);
  gaugeTimer.unref();

  const handOver = (socket: net.Socket, first: FirstLogin, ticket: Ticket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    if (limiter.blocked(socket.remoteAddress ?? '')) {
      // Refused unheard (the log line was written when the address was blocked): the count shows the rest.
      admission.end(ticket);
      portalRow.inc('tgtLoginRateLimited');
      socket.end(loginRefusal(first.bytes, LoginStatus.AuthenticationFailure));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    const fd = socketFd(socket);
    if (fd < 0) {
      admission.end(ticket);
      socket.destroy();
      return;
    }
    // Everything that could throw comes before the dup: from it to runTask, the duplicate must not leak.
    let threadId = first.tsih ? tsihs.owner(first.tsih) : 0;
    const key = first.initiatorName ? `${first.initiatorName}\0${first.isid}` : null;
    if (!threadId && key) threadId = affinity.get(key)?.threadId ?? 0;
    const fdClaim = new Int32Array(new SharedArrayBuffer(4));
    let workerFd: number;
    try {
      workerFd = dup(fd);
    } catch (e) {
      admission.end(ticket);
      if (!isFdExhaustion(e)) throw e;
      fdExhausted('dup', peer, e);
      // The socket is open already: the initiator hears why before it closes.
      socket.end(loginRefusal(first.bytes, LoginStatus.OutOfResources));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    const task: ConnectionTask = {
      kind: 'connection',
      fd: workerFd,
      fdClaim,
      initial: first.bytes,
      remoteAddress: socket.remoteAddress ?? '',
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      ticket,
      loginDeadline: first.acceptedAt + limits.loginTimeout * 1000,
    };
    socket.destroy();
    runTask(task, { threadId, key, chosen: 0 }, ticket);
  };

  /** Connections whose first Login PDU the portal is still reading. */
  const portalLogins = new Set<net.Socket>();

  const refuse = (socket: net.Socket, reason: string) => {
    portalRow.inc('cxnRefused');
    log.warn('connection refused', { peer: `${socket.remoteAddress}:${socket.remotePort}`, reason });
    socket.destroy();
  };

  const onConnection = (socket: net.Socket) => {
    portalRow.inc('cxnAccepted');
    socket.on('error', () => undefined);
    if (!pool || closing) {
      socket.destroy();
      return;
    }
    reserve.refill();
    const fd = socketFd(socket);
    // Descriptors are handed out lowest first: a socket this high means fewer than fdHeadroom are left.
    if (fd >= fdLimit - limits.fdHeadroom) {
      refuse(socket, 'file descriptors low');
      return;
    }
    const ticket = admission.admit(socket.remoteAddress ?? '');
    if (typeof ticket === 'string') {
      refuse(socket, ticket);
      return;
    }
    portalLogins.add(socket);
    readFirstLogin(socket, limits.loginTimeout * 1000).then(
      (first) => {
        portalLogins.delete(socket);
        if (closing) {
          admission.end(ticket);
          socket.destroy();
          return;
        }
        try {
          handOver(socket, first, ticket);
        } catch (e) {
          log.error('hand-over failed', { error: (e as Error).stack ?? String(e) });
          socket.destroy();
        }
      },
      (err: Error) => {
        portalLogins.delete(socket);
        admission.end(ticket);
        if (closing) return; // closed by a shutdown (stopAccepting), not the initiator's doing
        portalRow.inc('instSsnFormatErrors');
        log.warn('dropping connection before login', {
          peer: `${socket.remoteAddress}:${socket.remotePort}`,
          reason: err.message,
        });
        socket.destroy();
      },
    );
  };

  /** accept() failed; libuv already closed what it could not take (its own reserved descriptor). */
  const onServerError = (e: NodeJS.ErrnoException) => {
    if (isFdExhaustion(e)) fdExhausted('accept', '', e);
    else log.error('portal error', { error: e.message });
  };

  try {
    for (const p of config.portals) {
      const server = net.createServer({ noDelay: true }, onConnection);
      servers.push(server);
      addresses.push(await listen(server, p));
      server.on('error', onServerError);
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  // Host and path checks (nodetgt tune) for the start-up warning and the nodetgt_tuning_check gauge.
  const tuning = new TuningMonitor(
    () => config.portals.map((p) => p.host),
    async () =>
      (await askWorkers({ kind: 'admin', op: 'sessions' })).flatMap((r: AdminResult) => r.sessions ?? []),
  );
  const metricsSource: MetricsSource = {
    counters,
    config: () => config,
    lus,
    inFlight: (slot) => (lus[slot] ? luInFlight(lus[slot]) : 0),
    tuning: () => tuning.series(),
  };
  const metricsServer = config.metrics
    ? await startMetricsServer(metricsSource, config.metrics.host, config.metrics.port).catch((e: Error) => {
        for (const s of servers) s.close();
        // Nothing started so far may keep the process (or a test) alive after a failed start.
        clearInterval(gaugeTimer);
        stopSampling();
        authFailures.close();
        reserve.close();
        throw e;
      })
    : null;
  if (metricsServer)
    log.info('metrics listening', { address: `${config.metrics!.host}:${metricsServer.port}` });
  // Ports chosen by the kernel (port 0) are what SendTargets must announce.
  config.portals.forEach((p, i) => (p.port = addresses[i].port));
  pool = new Piscina({
    filename: path.join(__dirname, '..', 'worker', 'worker.js'),
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 2 ** 31 - 1,
    concurrentTasksPerWorker: 1 << 16,
    // Never 'sync' (piscina's default): a worker whose last task (connection) has returned would block in
    // Atomics.wait() until the next one, freezing the I/O completions, timers and shared-LU work still in
    // flight on it (test/idle-worker.test.ts). Tasks here are few and long-lived; messages cost nothing.
    atomics: 'disabled',
    workerData: init,
    loadBalancer: balancer as unknown as NonNullable<
      ConstructorParameters<typeof Piscina>[0]
    >['loadBalancer'],
  });

  // piscina replaces a worker that dies (worker_pool onError -> _ensureMinimumWorkers) and fails its tasks,
  // which ends their tickets and connection counts above. What piscina cannot know is ours to give back:
  // the dead thread's TSIHs and its counter row, once the thread has really stopped writing them.
  const watchWorker = (threadId: number) => {
    const w = pool!.threads.find((t) => t.threadId === threadId);
    if (!w) return;
    w.once('error', (e: Error) =>
      log.error('worker thread failed', { threadId, error: e.stack ?? e.message }),
    );
    w.once('exit', (code: number) => {
      if (closing) return;
      portalRow.inc('workerDeaths');
      const freed = tsihs.releaseOwner(threadId);
      // Its lane (counter row) in every LU's shared state first: the row may be reused once released.
      const lane = new Int32Array(counters.claims).indexOf(threadId);
      // The dead lane still holds the ranges of its atomic writes: finish or discard them before releasing it.
      if (lane > 0) logAtomicRecovery(recoverAtomicJournals(config, lane));
      const release = () => {
        if (lane > 0) for (const m of lus) if (m) releaseLane(m, lane);
        const row = releaseRow(counters, threadId, portalRow, GAUGES);
        for (const [k, a] of affinity) if (a.threadId === threadId) affinity.delete(k);
        reserve.refill();
        log.error('worker thread exited: its sessions are closed and a new worker takes its place', {
          threadId,
          code,
          tsihsReleased: freed,
          counterRow: row,
        });
      };
      // RBD LUs keep that lane's records in the cluster: replaying them waits for it, the lane meanwhile held.
      if (lane > 0 && config.targets.some((t) => soleWriter(t.alua) && rbdLuns(t).length > 0))
        void recoverRbdAtomicJournals(config, { lane })
          .then(logAtomicRecovery, (e: Error) =>
            log.error('WRITE ATOMIC journal replay (cluster) failed', { lane, error: e.message }),
          )
          .finally(release);
      else release();
    });
  };
  pool.on('workerCreate', (w: PoolWorker) => watchWorker(w.id));
  // A worker error with no task to fail comes here; without a listener it would end the process.
  pool.on('error', (e: Error) => log.error('worker pool error', { error: e.message }));

  // The control socket: requests about sessions go to every worker (each knows only its own) and are merged.
  const askWorkers = async <T extends AdminTask | ConfigTask | ShutdownTask>(
    task: T,
  ): Promise<
    Array<T extends AdminTask ? AdminResult : T extends ConfigTask ? ConfigResult : ShutdownResult>
  > => {
    type R = T extends AdminTask ? AdminResult : T extends ConfigTask ? ConfigResult : ShutdownResult;
    const answers = await Promise.all(
      pool!.threads.map((w) => {
        const hint: RouteHint = { threadId: w.threadId, key: null, chosen: 0, connection: false };
        const copy = { ...task } as T & Record<symbol, unknown>;
        copy[Piscina.queueOptionsSymbol] = hint;
        return pool!.run(copy) as Promise<R>;
      }),
    );
    // A worker that was gone by then had its task run by another: keep one answer per worker.
    const seen = new Set<number>();
    return answers.filter((a) => !seen.has(a.worker) && seen.add(a.worker));
  };
  const applier = new ConfigApplier({ config, lus, counters, broadcast: (task) => askWorkers(task) });
  const applyConfig = (next: Config, opts?: ApplyOptions) => applier.apply(next, opts);
  let control: net.Server | null = null;
  if (config.controlSocket) {
    try {
      control = await startControlServer(config.controlSocket, {
        config: () => config,
        askWorkers,
        applyConfig,
        source: opts.source,
        count: (what) => portalRow.inc(what),
      });
      log.info('control socket listening', { path: config.controlSocket });
    } catch (e) {
      // The target serves without it: sessions matter more than the administration channel.
      log.error('control socket not available', { path: config.controlSocket, error: (e as Error).message });
    }
  }

  for (const a of addresses)
    log.info('portal listening', { address: `${a.address}:${a.port}`, workers: threads });
  // Once every worker has opened its LUs (a task to each runs after its start-up): what is served where.
  void askWorkers({ kind: 'admin', op: 'luns' }).then(
    (answers) => logReady(readyReport(config, answers)),
    (e: Error) => closing || log.error('worker pool did not start', { error: e.message }),
  );
  void tuning.start(metricsServer ? TUNING_REFRESH_MS : undefined);

  /** Listeners closed (without waiting for their connections), connections still in their first PDU closed. */
  const stopAccepting = () => {
    closing = true;
    for (const s of servers) s.close();
    const n = portalLogins.size;
    for (const s of portalLogins) s.destroy();
    return n;
  };
  let released: Promise<void> | null = null;
  const release = () => (released ??= releaseOnce());
  const releaseOnce = async () => {
    stopAccepting();
    clearInterval(gaugeTimer);
    stopSampling();
    tuning.stop();
    authFailures.close();
    reserve.close();
    metricsServer?.server.close();
    control?.close();
    await pool!.destroy();
  };
  let shutdown: Shutdown | null = null;
  const startShutdown = (timeoutSeconds: number) =>
    (shutdown ??= new Shutdown({ stopAccepting, askWorkers, idle, release }, timeoutSeconds));

  return {
    get config() {
      return structuredClone(config);
    },
    addresses,
    counters,
    metricsPort: metricsServer?.port ?? 0,
    metrics: (accept) => (metricsServer?.exposition ?? new Exposition(metricsSource)).render(accept),
    connectionsPerWorker: () => new Map(connsPerWorker),
    workerThreadIds: () => pool!.threads.map((t) => t.threadId),
    tsihsOwnedBy: (threadId) => tsihs.ownedBy(threadId),
    admitted: () => ({ total: admission.total, pending: admission.pendingCount() }),
    applyConfig,
    killWorkerForTest(threadId, how) {
      runTask({ kind: 'test-kill', how }, { threadId, key: null, chosen: 0 }, null);
    },
    shutdown: (timeoutSeconds = config.shutdownTimeout) => startShutdown(timeoutSeconds).done,
    shutdownNow() {
      const s = startShutdown(0);
      s.now();
      return s.done;
    },
    close: release,
  };
}

export { readCounters };
