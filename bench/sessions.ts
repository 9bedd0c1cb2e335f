/**
 * Many sessions at once (issue 12, Memory): N sessions (1,000 by default), each doing QD1 4 KiB random READs
 * and WRITEs (half each) for a fixed time, against one nodetgt process on loopback. Reports the target's
 * resident memory (portal and workers are one process: /proc/PID/status VmRSS sampled during the run, VmHWM
 * for the peak) and fairness: the slowest session's IOPS over the mean (the goal: RSS < 512 MiB, fairness
 * >= 0.5).
 *
 *   node dist/bench/sessions.js [--sessions N] [--secs S] [--drivers D] [--workers W] [--lun-dir DIR]
 *
 * The sessions are driven by D child processes (2 by default) running the project's TypeScript initiator
 * (test/helpers/initiator.ts), N / D sessions each, so that one Node.js thread of initiators is less of a
 * bottleneck; on a small machine the initiators still share the cores with the target, so the IOPS are the
 * machine's, not the target's alone. Every session logs in first (a few dozen at a time); the clock starts
 * once all are in, and only operations that complete inside the measured window count. The LUN is a sparse
 * file (in /dev/shm by default), the portal listens on an ephemeral loopback port, and the target's limits
 * (connections, sessions, pending logins) are raised for the run.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestInitiator, defaultOperationalKeys } from '../test/helpers/initiator';
import { cdb10 } from '../test/scsi-helpers';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const TARGET = 'iqn.2026-11.io.nodetgt.bench:sessions';
const LUN_BYTES = 1024 * 1024 * 1024;
const BLOCK = 512;
const IO = 4096;

// ---- the driver (a child process): its share of the sessions -----------------------------------------------

type ToDriver = { go: number; secs: number } | { stop: true };
type FromDriver =
  | { ready: number; failedLogins: number }
  | { ops: number[]; errors: number; lost: number }
  | { fatal: string };

async function driver(): Promise<void> {
  const port = Number(opt('--port', '0'));
  const count = Number(opt('--count', '0'));
  const index = Number(opt('--index', '0'));
  const send = (m: FromDriver) => process.send!(m);
  const sessions: TestInitiator[] = [];
  let failedLogins = 0;
  const login = async (i: number): Promise<void> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const ini = await TestInitiator.connect(port);
        const r = await ini.login({
          targetName: TARGET,
          initiatorName: `iqn.2026-11.io.nodetgt.bench:driver${index}`,
          // One ISID per session (the same name and ISID would reinstate the session instead).
          isid: Buffer.from([0x80, index, (i >> 8) & 0xff, i & 0xff, 0, 1]),
          keys: defaultOperationalKeys(),
        });
        if (r.status === 0) {
          sessions.push(ini);
          return;
        }
        ini.close();
      } catch {
        /* retried */
      }
      await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
    }
    failedLogins++;
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) await login(next++);
    }),
  );
  send({ ready: sessions.length, failedLogins });
  const msg = await new Promise<ToDriver>((r) => process.once('message', (m) => r(m as ToDriver)));
  if (!('go' in msg)) process.exit(0);
  const start = msg.go;
  const end = start + msg.secs * 1000;
  const ops = new Array<number>(sessions.length).fill(0);
  let errors = 0;
  let lost = 0;
  const data = Buffer.alloc(IO, 0x5a);
  const blocks = IO / BLOCK;
  const slots = LUN_BYTES / IO;
  const one = async (ini: TestInitiator, k: number): Promise<void> => {
    let write = (k & 1) === 0;
    // Everyone waits for the common start, then runs until the end; completions outside count for nothing.
    await new Promise((r) => setTimeout(r, Math.max(0, start - Date.now())));
    while (Date.now() < end && !ini.closed) {
      const lba = Math.floor(Math.random() * slots) * blocks;
      try {
        const r = write
          ? await ini.scsi(cdb10(0x2a, lba, blocks), { edtl: IO, write: true, data })
          : await ini.scsi(cdb10(0x28, lba, blocks), { edtl: IO, read: true });
        if (r.status !== 0) errors++;
        else if (Date.now() <= end) ops[k]!++;
      } catch {
        errors++;
        if (ini.closed) lost++;
      }
      write = !write;
    }
  };
  await Promise.all(sessions.map((s, k) => one(s, k)));
  send({ ops, errors, lost });
  for (const s of sessions) s.close();
  setTimeout(() => process.exit(0), 500);
}

