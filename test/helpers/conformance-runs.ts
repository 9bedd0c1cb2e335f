/**
 * libiscsi's iscsi-test-cu ALL as the conformance tests run it, against whichever target and LUNs a test file
 * starts (test/conformance.test.ts: a file LUN, or tgtd; test/conformance-rbd.test.ts: Ceph RBD LUNs): the runs
 * (one iscsi-test-cu process per suite), what each target is declared to skip or fail and why, and the ava
 * tests that run them and total ALL.
 *
 * Strict: every skip, whole or partial, of every kind, must be declared below for the target under
 * test (test name, reason pattern, and why it is right); any other skip fails the suite, and so does
 * a declaration that no longer matches anything (a stale excuse would hide the same skip coming
 * back). A suite in which every test skipped is "not applicable", never "passed": it must be
 * declared so (its ava title says it), and the summary table shows N/A for it.
 */
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  SUITES_NEEDING_TWO_URLS,
  checkExpectations,
  allTests,
  testSelector,
  formatSuiteTable,
  iscsiTestCuAvailable,
  runIscsiTestCu,
  type ExpectedFailure,
  type ExpectedSkip,
  type SuiteExpectations,
  type SuiteResult,
} from './iscsi-test-cu';

/** 'nodetgt-rbd': nodetgt on Ceph RBD LUNs, held to nodetgt's declarations except where a run says otherwise. */
export type TargetKind = 'nodetgt' | 'tgtd' | 'nodetgt-rbd';
export type LunRole = 'ro' | 'cd' | 'removable' | 'fresh';

export interface Run {
  /** "Suite", or "Suite.Test" to run one test in its own process. */
  name: string;
  /**
   * The LUN it runs against when not the plain disk: 'ro' the write-protected one (ReadOnly), 'cd' the cd LU
   * (MMC, RMB = 1), 'removable' a removable disk (SBC, RMB = 1), 'fresh' a disk no other suite writes (for a
   * suite that assumes blocks it never wrote hold zeros). A target without such a LU (the tgtd run here) uses
   * its plain disk, where its not-applicable declarations apply.
   */
  lun?: LunRole;
  /** More iscsi-test-cu options (Sanitize needs --allow-sanitize). */
  extraArgs?: string[];
  expect: Partial<Record<TargetKind, SuiteExpectations>>;
}

// ---- Reasons shared by several suites (each checked against src/scsi) --------------------------------

const notRemovable = (test: string, reason: RegExp): ExpectedSkip => ({
  test,
  reason,
  why: 'INQUIRY RMB=0 (inquiry.ts): a disk LU has no medium to load, eject or lock',
});

/** libiscsi 1.19's own bug in LUNResetSimpleAsync: fails against any target. */
const LU_RESET_1_19_BUG: ExpectedFailure = {
  test: 'LUNResetSimpleAsync',
  assertion: /^test_async_lu_reset_simple\.c:\d+\s+-\s+CU_ASSERT_EQUAL\(reconnect_succeeded,1\)$/,
  alsoLogged: /^LU RESET completed$/,
  why:
    'libiscsi 1.19 bug, fixed in 1.20 (commit 5553d6b "Move an assert statement"): it asserts ' +
    'reconnect_succeeded right after queueing the TMF, before the response that sets it; the ' +
    'target still answers the LUN RESET with FUNCTION COMPLETE ("LU RESET completed")',
};

const NOT_REMOVABLE_SUITES = {
  StartStopUnit: {
    notApplicable: 'LU is not removable',
    skips: [
      notRemovable('Simple', /^Media is not removable\.$/),
      notRemovable('PwrCnd', /^LUN is not removable\. Skipping test\.$/),
      notRemovable('NoLoej', /^LUN is not removable\. Skipping test\.$/),
    ],
  },
  PreventAllow: {
    notApplicable: 'LU is not removable',
    skips: [notRemovable('*', /^Logical unit is not removable\. Skipping test\.$/)],
  },
} satisfies Record<string, SuiteExpectations>;

