/**
 * Conformance: libiscsi's iscsi-test-cu against the target under test (a file LUN, or tgtd), one process per
 * suite; the runs, the declarations and the checks are in helpers/conformance-runs.ts (shared with the same run
 * on Ceph RBD LUNs, conformance-rbd.test.ts).
 *
 * Environment knobs:
 *   NODETGT_CONFORMANCE_TARGET   nodetgt (default) | tgtd  -- which target to start, and whose
 *                                declarations apply (with NODETGT_CONFORMANCE_URL: which ones apply)
 *   NODETGT_CONFORMANCE_URL      iscsi://host:port/iqn/lun -- use an already running target instead
 *   NODETGT_CONFORMANCE_RO_URL   with NODETGT_CONFORMANCE_URL: the write-protected LUN for ReadOnly
 *   NODETGT_CONFORMANCE_CD_URL   with NODETGT_CONFORMANCE_URL: a cd (MMC, removable) LUN for StartStopUnit
 *   NODETGT_CONFORMANCE_REMOVABLE_URL  with NODETGT_CONFORMANCE_URL: a removable disk LUN for PreventAllow
 *   NODETGT_CONFORMANCE_FRESH_URL  with NODETGT_CONFORMANCE_URL: a disk LUN no other suite writes (MultipathIO)
 *   NODETGT_CONFORMANCE_SUITES   comma list overriding the runs below (e.g. "Read10,iSCSITMF")
 *   NODETGT_CONFORMANCE_TIMEOUT_MS  per-suite limit, default 60000 (SIGKILL past it, counted as failure)
 *   NODETGT_CONFORMANCE_LOGDIR   keep each suite's raw -V output there (default: a temp dir, printed)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, closeSync, openSync, ftruncateSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startChildTargetWithConfig } from './helpers/child-target';
import {
  RUNS,
  registerConformance,
  type Run,
  type TargetKind,
  type TargetUnderTest,
} from './helpers/conformance-runs';

const requested = (process.env.NODETGT_CONFORMANCE_SUITES ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const runs: readonly Run[] = requested.length
  ? requested.flatMap((s) => {
      const known = RUNS.filter((r) => r.name === s || r.name.startsWith(`${s}.`));
      return known.length ? known : [{ name: s, expect: {} }];
    })
  : RUNS;
const TIMEOUT_MS = Number(process.env.NODETGT_CONFORMANCE_TIMEOUT_MS ?? 60_000);
const LUN_BYTES = 64 * 1024 * 1024;
const TARGET_IQN = 'iqn.2026-11.io.nodetgt.test:conformance';
const KIND: TargetKind = (process.env.NODETGT_CONFORMANCE_TARGET ?? 'nodetgt') as TargetKind;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Sparse LUN files, in tmpfs when /dev/shm exists. */
function makeLunFiles(names: string[]): { dir: string; files: string[] } {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'nodetgt-conformance-'));
  const files = names.map((n) => {
    const file = join(dir, n);
    const fd = openSync(file, 'w');
    ftruncateSync(fd, LUN_BYTES);
    closeSync(fd);
    return file;
  });
  return { dir, files };
}

/**
 * The peer: a private tgtd (never the system service) on its own control socket number and a
 * free loopback port, LUN 1 = 64 MiB sparse file, LUN 2 = the same size, read-only. tgtd ignores
 * SIGTERM while it has targets, so it is stopped through tgtadm (delete target --force, then
 * system delete).
 */
