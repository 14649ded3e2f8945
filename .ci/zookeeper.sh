#!/usr/bin/env bash
# Make sure a ZooKeeper server answers on 127.0.0.1:2181 for the test suite (idempotent).
#
# Installs the Debian `zookeeperd` package if it is missing, enables the four-letter-word
# commands (kazoo's server version check sends `envi`; the readiness probe sends `ruok`),
# starts the server unless it already answers, then waits up to ~60 s for `imok`.
set -euo pipefail

ZK_HOST=127.0.0.1
ZK_PORT=2181
ZK_CFG=/etc/zookeeper/conf/zoo.cfg
ZK_SERVER=/usr/share/zookeeper/bin/zkServer.sh
WHITELIST='4lw.commands.whitelist=*'

# Run as root directly, through sudo otherwise (CI containers usually are root).
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Prints the server's answer to "ruok" ("imok" when it is serving), or nothing.
ruok() {
    if command -v nc >/dev/null 2>&1; then
        echo ruok | nc -w 2 "$ZK_HOST" "$ZK_PORT" 2>/dev/null || true
    else
        python3 - "$ZK_HOST" "$ZK_PORT" <<'EOF' 2>/dev/null || true
import socket
import sys

try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as sock:
        sock.sendall(b"ruok")
        sock.shutdown(socket.SHUT_WR)
        sys.stdout.write(sock.recv(16).decode("ascii", "replace"))
except OSError:
    pass
EOF
    fi
}

if [ ! -x "$ZK_SERVER" ]; then
    echo "zookeeper.sh: installing zookeeperd" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeperd
fi

if ! grep -qxF "$WHITELIST" "$ZK_CFG"; then
    echo "$WHITELIST" | $SUDO tee -a "$ZK_CFG" >/dev/null
    # A server started before the line was added does not know it: restart it below.
    if [ "$(ruok)" = "imok" ]; then
        $SUDO "$ZK_SERVER" stop >&2 || true
    fi
fi

if [ "$(ruok)" != "imok" ]; then
    # `status` fails when no server of this installation is running.
    if ! $SUDO "$ZK_SERVER" status >/dev/null 2>&1; then
        $SUDO "$ZK_SERVER" start >&2
    fi
fi

for _ in $(seq 1 60); do
    if [ "$(ruok)" = "imok" ]; then
        echo "zookeeper.sh: ZooKeeper is serving on $ZK_HOST:$ZK_PORT" >&2
        exit 0
    fi
    sleep 1
done
echo "zookeeper.sh: ZooKeeper did not answer 'imok' on $ZK_HOST:$ZK_PORT within 60 s" >&2
exit 1
