/** Minimal leveled logger: one line per event on stderr, safe to call from any thread. */
import { threadId } from 'node:worker_threads';

export type Level = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };
let current: Level =
  (process.env.NODETGT_LOG as Level) in ORDER ? (process.env.NODETGT_LOG as Level) : 'info';

export function setLogLevel(level: Level): void {
  current = level;
}

function emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] > ORDER[current]) return;
  let line = `${new Date().toISOString()} ${level.toUpperCase()} [t${threadId}] ${msg}`;
  if (fields)
    for (const [k, v] of Object.entries(fields))
      line += ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
  process.stderr.write(line + '\n');
}

export const log = {
  error: (msg: string, f?: Record<string, unknown>) => emit('error', msg, f),
  warn: (msg: string, f?: Record<string, unknown>) => emit('warn', msg, f),
  info: (msg: string, f?: Record<string, unknown>) => emit('info', msg, f),
  debug: (msg: string, f?: Record<string, unknown>) => emit('debug', msg, f),
};
