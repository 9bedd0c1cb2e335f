/**
 * Minimal leveled logger: one line per event on stderr, safe to call from any thread.
 *
 * Warnings and errors are rate-limited per message kind (the message text, which is a constant at every call
 * site; the varying details go in the fields): a client that repeats a bad PDU 50,000 times must not be able to
 * fill the disk or spend the worker's time on logging. Each kind may emit `burst` lines per window; the rest are
 * counted and reported in one "suppressed N" line when the window ends.
 */
import { threadId } from 'node:worker_threads';

export type Level = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };
let current: Level =
  (process.env.NODETGT_LOG as Level) in ORDER ? (process.env.NODETGT_LOG as Level) : 'info';

export function setLogLevel(level: Level): void {
  current = level;
}

export interface RateLimit {
  /** Length of a window in ms. */
  windowMs: number;
  /** Lines of one kind emitted per window before the rest are suppressed. */
  burst: number;
}

function envInt(name: string, def: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : def;
}

// NODETGT_LOG_WINDOW_MS lets a test see the "suppressed" line without waiting 10 s.
const limit: RateLimit = {
  windowMs: envInt('NODETGT_LOG_WINDOW_MS', 10000),
  burst: envInt('NODETGT_LOG_BURST', 10),
};

export function setLogRateLimit(l: Partial<RateLimit>): void {
  Object.assign(limit, l);
}

function write(level: Level, msg: string, fields?: Record<string, unknown>): void {
  let line = `${new Date().toISOString()} ${level.toUpperCase()} [t${threadId}] ${msg}`;
  if (fields)
    for (const [k, v] of Object.entries(fields))
      line += ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
  process.stderr.write(line + '\n');
}

interface Bucket {
  level: Level;
  start: number;
  emitted: number;
  suppressed: number;
  timer: NodeJS.Timeout | null;
}

/** Kinds are message constants, so this stays small; the cap guards against a call site that is not. */
const MAX_KINDS = 1024;
const buckets = new Map<string, Bucket>();

function flush(kind: string, b: Bucket): void {
  if (b.timer) clearTimeout(b.timer);
  b.timer = null;
  if (b.suppressed > 0)
    write(b.level, `suppressed ${b.suppressed} similar lines`, {
      kind,
      windowMs: limit.windowMs,
    });
  b.suppressed = 0;
}

function limited(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] > ORDER[current]) return;
  const now = Date.now();
  let b = buckets.get(msg);
  if (!b) {
    if (buckets.size >= MAX_KINDS) {
      for (const [k, old] of buckets) if (!old.timer) buckets.delete(k);
    }
    b = { level, start: now, emitted: 0, suppressed: 0, timer: null };
    buckets.set(msg, b);
  }
  if (now - b.start >= limit.windowMs) {
    flush(msg, b);
    b.start = now;
    b.emitted = 0;
  }
  if (b.emitted < limit.burst) {
    b.emitted++;
    write(level, msg, fields);
    return;
  }
  b.suppressed++;
  if (!b.timer) {
    // The count is reported when the window ends, even if this kind is never logged again.
    const bucket = b;
    bucket.timer = setTimeout(() => flush(msg, bucket), Math.max(1, b.start + limit.windowMs - now));
    bucket.timer.unref();
  }
}

function emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] > ORDER[current]) return;
  write(level, msg, fields);
}

export const log = {
  error: (msg: string, f?: Record<string, unknown>) => limited('error', msg, f),
  warn: (msg: string, f?: Record<string, unknown>) => limited('warn', msg, f),
  info: (msg: string, f?: Record<string, unknown>) => emit('info', msg, f),
  debug: (msg: string, f?: Record<string, unknown>) => emit('debug', msg, f),
};