// ---- the parent: target, drivers, figures ---------------------------------------------------------------------

/**
 * MiB. shmem: RssShmem, the pages of tmpfs files the process has mapped: on a LUN in /dev/shm, the LUN's own
 * pages that the mapped copies (native/memmap.cc) touched. They are the LUN's memory, in RAM whether or not the
 * target maps them, so the goal is judged on own = VmRSS less RssShmem; VmRSS and VmHWM are printed as well.
 */
function procStatus(pid: number): { rss: number; hwm: number; shmem: number; own: number } {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
  const rss = kb('VmRSS') / 1024;
  const shmem = kb('RssShmem') / 1024;
  return { rss, hwm: kb('VmHWM') / 1024, shmem, own: rss - shmem };
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

async function startTarget(
  dir: string,
  sessions: number,
  workers: number,
): Promise<{ proc: ChildProcess; port: number }> {
  const lun = path.join(dir, 'lun.img');
  const config = {
    portals: ['127.0.0.1:0'],
    workers,
    stateDir: path.join(dir, 'state'),
    queueDepth: 32,
    limits: {
      maxConnections: sessions + 64,
      maxSessions: sessions + 64,
      maxPendingLogins: 256,
      maxPendingLoginsPerAddress: 256,
      loginTimeout: 60,
    },
    targets: [{ name: TARGET, maxSessions: sessions + 64, luns: [{ lun: 0, path: lun, size: LUN_BYTES }] }],
  };
  const cfg = path.join(dir, 'config.json');
  fs.writeFileSync(cfg, JSON.stringify(config));
  const repo = path.resolve(__dirname, '../..');
  // The descriptor limit: one per connection, and some; Node raises its soft limit to the hard one itself.
  const proc = spawn(process.execPath, [path.join(repo, 'bin/nodetgt.js'), 'serve', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODETGT_LOG: 'info' },
  });
  let out = '';
  const logFile = fs.createWriteStream(path.join(dir, 'target.log'));
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => {
      proc.kill('SIGKILL');
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`no portal after 30 s:\n${out.slice(-2000)}`)), 30000);
    let listening = false;
    // The log goes to stderr; both streams go to target.log.
    const onData = (d: Buffer) => {
      logFile.write(d);
      if (listening) return;
      if (out.length < 65536) out += d.toString();
      const m = /portal listening address=\S*?:(\d+)\s/.exec(out);
      if (m) {
        listening = true;
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]) });
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => {
      if (!listening) fail(new Error(`nodetgt exited (${code}):\n${out.slice(-2000)}`));
    });
  });
}

