#!/usr/bin/env bash
# Python's own Pyro4 client against this crate's welcome server and against
# Python's (the chapter's server object), sequential, with threads, in
# batches (Pyro4.batch) and compressed (COMPRESSION=True), in one run. Not a subcommand: it needs Python with Pyro4 4.82, which the
# shipped binary does not bring.
#
#   rpc_welcome/bench/python_client.sh [CALLS] [THREADS]
#
# PYTHON names the interpreter (default: the tests' environment,
# test_support/.venv, which `cargo test` creates).
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-5000}
threads=${2:-32}
python=${PYTHON:-test_support/.venv/bin/python}
script=rpc_welcome/bench/python_client.py
"$python" -c 'import Pyro4' 2>/dev/null || {
    echo "no Pyro4 in $python: run cargo test once (it creates test_support/.venv), or set PYTHON" >&2
    exit 1
}
cargo build --release -q -p rpc_naming -p rpc_welcome

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

ns="127.0.0.1:$(free_port)"
target/release/rpc_naming serve --addr "$ns" >/dev/null 2>&1 & pids+=($!)
# The welcome server registers at start: wait until the name server answers.
for _ in $(seq 100); do
    target/release/rpc_naming ping --ns "$ns" >/dev/null 2>&1 && break
    sleep 0.1
done
exec 3< <(target/release/rpc_welcome server --ns "$ns" --addr 127.0.0.1:0 2>/dev/null)
pids+=($!)
rust_uri=""
while read -r line <&3; do
    case $line in *"uri = "*) rust_uri=${line##*uri = }; break ;; esac
done
exec 4< <("$python" -u "$script" serve)
pids+=($!)
read -r python_uri <&4

for target in "Rust:$rust_uri" "Python:$python_uri"; do
    side=${target%%:*} uri=${target#*:}
    sequential=$("$python" "$script" call "$uri" "$calls" 1)
    threaded=$("$python" "$script" call "$uri" "$calls" "$threads")
    batched=$("$python" "$script" batch "$uri" "$calls" 100)
    compressed=$("$python" "$script" zlib "$uri" "$calls")
    printf '%-6s server: %8.0f calls/s sequential  %8.0f calls/s with %s threads  %8.0f calls/s in batches of 100  %8.0f calls/s compressed\n' \
        "$side" "$sequential" "$threaded" "$threads" "$batched" "$compressed"
done
