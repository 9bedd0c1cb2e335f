/**
 * Unit tests of the iscsi-test-cu output parser (helpers/iscsi-test-cu.ts). The samples are written by
 * hand in the format libiscsi-bin 1.19 (CUnit 2.1-3, basic verbose mode, -V) prints, taken from real
 * runs against nodetgt and tgtd: -V lines are indented by 4, a test's -V output may be glued onto
 * its "Test: X ..." line, and what runs between tests is glued onto the previous "passed"/"FAILED"
 * or onto the last line of its failure list.
 */
import test from 'ava';
import {
  allSkipped,
  buildArgs,
  checkExpectations,
  formatSuiteTable,
  interpretRun,
  parseCUnitOutput,
  skipReasons,
  type SuiteExpectations,
} from './helpers/iscsi-test-cu';

const OK = { exitCode: 0, signal: null, timedOut: false };

function preamble(suite: string): string {
  return [
    '    Send PRIN/READ_KEYS',
    '    [SKIPPED] PERSISTENT RESERVE IN is not implemented.',
    '    Send READCAPACITY10 (Expecting SUCCESS) LBA:0 pmi:0',
    '    [OK] READCAPACITY10 returned SUCCESS NO SENSE(0x00) (null)(0x0000)',
    '',
    '',
    '',
    '     CUnit - A unit testing framework for C - Version 2.1-3',
    '     http://cunit.sourceforge.net/',
    '',
    '',
    `Suite: ${suite}`,
  ].join('\n');
}

/** The suite-cleanup probe glued after the last status, then CUnit's Run Summary. */
function summary(total: number, ran: number, passed: number, failed: number, suitesFailed = 0): string {
  return [
    '    Send PRIN/READ_KEYS',
    '    [SKIPPED] PERSISTENT RESERVE IN is not implemented.',
    '',
    '',
    'Run Summary:    Type  Total    Ran Passed Failed Inactive',
    `              suites      1      1    n/a      ${suitesFailed}        0`,
    `               tests ${String(total).padStart(6)} ${String(ran).padStart(6)} ${String(passed).padStart(6)} ${String(failed).padStart(6)}        0`,
    '             asserts     40     40     39      1      n/a',
    '',
    'Elapsed time =    0.012 seconds',
    'Tests completed with return value: 0',
    '',
  ].join('\n');
}

const READ10_PASS = `${preamble('Read10')}
  Test: Simple ...
    Test READ10 of 1-256 blocks at the start of the LUN
    Send READ10 (Expecting SUCCESS) LBA:0 blocks:1 rdprotect:0 dpo:0 fua:0 fua_nv:0 group:0
    [OK] READ10 returned SUCCESS NO SENSE(0x00) (null)(0x0000)
passed
  Test: BeyondEol ...
    Test READ10 1-256 blocks one block beyond the end
    Send READ10 (Expecting LBA_OUT_OF_RANGE) LBA:131072 blocks:1 rdprotect:0 dpo:0 fua:0 fua_nv:0 group:0
    [OK] READ10 returned CHECK_CONDITION ILLEGAL_REQUEST(0x05) LBA_OUT_OF_RANGE(0x2100)
passed${summary(2, 2, 2, 0)}`;

test('pass: every test passed, nothing skipped', (t) => {
  const r = interpretRun('Read10', READ10_PASS, OK);
  t.is(r.ran, 2);
  t.is(r.passed, 2);
  t.is(r.cunitPassed, 2);
  t.is(r.failed, 0);
  t.deepEqual(r.skipped, []);
  t.deepEqual(r.failures, []);
  t.is(r.setupError, undefined);
  t.false(allSkipped(r));
  t.deepEqual(checkExpectations(r, {}), { problems: [], stale: [], notApplicable: false });
});