async function main(): Promise<void> {
  const total = Number(opt('--sessions', '1000'));
  const secs = Number(opt('--secs', '30'));
  const drivers = Number(opt('--drivers', '2'));
  const workers = Number(opt('--workers', String(Math.min(2, os.availableParallelism()))));
  const lunDir = opt('--lun-dir', fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  const dir = fs.mkdtempSync(path.join(lunDir, 'nodetgt-sessions-'));
  const { proc, port } = await startTarget(dir, total, workers);
  const pid = proc.pid!;
  const cleanup = () => {
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const idle = procStatus(pid);
    console.log(`nodetgt pid ${pid}, ${workers} workers, port ${port}; RSS idle ${idle.rss.toFixed(0)} MiB`);
    console.log(`load average before: ${loadAverage()}`);
    const kids: ChildProcess[] = [];
    const share = (d: number) => Math.floor(total / drivers) + (d < total % drivers ? 1 : 0);
    const ready: Promise<FromDriver>[] = [];
    const results: Promise<FromDriver>[] = [];
    const t0 = Date.now();
    for (let d = 0; d < drivers; d++) {
      const kid = fork(__filename, [
        '--driver',
        '--port',
        String(port),
        '--count',
        String(share(d)),
        '--index',
        String(d),
      ]);
      kids.push(kid);
      const messages: FromDriver[] = [];
      const waiters: Array<(m: FromDriver) => void> = [];
      kid.on('message', (m) => {
        const w = waiters.shift();
        if (w) w(m as FromDriver);
        else messages.push(m as FromDriver);
      });
      const nextMessage = () =>
        new Promise<FromDriver>((r) => {
          const m = messages.shift();
          if (m) r(m);
          else waiters.push(r);
        });
      ready.push(nextMessage());
      results.push(ready[d]!.then(() => nextMessage()));
    }
    const readies = await Promise.all(ready);
    let loggedIn = 0;
    let failedLogins = 0;
    for (const r of readies) {
      if ('fatal' in r) throw new Error(r.fatal);
      if ('ready' in r) {
        loggedIn += r.ready;
        failedLogins += r.failedLogins;
      }
    }
    const afterLogin = procStatus(pid);
    console.log(
      `${loggedIn} sessions logged in (${failedLogins} failed) in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
        `RSS ${afterLogin.rss.toFixed(0)} MiB`,
    );
    const go = Date.now() + 1000;
    for (const k of kids) k.send({ go, secs } satisfies ToDriver);
    let peakSampled = 0;
    let peakOwn = afterLogin.own;
    const sampler = setInterval(() => {
      const s = procStatus(pid);
      peakSampled = Math.max(peakSampled, s.rss);
      peakOwn = Math.max(peakOwn, s.own);
    }, 500);
    const done = await Promise.all(results);
    clearInterval(sampler);
    const end = procStatus(pid);
    peakOwn = Math.max(peakOwn, end.own);
    const ops: number[] = [];
    let errors = 0;
    let lost = 0;
    for (const r of done)
      if ('ops' in r) {
        ops.push(...r.ops);
        errors += r.errors;
        lost += r.lost;
      }
    const iops = ops.map((n) => n / secs);
    const sum = iops.reduce((a, b) => a + b, 0);
    const mean = sum / iops.length;
    const sorted = [...iops].sort((a, b) => a - b);
    const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
    const fairness = sorted[0]! / mean;
    const lines = [
      `sessions: ${iops.length} (${failedLogins} logins failed), ${secs} s of QD1 4 KiB random READ/WRITE (half each)`,
      `total IOPS: ${sum.toFixed(0)}; per session: mean ${mean.toFixed(1)}, min ${sorted[0]!.toFixed(1)}, ` +
        `p5 ${pct(5).toFixed(1)}, median ${pct(50).toFixed(1)}, max ${sorted[sorted.length - 1]!.toFixed(1)}`,
      `fairness (slowest / mean): ${fairness.toFixed(3)} (goal >= 0.5: ${fairness >= 0.5 ? 'met' : 'NOT met'})`,
      `target VmRSS MiB: idle ${idle.rss.toFixed(0)}, after logins ${afterLogin.rss.toFixed(0)}, ` +
        `peak sampled ${peakSampled.toFixed(0)}, end ${end.rss.toFixed(0)}, VmHWM ${end.hwm.toFixed(0)}; ` +
        `of it the LUN's tmpfs pages mapped (RssShmem) at the end ${end.shmem.toFixed(0)}`,
      `target's own memory (VmRSS less RssShmem) MiB: after logins ${afterLogin.own.toFixed(0)}, ` +
        `peak sampled ${peakOwn.toFixed(0)}, end ${end.own.toFixed(0)} (goal < 512: ${peakOwn < 512 ? 'met' : 'NOT met'})`,
      `errors: ${errors} (connections lost: ${lost}); load average after: ${loadAverage()}; node ${process.version}`,
    ];
    console.log(lines.join('\n'));
    for (const k of kids) if (k.connected) k.send({ stop: true } satisfies ToDriver);
  } finally {
    cleanup();
  }
}

if (argv.includes('--driver')) {
  driver().catch((e: Error) => {
    process.send?.({ fatal: e.stack ?? String(e) } satisfies FromDriver);
    process.exit(1);
  });
} else {
  main().catch((e: Error) => {
    console.error(e);
    process.exit(1);
  });
}