/**
 * tgtd (the peer, 1.0.x as packaged) with its default LU settings: fully provisioned
 * (thin_provisioning=0), no MAXIMUM WRITE SAME LENGTH. Its failures are tgtd's own bugs, declared so
 * that the comparison run stays green while tgtd behaves as it is known to.
 */
const TGTD_THICK: ExpectedSkip = {
  test: '*',
  reason: /^Logical unit is fully provisioned\. Skipping test$/,
  why: 'tgtd LUs are fully provisioned unless thin_provisioning=1 (LBPME=0)',
};
const TGTD_NO_MAX_WS: ExpectedSkip = {
  test: 'ZeroBlocks',
  reason: /^\[SKIPPING\] No MAXIMUM WRITE SAME LENGTH - skipping MAXIMUM WRITE SAME LENGTH asserts\.$/,
  why: 'tgtd reports MAXIMUM WRITE SAME LENGTH 0 (no limit) in Block Limits VPD',
};

/** The suites issue 3 requires with zero failures, then those issue 6 added. */
export const RUNS: readonly Run[] = [
  ...['TestUnitReady'].map((name) => ({ name, expect: {} })),
  { name: 'Inquiry', expect: { tgtd: { skips: [{ ...TGTD_THICK, test: 'BlockLimits' }] } } },
  ...[
    'ReadCapacity10',
    'ReadCapacity16',
    'Read6',
    'Read10',
    'Read12',
    'Read16',
    'Write10',
    'Write12',
    'Write16',
    'WriteVerify10',
    'WriteVerify12',
    'WriteVerify16',
    'Verify10',
    'Verify12',
    'Verify16',
    'Prefetch10',
    'Prefetch16',
    'ModeSense6',
  ].map((name) => ({ name, expect: {} })),
  // StartStopUnit against the cd LU: all three tests load and eject its medium.
  { name: 'StartStopUnit', lun: 'cd', expect: { tgtd: NOT_REMOVABLE_SUITES.StartStopUnit } },
  // PreventAllow against a removable disk, not the cd: libiscsi 1.19 gates every PreventAllow test on
  // peripheral type 00h (CHECK_FOR_SBC) before RMB, so on an MMC LU all eight would skip "Not SBC device".
  { name: 'PreventAllow', lun: 'removable', expect: { tgtd: NOT_REMOVABLE_SUITES.PreventAllow } },
  {
    name: 'ReportSupportedOpcodes',
    expect: {
      tgtd: {
        skips: [
          {
            test: 'OneCommand',
            reason: /^REPORT_SUPPORTED_OPCODES is not implemented\.$/,
            why:
              'tgtd refuses REPORTING OPTIONS 010b for an opcode without service actions with an INVALID ' +
              'FIELD IN CDB that libiscsi reads as "not implemented" (no field pointer, or byte 1)',
          },
        ],
      },
    },
  },
  { name: 'Mandatory', expect: {} },
  { name: 'iSCSIcmdsn', expect: {} },
  {
    name: 'iSCSIdatasn',
    expect: {
      tgtd: {
        failures: [
          {
            test: 'iSCSIDataSnInvalid',
            assertion: /^test_iscsi_datasn_invalid\.c:\d+\s+-\s+CU_ASSERT_NOT_EQUAL\(ret,0\)$/,
            why: 'tgtd bug: it completes WRITEs whose Data-Out PDUs carry a wrong DataSN',
          },
        ],
      },
    },
  },
  { name: 'iSCSIResiduals', expect: {} },
  // Third-party copy (src/scsi/xcopy.ts): the tests copy within LUN 0, naming it by its NAA designator.
  // tgtd offers no EXTENDED COPY: its results there were not declared (not run).
  { name: 'ExtendedCopy', expect: {} },
  { name: 'ReceiveCopyResults', expect: {} },
  {
    name: 'Unmap',
    expect: {
      tgtd: {
        skips: [
          TGTD_THICK,
          { test: 'VPD', reason: /^UNMAP is not implemented\.$/, why: 'tgtd offers UNMAP only when thin' },
        ],
      },
    },
  },
  {
    name: 'WriteSame10',
    expect: {
      tgtd: { skips: [TGTD_THICK, TGTD_NO_MAX_WS] },
    },
  },
  {
    name: 'WriteSame16',
    expect: {
      tgtd: { skips: [TGTD_THICK, TGTD_NO_MAX_WS] },
    },
  },
  {
    name: 'GetLBAStatus',
    expect: {
      nodetgt: {
        failures: [
          {
            test: 'UnmapSingle',
            assertion:
              /^test_get_lba_status_unmap_single\.c:\d+\s+-\s+CU_FAIL\("\[FAILED\] GETLBASTATUS command: " "lba offset in first descriptor does not " "match request\."\)(\s+Send PRIN\/READ_KEYS)?$/,
            alsoLogged: /^Send GET_LBA_STATUS \(Expecting SUCCESS\) LBA:9 alloc_len:24$/,
            why:
              'libiscsi bug, only visible with LBPPB > 1: its second loop asks GET LBA STATUS at LBA i+1 and ' +
              'expects the first descriptor at i+LBPPB (the two agree only when LBPPB is 1); SBC-3 has the ' +
              'first descriptor start at the LBA asked for, which we answer (LBPPB is 8: 512-byte blocks on ' +
              'a 4096-byte file system block). The first loop, at whole physical blocks, passes',
          },
        ],
      },
      tgtd: {
        skips: [TGTD_THICK],
        failures: [
          {
            test: 'BeyondEol',
            assertion: /^test_get_lba_status_beyond_eol\.c:\d+\s+-\s+CU_ASSERT_EQUAL\(_r,0\)$/,
            alsoLogged:
              /^\[FAILED\] GET_LBA_STATUS successful but should have failed with .*LBA_OUT_OF_RANGE/,
            why: 'tgtd bug: GET LBA STATUS past the last LBA returns GOOD instead of LBA OUT OF RANGE',
          },
        ],
      },
    },
  },
  // Persistent reservations and SPC-2 RESERVE/RELEASE (issue 8): two initiators (-i/-I) against two workers.
  ...[
    'PrinReadKeys',
    'PrinServiceactionRange',
    'PrinReportCapabilities',
    'ProutRegister',
    'ProutReserve',
    'ProutClear',
    'ProutPreempt',
    'Reserve6',
  ].map((name) => ({ name, expect: {} })),
  // iSCSITMF runs one test per process: in libiscsi 1.19 AbortTaskSimpleAsync logs out and leaves
  // the device without a session, so LUNResetSimpleAsync, run after it in the same process, returns
  // at CU_PASS("[SKIPPED] Non-iSCSI") and tests nothing.
  { name: 'iSCSITMF.AbortTaskSimpleAsync', expect: {} },
  {
    name: 'iSCSITMF.LUNResetSimpleAsync',
    expect: { nodetgt: { failures: [LU_RESET_1_19_BUG] }, tgtd: { failures: [LU_RESET_1_19_BUG] } },
  },
  // Issue 8: the SBC atomic and maintenance commands.
  ...['CompareAndWrite', 'OrWrite', 'ReadDefectData10', 'ReadDefectData12'].map((name) => ({
    name,
    expect: {},
  })),
  // CompareAndWrite and CompareAndWriteAsync race two sessions on one block (the URL is given twice).
  // libiscsi 1.19's MultipathIO.CompareAndWrite zeroes LBAs 0..255 with WRITE SAME and then compares LBAs 0..256:
  // LBA 256 must hold zeros already, so it runs on a LU no other suite has written.
  { name: 'MultipathIO', lun: 'fresh', expect: {} },
  {
    name: 'NoMedia',
    lun: 'removable',
    expect: {
      tgtd: {
        notApplicable: 'LU is not removable',
        skips: [notRemovable('NoMediaSBC', /^LUN is not removable\. Skipping test\.$/)],
      },
    },
  },
  // WRITE ATOMIC(16) through the redo journal (atomic-write.ts): every test runs, none skips. On RBD too: a write
  // inside one RADOS object is one OSD op, one across objects goes through the journal in the cluster
  // (src/backstore/rbd-atomic.ts), so the RBD LU offers the file LU's limits.
  { name: 'WriteAtomic16', expect: {} },
  {
    name: 'Sanitize',
    extraArgs: ['--allow-sanitize'],
    expect: {
      nodetgt: {
        skips: [
          {
            test: 'CryptoErase',
            reason: /^SANITIZE CRYPTO_ERASE is not implemented according to REPORT_SUPPORTED_OPCODES\.$/,
            why: 'CRYPTO ERASE is not offered (sanitize.ts): nothing is stored encrypted; WACEREQ is 0',
          },
          {
            test: 'Readonly',
            reason: /^SANITIZE CRYPTO_ERASE is not implemented according to REPORT_SUPPORTED_OPCODES\.$/,
            why: 'CRYPTO ERASE is not offered (sanitize.ts); OVERWRITE and BLOCK ERASE get DATA PROTECT',
          },
          {
            test: 'Reservations',
            reason: /^SANITIZE CRYPTO_ERASE is not implemented according to REPORT_SUPPORTED_OPCODES\.$/,
            why:
              "its OVERWRITE and BLOCK ERASE parts run and get RESERVATION CONFLICT under another nexus's " +
              'RESERVE(6); only its last part, CRYPTO ERASE, skips: not offered (sanitize.ts)',
          },
        ],
        failures: [
          {
            test: 'Reset',
            // The last assertion line runs into the next log line in libiscsi's output (no newline between).
            assertion: /^test_sanitize_reset\.c:\d+\s+-\s+CU_ASSERT_EQUAL\(_r,0\)(\s+Send PRIN\/READ_KEYS)?$/,
            alsoLogged: /^\[OK\] INQUIRY returned SUCCESS/,
            why:
              'test assumption: it expects the OVERWRITE still running 3 s after it was sent, but the 64 MiB ' +
              'LU in tmpfs is overwritten in well under a second, so TEST UNIT READY rightly answers GOOD ' +
              '(NOT READY / SANITIZE IN PROGRESS while one runs is covered by test/scsi-sanitize.test.ts)',
          },
        ],
      },
    },
  },
  {
    name: 'ReadOnly',
    lun: 'ro',
    expect: {
      tgtd: {
        failures: [
          {
            test: 'ReadOnlySBC',
            assertion: /^test_readonly_sbc\.c:\d+\s+-\s+CU_ASSERT_EQUAL\(_r,0\)$/,
            alsoLogged: /^\[FAILED\] WRITESAME1[06] failed with wrong sense\./,
            why:
              'tgtd bug: WRITE SAME on a readonly=1 LU answers INVALID FIELD IN CDB (0x24) ' +
              'instead of DATA PROTECT / WRITE PROTECTED',
          },
        ],
      },
    },
  },
];

