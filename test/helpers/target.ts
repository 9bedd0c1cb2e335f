/** Start a nodetgt target in-process for a test: temp dir, sparse LUN files, portal on an ephemeral port. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { normalizeConfig } from '../../src/config/schema';
import { parseSize } from '../../src/util/size';
import { startTarget, type RunningTarget } from '../../src/portal/portal';
import { TestInitiator } from './initiator';

export const TEST_TARGET = 'iqn.2026-11.io.nodetgt.test:disk';

export interface TestTarget {
  target: RunningTarget;
  port: number;
  dir: string;
  url(lun?: number, name?: string): string;
  close(): Promise<void>;
}

/**
 * The target never creates the file of a read-only LUN; for a test, make it (sparse, all zeros) when
 * the LUN gives a size and the file does not exist yet.
 */
function createReadOnlyBackingFiles(dir: string, targets: Array<Record<string, unknown>>): void {
  for (const t of targets) {
    for (const l of (t.luns as Array<Record<string, unknown>> | undefined) ?? []) {
      if (l.readOnly !== true || typeof l.path !== 'string' || l.size === undefined) continue;
      const file = path.resolve(dir, l.path);
      if (fs.existsSync(file)) continue;
      const size = typeof l.size === 'number' ? l.size : parseSize(String(l.size));
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const fd = fs.openSync(file, 'wx', 0o600);
      try {
        fs.ftruncateSync(fd, size);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
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
  const targets = opts.targets ?? [{ name: TEST_TARGET, luns }];
  createReadOnlyBackingFiles(dir, targets);
  const config = normalizeConfig(
    {
      portals: ['127.0.0.1:0'],
      workers: opts.workers ?? 2,
      targets,
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

/** A session of TestInitiator on the test target as initiator `iqn.2026-11.io.nodetgt.test:<name>`; throws unless it logs in. */
export async function loginAs(tt: TestTarget, name: string): Promise<TestInitiator> {
  const ini = await TestInitiator.connect(tt.port);
  const r = await ini.login({
    targetName: TEST_TARGET,
    initiatorName: `iqn.2026-11.io.nodetgt.test:${name}`,
  });
  if (r.status !== 0) {
    ini.close();
    throw new Error(`login as ${name}: status 0x${r.status.toString(16)}`);
  }
  return ini;
}
