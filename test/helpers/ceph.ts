/**
 * The one-node Ceph test cluster (scripts/ceph-cluster.sh) as the RBD test files use it: whether it can run at
 * all, starting and stopping it, and the `ceph`/`rbd` command-line tools against it, each bounded by `timeout`
 * (without a reachable mon the tools wait for ever).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const SCRIPT = path.resolve(__dirname, '../../../scripts/ceph-cluster.sh');

/** The Ceph binaries the cluster script needs that are not on PATH. */
export const CEPH_MISSING = ['ceph', 'ceph-mon', 'ceph-osd', 'ceph-mgr'].filter(
  (b) => !process.env.PATH!.split(':').some((d) => fs.existsSync(path.join(d, b))),
);

/**
 * Register a test file's suite when Ceph is installed; otherwise one skipped test that says why, so that the
 * file is reported as skipped with its reason, never silently empty. (An addon built without librbd is not a
 * reason to skip: the suite then fails, and CI installs both.)
 */
export function ifCeph(what: string, suite: () => void): void {
  if (CEPH_MISSING.length > 0)
    test.skip(`${what}: Ceph not installed (${CEPH_MISSING.join(', ')} missing: apt-get install ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev librados-dev)`, () => {});
  else suite();
}

export interface TestCluster {
  dir: string;
  conf: string;
  pool: string;
}

/** A LUN of a test configuration on an RBD image of this cluster (its pool unless `more` names another). */
export function rbdLun(
  cl: TestCluster,
  lun: number,
  image: string,
  more: Record<string, unknown> = {},
): Record<string, unknown> {
  return { lun, backstore: 'rbd', pool: cl.pool, image, cephConf: cl.conf, ...more };
}

/** A test file's cluster, and the file's temporary directory (the cluster lives in its `ceph` folder). */
export interface FileCluster extends TestCluster {
  tmp: string;
}

/**
 * One cluster for a whole test file: started by a serial `before` hook registered now (so the file's own serial
 * `before` hooks, declared after this call, run once it is up), and stopped by a serial `after.always` hook once
 * `teardown` (the file's sessions and gateways) is done. Start and stop times go to the log.
 */
export function clusterForFile(prefix: string, teardown: () => Promise<void>): FileCluster {
  const fc: FileCluster = { dir: '', conf: '', pool: '', tmp: '' };
  test.serial.before(async (t) => {
    t.timeout(180_000);
    fc.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    const t0 = Date.now();
    Object.assign(fc, await startCluster(path.join(fc.tmp, 'ceph')));
    t.log(`cluster up in ${Date.now() - t0} ms`);
  });
  test.serial.after.always(async (t) => {
    await teardown();
    if (fc.dir) {
      const t0 = Date.now();
      await stopCluster(fc).catch((e: Error) => t.log(e.message));
      t.log(`cluster down in ${Date.now() - t0} ms`);
    }
    if (fc.tmp) fs.rmSync(fc.tmp, { recursive: true, force: true });
  });
  return fc;
}

/** Start a cluster under `dir` (which must not hold one yet); resolves once a write to its pool succeeds. */
export async function startCluster(dir: string): Promise<TestCluster> {
  const { stdout } = await exec(SCRIPT, ['start', dir], { timeout: 150_000 });
  const env = Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => l.split('=', 2) as [string, string]),
  );
  return { dir: env.CEPH_DIR, conf: env.CEPH_CONF, pool: env.CEPH_POOL };
}

/** Stop the cluster's daemons by PID and remove its directory (an OSD left paused is resumed first). */
export async function stopCluster(cl: TestCluster): Promise<void> {
  await clusterScript(cl, 'resume-osd').catch(() => undefined);
  await clusterScript(cl, 'stop');
}

/** `scripts/ceph-cluster.sh CMD DIR` (pause-osd, resume-osd, stop). */
export async function clusterScript(cl: TestCluster, cmd: string): Promise<void> {
  await exec(SCRIPT, [cmd, cl.dir], { timeout: 60_000 });
}

/** `ceph ARGS` against the cluster; resolves with its stdout. */
export async function ceph(cl: TestCluster, ...args: string[]): Promise<string> {
  return (await exec('timeout', ['30', 'ceph', '-c', cl.conf, ...args], { timeout: 40_000 })).stdout;
}

/** `rbd ARGS` against the cluster; resolves with its stdout. */
export async function rbd(cl: TestCluster, ...args: string[]): Promise<string> {
  return (await exec('timeout', ['60', 'rbd', '-c', cl.conf, ...args], { timeout: 70_000 })).stdout;
}

/** The bytes of a RADOS object of the cluster's pool (`rados get`); null when it does not exist. */
export async function radosGet(cl: TestCluster, object: string): Promise<Buffer | null> {
  const out = path.join(cl.dir, `get-${process.pid}-${Date.now()}`);
  try {
    await exec('timeout', ['30', 'rados', '-c', cl.conf, '-p', cl.pool, 'get', object, out], {
      timeout: 40_000,
    });
    return fs.readFileSync(out);
  } catch (e) {
    if (/No such file or directory/.test((e as { stderr?: string }).stderr ?? '')) return null;
    throw e;
  } finally {
    fs.rmSync(out, { force: true });
  }
}

/**
 * The clients watching an image's header (`rbd status`), as address -> number of watches: one address per
 * gateway process that has the image open (its workers share one cluster connection), one watch per worker that
 * opened it. Empty while the image does not exist yet.
 */
export async function imageWatchers(cl: TestCluster, image: string): Promise<Map<string, number>> {
  let out: string;
  try {
    out = await rbd(cl, 'status', '--format', 'json', `${cl.pool}/${image}`);
  } catch (e) {
    if (/No such file or directory/.test((e as { stderr?: string }).stderr ?? '')) return new Map();
    throw e;
  }
  const watches = new Map<string, number>();
  for (const w of (JSON.parse(out) as { watchers?: Array<{ address: string }> }).watchers ?? [])
    watches.set(w.address, (watches.get(w.address) ?? 0) + 1);
  return watches;
}
