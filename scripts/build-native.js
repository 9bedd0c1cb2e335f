'use strict';
// Build the native addon for the Node.js that runs this script, into build/abi-<NODE_MODULE_VERSION>/,
// so a second Node (CI tests on the machine's Node and on Node 24) does not overwrite build/Release.
//
//   /path/to/node24/bin/node scripts/build-native.js
//
// The headers come from the running Node's own install, never from the network (scripts/node-headers.js).
// src/native/index.ts loads the newest of build/abi-<ABI> and build/Release.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const repo = path.resolve(__dirname, '..');
const abi = process.versions.modules;
const major = process.versions.node.split('.')[0];

const { findNodedir: find, candidates } = require('./node-headers');

function findNodedir() {
  const dir = find();
  if (dir) return dir;
  console.error(`nodetgt: no headers for Node ${process.versions.node} in ${candidates().join(' or ')}`);
  process.exit(1);
}

const nodedir = findNodedir();
// node-gyp builds into <cwd>/build: give it a directory of its own that sees the sources.
const stage = path.join(repo, 'build', `abi-${abi}`);
fs.mkdirSync(stage, { recursive: true });
fs.copyFileSync(path.join(repo, 'binding.gyp'), path.join(stage, 'binding.gyp'));
for (const link of ['native', 'scripts', 'node_modules']) {
  const at = path.join(stage, link);
  fs.rmSync(at, { force: true, recursive: false });
  fs.symlinkSync(path.relative(stage, path.join(repo, link)), at);
}
const gyp = require.resolve('node-gyp/bin/node-gyp.js', { paths: [repo] });
// npm exports npm_config_nodedir (from .npmrc) into scripts; the flag below wins over it, but drop it
// so node-gyp's log does not mention another Node's headers.
const env = { ...process.env };
delete env.npm_config_nodedir;
// The binding's <!(node ...) helpers run `node` from PATH: make it this one.
env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${env.PATH ?? ''}`;
console.log(`nodetgt: building the addon for Node ${process.version} (ABI ${abi}) against ${nodedir}`);
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--directory', stage], {
  stdio: 'inherit',
  env,
});
if (r.status !== 0) process.exit(r.status ?? 1);
const out = path.join(stage, 'build', 'Release', 'nodetgt_native.node');
if (!fs.existsSync(out)) {
  console.error(`nodetgt: node-gyp succeeded but ${out} is missing`);
  process.exit(1);
}
console.log(`nodetgt: ${path.relative(repo, out)} (Node ${major})`);
