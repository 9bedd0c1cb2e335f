/**
 * The piscina worker: one task per connection, served until the connection ends. Sessions, LUN descriptors
 * and the io_uring ring belong to this thread.
 */
import * as net from 'node:net';
import { threadId } from 'node:worker_threads';
import { workerData } from 'piscina';
import { claimRow } from '../metrics/counters';
import { TsihTable } from '../portal/routing';
import { Connection } from '../session/connection';
import { log } from '../util/log';
import { WorkerContext } from './context';
import type { WorkerInit, WorkerTask } from './task';
import { TargetRegistry } from './targets';

async function init(): Promise<(task: WorkerTask) => Promise<number>> {
  const data = workerData as WorkerInit;
  const targets = new TargetRegistry(data.config);
  await targets.openAll();
  const ctx = new WorkerContext(
    data.config,
    targets,
    new TsihTable(data.routing),
    claimRow(data.counters, threadId),
    threadId,
  );
  return async (task: WorkerTask): Promise<number> => {
    if (task.kind !== 'connection') return threadId;
    let socket: net.Socket;
    try {
      socket = new net.Socket({ fd: task.fd, readable: true, writable: true });
    } catch (e) {
      log.error('cannot adopt socket', { fd: task.fd, error: (e as Error).message });
      return threadId;
    }
    const conn = new Connection(socket, ctx, task);
    conn.feed(Buffer.from(task.initial.buffer, task.initial.byteOffset, task.initial.byteLength));
    await conn.closed;
    return threadId;
  };
}

module.exports = init();
