#!/usr/bin/env bash
# bench/dns.sh - bootlabd's DNS vs Knot DNS, same zones, same query mix,
# same client (dnsperf), same run, loopback only.
#
#   bench/dns.sh                     # builds target/release/bootlabd
#   BOOTLABD=/path/to/bootlabd bench/dns.sh   # another build (before/after)
#   DURATION=10 CLIENTS=4 ROUNDS=3 bench/dns.sh
#   BIND=0.0.0.0 bench/dns.sh        # bootlabd on the spec's default 0.0.0.0
#                                    # (replies carry IP_PKTINFO)
#
# The zones and the query mix come from config/okd-lab.toml through
# `cargo run --example zonefile` (the zone files are bootlabd's own zones in
# master-file form): every host's A and PTR, api/api-int, the apex SOA/NS,
# wildcard names under *.apps, some NXDOMAIN and some NODATA.
# Prints queries/s, lost queries, average latency and CPU time per query
# for both servers and the ratios; the servers take turns (ROUNDS each). Target: bootlabd >= Knot's queries/s with 0 lost. Timing never
# fails a test: this is a report; it exits non-zero only when a server could
# not be started.
#
# Needs: dnsperf (Debian `dnsperf`), knotd (Debian `knot`), kdig
# (Debian `knot-dnsutils`). Knot runs by hand with its own config, rundir
# and storage under a temp dir - never the system service.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-3}
BIND=${BIND:-127.0.0.1}
for tool in dnsperf knotd kdig; do
  command -v "$tool" >/dev/null || { echo "bench/dns.sh: $tool is required (apt-get install dnsperf knot knot-dnsutils)" >&2; exit 69; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # so EXIT cleanup also runs when the bench is interrupted

free_port() {
  python3 -c 'import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(); 
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: t.close(); u.close()'
}

# BOOTLABD=path runs that binary instead (e.g. a build of another commit,
# for before/after comparisons); otherwise the release build of this tree.
if [ -z "${BOOTLABD:-}" ]; then
  cargo build --release -q -p bootlab-bootlabd
  BOOTLABD=target/release/bootlabd
fi
cargo build --release -q -p bootlab-dns --example zonefile

port_b=$(free_port)
http_port=$(free_port)
tftp_port=$(free_port)
dhcp_port=$(free_port)
ntp_port=$(free_port)
mkdir -p "$work/data" "$work/assets" "$work/zones" "$work/knot/db"
# Every service on loopback; the OKD lab's balancers (which would bind the
# services address, absent here) are left out: this bench measures DNS.
sed -e "s|^listen = .*|listen = { dhcp = \"127.0.0.1:$dhcp_port\", dns = \"$BIND:$port_b\", tftp = \"127.0.0.1:$tftp_port\", http = \"127.0.0.1:$http_port\", ntp = \"127.0.0.1:$ntp_port\" }|" \
    -e "s|^data_dir .*|data_dir = \"$work/data\"|" \
    -e "s|^assets_dir .*|assets_dir = \"$work/assets\"|" \
    -e "s|^firewall .*|firewall = false|" \
    config/okd-lab.toml | awk '/^\[/ { skip = ($0 ~ /^\[\[balancers\]\]/) } !skip' > "$work/lab.toml"
grep -q "ntp = \"127.0.0.1:$ntp_port\"" "$work/lab.toml" || { echo "bench/dns.sh: config/okd-lab.toml has no one-line services listen table to point at loopback" >&2; exit 1; }
target/release/examples/zonefile "$work/lab.toml" "$work/zones" > "$work/origins"

port_k=$(free_port)
{
  echo "server:"
  echo "  listen: 127.0.0.1@$port_k"
  echo "  rundir: $work/knot"
  echo "database:"
  echo "  storage: $work/knot/db"
  echo "log:"
  echo "  - target: stderr"
  echo "    any: error"
  echo "zone:"
  while read -r origin; do
    echo "  - domain: $origin"
    echo "    file: $work/zones/$origin.zone"
    echo "    semantic-checks: off"
  done < "$work/origins"
} > "$work/knot/knot.conf"

RUST_LOG=warn "$BOOTLABD" --config "$work/lab.toml" > "$work/bootlabd.log" 2>&1 &
pids+=($!)
knotd -c "$work/knot/knot.conf" > "$work/knot.log" 2>&1 &
pids+=($!)

probe="master-0.okd.example.com"
wait_up() {
  for _ in $(seq 100); do
    if kdig @127.0.0.1 -p "$1" "$probe" A +short +retry=0 +timeout=1 2>/dev/null | grep . >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "bench/dns.sh: $2 did not answer on 127.0.0.1:$1" >&2
  cat "$work/$3" >&2
  exit 1
}
wait_up "$port_b" bootlabd bootlabd.log
wait_up "$port_k" knotd knot.log

# Both servers must give the same answers to the whole mix.
while read -r name type; do
  a=$(kdig @127.0.0.1 -p "$port_b" "$name" "$type" +noall +answer +authority 2>/dev/null | sort)
  b=$(kdig @127.0.0.1 -p "$port_k" "$name" "$type" +noall +answer +authority 2>/dev/null | sort)
  if [ "$a" != "$b" ]; then
    echo "bench/dns.sh: answers differ for $name $type" >&2
    echo "bootlabd: $a" >&2
    echo "knot:     $b" >&2
  fi
done < "$work/zones/queries.txt"

run() { # port pid -> "qps lost latency_s cpu_us_per_query"
  local t0 t1 out
  t0=$(awk '{print $14 + $15}' "/proc/$2/stat")
  out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$work/zones/queries.txt" -c "$CLIENTS" -l "$DURATION" 2>&1)
  t1=$(awk '{print $14 + $15}' "/proc/$2/stat")
  awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Queries per second:/ { qps = $4 }
    /Average Latency \(s\):/ { lat = $4 }
    END { printf "%s %s %s %.2f\n", qps, lost, lat, done ? ticks * 1e6 / hz / done : 0 }' <<<"$out"
}

echo "dnsperf -c $CLIENTS -l $DURATION, $(wc -l < "$work/zones/queries.txt")-query mix from config/okd-lab.toml, loopback, $ROUNDS alternating rounds"
echo "(queries/s is the best round: other load on the machine only ever lowers it; CPU is the servers' own user+system time per answered query)"
results_b=()
results_k=()
for _ in $(seq "$ROUNDS"); do
  results_b+=("$(run "$port_b" "${pids[0]}")")
  results_k+=("$(run "$port_k" "${pids[1]}")")
done
summary() { # rounds... -> "best_qps total_lost latency_ms_of_best mean_cpu_us"
  printf '%s\n' "$@" | awk '
    { if ($1 > best) { best = $1; lat = $3 } lost += $2; cpu += $4; n++ }
    END { printf "%.0f %d %.3f %.2f\n", best, lost, lat * 1000, cpu / n }'
}
read -r qps_b lost_b lat_b cpu_b <<<"$(summary "${results_b[@]}")"
read -r qps_k lost_k lat_k cpu_k <<<"$(summary "${results_k[@]}")"
printf '%-10s %12s %8s %18s %16s\n' server "queries/s" lost "avg latency (ms)" "CPU us/query"
printf '%-10s %12s %8s %18s %16s\n' bootlabd "$qps_b" "$lost_b" "$lat_b" "$cpu_b"
printf '%-10s %12s %8s %18s %16s\n' knot "$qps_k" "$lost_k" "$lat_k" "$cpu_k"
for i in $(seq 0 $((ROUNDS - 1))); do
  echo "round $((i + 1)): bootlabd ${results_b[$i]%% *} q/s, knot ${results_k[$i]%% *} q/s"
done
awk -v b="$qps_b" -v k="$qps_k" -v cb="$cpu_b" -v ck="$cpu_k" 'BEGIN {
  printf "ratio bootlabd/knot queries/s: %.2f\n", b / k
  if (cb > 0) printf "ratio knot/bootlabd CPU per query (higher: bootlabd cheaper): %.2f\n", ck / cb
}'
