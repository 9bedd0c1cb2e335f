/**
 * Harness around libiscsi's conformance suite `iscsi-test-cu` (Debian: libiscsi-bin 1.19).
 *
 * One process per run (`-t ALL.<Suite>` or `-t ALL.<Suite>.<Test>`), killed with SIGKILL when it
 * outlives its timeout, always with `-V` so that every skip reason is printed (some tests, e.g.
 * StartStopUnit.PwrCnd, only log their "[SKIPPED]" line at verbose level). The raw output of each
 * run can be kept in a log directory for post-mortems.
 *
 * CUnit counts a skipped test as "passed" (the test calls CU_PASS and returns); this module
 * separates them. A test that passed is, by what it printed:
 * - skipped: it logged a skip and did nothing after it (the skip line is its last output), or it
 *   printed nothing at all under -V (a CU_PASS-only skip such as "[SKIPPED] Non-iSCSI", which
 *   CUnit does not print; kind 'silent');
 * - partial: it logged a skip for one part (a command the target does not implement, an assert
 *   skipped for LUN size, ...) and went on testing the rest;
 * - passed: it logged no skip.
 * Skips that print nothing even under -V and follow other output cannot be seen here: in 1.19 those
 * are the "LUN is too big/small for ... tests" CU_PASSes of the BeyondEol/0blocks tests, which a
 * LUN between 2 MiB and 1 TiB never triggers.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ISCSI_TEST_CU = process.env.ISCSI_TEST_CU_BIN ?? 'iscsi-test-cu';

/** Suites that take a second URL (multipath). */
export const SUITES_NEEDING_TWO_URLS: ReadonlySet<string> = new Set(['MultipathIO']);

export const DEFAULT_INITIATOR_1 = 'iqn.2026-11.io.nodetgt.test:init1';
export const DEFAULT_INITIATOR_2 = 'iqn.2026-11.io.nodetgt.test:init2';

/** The test families of `iscsi-test-cu -l`; a run name starting with one is passed as is. */
const FAMILIES: ReadonlySet<string> = new Set(['ALL', 'SCSI', 'iSCSI', 'LINUX']);

/**
 * What a skip line says, for the reader (the conformance test treats every kind alike: each skip
 * must be declared):
 * - 'not-implemented': the target answered ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE (or,
 *   for MAINTENANCE IN / SERVICE ACTION IN, INVALID FIELD IN CDB without a field pointer, or with
 *   field pointer 1), or the suite said the target does not support something.
 * - 'feature-absent': the suite decided a feature is absent (not removable, LBPPB < 2, ...).
 * - 'partial': an untagged message saying part of a test was skipped (e.g. "Skipping this part of
 *   the test", "[SKIPPING] ...", "LUN too small. Skipping assert", "does not support
 *   0-blocks.WSNZ == 1").
 * - 'silent': the test passed without printing anything under -V (see the header).
 */
export type SkipKind = 'feature-absent' | 'not-implemented' | 'partial' | 'silent';

export interface SkipReason {
  text: string;
  kind: SkipKind;
}

export interface SuiteSkip {
  test: string;
  /** False when the test went on testing after its (last) skip: a partial skip. */
  whole: boolean;
  reasons: SkipReason[];
}

export interface SuiteFailure {
  test: string;
  /** The CUnit assertion lines ("test_x.c:157  - CU_ASSERT_EQUAL(ret,0)"), -V output cut off. */
  assertions: string[];
  /** Assertions, "[FAILED]" log lines, or why the test never finished; for people. */
  detail: string;
  /** What the test printed before its status, trimmed, blank lines left out. */
  output: string[];
}

