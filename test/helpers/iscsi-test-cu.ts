/**
 * Harness around libiscsi's conformance suite `iscsi-test-cu` (Debian: libiscsi-bin 1.19).
 *
 * One process per suite (`-t ALL.<Suite>`), killed with SIGKILL when it outlives its timeout,
 * always with `-V` so that every skip reason is printed (some tests, e.g. StartStopUnit.PwrCnd,
 * only log their "[SKIPPED]" line at verbose level). The raw output of each run can be kept in
 * a log directory for post-mortems.
 *
 * CUnit counts a skipped test as "passed" (the suite calls CU_PASS and returns); this module
 * separates them: `passed` below excludes the tests that logged a skip.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ISCSI_TEST_CU = process.env.ISCSI_TEST_CU_BIN ?? 'iscsi-test-cu';

/** Suites that take a second URL (multipath). None of the suites of issue 3 need one. */
export const SUITES_NEEDING_TWO_URLS: ReadonlySet<string> = new Set(['MultipathIO']);

export const DEFAULT_INITIATOR_1 = 'iqn.2026-11.io.nodetgt.test:init1';
export const DEFAULT_INITIATOR_2 = 'iqn.2026-11.io.nodetgt.test:init2';

/**
 * Why a test skipped:
 * - 'feature-absent': the suite itself decided the feature is absent (not removable, SWP not
 *   changeable, not write-protected, fully provisioned, ...). This is a legitimate skip.
 * - 'not-implemented': the target answered ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE
 *   (or, for MAINTENANCE IN / SERVICE ACTION IN opcodes, INVALID FIELD IN CDB without a sense-key
 *   specific field pointer, or with field pointer 1). Not a legitimate skip for a command we claim.
 */
export type SkipKind = 'feature-absent' | 'not-implemented';

export interface SuiteSkip {
  test: string;
  reason: string;
  kind: SkipKind;
}

export interface SuiteFailure {
  test: string;
  detail: string;
}

export interface SuiteResult {
  suite: string;
  /** CUnit "tests Ran". */
  ran: number;
  /** Tests that passed without logging a skip (CUnit "Passed" minus skipped tests). */
  passed: number;
  /** CUnit "Passed" as printed (includes skipped tests). */
  cunitPassed: number;
  /** Failed tests; at least failures.length, and >= 1 when the run timed out, crashed or never started. */
  failed: number;
  inactive: number;
  skipped: SuiteSkip[];
  failures: SuiteFailure[];
  timedOut: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** Set when no CUnit "Run Summary" was printed (login/setup failure, crash, timeout). */
  setupError?: string;
  logFile?: string;
}

export interface RunSuiteOptions {
  /** iscsi://127.0.0.1:PORT/TARGET-IQN/LUN */
  url: string;
  /** Second URL, passed only for suites in SUITES_NEEDING_TWO_URLS (defaults to url). */
  secondUrl?: string;
  /** Per-suite wall-clock limit; the process gets SIGKILL past it. Default 60 s. */
  timeoutMs?: number;
  initiator1?: string;
  initiator2?: string;
  /** Pass -V (verbose SCSI logging, needed to see every skip reason). Default true. */
  verboseScsi?: boolean;
  /** Allow destructive tests (--dataloss). Default true. */
  dataloss?: boolean;
  /** Directory where the raw output is written as <suite>.log. */
  logDir?: string;
  extraArgs?: string[];
}