async function startTgtd(): Promise<TargetUnderTest> {
  const port = await freePort();
  const ctl = String(20000 + (process.pid % 20000) + Math.floor(Math.random() * 1000));
  const {
    dir,
    files: [file, roFile],
  } = makeLunFiles(['lun1.img', 'lun2-ro.img']);
  const tgtd = spawn('tgtd', ['-f', '-C', ctl, '--iscsi', `portal=127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  const keep = (c: Buffer) => {
    log.push(c.toString());
    if (log.length > 200) log.shift();
  };
  tgtd.stdout?.on('data', keep);
  tgtd.stderr?.on('data', keep);
  const adm = (...args: string[]) => {
    const r = spawnSync('tgtadm', ['-C', ctl, ...args], { encoding: 'utf8', timeout: 10_000 });
    return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
  };
  const stop = async () => {
    if (tgtd.exitCode === null && tgtd.signalCode === null) {
      adm('--lld', 'iscsi', '--mode', 'target', '--op', 'delete', '--force', '--tid', '1');
      adm('--mode', 'system', '--op', 'delete');
      if (!(await waitExit(tgtd, 5000))) {
        tgtd.kill('SIGKILL');
        await waitExit(tgtd, 2000);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    let up = false;
    for (let i = 0; i < 50 && !up; i++) {
      if (tgtd.exitCode !== null) throw new Error(`tgtd exited (${tgtd.exitCode}): ${log.join('')}`);
      up = adm('--lld', 'iscsi', '--op', 'show', '--mode', 'target').ok;
      if (!up) await sleep(100);
    }
    if (!up) throw new Error(`tgtd control socket ${ctl} never answered: ${log.join('')}`);
    const lu = ['--lld', 'iscsi', '--mode', 'logicalunit', '--tid', '1'];
    const steps: string[][] = [
      ['--lld', 'iscsi', '--op', 'new', '--mode', 'target', '--tid', '1', '-T', TARGET_IQN],
      [...lu, '--op', 'new', '--lun', '1', '-b', file],
      [...lu, '--op', 'new', '--lun', '2', '-b', roFile],
      [...lu, '--op', 'update', '--lun', '2', '--params', 'readonly=1'],
      ['--lld', 'iscsi', '--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL'],
    ];
    for (const s of steps) {
      const r = adm(...s);
      if (!r.ok) throw new Error(`tgtadm ${s.join(' ')} failed: ${r.out}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const base = `iscsi://127.0.0.1:${port}/${TARGET_IQN}`;
  return { name: 'tgtd', url: `${base}/1`, urls: { ro: `${base}/2` }, stop };
}

/**
 * nodetgt as a real child process with 2 workers (its log tells which worker thread each login landed on, the
 * "[tN] login" lines): LUN 0 = 64 MiB sparse file, LUN 1 = the same size, read-only, LUN 2 = a cd LU over a
 * 4 MiB image made here (a cd LUN never creates its image), LUN 3 = a removable 64 MiB disk.
 */
async function startNodetgt(): Promise<TargetUnderTest> {
  // 64 MiB: small enough that no BeyondEol test is skipped for size (see helpers/iscsi-test-cu.ts).
  const {
    dir,
    files: [file, roFile, removableFile, freshFile],
  } = makeLunFiles([
    'conformance.img',
    'conformance-ro.img',
    'conformance-removable.img',
    'conformance-fresh.img',
  ]);
  const iso = join(dir, 'conformance.iso');
  writeFileSync(iso, Buffer.alloc(4 * 1024 * 1024, 0x5a));
  const child = await startChildTargetWithConfig(
    {
      workers: 2,
      stateDir: join(dir, 'state'),
      targets: [
        {
          name: TARGET_IQN,
          luns: [
            { lun: 0, path: file },
            { lun: 1, path: roFile, readOnly: true },
            { lun: 2, type: 'cd', path: iso },
            { lun: 3, path: removableFile, removable: true },
            { lun: 4, path: freshFile },
          ],
        },
      ],
    },
    // Every login line, however many (the logger otherwise keeps 10 of a kind per 10 s).
    { env: { NODETGT_LOG_BURST: '1000000' } },
  );
  const base = `iscsi://127.0.0.1:${child.port}/${TARGET_IQN}`;
  return {
    name: 'nodetgt',
    url: `${base}/0`,
    urls: { ro: `${base}/1`, cd: `${base}/2`, removable: `${base}/3`, fresh: `${base}/4` },
    log: () => child.log(),
    async stop() {
      await child.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startTargetUnderTest(): Promise<TargetUnderTest> {
  const external = process.env.NODETGT_CONFORMANCE_URL;
  if (external) {
    const env = process.env;
    const urls = {
      ro: env.NODETGT_CONFORMANCE_RO_URL,
      cd: env.NODETGT_CONFORMANCE_CD_URL,
      removable: env.NODETGT_CONFORMANCE_REMOVABLE_URL,
      fresh: env.NODETGT_CONFORMANCE_FRESH_URL,
    };
    return { name: `external (${KIND} expectations)`, url: external, urls, stop: async () => {} };
  }
  if (KIND === 'tgtd') return startTgtd();
  if (KIND === 'nodetgt') return startNodetgt();
  throw new Error(`NODETGT_CONFORMANCE_TARGET must be tgtd or nodetgt, not ${String(KIND)}`);
}

registerConformance({
  kind: KIND,
  runs,
  all: requested.length === 0,
  start: startTargetUnderTest,
  logDir: process.env.NODETGT_CONFORMANCE_LOGDIR ?? mkdtempSync(join(tmpdir(), 'iscsi-test-cu-logs-')),
  timeoutMs: TIMEOUT_MS,
});
