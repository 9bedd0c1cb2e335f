/**
 * Minimal leveled logger: one line per event on stderr, safe to call from any thread.
 *
 * Warnings and errors are rate-limited per message kind (the message text, which is a constant at every call
 * site; the varying details go in the fields): a client that repeats a bad PDU 50,000 times must not be able to
 * fill the disk or spend the worker's time on logging. Each kind may emit `burst` lines per window; the rest are
 * counted and reported in one "suppressed N" line when the window ends.
 */
import { threadId } from 'node:worker_threads';

export const LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type Level = (typeof LEVELS)[number];
export const FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof FORMATS)[number];
const ORDER: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A level or format named by a flag, a config key or NODETGT_LOG; anything else is an error, not a default. */
export function parseLogLevel(v: unknown, where: string): Level {
  if (typeof v === 'string' && (LEVELS as readonly string[]).includes(v)) return v as Level;
  throw new Error(`${where} must be one of ${LEVELS.join(', ')}, not ${JSON.stringify(v)}`);
}
export function parseLogFormat(v: unknown, where: string): LogFormat {
  if (typeof v === 'string' && (FORMATS as readonly string[]).includes(v)) return v as LogFormat;
  throw new Error(`${where} must be one of ${FORMATS.join(', ')}, not ${JSON.stringify(v)}`);
}

/** The level NODETGT_LOG asks for (info when unset); the CLI refuses an invalid value before anything starts. */
export function envLogLevel(): Level {
  const v = process.env.NODETGT_LOG;
  return v === undefined || v === '' ? 'info' : parseLogLevel(v, 'NODETGT_LOG');
}

// [level, format] in shared memory: the portal thread hands the buffer to every worker (adoptLogSettings), so a
// change of level at run time reaches all threads at once. Read with Atomics on every call: one load.
let settings = new Int32Array(new SharedArrayBuffer(8));
settings[0] = (() => {
  try {
    return ORDER[envLogLevel()];
  } catch {
    return ORDER.info; // an embedder's bad NODETGT_LOG: the CLI reports it; a library keeps going
  }
})();

export function logSettings(): SharedArrayBuffer {
  return settings.buffer as SharedArrayBuffer;
}
/** A worker thread follows the portal's settings. */
export function adoptLogSettings(sab: SharedArrayBuffer): void {
  settings = new Int32Array(sab);
}
export function setLogLevel(level: Level): void {
  Atomics.store(settings, 0, ORDER[level]);
}
export function logLevel(): Level {
  return LEVELS[Atomics.load(settings, 0)];
}
export function setLogFormat(format: LogFormat): void {
  Atomics.store(settings, 1, FORMATS.indexOf(format));
}
const enabled = (level: Level) => ORDER[level] <= Atomics.load(settings, 0);

/**
 * A change of level at run time (the control socket's `nodetgt log-level`, SIGUSR2), for every thread at once.
 * The change itself is always logged, whatever the new level, so that the log shows when and by what its
 * verbosity changed.
 */
export function changeLogLevel(to: Level, by: string): Level {
  const was = logLevel();
  setLogLevel(to);
  write('info', 'log level changed', { from: was, to, by });
  return was;
}

/** The next level in error > warn > info > debug > error (a signal cycles through them). */
export function cycleLogLevel(by: string): Level {
  const next = LEVELS[(Atomics.load(settings, 0) + 1) % LEVELS.length];
  changeLogLevel(next, by);
  return next;
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

/** A text value: bare when it is one plain word, else JSON-quoted so that spaces and quotes stay searchable. */
function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

function write(level: Level, msg: string, fields?: Record<string, unknown>): void {
  const time = new Date().toISOString();
  let line: string;
  if (settings[1] === 1) {
    // The fields go beside the four fixed keys (`jq 'select(.initiator == ...)'`); a field never hides one.
    const o: Record<string, unknown> = { time, level, thread: threadId, message: msg };
    if (fields) for (const [k, v] of Object.entries(fields)) if (!(k in o)) o[k] = v;
    line = JSON.stringify(o);
  } else {
    line = `${time} ${level.toUpperCase()} [t${threadId}] ${msg}`;
    if (fields) for (const [k, v] of Object.entries(fields)) line += ` ${k}=${textValue(v)}`;
  }
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
  if (!enabled(level)) return;
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
  if (!enabled(level)) return;
  write(level, msg, fields);
}

export const log = {
  error: (msg: string, f?: Record<string, unknown>) => limited('error', msg, f),
  warn: (msg: string, f?: Record<string, unknown>) => limited('warn', msg, f),
  info: (msg: string, f?: Record<string, unknown>) => emit('info', msg, f),
  debug: (msg: string, f?: Record<string, unknown>) => emit('debug', msg, f),
};
