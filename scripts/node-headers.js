'use strict';
// Where the running Node's own headers are, so that node-gyp never fetches them from the network: an
// official tarball or a distribution package has them at <prefix>/include/node; the `node` package from
// the npm registry (npm install node@24) ships them in its platform package node-<os>-<arch>/include/node.
// Used by scripts/build-native.js and by tests that build the addon.
const fs = require('fs');
const path = require('path');

/** A directory with include/node/node_version.h of this very Node version, or undefined. */
function headersOf(dir) {
  const header = path.join(dir, 'include', 'node', 'node_version.h');
  if (!fs.existsSync(header)) return undefined;
  const text = fs.readFileSync(header, 'utf8');
  const v = ['MAJOR', 'MINOR', 'PATCH'].map(
    (k) => new RegExp(`#define NODE_${k}_VERSION (\\d+)`).exec(text)?.[1],
  );
  return v.join('.') === process.versions.node ? dir : undefined;
}

/** The places looked at, in order: process.execPath is <prefix>/bin/node, or for the npm package
 * node_modules/node/bin/node (a hard link to node_modules/node/node_modules/node-<platform>-<arch>/bin/node). */
function candidates() {
  const prefix = path.dirname(path.dirname(process.execPath));
  return [prefix, path.join(prefix, 'node_modules', `node-${process.platform}-${process.arch}`)];
}

/** The running Node's headers directory (for node-gyp --nodedir), or undefined when none is installed. */
function findNodedir() {
  for (const c of candidates()) if (headersOf(c)) return c;
  return undefined;
}

module.exports = { findNodedir, candidates };
