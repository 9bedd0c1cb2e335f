#!/usr/bin/env bash
# A throw-away one-node Ceph cluster for the RBD tests: one mon, one mgr and one memstore OSD, all on
# 127.0.0.1, everything (config, keyring, data, logs, pid files, admin sockets) under one temporary directory.
# No systemd: the daemons are started directly and stopped by the PIDs in their pid files.
#
#   scripts/ceph-cluster.sh start [DIR]   start a cluster in DIR (default: a new mktemp -d); prints its env
#   scripts/ceph-cluster.sh env DIR       print the env of a running cluster
#   scripts/ceph-cluster.sh stop DIR      stop its daemons (TERM, then KILL after 5 s) and remove DIR
#   scripts/ceph-cluster.sh pause-osd DIR / resume-osd DIR
#                                         SIGSTOP / SIGCONT the OSD: a storage node that stops answering
#                                         (memstore keeps its data in the stopped process)
#
# The env lines: CEPH_DIR, CEPH_CONF (config path), CEPH_KEYRING (client.admin's keyring), CEPH_POOL (a
# replicated pool of size 1 with the rbd application enabled), CEPH_MON (the mon's address).
#
# memstore keeps the objects in the OSD's memory (MEMSTORE_BYTES, default 3 GiB of capacity, used only as
# written); it needs no file system with O_DIRECT and starts in seconds. Every `ceph` call is bounded by
# `timeout`: without a reachable mon (or mgr, for some commands) the CLI would wait for ever.
set -euo pipefail

CMD="${1:-}"
POOL="${CEPH_POOL:-rbd}"
MEMSTORE_BYTES="${MEMSTORE_BYTES:-3221225472}"
T="${CEPH_TIMEOUT:-20}"

die() {
  echo "ceph-cluster: $*" >&2
  exit 1
}

for b in ceph ceph-mon ceph-osd ceph-mgr ceph-authtool monmaptool; do
  command -v "$b" >/dev/null || die "$b not found: install ceph-mon ceph-osd ceph-mgr ceph-common"
done

# A free TCP port on 127.0.0.1 (the kernel picks it; a race with another process is possible but rare, and
# then the mon fails to bind and start fails with its log).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cephc() {
  timeout "$T" ceph -c "$DIR/ceph.conf" --connect-timeout "$T" "$@"
}

print_env() {
  echo "CEPH_DIR=$DIR"
  echo "CEPH_CONF=$DIR/ceph.conf"
  echo "CEPH_KEYRING=$DIR/keyring"
  echo "CEPH_POOL=$(cat "$DIR/pool")"
  echo "CEPH_MON=$(cat "$DIR/mon_addr")"
}

stop_cluster() {
  local pids=() f p
  for f in "$DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    p="$(cat "$f" 2>/dev/null || true)"
    [[ "$p" =~ ^[0-9]+$ ]] || continue
    # Only our own daemons: the pid's command line must name this cluster's config.
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$DIR/ceph.conf"; then
      kill -TERM "$p" 2>/dev/null || true
      pids+=("$p")
    fi
  done
  local waited=0
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ "$waited" -lt 50 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2"
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || {
      echo "ceph-cluster: timed out waiting for $what; logs in $DIR/log" >&2
      tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true
      return 1
    }
    sleep 0.3
  done
}

case "$CMD" in
start)
  DIR="${2:-}"
  if [ -z "$DIR" ]; then DIR="$(mktemp -d "${TMPDIR:-/tmp}/nodetgt-ceph.XXXXXX")"; else mkdir -p "$DIR"; fi
  DIR="$(cd "$DIR" && pwd)"
  [ -e "$DIR/ceph.conf" ] && die "$DIR already holds a cluster"
  trap 'echo "ceph-cluster: start failed, stopping what started" >&2; stop_cluster' ERR
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon/a" "$DIR/mgr/x" "$DIR/osd/0"
  FSID="$(cat /proc/sys/kernel/random/uuid)"
  PORT="$(free_port)"
  MON="v2:127.0.0.1:$PORT"
  echo "$MON" >"$DIR/mon_addr"
  echo "$POOL" >"$DIR/pool"
  cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $FSID
