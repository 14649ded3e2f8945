#!/usr/bin/env bash
# Make sure an etcd server answers on 127.0.0.1:2379 for the test suite (idempotent).
#
# Installs Debian's `etcd-server` (and `etcd-client`, for etcdctl when debugging) if etcd is
# missing, then, unless a server already reports itself healthy, starts a single-member
# cluster on loopback only (clients 127.0.0.1:2379, peers 127.0.0.1:2380) in the background,
# its data and log in a fresh temporary directory, and waits up to ~60 s for /health.
# The package's own service is not used: CI containers have no init system to start it, and
# a throwaway data directory keeps runs from seeing each other's keys.
set -euo pipefail

ETCD_HOST=127.0.0.1
ETCD_PORT=2379
ETCD_PEER_PORT=2380
ETCD_URL="http://$ETCD_HOST:$ETCD_PORT"

# Run as root directly, through sudo otherwise (CI containers usually are root).
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Succeeds when the server answers /health with "health": "true".
healthy() {
    python3 - "$ETCD_URL/health" <<'EOF' 2>/dev/null
import json
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
        sys.exit(0 if json.load(answer).get("health") == "true" else 1)
except Exception:
    sys.exit(1)
EOF
}

if healthy; then
    echo "etcd.sh: etcd is already serving on $ETCD_HOST:$ETCD_PORT" >&2
    exit 0
fi

if ! command -v etcd >/dev/null 2>&1; then
    echo "etcd.sh: installing etcd-server" >&2
    # The package lists may be missing or stale on a fresh machine: refresh them once.
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client
    fi
fi

DATA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/taskflow-etcd.XXXXXX")"
# setsid + nohup: the server outlives this script and holds none of the caller's streams
# (a CI step waiting on its stdout would otherwise never finish).
setsid nohup etcd \
    --name taskflow-test \
    --data-dir "$DATA_DIR/data" \
    --listen-client-urls "$ETCD_URL" \
    --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://$ETCD_HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://$ETCD_HOST:$ETCD_PEER_PORT" \
    --initial-cluster "taskflow-test=http://$ETCD_HOST:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    >"$DATA_DIR/etcd.log" 2>&1 </dev/null &
ETCD_PID=$!

for _ in $(seq 1 120); do
    if healthy; then
        echo "etcd.sh: etcd $(etcd --version | head -n 1 | awk '{print $3}') is serving on" \
            "$ETCD_HOST:$ETCD_PORT (pid $ETCD_PID, data and log in $DATA_DIR)" >&2
        exit 0
    fi
    if ! kill -0 "$ETCD_PID" 2>/dev/null; then
        echo "etcd.sh: etcd exited while starting; its log ($DATA_DIR/etcd.log):" >&2
        tail -n 20 "$DATA_DIR/etcd.log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "etcd.sh: etcd did not report healthy on $ETCD_HOST:$ETCD_PORT within 60 s" >&2
tail -n 20 "$DATA_DIR/etcd.log" >&2
exit 1
