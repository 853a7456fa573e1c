#!/usr/bin/env bash
# Benchmark (not a test): the CPU (user + sys) one cmm-agent run spends when it opens one TLS
# connection, against a local `openssl s_server` (real TLS 1.3, an ECDSA certificate pinned
# with --grafana-ca-file), beside the same run over plain HTTP to a closed port. The difference
# is the TLS setup: aws-lc's generator seeding and the handshake. Median of N runs.
#   scripts/tls-cost.sh [BINARY] [N]   (default: target/release/cmm-agent, 15)
set -euo pipefail
bin=${1:-target/release/cmm-agent}; n=${2:-15}
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p cmm-agent" >&2; exit 2; }
dir=$(mktemp -d); trap 'kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/key.pem" \
  -out "$dir/cert.pem" -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
openssl s_server -accept "$port" -cert "$dir/cert.pem" -key "$dir/key.pem" -www -quiet >/dev/null 2>&1 &
server=$!
printf admin > "$dir/pw"; : > "$dir/agent.toml"; sleep 0.5
median() { sort -n | awk '{a[NR]=$1} END {printf "median %d ms (min %d, max %d, %d runs)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
cpu_ms() {
  local TIMEFORMAT='%3U %3S'
  for _ in $(seq "$n"); do
    { time CMM_CONFIG="$dir/agent.toml" "$bin" central token --grafana-url "$1" --grafana-ca-file "$dir/cert.pem" \
        --grafana-user admin --grafana-password-file "$dir/pw" --grafana-retries 1 >/dev/null 2>&1 || true; } 2>&1 \
      | awk '{printf "%d\n", ($1 + $2) * 1000}'
  done | median
}
echo "one run with one TLS connection: $(cpu_ms "https://127.0.0.1:$port")"
echo "the same run, plain HTTP refused: $(cpu_ms "http://127.0.0.1:1")"
