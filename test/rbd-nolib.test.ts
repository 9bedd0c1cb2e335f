/**
 * An addon built without librbd (NODETGT_NO_RBD=1 makes scripts/check-librbd.js answer "false", as on a machine
 * without librbd-dev): the build succeeds, and a config with an rbd LUN is refused at start with the packages
 * to install named. Built into a temporary copy of native/ so that the tree's own addon is left alone.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

interface NodeHeaders {
  findNodedir(): string | undefined;
}
const ROOT = path.resolve(__dirname, '../..');

test('without librbd the addon builds, and an rbd LUN is refused naming librbd-dev', async (t) => {
  t.timeout(600_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodetgt-norbd-'));
  try {
    for (const f of ['binding.gyp', 'native', 'scripts'])
      fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const gyp = path.join(ROOT, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    // This Node's own headers when it has them (Node 24 from the npm registry in CI): never the network.
    const nodedir = (
      createRequire(__filename)(path.join(ROOT, 'scripts', 'node-headers.js')) as NodeHeaders
    ).findNodedir();
    await exec(process.execPath, [gyp, 'rebuild', '-j', '2', ...(nodedir ? [`--nodedir=${nodedir}`] : [])], {
      cwd: dir,
      env: { ...process.env, NODETGT_NO_RBD: '1' },
      timeout: 540_000,
    });
    const addon = path.join(dir, 'build', 'Release', 'nodetgt_native.node');
    const mod = { exports: {} as Record<string, unknown> };
    process.dlopen(mod, addon);
    t.is(mod.exports.rbdAvailable, false, 'built without RBD');
    t.is(mod.exports.rbdOpen, undefined);
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        portals: ['127.0.0.1:0'],
        stateDir: path.join(dir, 'state'),
        targets: [
          {
            name: 'iqn.2026-11.io.nodetgt.test:norbd',
            luns: [{ lun: 0, backstore: 'rbd', pool: 'rbd', image: 'x' }],
          },
        ],
      }),
    );
    const run = exec(process.execPath, [path.join(ROOT, 'bin', 'nodetgt.js'), 'serve', '--config', config], {
      env: { ...process.env, NODETGT_NATIVE: addon },
      timeout: 60_000,
    });
    const e = await t.throwsAsync(run);
    const out = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
    t.log(out.trim().split('\n').slice(-2).join('\n'));
    t.regex(
      out,
      /LUN 0 \(rbd rbd\/x\): this nodetgt was built without RBD support; install librbd-dev and librados-dev/,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