/** True when the iscsi-test-cu binary can be executed. */
export function iscsiTestCuAvailable(): boolean {
  const r = spawnSync(ISCSI_TEST_CU, ['--help'], { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined;
}

/** The argument vector used for one suite. */
export function buildArgs(suite: string, opts: RunSuiteOptions): string[] {
  const args: string[] = [];
  if (opts.dataloss ?? true) args.push('--dataloss');
  if (opts.verboseScsi ?? true) args.push('-V');
  args.push('-i', opts.initiator1 ?? DEFAULT_INITIATOR_1, '-I', opts.initiator2 ?? DEFAULT_INITIATOR_2);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  args.push('-t', suite.includes('.') ? suite : `ALL.${suite}`, opts.url);
  const bare = suite.split('.').length >= 2 ? suite.split('.')[1] : suite;
  if (SUITES_NEEDING_TWO_URLS.has(bare)) args.push(opts.secondUrl ?? opts.url);
  return args;
}

/** Runs one suite in its own iscsi-test-cu process and parses the result. */
export function runIscsiTestCu(suite: string, opts: RunSuiteOptions): Promise<SuiteResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const args = buildArgs(suite, opts);
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let timedOut = false;
    let spawnError: Error | undefined;
    const child = spawn(ISCSI_TEST_CU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      spawnError = err;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output = Buffer.concat(chunks).toString('utf8');
      let logFile: string | undefined;
      if (opts.logDir) {
        mkdirSync(opts.logDir, { recursive: true });
        logFile = join(opts.logDir, `${suite.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
        writeFileSync(logFile, `$ ${ISCSI_TEST_CU} ${args.join(' ')}\n${output}`);
      }
      const result = interpretRun(suite, output, {
        exitCode: code,
        signal,
        timedOut,
        timeoutMs,
        spawnError,
      });
      result.durationMs = Date.now() - started;
      result.logFile = logFile;
      resolve(result);
    });
  });
}

interface TestBlock {
  name: string;
  lines: string[];
  status?: 'passed' | 'FAILED';
}

export interface ParsedOutput {
  summary?: { ran: number; passed: number; failed: number; inactive: number; suitesFailed: number };
  tests: TestBlock[];
}

const TEST_START = /^ {2}Test: (.+?) \.\.\.(.*)$/;
const STATUS_LINE = /^(passed|FAILED)\b/;
const SUMMARY_TESTS = /^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/;
const SUMMARY_SUITES = /^\s*suites\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)/;

/** Splits CUnit verbose output into per-test blocks and reads the Run Summary. */
export function parseCUnitOutput(output: string): ParsedOutput {
  const tests: TestBlock[] = [];
  let cur: TestBlock | undefined;
  let summary: ParsedOutput['summary'];
  let suitesFailed = 0;
  for (const line of output.split(/\r?\n/)) {
    const start = TEST_START.exec(line);
    if (start) {
      cur = { name: start[1], lines: [] };
      tests.push(cur);
      const rest = start[2];
      const st = STATUS_LINE.exec(rest);
      if (st) cur.status = st[1] as TestBlock['status'];
      else if (rest.trim()) cur.lines.push(rest.trim());
      continue;
    }
    const sm = SUMMARY_TESTS.exec(line);
    if (sm) {
      summary = {
        ran: Number(sm[2]),
        passed: Number(sm[3]),
        failed: Number(sm[4]),
        inactive: Number(sm[5]),
        suitesFailed,
      };
      cur = undefined;
      continue;
    }
    const ss = SUMMARY_SUITES.exec(line);
    if (ss) {
      suitesFailed = Number(ss[3]);
      continue;
    }
    if (/^Run Summary:/.test(line) || /^Suite: /.test(line)) {
      cur = undefined;
      continue;
    }
    if (!cur) continue;
    if (cur.status === undefined) {
      const st = STATUS_LINE.exec(line);
      if (st) {
        cur.status = st[1] as TestBlock['status'];
        continue;
      }
      cur.lines.push(line);
    }
    // After its status line, output belongs to what runs between tests (e.g. the PRIN/READ_KEYS probe).
  }
  return { summary, tests };
}

const NOT_IMPLEMENTED = /is not implemented|not implemented on|Target does not support|Not Supported/i;

/** The skip reasons a test printed (empty when it did not skip). */
export function skipReasons(lines: readonly string[]): string[] {
  const reasons = new Set<string>();
  for (const raw of lines) {
    const line = raw.trim();
    const m = /\[SKIPPED\]\s*(.*)$/.exec(line);
    if (m) {
      if (/Skipping assert/i.test(m[1])) continue; // CHECK_SIZE: one assert skipped, not the test
      reasons.add(m[1].trim() || 'skipped');
      continue;
    }
    if (/^SWP is not changeable/.test(line)) reasons.add(line);
    else if (/Skipping this part of the test/.test(line)) reasons.add(`(partial) ${line}`);
  }
  return [...reasons];
}

function failureDetail(lines: readonly string[]): string {
  const picked = lines
    // -V output is sometimes glued to the end of a CUnit line ("...(ret,0)    Send PRIN/READ_KEYS")
    .map((l) => l.replace(/\s{4,}Send [A-Z].*$/, '').trim())
    .filter((l) => /^\d+\.\s+\S+:\d+/.test(l) || /\[FAILED\]|\[FAIL\]|failed|error/i.test(l));
  const text = (picked.length ? picked : lines.slice(-8).map((l) => l.trim())).slice(0, 12).join(' | ');
  return text.length > 1500 ? `${text.slice(0, 1500)}...` : text || '(no detail printed)';
}

function tail(output: string, n = 15): string {
  const lines = output.trimEnd().split(/\r?\n/);
  return lines.slice(-n).join('\n');
}

/** Turns the raw output and the process outcome into a SuiteResult. Exported for unit tests. */
export function interpretRun(
  suite: string,
  output: string,
  proc: {
    exitCode: number | null;
    signal: NodeJS.Signals | null;
    timedOut: boolean;
    timeoutMs?: number;
    spawnError?: Error;
  },
): SuiteResult {
  const parsed = parseCUnitOutput(output);
  const skipped: SuiteSkip[] = [];
  const failures: SuiteFailure[] = [];
  let passedClean = 0;
  for (const t of parsed.tests) {
    if (t.status === 'FAILED') {
      failures.push({ test: t.name, detail: failureDetail(t.lines) });
    } else if (t.status === 'passed') {
      const reasons = skipReasons(t.lines);
      if (reasons.length) {
        const reason = reasons.join('; ');
        skipped.push({
          test: t.name,
          reason,
          kind: NOT_IMPLEMENTED.test(reason) ? 'not-implemented' : 'feature-absent',
        });
      } else {
        passedClean++;
      }
    } else {
      // started, never finished: the process was killed or crashed inside this test
      const why = proc.timedOut
        ? `timed out after ${proc.timeoutMs ?? '?'} ms (SIGKILL)`
        : proc.signal
          ? `iscsi-test-cu died with ${proc.signal}`
          : `no result printed (exit code ${proc.exitCode})`;
      failures.push({ test: t.name, detail: `${why}; last output: ${failureDetail(t.lines)}` });
    }
  }

  let setupError: string | undefined;
  if (proc.spawnError) setupError = `cannot run ${ISCSI_TEST_CU}: ${proc.spawnError.message}`;
  else if (!parsed.summary) {
    setupError = proc.timedOut
      ? `timed out after ${proc.timeoutMs ?? '?'} ms`
      : `no CUnit Run Summary (exit code ${proc.exitCode}, signal ${proc.signal})`;
    setupError += `; output tail:\n${tail(output)}`;
  } else if (parsed.summary.suitesFailed > 0) {
    setupError = `suite initialisation failed (login?); output tail:\n${tail(output)}`;
  }
  if (setupError && failures.length === 0) failures.push({ test: '(suite)', detail: setupError });

  const sum = parsed.summary;
  const ran = sum ? sum.ran : parsed.tests.length;
  const failed = Math.max(sum ? sum.failed : 0, failures.length);
  return {
    suite,
    ran,
    passed: passedClean,
    cunitPassed: sum ? sum.passed : passedClean + skipped.length,
    failed,
    inactive: sum ? sum.inactive : 0,
    skipped,
    failures,
    timedOut: proc.timedOut,
    exitCode: proc.exitCode,
    signal: proc.signal,
    durationMs: 0,
    setupError,
  };
}

/** A plain-text table: one row per suite, then one line per skip and per failure. */
export function formatSuiteTable(results: readonly SuiteResult[]): string {
  const head = ['suite', 'ran', 'passed', 'skipped', 'failed', 'time', 'note'];
  const rows = results.map((r) => [
    r.suite,
    String(r.ran),
    String(r.passed),
    String(r.skipped.length),
    String(r.failed),
    `${(r.durationMs / 1000).toFixed(1)}s`,
    r.timedOut ? 'TIMEOUT' : r.setupError ? 'SETUP ERROR' : r.ran === 0 ? 'RAN NOTHING' : '',
  ]);
  const tot = results.reduce(
    (a, r) => [a[0] + r.ran, a[1] + r.passed, a[2] + r.skipped.length, a[3] + r.failed],
    [0, 0, 0, 0],
  );
  rows.push(['TOTAL', ...tot.map(String), '', '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
  for (const r of results) {
    for (const s of r.skipped) out.push(`  skip  ${r.suite}.${s.test} [${s.kind}]: ${s.reason}`);
    for (const f of r.failures) out.push(`  FAIL  ${r.suite}.${f.test}: ${f.detail}`);
  }
  return out.join('\n');
}
