/** A test file's directory on disk, with the child targets to stop before it is removed (uses ava's hooks). */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ChildTarget } from './child-target';

/**
 * A directory on disk for a test file's LUN files and state (/var/tmp is normally on the root file system;
 * os.tmpdir() may be tmpfs, where fdatasync proves nothing), made before its tests and removed after them,
 * once the child targets pushed to `children` are stopped.
 */
export function diskWorkspace(prefix: string): { readonly dir: string; children: ChildTarget[] } {
  const ws = { dir: '', children: [] as ChildTarget[] };
  test.before(() => {
    const base = fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir();
    ws.dir = fs.mkdtempSync(path.join(base, prefix));
  });
  test.after.always(async () => {
    for (const c of ws.children) await c.stop();
    if (ws.dir) fs.rmSync(ws.dir, { recursive: true, force: true });
  });
  return ws;
}