mon host = [$MON]
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$cluster-\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon data = $DIR/mon/\$id
mgr data = $DIR/mgr/\$id
osd data = $DIR/osd/\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon osd full ratio = .95
mon osd nearfull ratio = .9
osd max object name len = 460
osd max object namespace len = 64
# The OSD reports an OSD marked down by a blocklist test quickly; a stopped OSD is noticed by the mon.
osd heartbeat grace = 5
mon osd report timeout = 15
mgr initial modules =
[client]
# Clients (the CLI, every gateway process) run several at once: no admin socket for them, one log each.
admin socket =
log file = $DIR/log/client.\$pid.log
EOF
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n mgr.x \
    --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
  monmaptool --create --addv a "[$MON]" --fsid "$FSID" "$DIR/monmap" >/dev/null
  ceph-mon -c "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
  ceph-mon -c "$DIR/ceph.conf" -i a 2>>"$DIR/log/daemons.err"
  wait_for 30 "the mon" cephc mon stat
  ceph-mgr -c "$DIR/ceph.conf" -i x 2>>"$DIR/log/daemons.err"
  OSD_UUID="$(cat /proc/sys/kernel/random/uuid)"
  id="$(cephc osd create "$OSD_UUID")"
  [ "$id" = 0 ] || die "expected osd id 0, got '$id'"
  ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/osd-mkfs.out" 2>&1
  ceph-osd -c "$DIR/ceph.conf" -i 0 2>>"$DIR/log/daemons.err"
  wait_for 60 "the OSD to come up" bash -c "timeout $T ceph -c '$DIR/ceph.conf' osd stat -f json | grep -q '\"num_up_osds\":1'"
  cephc osd pool create "$POOL" 8 8 replicated >/dev/null 2>&1
  cephc osd pool set "$POOL" size 1 --yes-i-really-mean-it >/dev/null 2>&1
  cephc osd pool application enable "$POOL" rbd >/dev/null 2>&1
  # Every PG active+clean, and the new pool's 8 among them ("N pgs: N active+clean; ..."): right after the
  # pool is created, pg stat may not count its PGs yet.
  wait_for 60 "the pool's PGs to be active" bash -c \
    "timeout $T ceph -c '$DIR/ceph.conf' pg stat | grep -Eq '^(9|[1-9][0-9]+) pgs: \\1 active\+clean;'"
  # And an object can be written and read back through the pool.
  wait_for 30 "a write to the pool" bash -c \
    "echo ok | timeout $T rados -c '$DIR/ceph.conf' -p '$POOL' put nodetgt.ready - && timeout $T rados -c '$DIR/ceph.conf' -p '$POOL' rm nodetgt.ready"
  trap - ERR
  print_env
  ;;
env)
  DIR="${2:?usage: $0 env DIR}"
  [ -e "$DIR/ceph.conf" ] || die "no cluster in $DIR"
  print_env
  ;;
stop)
  DIR="${2:?usage: $0 stop DIR}"
  [ -e "$DIR/ceph.conf" ] || die "no cluster in $DIR"
  stop_cluster
  rm -rf "$DIR"
  ;;
pause-osd | resume-osd)
  DIR="${2:?usage: $0 $CMD DIR}"
  p="$(cat "$DIR/run/osd.0.pid")"
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF "$DIR/ceph.conf" || die "pid $p is not this cluster's OSD"
  if [ "$CMD" = pause-osd ]; then kill -STOP "$p"; else kill -CONT "$p"; fi
  ;;
*)
  echo "usage: $0 start [DIR] | env DIR | stop DIR | pause-osd DIR | resume-osd DIR" >&2
  exit 2
  ;;
esac
