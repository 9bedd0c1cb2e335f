#!/usr/bin/env bash
# Install the Debian/Ubuntu packages nodetgt needs: the build (g++, make, python3 for node-gyp, liburing)
# and, with --test, the real initiators and the peer target the tests drive.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(build-essential python3 liburing-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(libiscsi-bin qemu-utils qemu-block-extra tgt procps iproute2 ethtool)
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "nodetgt: installed ${pkgs[*]}"
