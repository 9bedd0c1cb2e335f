/**
 * The piscina worker: one task per connection, served until the connection ends. Sessions, LUN descriptors
 * and the io_uring ring belong to this thread.
 */
import { idlePoll } from '../native';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { threadId } from 'node:worker_threads';
import { workerData } from 'piscina';
import { claimRow, COUNTER_INDEX } from '../metrics/counters';
import { sampleEventLoop } from '../metrics/runtime';
import { TsihTable } from './routing';
import { Connection } from '../session/connection';
import { adoptLogSettings, log } from '../util/log';
import { WorkerContext } from './context';
import {
  authFailureChannel,
  FD_UNCLAIMED,
  FD_WORKER,
  type ConfigResult,
  type ConnectionTask,
  type ShutdownResult,
  type TestKillTask,
  type WorkerInit,
  type WorkerTask,
} from './task';
import { WorkerShutdown } from './shutdown';
import { TargetRegistry } from './targets';
import { endPendingLogin } from './pending-logins';
import { PartialPduWatch } from './partial-pdu';
import { adminRequest } from './admin';
import type { AdminResult } from '../admin/protocol';
import { applyConfigTask } from './live';
import { SlabReader } from '../util/slab-pool';

type TaskResult = number | AdminResult | ConfigResult | ShutdownResult;

/**
 * Take the task's descriptor for this worker (see ConnectionTask.fdClaim): false when the portal took it back
 * first (it closes it). Once this returns true every path here must close it, exactly once.
 */
function claimFd(task: ConnectionTask): boolean {
  return Atomics.compareExchange(task.fdClaim, 0, FD_UNCLAIMED, FD_WORKER) === FD_UNCLAIMED;
}

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch (e) {
    log.error('cannot close a handed-over descriptor', { fd, error: (e as Error).message });
  }
}

async function init(): Promise<(task: WorkerTask) => Promise<TaskResult>> {
  const data = workerData as WorkerInit;
  if (data.log) adoptLogSettings(data.log);
  const row = claimRow(data.counters, threadId);
  idlePoll(data.config.idlePoll, {
    array: row.v,
    commands: COUNTER_INDEX.scsiCommands,
    queued: COUNTER_INDEX.backstoreQueuedBytes,
  });
  sampleEventLoop(data.counters.runtime, row.row);
  // The counter row is also this thread's lane in every LU's shared state.
  const targets = new TargetRegistry(data.config, data.counters, { memory: data.lus, lane: row.row });
  await targets.openAll();
  const ctx = new WorkerContext(
    data.config,
    targets,
    new TsihTable(data.routing),
    row,
    threadId,
    data.sessionLimits,
  );
  // An LU opened on a later try: the sessions already here are its nexuses too, and see it in their views.
  targets.onLuOnline = (node, lu) => {
    for (const s of ctx.sessions.all()) if (s.target === node && !s.ended) lu.noteNexus(s.nexus);
    ctx.refreshLunViews([node.name]);
  };
  const authFailures = authFailureChannel(data.authChannel);
  authFailures.unref();
  ctx.onAuthFailure = (address) => authFailures.postMessage(address);
  const partial = new PartialPduWatch(data.config.limits.partialPduTimeout * 1000, ctx.counters);
  const shutdown = new WorkerShutdown(ctx);
  return async (task: WorkerTask): Promise<TaskResult> => {
    if (task.kind === 'admin') return adminRequest(ctx, task);
    if (task.kind === 'shutdown') return shutdown.run(task);
    if (task.kind === 'config') return applyConfigTask(ctx, task);
    if (task.kind === 'test-kill') {
      testKill(task);
      return threadId;
    }
    if (task.kind !== 'connection') return threadId;
    if (!claimFd(task)) return threadId;
    if (shutdown.started) {
      // Handed over just before the listeners closed: the target is going, this login would not last.
      closeFd(task.fd);
      return threadId;
    }
    let socket: net.Socket;
    // The parser is created with the connection, after the socket: the reader asks through `conn`.
    let conn: Connection | null = null;
    const reader = new SlabReader(ctx.slabs, () => conn !== null && !conn.parser.idle);
    let sink: (chunk: Buffer) => void = () => undefined;
    try {
      socket = new net.Socket({
        fd: task.fd,
        readable: true,
        writable: true,
        // Reads land back to back in pooled slabs: the parser hands out views of them (even for a PDU split
        // across reads), and those views go to io_uring as they are (src/util/slab-pool.ts).
        onread: {
          buffer: () => reader.next(),
          callback: (n: number, buf: Uint8Array) => {
            sink(reader.chunk(n, buf));
            reader.parsed();
          },
        },
      } as net.SocketConstructorOpts);
    } catch (e) {
      log.error('cannot adopt socket', { fd: task.fd, error: (e as Error).message });
      reader.close();
      closeFd(task.fd);
      return threadId;
    }
    let c: Connection;
    try {
      c = conn = new Connection(socket, ctx, task);
    } catch (e) {
      // The socket owns the descriptor now: destroying it closes it.
      log.error('cannot serve the connection', { error: (e as Error).message });
      socket.destroy();
      reader.close();
      return threadId;
    }
    shutdown.track(c);
    const ticket = task.ticket;
    if (ticket) c.loginEnded = () => endPendingLogin(data.admission, ticket);
    const afterRead = partial.add(c);
    const flow = ctx.backpressure;
    sink = (chunk) => {
      c.receive(chunk);
      afterRead();
      // The worker's queue to the backstores is over its high-water mark: this socket waits (flow.ts).
      if (flow.over && flow.hold(c)) ctx.counters.inc('readStopsBackstore');
    };
    c.feed(Buffer.from(task.initial.buffer, task.initial.byteOffset, task.initial.byteLength));
    afterRead();
    await c.closed;
    // The socket's handle is closed: no read can land in the slabs any more.
    reader.close();
    partial.remove(c);
    return threadId;
  };
}

/** See TestKillTask: a failure from inside the worker, outside any task, as a bug would cause one. */
function testKill(task: TestKillTask): void {
  if (process.env.NODETGT_TEST_HOOKS !== '1') {
    log.warn('test hook ignored: NODETGT_TEST_HOOKS is not set', { task: task.kind });
    return;
  }
  setImmediate(() => {
    if (task.how === 'exit') process.exit(70);
    throw new Error('test hook: worker killed from inside');
  });
}

module.exports = init();
