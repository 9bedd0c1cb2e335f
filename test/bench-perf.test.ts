/**
 * bench/lib/perf-profile.ts: reading `perf script` output and sorting samples into classes. The text is in
 * the form perf 6.x prints with `-F tid,ip,sym,dso` and call chains; the last test records a real process
 * when perf can, so the parser also meets perf's own output.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  classify,
  parsePerfScript,
  perfMarkdown,
  recordPerf,
  summarisePerf,
  SLEEP_WAKE,
} from '../bench/lib/perf-profile';

const K = '[kernel.kallsyms]';
const LIBC = '/usr/lib/x86_64-linux-gnu/libc.so.6';
const NODE = '/usr/bin/node';
const JIT = '/tmp/perf-31116.map';

const block = (tid: number, frames: [string, string][]) =>
  [
    `${tid} `,
    ...frames.map(([sym, dso], i) => `\t    ${(0xffff0000 + i).toString(16)} ${sym} (${dso})`),
  ].join('\n');

const SCRIPT = [
  // a write whose kernel frames never name the system call (ksys_write inlined): the libc stub does
  block(7, [
    ['tcp_sendmsg_locked', K],
    ['ksys_write', K],
    ['do_syscall_64', K],
    ['entry_SYSCALL_64_after_hwframe', K],
    ['__GI___libc_write', LIBC],
    ['JS:*send /x/connection.js:171:9', JIT],
  ]),
  // sleeping in epoll_pwait: the scheduler wins over the system call
  block(7, [
    ['pvm_irq_enable', K],
    ['finish_task_switch.isra.0', K],
    ['__schedule', K],
    ['schedule', K],
    ['do_epoll_wait', K],
    ['__x64_sys_epoll_pwait', K],
    ['do_syscall_64', K],
    ['entry_SYSCALL_64_after_hwframe', K],
    ['epoll_pwait', LIBC],
  ]),
  block(7, [
    ['_copy_to_iter', K],
    ['do_syscall_64', K],
    ['entry_SYSCALL_64_after_hwframe', K],
    ['read', LIBC],
    ['uv__read', NODE],
  ]),
  block(7, [
    ['JS:*onCommand /x/command.js:61:14', JIT],
    ['JS:*deliver /x/parser.js:486:12', JIT],
  ]),
  block(7, [['JS:*onCommand /x/command.js:61:14', JIT]]),
  block(7, [
    ['Builtins_LoadIC', NODE],
    ['JS:*onCommand /x/command.js:61:14', JIT],
  ]),
  block(7, [['v8::internal::Scavenger::ScavengeObject(x)', NODE]]),
  block(7, [['uv__io_poll', NODE]]),
  block(7, [
    ['__memmove_avx512_unaligned_erms', LIBC],
    ['memWrite (native)', NODE],
  ]),
  block(9, [
    ['clear_page_erms', K],
    ['handle_mm_fault', K],
    ['exc_page_fault', K],
    ['asm_exc_page_fault', K],
  ]),
  block(9, [['pthread_cond_signal@@GLIBC_2.3.2', LIBC]]),
  block(9, [
    ['__poll', LIBC],
    ['OnPrepare', '/x/build/Release/nodetgt_native.node'],
  ]),
  block(9, [['memWrite', '/x/build/Release/nodetgt_native.node']]),
  block(9, [
    ['futex_wake', K],
    ['do_syscall_64', K],
    ['entry_SYSCALL_64_after_hwframe', K],
    ['pthread_cond_signal@@GLIBC_2.3.2', LIBC],
  ]),
].join('\n\n');

test('perf script blocks become samples with their frames, leaf first', (t) => {
  const s = parsePerfScript(SCRIPT);
  t.is(s.length, 14);
  t.is(s[0]!.tid, 7);
  t.is(s[0]!.frames.length, 6);
  t.deepEqual(s[0]!.frames[0], { sym: 'tcp_sendmsg_locked', dso: K });
  t.deepEqual(s[0]!.frames[5], { sym: 'JS:*send /x/connection.js:171:9', dso: JIT });
  t.is(s[11]!.tid, 9);
});

test('each sample goes to the first class its chain fits', (t) => {
  const s = parsePerfScript(SCRIPT).map((x) => classify(x.frames));
  t.deepEqual(s, [
    'system call write',
    SLEEP_WAKE,
    'system call read',
    'JavaScript (JIT code)',
    'JavaScript (JIT code)',
    'V8 builtins and inline caches',
    'garbage collection',
    'node, V8, libuv (C++)',
    'libc, vdso (memcpy, clock_gettime)',
    'kernel: page faults',
    'libc, vdso (memcpy, clock_gettime)',
    'system call poll',
    'nodetgt addon (native)',
    'system call futex',
  ]);
});

test('the summary counts classes, threads and leaf functions', (t) => {
  const s = summarisePerf(parsePerfScript(SCRIPT));
  t.is(s.samples, 14);
  t.is(s.busiestThreadShare, 9 / 14);
  t.deepEqual(s.classes[0], { name: 'JavaScript (JIT code)', samples: 2, share: 2 / 14 });
  t.is(
    s.classes.reduce((a, c) => a + c.samples, 0),
    14,
  );
  const onCommand = s.leaves.find((l) => l.sym.startsWith('JS:*onCommand'))!;
  t.is(onCommand.samples, 2);
  t.is(onCommand.dso, 'JIT');
  const md = perfMarkdown(s, 14).join('\n');
  // 2 of 14 samples of a 14 µs I/O: 2 µs
  t.regex(md, /\| JavaScript \(JIT code\) \| 14\.3 \| 2\.00 \|/);
});

// perf needs the linux-perf package and, unless root, perf_event_paranoid <= 1: otherwise this test is skipped
// (and shown as skipped), as the bench's section is.
const perfHere =
  spawnSync('perf', ['--version']).status === 0 &&
  (process.getuid?.() === 0 ||
    Number(fs.readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8').trim()) <= 1);

(perfHere ? test : test.skip)('a real process recorded with perf is classified', async (t) => {
  // A child that spends its time in write(2) to /dev/null.
  const child = spawn(
    process.execPath,
    [
      '-e',
      "const fs=require('fs');const b=Buffer.alloc(64);const end=Date.now()+4000;while(Date.now()<end)fs.writeSync(1,b);",
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  try {
    await new Promise((r) => setTimeout(r, 300));
    const s = await recordPerf(child.pid!, 1, path.join(os.tmpdir(), `bench-perf-${process.pid}.data`));
    t.true(s.samples > 50, `samples ${s.samples}`);
    const write = s.classes.find((c) => c.name === 'system call write');
    t.truthy(write, JSON.stringify(s.classes));
    t.true(write!.share > 0.2, JSON.stringify(s.classes));
  } finally {
    child.kill('SIGKILL');
  }
});
