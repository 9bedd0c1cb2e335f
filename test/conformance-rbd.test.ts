/**
 * Conformance on Ceph RBD: iscsi-test-cu ALL, run as test/conformance.test.ts runs it on a file LUN (the same
 * runs, one process per suite, and the same nodetgt declarations), against LUNs stored in RBD images on a
 * one-node test cluster. Every suite must meet the file LUN's declarations exactly (no other skip or failure,
 * no declared one missing), so each test of ALL has the same outcome on both, except where a run declares an
 * RBD difference ('nodetgt-rbd' in helpers/conformance-runs.ts, with why); none does today (WRITE ATOMIC across
 * RADOS objects goes through the redo journal in the cluster, src/backstore/rbd-atomic.ts). The totals check that
 * every test not declared passes.
 *
 * The LUNs mirror the file run's, 64 MiB each, 512-byte blocks: LUN 0 an image created through the config,
 * LUN 1 an image opened read-only (created here with `rbd create`: a read-only LU never creates its image),
 * LUN 3 a removable disk, LUN 4 a fresh image for MultipathIO. LUN 2 stays a cd LU over a file: MMC media
 * (StartStopUnit loads and ejects it) are ISO images, never RBD.
 *
 * Skipped, with the reason, only when the Ceph binaries are not installed (helpers/ceph.ts).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterForFile, ifCeph, rbd, rbdLun } from './helpers/ceph';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { RUNS, registerConformance, type TargetUnderTest } from './helpers/conformance-runs';

const TARGET_IQN = 'iqn.2026-11.io.nodetgt.test:conformance-rbd';
const LUN_SIZE = '64M';

ifCeph('iscsi-test-cu ALL on RBD LUNs', () => {
  let child: ChildTarget | undefined;
  const cl = clusterForFile('nodetgt-cu-rbd-', async () => {
    await child?.stop('SIGTERM');
    child = undefined;
  });

  async function start(): Promise<TargetUnderTest> {
    await rbd(cl, 'create', '--size', LUN_SIZE, '--image-feature', 'layering', `${cl.pool}/cu-ro`);
    const iso = join(cl.tmp, 'conformance.iso');
    writeFileSync(iso, Buffer.alloc(4 * 1024 * 1024, 0x5a));
    const image = (lun: number, name: string, more: Record<string, unknown> = {}) =>
      rbdLun(cl, lun, name, { size: LUN_SIZE, ...(more.readOnly ? {} : { create: true }), ...more });
    child = await startChildTargetWithConfig(
      {
        workers: 2,
        stateDir: join(cl.tmp, 'state'),
        targets: [
          {
            name: TARGET_IQN,
            luns: [
              image(0, 'cu-disk'),
              image(1, 'cu-ro', { readOnly: true }),
              { lun: 2, type: 'cd', path: iso },
              image(3, 'cu-removable', { removable: true }),
              image(4, 'cu-fresh'),
            ],
          },
        ],
      },
      { env: { NODETGT_LOG_BURST: '1000000' }, timeoutMs: 60_000 },
    );
    const c = child;
    if (/LU offline/.test(c.log())) throw new Error(`an RBD LU did not open:\n${c.log()}`);
    const base = `iscsi://127.0.0.1:${c.port}/${TARGET_IQN}`;
    return {
      name: 'nodetgt on RBD',
      url: `${base}/0`,
      urls: { ro: `${base}/1`, cd: `${base}/2`, removable: `${base}/3`, fresh: `${base}/4` },
      log: () => c.log(),
      // The cluster's after hook stops the target (before the cluster): nothing more here.
      stop: async () => {},
    };
  }

  registerConformance({
    kind: 'nodetgt-rbd',
    runs: RUNS,
    all: true,
    start,
    logDir: process.env.NODETGT_CONFORMANCE_LOGDIR ?? mkdtempSync(join(tmpdir(), 'iscsi-test-cu-rbd-logs-')),
    timeoutMs: Number(process.env.NODETGT_CONFORMANCE_TIMEOUT_MS ?? 60_000),
  });
});
