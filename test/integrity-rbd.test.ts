/**
 * Data integrity through RBD: test/integrity.test.ts's first case on a LUN stored in a Ceph RBD image. 256 MiB
 * of random data goes in with `qemu-img convert` (QEMU's libiscsi initiator, its default 2 MiB requests, plain
 * iscsi:// URL), comes back out the same way, and must be byte-identical on the way back and in the image
 * itself as `rbd export` reads it from the cluster (the file test compares the LUN's backing file).
 *
 * Skipped, with the reason, only when the Ceph binaries are not installed (helpers/ceph.ts).
 */
import test from 'ava';
import * as path from 'node:path';
import { clusterForFile, ifCeph, rbd, rbdLun } from './helpers/ceph';
import { startChildTargetWithConfig, type ChildTarget } from './helpers/child-target';
import { describeDifference, runQemu, sha256File, writeRandomFile } from './helpers/qemu';

const SIZE = 256 * 1024 * 1024;
const TARGET = 'iqn.2026-11.io.nodetgt.test:integrity-rbd';
/** Floors as in integrity.test.ts (a loaded 2-core machine), plus the OSD sharing it. */
const ISCSI_FLOOR = 2e6;
const budget = (bytes: number) => 30_000 + Math.ceil((bytes / ISCSI_FLOOR) * 1000);

ifCeph('integrity through an RBD LUN', () => {
  let child: ChildTarget | undefined;
  const cl = clusterForFile('nodetgt-integrity-rbd-', async () => {
    await child?.stop('SIGTERM');
  });

  test.serial(
    '256 MiB random image into an RBD LUN and back with qemu-img convert, SHA-256 equal, and in the image',
    async (t) => {
      t.timeout(3 * budget(SIZE));
      child = await startChildTargetWithConfig(
        {
          workers: 2,
          stateDir: path.join(cl.tmp, 'state'),
          targets: [
            {
              name: TARGET,
              luns: [rbdLun(cl, 0, 'integrity', { size: '256M', create: true })],
            },
          ],
        },
        { timeoutMs: 60_000 },
      );
      t.notRegex(child.log(), /LU offline/);
      const src = path.join(cl.tmp, 'src.raw');
      const back = path.join(cl.tmp, 'back.raw');
      const exported = path.join(cl.tmp, 'export.raw');
      writeRandomFile(src, SIZE);
      const hash = await sha256File(src);
      const url = `iscsi://127.0.0.1:${child.port}/${TARGET}/0`;
      const w = await runQemu(
        'qemu-img',
        ['convert', '-n', '-f', 'raw', '-O', 'raw', src, url],
        budget(SIZE),
      );
      const r = await runQemu('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url, back], budget(SIZE));
      t.log(`write ${w.ms} ms, read ${r.ms} ms (256 MiB, qemu-img default requests)`);
      const same = async (file: string, what: string) => {
        const h = await sha256File(file);
        if (h === hash) t.pass(`${what}: sha256 ${h.slice(0, 16)}... matches`);
        else t.fail(`${what} differs from the source: ${describeDifference(src, file) ?? 'hashes differ'}`);
      };
      await same(back, 'read back through iSCSI');
      await rbd(cl, 'export', `${cl.pool}/integrity`, exported);
      await same(exported, 'the RBD image (rbd export)');
    },
  );
});
