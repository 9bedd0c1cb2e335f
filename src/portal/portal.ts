/**
 * The portal thread: listens, reads each connection's first Login PDU, and hands the socket (a duplicated
 * descriptor plus the bytes already read) to the piscina worker that owns the session, or the least loaded.
 */
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Piscina } from 'piscina';
import type { PiscinaWorker } from 'piscina/dist/worker_pool';
import type { Config, PortalConfig } from '../config/schema';
import { createCounterShared, CounterRow, readCounters, type CounterShared } from '../metrics/counters';
import { log } from '../util/log';
import { dup } from '../native';
import { readFirstLogin } from './first-login';
import { createRoutingShared, TsihTable, type RoutingShared } from './routing';
import { prepareBackingFiles } from '../backstore/prepare';
import { startMetricsServer } from '../metrics/http';
import type { ConnectionTask, RouteHint, WorkerInit } from '../worker/task';

const FIRST_LOGIN_TIMEOUT_MS = 15000;

export interface RunningTarget {
  readonly config: Config;
  readonly addresses: net.AddressInfo[];
  readonly counters: CounterShared;
  /** Port of the Prometheus endpoint (0 when disabled). */
  readonly metricsPort: number;
  /** Connections currently served, per worker threadId. */
  connectionsPerWorker(): Map<number, number>;
  workerThreadIds(): number[];
  close(): Promise<void>;
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

export async function startTarget(config: Config): Promise<RunningTarget> {
  for (const r of await prepareBackingFiles(config)) {
    if (r.state === 'offline') log.error('LU offline', { target: r.target, lun: r.lun, reason: r.reason });
    else if (r.state !== 'ready')
      log.info(`LU ${r.state}`, { target: r.target, lun: r.lun, serial: r.serial });
  }
  const counters = createCounterShared();
  const portalRow = new CounterRow(counters, 0);
  const routing: RoutingShared = createRoutingShared();
  const tsihs = new TsihTable(routing);
  const threads = workerCount(config);
  // (InitiatorName, ISID) -> worker threadId, so reinstatement lands where the old session lives.
  const affinity = new Map<string, { threadId: number; conns: number }>();
  const connsPerWorker = new Map<number, number>();
  const init: WorkerInit = { config, counters, routing };

  const balancer = (task: { [k: symbol]: unknown }, workers: PiscinaWorker[]): PiscinaWorker | null => {
    const hint = task[Piscina.queueOptionsSymbol] as RouteHint | null;
    let chosen: PiscinaWorker | null = null;
    if (hint && hint.threadId) {
      chosen = workers.find((w) => w.id === hint.threadId && !w.terminating && !w.destroyed) ?? null;
    }
    if (!chosen) {
      for (const w of workers) {
        if (w.terminating || w.destroyed) continue;
        if (chosen === null || w.currentUsage < chosen.currentUsage) chosen = w;
      }
    }
    if (chosen && hint) {
      hint.chosen = chosen.id;
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
  const onConnection = (socket: net.Socket) => {
    portalRow.inc('cxnAccepted');
    socket.on('error', () => undefined);
    if (!pool) {
      socket.destroy();
      return;
    }
    readFirstLogin(socket, FIRST_LOGIN_TIMEOUT_MS).then(
      (first) => {
        const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
        if (typeof fd !== 'number' || fd < 0) {
          socket.destroy();
          return;
        }
        const workerFd = dup(fd);
        const task: ConnectionTask = {
          kind: 'connection',
          fd: workerFd,
          initial: first.bytes,
          remoteAddress: socket.remoteAddress ?? '',
          remotePort: socket.remotePort ?? 0,
          localAddress: socket.localAddress ?? '',
          localPort: socket.localPort ?? 0,
        };
        socket.destroy();
        let threadId = first.tsih ? tsihs.owner(first.tsih) : 0;
        const key = first.initiatorName ? `${first.initiatorName}\0${first.isid}` : null;
        if (!threadId && key) threadId = affinity.get(key)?.threadId ?? 0;
        const hint: RouteHint = { threadId, key, chosen: 0 };
        (task as unknown as Record<symbol, unknown>)[Piscina.queueOptionsSymbol] = hint;
        const finished = () => {
          const n = (connsPerWorker.get(hint.chosen) ?? 1) - 1;
          if (n <= 0) connsPerWorker.delete(hint.chosen);
          else connsPerWorker.set(hint.chosen, n);
          if (key) {
            const a = affinity.get(key);
            if (a && --a.conns <= 0) affinity.delete(key);
          }
        };
        pool!.run(task).then(finished, (err: Error) => {
          finished();
          if (!closing) log.error('connection task failed', { error: err.message });
        });
      },
      (err: Error) => {
        portalRow.inc('instSsnFormatErrors');
        log.warn('dropping connection before login', {
          peer: `${socket.remoteAddress}:${socket.remotePort}`,
          reason: err.message,
        });
        socket.destroy();
      },
    );
  };

  try {
    for (const p of config.portals) {
      const server = net.createServer({ noDelay: true }, onConnection);
      servers.push(server);
      addresses.push(await listen(server, p));
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  const metricsServer = config.metrics
    ? await startMetricsServer(counters, config, config.metrics.host, config.metrics.port).catch(
        (e: Error) => {
          for (const s of servers) s.close();
          throw e;
        },
      )
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
    workerData: init,
    loadBalancer: balancer as unknown as NonNullable<
      ConstructorParameters<typeof Piscina>[0]
    >['loadBalancer'],
  });

  for (const a of addresses)
    log.info('portal listening', { address: `${a.address}:${a.port}`, workers: threads });

  return {
    config,
    addresses,
    counters,
    metricsPort: metricsServer?.port ?? 0,
    connectionsPerWorker: () => new Map(connsPerWorker),
    workerThreadIds: () => pool!.threads.map((t) => t.threadId),
    async close() {
      closing = true;
      metricsServer?.server.close();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      await pool!.destroy();
    },
  };
}

export { readCounters };
