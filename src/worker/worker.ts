/**
 * The piscina worker: one task per connection, served until the connection ends. Sessions, LUN descriptors
 * and the io_uring ring belong to this thread.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { threadId } from 'node:worker_threads';
import { workerData } from 'piscina';
import { claimRow } from '../metrics/counters';
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

const SLAB = 4 * 1024 * 1024;
const MIN_READ = 512 * 1024;

/** Hands each socket read the unused tail of a slab; a new slab starts when the tail gets short. */
class SlabReader {
  private slab = Buffer.allocUnsafeSlow(SLAB);
  private used = 0;
  sink: (chunk: Buffer) => void = () => undefined;
  next(): Buffer {
    if (SLAB - this.used < MIN_READ) {
      this.slab = Buffer.allocUnsafeSlow(SLAB);
      this.used = 0;
    }
    return this.slab.subarray(this.used);
  }
  done(n: number, buf: Uint8Array): boolean {
    const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
    this.used += n;
    this.sink(chunk);
    return true;
  }
}

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
    const reader = new SlabReader();
    try {
      socket = new net.Socket({
        fd: task.fd,
        readable: true,
        writable: true,
        // Reads land back to back in large slabs that are never reused: the parser hands out views of them
        // (even for a PDU split across reads), and those views go to io_uring as they are.
        onread: {
          buffer: () => reader.next(),
          callback: (n: number, buf: Uint8Array) => reader.done(n, buf),
        },
      } as net.SocketConstructorOpts);
    } catch (e) {
      log.error('cannot adopt socket', { fd: task.fd, error: (e as Error).message });
      closeFd(task.fd);
      return threadId;
    }
    let conn: Connection;
    try {
      conn = new Connection(socket, ctx, task);
    } catch (e) {
      // The socket owns the descriptor now: destroying it closes it.
      log.error('cannot serve the connection', { error: (e as Error).message });
      socket.destroy();
      return threadId;
    }
    shutdown.track(conn);
    const ticket = task.ticket;
    if (ticket) conn.loginEnded = () => endPendingLogin(data.admission, ticket);
    const afterRead = partial.add(conn);
    reader.sink = (chunk) => {
      conn.receive(chunk);
      afterRead();
    };
    conn.feed(Buffer.from(task.initial.buffer, task.initial.byteOffset, task.initial.byteLength));
    afterRead();
    await conn.closed;
    partial.remove(conn);
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