export interface SuiteResult {
  /** The run name: "Read10" or "iSCSITMF.LUNResetSimpleAsync". */
  suite: string;
  /** CUnit "tests Ran". */
  ran: number;
  /** Tests that passed without logging any skip. */
  passed: number;
  /** CUnit "Passed" as printed (includes skipped tests). */
  cunitPassed: number;
  /** Failed tests; at least failures.length, and >= 1 when the run timed out, crashed or never started. */
  failed: number;
  inactive: number;
  /** Every test that logged a skip, whole or partial. */
  skipped: SuiteSkip[];
  failures: SuiteFailure[];
  timedOut: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** Set when no CUnit "Run Summary" was printed (login/setup failure, crash, timeout) or suite init failed. */
  setupError?: string;
  logFile?: string;
  /** Set by the caller when the suite was declared not applicable: shown in the table's note. */
  notApplicable?: string;
  /** Set by the caller when a failure was declared expected: shown in the table's note. */
  expectedFailure?: string;
  /** Set by the caller: which worker thread served each initiator's sessions ("init1 on t1; init2 on t2"). */
  placement?: string;
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

/** "Read10" -> "ALL.Read10"; "iSCSITMF.LUNResetSimpleAsync" -> "ALL.iSCSITMF.LUNResetSimpleAsync". */
export function testSelector(run: string): string {
  return FAMILIES.has(run.split('.')[0]) ? run : `ALL.${run}`;
}

/** The argument vector used for one run. */
export function buildArgs(suite: string, opts: RunSuiteOptions): string[] {
  const args: string[] = [];
  if (opts.dataloss ?? true) args.push('--dataloss');
  if (opts.verboseScsi ?? true) args.push('-V');
  args.push('-i', opts.initiator1 ?? DEFAULT_INITIATOR_1, '-I', opts.initiator2 ?? DEFAULT_INITIATOR_2);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const selector = testSelector(suite);
  args.push('-t', selector, opts.url);
  if (SUITES_NEEDING_TWO_URLS.has(selector.split('.')[1])) args.push(opts.secondUrl ?? opts.url);
  return args;
}

/** Runs one suite (or one test) in its own iscsi-test-cu process and parses the result. */
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
        verbose: opts.verboseScsi ?? true,
      });
      result.durationMs = Date.now() - started;
      result.logFile = logFile;
      resolve(result);
    });
  });
}

export interface TestBlock {
  name: string;
  /** What the test printed before its status (CUnit and -V lines, untrimmed). */
  lines: string[];
  status?: 'passed' | 'FAILED';
  /** CUnit's failure list printed after FAILED, without the "N. " numbering. */
  assertions: string[];
}

export interface ParsedOutput {
  summary?: { ran: number; passed: number; failed: number; inactive: number; suitesFailed: number };
  /** CUnit's "WARNING - Suite initialization/cleanup failed for '...'." lines. */
  suiteWarnings: string[];
  tests: TestBlock[];
}

const TEST_START = /^ {2}Test: (.+?) \.\.\.(.*)$/;
const STATUS_LINE = /^(passed|FAILED)\b/;
/** "    1. test_x.c:157  - CU_ASSERT_EQUAL(a,1)" possibly followed by -V output glued after 4+ spaces. */
const ASSERTION_LINE = /^\s+\d+\.\s+(\S+:\d+\s+-\s+.*?)(?:\s{4,}\S.*)?$/;
const SUMMARY_TESTS = /^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/;
const SUMMARY_SUITES = /^\s*suites\s+(\d+)\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)/;
const SUITE_WARNING = /WARNING - Suite (?:initialization|cleanup) failed for '[^']*'\./;

/** Splits CUnit verbose output into per-test blocks and reads the Run Summary. */
export function parseCUnitOutput(output: string): ParsedOutput {
  const tests: TestBlock[] = [];
  const suiteWarnings: string[] = [];
  let cur: TestBlock | undefined;
  let summary: ParsedOutput['summary'];
  let suitesFailed = 0;
  for (const line of output.split(/\r?\n/)) {
    const warn = SUITE_WARNING.exec(line);
    if (warn) suiteWarnings.push(warn[0]);
    const start = TEST_START.exec(line);
    if (start) {
      cur = { name: start[1], lines: [], assertions: [] };
      tests.push(cur);
      // -V output (or the status itself) may follow "..." on the same line.
      const rest = start[2];
      const st = STATUS_LINE.exec(rest);
      if (st) cur.status = st[1] as TestBlock['status'];
      else if (rest.trim()) cur.lines.push(rest);
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
      if (st) cur.status = st[1] as TestBlock['status'];
      else cur.lines.push(line);
      continue;
    }
    // After its status, only CUnit's failure list belongs to the test; other output is what runs
    // between tests (e.g. the PRIN/READ_KEYS probe of suite cleanup).
    const as = cur.status === 'FAILED' ? ASSERTION_LINE.exec(line) : null;
    if (as) cur.assertions.push(as[1].trim());
  }
  return { summary, suiteWarnings, tests };
}