// A wrong sense: the -V [FAILED] line ends in "\n" (an empty line follows), then CUnit's failure
// list, the last entry with the cleanup probe glued on.
const READ10_FAIL = `${preamble('Read10')}
  Test: Simple ...
    Test READ10 of 1-256 blocks at the start of the LUN
passed
  Test: BeyondEol ...
    Test READ10 1-256 blocks one block beyond the end
    Send READ10 (Expecting LBA_OUT_OF_RANGE) LBA:131072 blocks:1 rdprotect:0 dpo:0 fua:0 fua_nv:0 group:0
    [FAILED] READ10 failed with wrong sense. Should have failed with ILLEGAL_REQUEST(0x05)/LBA_OUT_OF_RANGE(0x2100) but failed with Sense: ILLEGAL_REQUEST(0x05)/(0x2400)

    Send READ10 (Expecting LBA_OUT_OF_RANGE) LBA:131071 blocks:2 rdprotect:0 dpo:0 fua:0 fua_nv:0 group:0
    [FAILED] READ10 failed with wrong sense. Should have failed with ILLEGAL_REQUEST(0x05)/LBA_OUT_OF_RANGE(0x2100) but failed with Sense: ILLEGAL_REQUEST(0x05)/(0x2400)

FAILED
    1. test_read10_beyond_eol.c:48  - CU_ASSERT_EQUAL(_r,0)
    2. test_read10_beyond_eol.c:48  - CU_ASSERT_EQUAL(_r,0)${summary(2, 2, 1, 1)}`;

test('fail: assertion lines are collected, -V output glued onto the last one is cut off', (t) => {
  const r = interpretRun('Read10', READ10_FAIL, OK);
  t.is(r.ran, 2);
  t.is(r.passed, 1);
  t.is(r.failed, 1);
  t.is(r.failures.length, 1);
  const f = r.failures[0];
  t.is(f.test, 'BeyondEol');
  t.deepEqual(f.assertions, [
    'test_read10_beyond_eol.c:48  - CU_ASSERT_EQUAL(_r,0)',
    'test_read10_beyond_eol.c:48  - CU_ASSERT_EQUAL(_r,0)',
  ]);
  t.regex(f.detail, /\[FAILED\] READ10 failed with wrong sense/);
  t.notRegex(f.detail, /PRIN/);
  t.deepEqual(checkExpectations(r, {}).problems, [`FAILED BeyondEol: ${f.detail}`]);
});

test('parseCUnitOutput: status glued onto the Test line, and -V output glued after "passed"', (t) => {
  const out = `${preamble('iSCSITMF')}
  Test: AbortTaskSimpleAsync ...    WRITE10 queued: (CmdSN=0xbb2002d, ITT=0x6c4b01d9)
    ABORT TASK completed
passed
  Test: LUNResetSimpleAsync ...passed${summary(2, 2, 2, 0)}`;
  const p = parseCUnitOutput(out);
  t.is(p.tests.length, 2);
  t.is(p.tests[0].status, 'passed');
  t.deepEqual(
    p.tests[0].lines.map((l) => l.trim()),
    ['WRITE10 queued: (CmdSN=0xbb2002d, ITT=0x6c4b01d9)', 'ABORT TASK completed'],
  );
  t.is(p.tests[1].status, 'passed');
  t.deepEqual(p.tests[1].lines, []);
  t.deepEqual(p.summary, { ran: 2, passed: 2, failed: 0, inactive: 0, suitesFailed: 0 });
});

const PREVENT_ALLOW = `${preamble('PreventAllow')}
  Test: Simple ...    [SKIPPED] Logical unit is not removable. Skipping test.
passed
  Test: Eject ...    [SKIPPED] Logical unit is not removable. Skipping test.
passed${summary(2, 2, 2, 0)}`;