export interface TargetUnderTest {
  name: string;
  /** iscsi://127.0.0.1:PORT/IQN/LUN */
  url: string;
  /** The same target's other LUNs by role (ro: write-protected; cd; removable disk). */
  urls: Partial<Record<LunRole, string>>;
  /** What the target logged so far (nodetgt only). */
  log?: () => string;
  stop(): Promise<void>;
}

/** Worker thread of each login in a piece of the target's log, by initiator name. */
export function loginPlacement(log: string): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  // Fields between initiator and target (isid=...) are skipped: the log line may grow.
  for (const m of log.matchAll(
    /\[t(\d+)\] login peer=\S+ initiator=(\S+) (?:\S+=\S+ )*?target=(?!\(discovery\))/g,
  )) {
    let set = out.get(m[2]);
    if (!set) out.set(m[2], (set = new Set()));
    set.add(Number(m[1]));
  }
  return out;
}

/** The number of tests of ALL that the declarations let fail or skip (whole or in part) on `kind`. */
/** What a run is declared to do on `kind` (nodetgt-rbd: nodetgt's, unless the run says otherwise). */
export function expectationsFor(run: Run, kind: TargetKind): SuiteExpectations {
  return run.expect[kind] ?? (kind === 'nodetgt-rbd' ? run.expect.nodetgt : undefined) ?? {};
}