const NOT_IMPLEMENTED = /is not implemented|not implemented on|Target does not support|Not Supported/i;

/** Untagged messages of libiscsi 1.19 that mean part of a test was skipped. */
const PARTIAL_SKIP: readonly RegExp[] = [
  /^SWP is not changeable/,
  /Skipping this part of the test/,
  /^\[SKIPPING\]/,
  /LBPRZ is clear\. Skip the read/,
  /does not support 0-blocks\.WSNZ == 1/,
];

/** A skip the line reports, or undefined. */
function skipOf(raw: string): SkipReason | undefined {
  const line = raw.trim();
  const m = /\[SKIPPED\]\s*(.*)$/.exec(line);
  if (m) {
    const text = m[1].trim() || 'skipped';
    // CHECK_SIZE: one assert skipped because the LUN is too small, not the whole test.
    if (/Skipping assert/i.test(text)) return { text, kind: 'partial' };
    return { text, kind: NOT_IMPLEMENTED.test(text) ? 'not-implemented' : 'feature-absent' };
  }
  if (PARTIAL_SKIP.some((re) => re.test(line))) return { text: line, kind: 'partial' };
  return undefined;
}

/** The distinct skip reasons a test printed (empty when it did not skip). */
export function skipReasons(lines: readonly string[]): SkipReason[] {
  const seen = new Map<string, SkipReason>();
  for (const l of lines) {
    const r = skipOf(l);
    if (r && !seen.has(r.text)) seen.set(r.text, r);
  }
  return [...seen.values()];
}

/** True when the test printed nothing after its last skip line: it returned at the skip. */
function skippedWhole(lines: readonly string[]): boolean {
  const printed = lines.filter((l) => l.trim() !== '');
  return printed.length > 0 && skipOf(printed[printed.length - 1]) !== undefined;
}

function printed(t: TestBlock): string[] {
  return t.lines.map((l) => l.trim()).filter((l) => l !== '');
}