test('skip (feature absent, glued onto the Test line): a whole skip, not a pass; the suite is N/A', (t) => {
  const r = interpretRun('PreventAllow', PREVENT_ALLOW, OK);
  t.is(r.ran, 2);
  t.is(r.passed, 0);
  t.is(r.cunitPassed, 2);
  t.deepEqual(r.skipped, [
    {
      test: 'Simple',
      whole: true,
      reasons: [{ text: 'Logical unit is not removable. Skipping test.', kind: 'feature-absent' }],
    },
    {
      test: 'Eject',
      whole: true,
      reasons: [{ text: 'Logical unit is not removable. Skipping test.', kind: 'feature-absent' }],
    },
  ]);
  t.true(allSkipped(r));
  const table = formatSuiteTable([r]);
  t.regex(table, /^PreventAllow\s+2\s+N\/A\s+0\s+2\s+0\s+\S+\s+N\/A \(every test skipped\)$/m);
  t.notRegex(table, /^PreventAllow\s+2\s+2\b/m);

  // Not declared N/A: fails, and each skip is unexpected.
  const undeclared = checkExpectations(r, {});
  t.is(undeclared.problems.length, 3);
  t.regex(
    undeclared.problems[2],
    /every test \(2\) was skipped, but the suite is not declared not applicable/,
  );
  t.false(undeclared.notApplicable);

  const declared: SuiteExpectations = {
    notApplicable: 'LU is not removable',
    skips: [{ test: '*', reason: /^Logical unit is not removable\. Skipping test\.$/, why: 'RMB=0' }],
  };
  t.deepEqual(checkExpectations(r, declared), { problems: [], stale: [], notApplicable: true });
  r.notApplicable = declared.notApplicable;
  t.regex(formatSuiteTable([r]), /N\/A: LU is not removable/);

  // Declared N/A, but skipping for another reason: fails.
  const wrong = checkExpectations(r, {
    ...declared,
    skips: [{ test: '*', reason: /^Media is not/, why: '' }],
  });
  t.is(wrong.problems.length, 2);
  t.is(wrong.stale.length, 1);
});

test('skip (not implemented) as the last line is whole; followed by more checks it is partial', (t) => {
  const out = `${preamble('ReadOnly')}
  Test: ZeroBlocks ...
    Test WRITESAME16 0-blocks at LBA==0 (WSNZ=0)
    Send WRITESAME16 (Expecting SUCCESS) LBA:0 blocks:0 wrprotect:0 anchor:0 unmap:0 group:0
    [SKIPPED] WRITESAME16 is not implemented.
passed
  Test: ReadOnlySBC ...
    Test COMPAREANDWRITE fails with WRITE_PROTECTED
    Send COMPAREANDWRITE (Expecting CHECK_CONDITION) LBA:0 LEN:1024 WRPROTECT:0
    [SKIPPED] COMPAREANDWRITE is not implemented.
    [SKIPPED] COMPAREANDWRITE is not implemented.
    Test WRITE10 fails with WRITE_PROTECTED
    Send WRITE10 (Expecting CHECK_CONDITION) LBA:0 blocks:1 wrprotect:0 dpo:0 fua:0 fua_nv:0 group:0
    [OK] WRITE10 returned CHECK_CONDITION DATA PROTECTION(0x07) WRITE_PROTECTED(0x2700)
passed${summary(2, 2, 2, 0)}`;
  const r = interpretRun('ReadOnly', out, OK);
  t.is(r.passed, 0);
  t.deepEqual(r.skipped, [
    {
      test: 'ZeroBlocks',
      whole: true,
      reasons: [{ text: 'WRITESAME16 is not implemented.', kind: 'not-implemented' }],
    },
    {
      test: 'ReadOnlySBC',
      whole: false,
      reasons: [{ text: 'COMPAREANDWRITE is not implemented.', kind: 'not-implemented' }],
    },
  ]);
  t.false(allSkipped(r), 'a partial skip tested something');
  t.deepEqual(checkExpectations(r, {}).problems, [
    'unexpected skip ZeroBlocks [not-implemented]: WRITESAME16 is not implemented.',
    'unexpected partial skip ReadOnlySBC [not-implemented]: COMPAREANDWRITE is not implemented.',
  ]);
});