export function declaredNotPassing(runs: readonly Run[], kind: TargetKind): number | undefined {
  const tests = new Set<string>();
  for (const r of runs) {
    const exp = expectationsFor(r, kind);
    for (const d of [...(exp.skips ?? []), ...(exp.failures ?? [])]) {
      // A pattern over a whole suite matches as many tests as skip: no fixed count then.
      if (d.test === '*' || exp.notApplicable !== undefined) return undefined;
      tests.add(`${r.name.split('.')[0]}.${d.test}`);
    }
  }
  return tests.size;
}

/** Most of ALL that may be left unpassed by nodetgt, each such test named with its reason in the log. */
const ALL_MAY_NOT_PASS = 8;

export interface ConformanceOptions {
  kind: TargetKind;
  runs: readonly Run[];
  /** True when `runs` are all of RUNS: the totals of ALL are then checked. */
  all: boolean;
  start(): Promise<TargetUnderTest>;
  logDir: string;
  timeoutMs: number;
}

/**
 * Registers the file's tests: a serial before hook starting the target (after any serial hook registered
 * before, such as a Ceph cluster's), one serial test per run, the totals of ALL, and an after hook stopping the
 * target and printing the summary table.
 */
export function registerConformance(o: ConformanceOptions): void {
  const { kind, runs } = o;
  let target: TargetUnderTest | undefined;
  let startError: Error | undefined;
  const results: SuiteResult[] = [];

  test.serial.before(async (t) => {
    t.timeout(180_000);
    if (!iscsiTestCuAvailable()) {
      startError = new Error('iscsi-test-cu not found: apt-get install libiscsi-bin');
      return;
    }
    try {
      target = await o.start();
    } catch (err) {
      startError = err as Error;
    }
  });

  test.after.always(async () => {
    if (target) await target.stop();
    if (results.length) {
      const table = formatSuiteTable(results);
      const header = `iscsi-test-cu against ${target?.name ?? '?'} (${target?.url ?? ''}); raw logs in ${o.logDir}`;
      console.log(`\n${header}\n${table}\n`);
      writeFileSync(join(o.logDir, 'summary.txt'), `${header}\n${table}\n`);
    }
  });

  for (const run of runs) {
    const exp = expectationsFor(run, kind);
    const selector = testSelector(run.name);
    const title = exp.notApplicable
      ? `iscsi-test-cu ${selector} is not applicable: ${exp.notApplicable}`
      : `iscsi-test-cu ${selector}`;
    test.serial(title, async (t) => {
      if (startError) return t.fail(startError.message);
      if (!target) return t.fail('target under test did not start');
      const url =
        run.lun === undefined
          ? target.url
          : (target.urls[run.lun] ?? (run.lun === 'ro' ? undefined : target.url));
      if (!url) return t.fail(`${run.name} needs a write-protected LUN: set NODETGT_CONFORMANCE_RO_URL`);
      t.timeout(o.timeoutMs + 30_000);
      const logBefore = target.log?.().length ?? 0;
      const r = await runIscsiTestCu(run.name, {
        url,
        timeoutMs: o.timeoutMs,
        logDir: o.logDir,
        extraArgs: run.extraArgs,
      });
      if (target.log) {
        // Which worker served each initiator's sessions: a suite that opens sessions for both initiator names
        // (or twice, MultipathIO) must have had them on more than one worker.
        const placement = loginPlacement(target.log().slice(logBefore));
        const threads = new Set([...placement.values()].flatMap((s) => [...s]));
        const shown = [...placement].map(([i, s]) => `${i.replace(/^.*:/, '')} on t${[...s].join(',t')}`);
        if (shown.length) t.log(`sessions: ${shown.join('; ')}`);
        r.placement = shown.join('; ');
        if (placement.size >= 2 || SUITES_NEEDING_TWO_URLS.has(run.name.split('.')[0]))
          t.true(
            threads.size >= 2,
            `${run.name}: its sessions were on more than one worker (${shown.join('; ')})`,
          );
      }
      const report = checkExpectations(r, exp);
      if (report.notApplicable) r.notApplicable = exp.notApplicable;
      if (exp.failures?.length && r.failed > 0 && report.problems.length === 0)
        r.expectedFailure = exp.failures.map((f) => f.why.split(':')[0]).join('; ');
      results.push(r);
      const partial = r.skipped.filter((s) => !s.whole).length;
      t.log(
        `${run.name}: ran ${r.ran}, passed ${r.passed}, partial ${partial}, skipped ${r.skipped.length - partial}, ` +
          `failed ${r.failed}${r.timedOut ? ' (TIMED OUT)' : ''} in ${(r.durationMs / 1000).toFixed(1)} s (log: ${r.logFile})`,
      );
      for (const s of r.skipped)
        for (const x of s.reasons)
          t.log(`  ${s.whole ? 'skipped' : 'partial'} ${s.test} [${x.kind}]: ${x.text}`);
      for (const f of r.failures) t.log(`  FAILED ${f.test}: ${f.detail}`);
      for (const d of exp.skips ?? []) t.log(`  declared skip ${d.test} /${d.reason.source}/: ${d.why}`);
      for (const d of exp.failures ?? []) t.log(`  declared failure ${d.test}: ${d.why}`);
      t.deepEqual(report.problems, [], `${run.name} against ${target.name} (log: ${r.logFile})`);
      t.deepEqual(report.stale, [], `${run.name}: declarations that no longer match; remove or fix them`);
      if (exp.notApplicable) t.true(report.notApplicable, `${run.name} was declared not applicable`);
    });
  }

  if (o.all)
    test.serial('iscsi-test-cu ALL: every test of ALL is run by one of the runs above; the totals', (t) => {
      if (!target || startError) return t.fail('target under test did not start');
      const all = allTests();
      t.true(all.length > 0, 'iscsi-test-cu -l lists the ALL tests');
      const covered = (name: string) =>
        RUNS.some((r) => r.name === name || (!r.name.includes('.') && name.startsWith(`${r.name}.`)));
      t.deepEqual(
        all.filter((n) => !covered(n)),
        [],
        'tests of ALL that no run covers',
      );
      const sum = (f: (r: SuiteResult) => number) => results.reduce((n, r) => n + f(r), 0);
      const ran = sum((r) => r.ran);
      const passed = sum((r) => r.passed);
      const failed = sum((r) => r.failed);
      const expectedFailed = sum((r) => (r.expectedFailure ? r.failed : 0));
      const skippedWhole = sum((r) => r.skipped.filter((s) => s.whole).length);
      const partial = sum((r) => r.skipped.filter((s) => !s.whole).length);
      t.log(
        `ALL (${all.length} tests) against ${target.name}: ran ${ran}, passed ${passed}, failed ${failed} ` +
          `(${expectedFailed} declared: libiscsi's own bugs and assumptions), skipped ${skippedWhole}, partly skipped ${partial}`,
      );
      for (const r of results) {
        for (const s of r.skipped)
          t.log(
            `  not passed: ${r.suite.split('.')[0]}.${s.test} (${s.whole ? 'skipped' : 'partly skipped'}): ${s.reasons.map((x) => x.text).join(' | ')}`,
          );
        for (const f of r.failures)
          t.log(`  not passed: ${r.suite.split('.')[0]}.${f.test} (failed): ${f.detail}`);
      }
      if (kind === 'tgtd') return;
      t.is(ran, all.length, 'every test of ALL ran once');
      t.is(failed - expectedFailed, 0, 'no failure but those declared (libiscsi bugs and assumptions)');
      t.true(passed >= all.length - ALL_MAY_NOT_PASS, `passed ${passed} of ${all.length}`);
      // The same score wherever the same declarations hold: every test not declared passes.
      const excused = declaredNotPassing(RUNS, kind);
      if (excused !== undefined)
        t.is(passed, all.length - excused, 'passed: every test of ALL but those declared');
    });
}