function failureDetail(t: TestBlock): string {
  if (t.assertions.length) {
    // The same assert in a loop fails once per iteration: show each distinct one once, with a count.
    const counts = new Map<string, number>();
    for (const a of t.assertions) counts.set(a, (counts.get(a) ?? 0) + 1);
    const asserts = [...counts].map(([a, n]) => (n > 1 ? `${a} (x${n})` : a));
    const logged = [...new Set(printed(t).filter((l) => /^\[FAILED\]|^\[FAIL\]/.test(l)))];
    return [...asserts.slice(0, 6), ...logged.slice(0, 4)].join(' | ');
  }
  const picked = t.lines.map((l) => l.trim()).filter((l) => /\[FAILED\]|\[FAIL\]|failed|error/i.test(l));
  const text = (picked.length ? picked : t.lines.slice(-8).map((l) => l.trim())).slice(0, 12).join(' | ');
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
    /** The run used -V: a test that printed nothing is then a silent skip. Default true. */
    verbose?: boolean;
  },
): SuiteResult {
  const parsed = parseCUnitOutput(output);
  const skipped: SuiteSkip[] = [];
  const failures: SuiteFailure[] = [];
  let passedClean = 0;
  for (const t of parsed.tests) {
    if (t.status === 'FAILED') {
      failures.push({ test: t.name, assertions: t.assertions, detail: failureDetail(t), output: printed(t) });
    } else if (t.status === 'passed') {
      const reasons = skipReasons(t.lines);
      if (reasons.length) {
        skipped.push({ test: t.name, whole: skippedWhole(t.lines), reasons });
      } else if ((proc.verbose ?? true) && t.lines.every((l) => l.trim() === '')) {
        const text = 'passed without printing anything under -V (a CU_PASS-only skip?)';
        skipped.push({ test: t.name, whole: true, reasons: [{ text, kind: 'silent' }] });
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
      const detail = `${why}; last output: ${failureDetail(t)}`;
      failures.push({ test: t.name, assertions: [], detail, output: printed(t) });
    }
  }

  let setupError: string | undefined;
  if (proc.spawnError) setupError = `cannot run ${ISCSI_TEST_CU}: ${proc.spawnError.message}`;
  else if (!parsed.summary) {
    setupError = proc.timedOut
      ? `timed out after ${proc.timeoutMs ?? '?'} ms`
      : `no CUnit Run Summary (exit code ${proc.exitCode}, signal ${proc.signal})`;
    setupError += `; output tail:\n${tail(output)}`;
  } else if (parsed.summary.suitesFailed > 0 || parsed.suiteWarnings.length) {
    const what = parsed.suiteWarnings.join(' ') || 'suite initialisation failed (login?)';
    setupError = `${what}; output tail:\n${tail(output)}`;
  }
  if (setupError && failures.length === 0)
    failures.push({ test: '(suite)', assertions: [], detail: setupError, output: [] });

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

/** Every test ran was skipped whole and none failed: the suite tested nothing. */
export function allSkipped(r: SuiteResult): boolean {
  return (
    r.ran > 0 &&
    r.failed === 0 &&
    r.passed === 0 &&
    r.skipped.length === r.ran &&
    r.skipped.every((s) => s.whole)
  );
}

/**
 * A plain-text table: one row per run, then one line per skip and per failure. A run in which every
 * test was skipped shows "N/A" instead of a pass count: it is not a pass.
 */
export function formatSuiteTable(results: readonly SuiteResult[]): string {
  const head = ['suite', 'ran', 'passed', 'partial', 'skipped', 'failed', 'time', 'note'];
  const partial = (r: SuiteResult) => r.skipped.filter((s) => !s.whole).length;
  const whole = (r: SuiteResult) => r.skipped.filter((s) => s.whole).length;
  const note = (r: SuiteResult) => {
    if (r.timedOut) return 'TIMEOUT';
    if (r.setupError) return 'SETUP ERROR';
    if (r.ran === 0) return 'RAN NOTHING';
    if (allSkipped(r)) return `N/A${r.notApplicable ? `: ${r.notApplicable}` : ' (every test skipped)'}`;
    if (r.expectedFailure) return `expected failure: ${r.expectedFailure}`;
    return '';
  };
  const rows = results.map((r) => [
    r.suite,
    String(r.ran),
    allSkipped(r) ? 'N/A' : String(r.passed),
    String(partial(r)),
    String(whole(r)),
    String(r.failed),
    `${(r.durationMs / 1000).toFixed(1)}s`,
    note(r),
  ]);
  const tot = results.reduce(
    (a, r) => [a[0] + r.ran, a[1] + r.passed, a[2] + partial(r), a[3] + whole(r), a[4] + r.failed],
    [0, 0, 0, 0, 0],
  );
  const na = results.filter(allSkipped).length;
  rows.push(['TOTAL', ...tot.map(String), '', na ? `${na} suite(s) N/A` : '']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const last = head.length - 1;
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (i === 0 || i === last ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
  for (const r of results) {
    // "iSCSITMF.LUNResetSimpleAsync" is already the test's full name.
    const full = (test: string) => (r.suite.endsWith(`.${test}`) ? r.suite : `${r.suite}.${test}`);
    for (const s of r.skipped) {
      const why = s.reasons.map((x) => `[${x.kind}] ${x.text}`).join('; ');
      out.push(`  ${s.whole ? 'skip   ' : 'partial'}  ${full(s.test)}: ${why}`);
    }
    for (const f of r.failures)
      out.push(`  ${r.expectedFailure ? 'XFAIL  ' : 'FAIL   '}  ${full(f.test)}: ${f.detail}`);
  }
  return out.join('\n');
}

// ---- Declared expectations ------------------------------------------------------------------------

/** A skip the suite is expected to log, with why it is right for this target. */
export interface ExpectedSkip {
  /** Test name inside the suite, or '*' for every test of it. */
  test: string;
  /** Must match the skip text (SkipReason.text). */
  reason: RegExp;
  why: string;
}

/** A failure that is not the target's fault, declared with the exact assertion(s) it produces. */
export interface ExpectedFailure {
  test: string;
  /** Every CUnit assertion line of the failing test must match this. */
  assertion: RegExp;
  /** The test's own output must also show this (what the target did do right). */
  alsoLogged?: RegExp;
  why: string;
}

export interface SuiteExpectations {
  skips?: readonly ExpectedSkip[];
  failures?: readonly ExpectedFailure[];
  /** Every test of the suite is expected to skip (for a declared reason): the text of the N/A. */
  notApplicable?: string;
}

export interface ExpectationReport {
  /** What makes the run fail: unexpected skips/failures, timeouts, set-up errors, undeclared N/A. */
  problems: string[];
  /** Declarations that matched nothing in this run (the target changed, or the suite did). */
  stale: string[];
  /** Every test was skipped, as declared: the suite is not applicable to this target. */
  notApplicable: boolean;
}

/** Compares one run with what was declared for it. Pure: exported for unit tests. */
export function checkExpectations(r: SuiteResult, exp: SuiteExpectations): ExpectationReport {
  const problems: string[] = [];
  const stale: string[] = [];
  const skips = exp.skips ?? [];
  const failures = exp.failures ?? [];
  const usedSkip = new Set<ExpectedSkip>();
  const usedFailure = new Set<ExpectedFailure>();

  if (r.timedOut) problems.push(`timed out (log: ${r.logFile ?? '-'})`);
  if (r.setupError) problems.push(`set-up error: ${r.setupError.split('\n')[0]}`);
  if (r.ran === 0) problems.push('ran no test');

  for (const s of r.skipped) {
    for (const reason of s.reasons) {
      const d = skips.find((x) => (x.test === '*' || x.test === s.test) && x.reason.test(reason.text));
      if (d) usedSkip.add(d);
      else
        problems.push(
          `unexpected ${s.whole ? 'skip' : 'partial skip'} ${s.test} [${reason.kind}]: ${reason.text}`,
        );
    }
  }
  for (const f of r.failures) {
    const d = failures.find(
      (x) =>
        x.test === f.test &&
        f.assertions.length > 0 &&
        f.assertions.every((a) => x.assertion.test(a)) &&
        (x.alsoLogged === undefined || f.output.some((l) => x.alsoLogged?.test(l))),
    );
    if (d) usedFailure.add(d);
    else problems.push(`FAILED ${f.test}: ${f.detail}`);
  }
  // CUnit may count more failures than it listed (e.g. a crash after the summary line).
  if (r.failed > r.failures.length)
    problems.push(`${r.failed - r.failures.length} failure(s) without detail`);

  for (const d of skips)
    if (!usedSkip.has(d)) stale.push(`expected skip ${d.test} /${d.reason.source}/ did not happen`);
  for (const d of failures)
    if (!usedFailure.has(d)) stale.push(`expected failure ${d.test} /${d.assertion.source}/ did not happen`);

  const all = allSkipped(r);
  if (all && exp.notApplicable === undefined)
    problems.push(`every test (${r.ran}) was skipped, but the suite is not declared not applicable`);
  if (!all && exp.notApplicable !== undefined && problems.length === 0)
    stale.push(
      `declared not applicable (${exp.notApplicable}) but ${r.passed + r.failed} test(s) really ran`,
    );
  return { problems, stale, notApplicable: all && exp.notApplicable !== undefined };
}

/** Every test of iscsi-test-cu's ALL family, from its own list (`-l`): "Suite.Test". */
export function allTests(): string[] {
  const r = spawnSync(ISCSI_TEST_CU, ['-l'], { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^ALL\.[^.]+\.[^.]+$/.test(l))
    .map((l) => l.slice(4));
}

/** The families (suites) of ALL, in iscsi-test-cu's order. */
export function allFamilies(): string[] {
  return [...new Set(allTests().map((t) => t.split('.')[0]))];
}