test('skipReasons: tagged, untagged partial, CHECK_SIZE, duplicates; [OK] and [SUCCESS] are no skips', (t) => {
  t.deepEqual(
    skipReasons([
      '    WRITESAME10 does not support 0-blocks.WSNZ == 1',
      '    [OK] WRITESAME10 returned CHECK_CONDITION ILLEGAL_REQUEST(0x05) INVALID_FIELD_IN_CDB(0x2400)',
      '    [SUCCESS] LBPME is set.',
      '    [SKIPPED] LUN too small. Skipping assert',
      '    [SKIPPING] No MAXIMUM WRITE SAME LENGTH - skipping MAXIMUM WRITE SAME LENGTH asserts.',
      '    SWP is not changeable',
      '    [SKIPPED] ORWRITE is not implemented.',
      '    [SKIPPED] ORWRITE is not implemented.',
      '    [SKIPPED] LBPPB < 2. Skipping test',
    ]),
    [
      { text: 'WRITESAME10 does not support 0-blocks.WSNZ == 1', kind: 'partial' },
      { text: 'LUN too small. Skipping assert', kind: 'partial' },
      {
        text: '[SKIPPING] No MAXIMUM WRITE SAME LENGTH - skipping MAXIMUM WRITE SAME LENGTH asserts.',
        kind: 'partial',
      },
      { text: 'SWP is not changeable', kind: 'partial' },
      { text: 'ORWRITE is not implemented.', kind: 'not-implemented' },
      { text: 'LBPPB < 2. Skipping test', kind: 'feature-absent' },
    ],
  );
  t.deepEqual(skipReasons(['    Send READ10 (Expecting SUCCESS)', '    [OK] READ10 returned SUCCESS']), []);
});

test('a test that printed nothing under -V is a silent skip; without -V it counts as passed', (t) => {
  const out = `${preamble('iSCSITMF')}
  Test: LUNResetSimpleAsync ...passed${summary(1, 1, 1, 0)}`;
  const r = interpretRun('iSCSITMF', out, OK);
  t.is(r.passed, 0);
  t.is(r.skipped.length, 1);
  t.is(r.skipped[0].reasons[0].kind, 'silent');
  t.true(allSkipped(r));
  t.is(checkExpectations(r, {}).problems.length, 2);
  t.is(interpretRun('iSCSITMF', out, { ...OK, verbose: false }).passed, 1);
});

test('crash: killed by a signal mid-test, no Run Summary', (t) => {
  const out = `${preamble('Write10')}
  Test: Simple ...
    Test WRITE10 of 1-256 blocks at the start of the LUN
    Send WRITE10 (Expecting SUCCESS) LBA:0 blocks:1 wrprotect:0 dpo:0 fua:0 fua_nv:0 group:0
`;
  const r = interpretRun('Write10', out, { exitCode: null, signal: 'SIGSEGV', timedOut: false });
  t.is(r.failed, 1);
  t.is(r.failures[0].test, 'Simple');
  t.regex(r.failures[0].detail, /^iscsi-test-cu died with SIGSEGV; last output: .*Send WRITE10/);
  t.regex(r.setupError ?? '', /^no CUnit Run Summary \(exit code null, signal SIGSEGV\)/);
  const problems = checkExpectations(r, {}).problems;
  t.true(problems.some((p) => p.startsWith('set-up error: no CUnit Run Summary')));
  t.true(problems.some((p) => p.startsWith('FAILED Simple: iscsi-test-cu died with SIGSEGV')));
});

test('timeout: SIGKILL mid-test', (t) => {
  const out = `${preamble('iSCSIcmdsn')}
  Test: iSCSICmdSnTooHigh ...
    Send TESTUNITREADY (Expecting SUCCESS)
`;
  const r = interpretRun('iSCSIcmdsn', out, {
    exitCode: null,
    signal: 'SIGKILL',
    timedOut: true,
    timeoutMs: 5000,
  });
  t.true(r.timedOut);
  t.is(r.failed, 1);
  t.regex(r.failures[0].detail, /^timed out after 5000 ms \(SIGKILL\)/);
  t.regex(r.setupError ?? '', /^timed out after 5000 ms/);
  t.true(checkExpectations(r, {}).problems.includes(`timed out (log: -)`));
  t.regex(formatSuiteTable([r]), /^iSCSIcmdsn\s.*TIMEOUT$/m);
});

