#!/bin/sh
# A local three-node RabbitMQ cluster for trying celery_pages on quorum
# queues and broker failover, from the installed rabbitmq-server package
# (no Docker). Nodes c1, c2, c3 listen on 127.0.0.1:5681, 5682, 5683; their
# data is under ${CLUSTER_DIR:-/tmp/celery_pages-cluster}.
#
#   celery_pages/cluster.sh start     # start the three nodes and join them
#   celery_pages/cluster.sh status    # the running nodes, as c1 sees them
#   celery_pages/cluster.sh kill c1   # crash one node (SIGKILL)
#   celery_pages/cluster.sh revive c1 # start it again: it rejoins
#   celery_pages/cluster.sh stop      # stop all three, remove their data
#
# Then, for example:
#   BROKERS='amqp://guest:guest@127.0.0.1:5681/%2f;amqp://guest:guest@127.0.0.1:5682/%2f;amqp://guest:guest@127.0.0.1:5683/%2f'
#   celery_pages worker --queue-type quorum --exchange-type topic --broker "$BROKERS"
#   celery_pages add 4 10 --countdown 6 --queue-type quorum --exchange-type topic --broker "$BROKERS"
set -eu

BIN=/usr/lib/rabbitmq/bin
DIR=${CLUSTER_DIR:-/tmp/celery_pages-cluster}
NODES="c1 c2 c3"

[ -x "$BIN/rabbitmq-server" ] || {
    echo "$BIN/rabbitmq-server is missing: install RabbitMQ (apt-get install rabbitmq-server)" >&2
    exit 1
}

port() { echo $((5680 + ${1#c})); }

# Starts node $1 in the background on its own data directory.
run() {
    d=$DIR/$1
    mkdir -p "$d/log"
    echo "listeners.tcp.local = 127.0.0.1:$(port "$1")" > "$d/rabbitmq.conf"
    echo "[]." > "$d/plugins"
    env RABBITMQ_NODENAME="$1@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$(port "$1")" RABBITMQ_DIST_PORT=$(($(port "$1") + 20000)) \
        RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_PID_FILE="$d/pid" RABBITMQ_CONFIG_FILE="$d/rabbitmq" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/plugins" \
        "$BIN/rabbitmq-server" -detached
}

ctl() { node=$1; shift; "$BIN/rabbitmqctl" -q -n "$node@localhost" "$@"; }

case "${1:-}" in
start)
    for n in $NODES; do run "$n"; done
    for n in $NODES; do ctl "$n" wait "$DIR/$n/pid" --timeout 120; done
    for n in c2 c3; do
        ctl "$n" stop_app
        ctl "$n" join_cluster c1@localhost
        ctl "$n" start_app
    done
    ctl c1 cluster_status
    ;;
status) ctl c1 cluster_status ;;
kill) kill -9 "$(cat "$DIR/$2/pid")" ;;
revive) run "$2" && ctl "$2" wait "$DIR/$2/pid" --timeout 120 ;;
stop)
    for n in $NODES; do ctl "$n" stop 2>/dev/null || true; done
    rm -rf "$DIR"
    ;;
*)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
