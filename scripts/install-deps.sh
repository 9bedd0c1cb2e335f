#!/usr/bin/env bash
# Install the Debian/Ubuntu packages nodetgt needs: the build (g++, make, python3 for node-gyp, liburing)
# and, with --test, the real initiators and the peer target the tests drive.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(build-essential python3 liburing-dev)
if [ "${1:-}" = "--test" ]; then
  # prometheus: the binary and promtool for test/prometheus.test.ts (the tests start their own instance).
  pkgs+=(libiscsi-bin qemu-utils qemu-block-extra tgt procps iproute2 ethtool prometheus)
  # Ceph (16.2 on Debian 12): the one-node cluster test/rbd.test.ts starts (scripts/ceph-cluster.sh), and
  # librbd/librados headers so that the addon is built with the RBD backstore (scripts/check-librbd.js).
  pkgs+=(ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev librados-dev)
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# The package enables and starts a system Prometheus on :9090; the tests need only the binaries.
if [ "${1:-}" = "--test" ] && command -v systemctl >/dev/null && systemctl is-enabled prometheus >/dev/null 2>&1; then
  $SUDO systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
echo "nodetgt: installed ${pkgs[*]}"