test('login failure before CUnit starts: a set-up error, ran nothing', (t) => {
  const out = [
    'Login Failed. Failed to log in to target. Status: Target not found(515)',
    'Failed to connect to SCSI device 0',
    '',
  ].join('\n');
  const r = interpretRun('Read10', out, { exitCode: 255, signal: null, timedOut: false });
  t.is(r.ran, 0);
  t.is(r.failed, 1);
  t.is(r.failures[0].test, '(suite)');
  t.regex(r.setupError ?? '', /no CUnit Run Summary \(exit code 255[\s\S]*Target not found/);
  const problems = checkExpectations(r, {}).problems;
  t.true(problems.includes('ran no test'));
  t.regex(formatSuiteTable([r]), /SETUP ERROR/);
});

test('suite initialisation failed (second login in suite_init)', (t) => {
  const out = `${preamble('Read10').replace(/\nSuite: Read10$/, '')}
error: Failed to login to target for test set-up

WARNING - Suite initialization failed for 'Read10'.
${summary(6, 0, 0, 0, 1)}`;
  const r = interpretRun('Read10', out, { exitCode: 0, signal: null, timedOut: false });
  t.is(r.ran, 0);
  t.regex(r.setupError ?? '', /^WARNING - Suite initialization failed for 'Read10'\./);
  t.is(r.failures[0].test, '(suite)');
  t.true(r.failed >= 1);
});

test('expected failure: every assertion must match, and the declared log line must be there', (t) => {
  const out = `${preamble('iSCSITMF')}
  Test: LUNResetSimpleAsync ...    WRITE10 queued: (CmdSN=0x442d208d, ITT=0x2e31e943)
    LU RESET: TMF response 0 for RefCmdSN=0x442d208d, RefITT=0x2e31e943
    LU RESET completed
FAILED
    1. test_async_lu_reset_simple.c:157  - CU_ASSERT_EQUAL(reconnect_succeeded,1)${summary(1, 1, 0, 1)}`;
  const r = interpretRun('iSCSITMF.LUNResetSimpleAsync', out, OK);
  const declared = {
    test: 'LUNResetSimpleAsync',
    assertion: /^test_async_lu_reset_simple\.c:\d+\s+-\s+CU_ASSERT_EQUAL\(reconnect_succeeded,1\)$/,
    alsoLogged: /^LU RESET completed$/,
    why: 'libiscsi 1.19 bug',
  };
  t.deepEqual(checkExpectations(r, { failures: [declared] }), {
    problems: [],
    stale: [],
    notApplicable: false,
  });
  // Without the line that shows the target did its part, the failure is not excused.
  const noReset = interpretRun('x', out.replace('    LU RESET completed\n', ''), OK);
  t.is(checkExpectations(noReset, { failures: [declared] }).problems.length, 1);
  // A second, different assertion is not excused either.
  const more = interpretRun(
    'x',
    out.replace(/(reconnect_succeeded,1\))/, '$1\n    2. test_x.c:9  - CU_FAIL("boom")'),
    OK,
  );
  t.is(checkExpectations(more, { failures: [declared] }).problems.length, 1);
  // When the test passes, the declaration is stale.
  const stale = checkExpectations(interpretRun('x', READ10_PASS, OK), { failures: [declared] });
  t.deepEqual(stale.problems, []);
  t.is(stale.stale.length, 1);
});

test('an expected skip that no longer happens is reported stale', (t) => {
  const r = interpretRun('Read10', READ10_PASS, OK);
  const rep = checkExpectations(r, { skips: [{ test: 'Simple', reason: /LBPPB/, why: '' }] });
  t.deepEqual(rep.problems, []);
  t.deepEqual(rep.stale, ['expected skip Simple /LBPPB/ did not happen']);
  const na = checkExpectations(r, { notApplicable: 'x' });
  t.true(na.stale.some((s) => s.startsWith('declared not applicable (x) but 2 test(s) really ran')));
});

test('buildArgs: family prefix, one test per process, -V and --dataloss by default', (t) => {
  const url = 'iscsi://127.0.0.1:3260/iqn.x:y/0';
  const a = buildArgs('iSCSITMF.LUNResetSimpleAsync', { url });
  t.deepEqual(a.slice(0, 2), ['--dataloss', '-V']);
  t.deepEqual(a.slice(-3), ['-t', 'ALL.iSCSITMF.LUNResetSimpleAsync', url]);
  t.deepEqual(buildArgs('SCSI.Read10', { url }).slice(-3), ['-t', 'SCSI.Read10', url]);
  t.deepEqual(buildArgs('MultipathIO', { url, secondUrl: 'u2' }).slice(-2), [url, 'u2']);
});
