/**
 * Which addon build a thread loads: build/Release, or the per-ABI build scripts/build-native.js makes
 * for a second Node (build/abi-<NODE_MODULE_VERSION>), whichever is newer.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addonCandidates, addonFile, crc32c } from '../src/native';

function tree(t: { teardown(fn: () => void): void }, files: Record<string, number>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'addon-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  for (const [rel, mtime] of Object.entries(files)) {
    const f = path.join(root, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, '');
    fs.utimesSync(f, mtime, mtime);
  }
  return root;
}

const REL = 'build/Release/a.node';
const ABI = 'build/abi-137/build/Release/a.node';
const DEBUG = 'build/Debug/a.node';

test('the newer of the per-ABI build and build/Release comes first', (t) => {
  const root = tree(t, { [REL]: 1000, [ABI]: 2000 });
  const rel = (xs: string[]) => xs.map((x) => path.relative(root, x));
  t.deepEqual(rel(addonCandidates(root, 'a.node', '137')), [ABI, REL, DEBUG]);
  fs.utimesSync(path.join(root, REL), 3000, 3000); // build/Release rebuilt after a change to native/
  t.deepEqual(rel(addonCandidates(root, 'a.node', '137')), [REL, ABI, DEBUG]);
});

test("another Node's ABI build is never a candidate; with only build/Release it comes first", (t) => {
  const root = tree(t, { [REL]: 1000, [ABI]: 2000 });
  const got = addonCandidates(root, 'a.node', '115').map((x) => path.relative(root, x));
  t.deepEqual(got, [REL, 'build/abi-115/build/Release/a.node', DEBUG]);
});

test('the addon this thread loaded exists and works', (t) => {
  t.true(fs.existsSync(addonFile), addonFile);
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283); // RFC 3720 B.4 check value
});
