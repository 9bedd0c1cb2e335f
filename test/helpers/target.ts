/** Start a nodetgt target in-process for a test: temp dir, sparse LUN files, portal on an ephemeral port. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { normalizeConfig } from '../../src/config/schema';
import { startTarget, type RunningTarget } from '../../src/portal/portal';

export const TEST_TARGET = 'iqn.2026-11.io.nodetgt.test:disk';

export interface TestTarget {
  target: RunningTarget;
  port: number;
  dir: string;
  url(lun?: number, name?: string): string;
  close(): Promise<void>;
}

export async function startTestTarget(
  opts: {
    workers?: number;
    luns?: Array<Record<string, unknown>>;
    targets?: Array<Record<string, unknown>>;
    extra?: Record<string, unknown>;
  } = {},
): Promise<TestTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-test-'));
  const luns = opts.luns ?? [{ lun: 0, path: 'lun0.img', size: '64M' }];
  const config = normalizeConfig(
    {
      portals: ['127.0.0.1:0'],
      workers: opts.workers ?? 2,
      targets: opts.targets ?? [{ name: TEST_TARGET, luns }],
      nopInInterval: 0,
      ...(opts.extra ?? {}),
    },
    dir,
  );
  const target = await startTarget(config);
  const port = target.addresses[0].port;
  return {
    target,
    port,
    dir,
    url: (lun = 0, name = TEST_TARGET) => `iscsi://127.0.0.1:${port}/${name}/${lun}`,
    async close() {
      await target.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
