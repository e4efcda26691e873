#!/usr/bin/env bash
# bench/storm.sh - a PXE boot storm: CLIENTS synthetic clients (default
# 500) boot at once against bootlabd and, in the same run, against dnsmasq
# (DHCP + TFTP) + nginx (HTTP) serving the same files, the same
# reservations and the same per-node scripts; prints each phase's time, the
# totals and the ratios.
#
#   bench/storm.sh                          # builds target/release
#   CLIENTS=20 KERNEL_MIB=4 INITRD_MIB=12 BUILD_PROFILE=debug bench/storm.sh   # CI smoke
#
# Every client has its own network namespace and one veth (eth0, the MAC
# of its node in a generated lab: bench/labgen.py --mode storm) on one
# bridge in the servers' namespace. Each runs bench/storm-client.sh: DHCP
# (udhcpc as a BIOS PXE ROM: PXEClient, arch 0) -> TFTP of the boot file
# the answer names (undionly.kpxe from Debian's ipxe, atftp, blksize 1432
# and tsize as iPXE asks) -> HTTP GET /boot.ipxe (the server picks the
# node's script by the source address; the client checks it is its own) ->
# HTTP GET of the kernel and initrd the script names (KERNEL_MIB +
# INITRD_MIB, default 16 + 48 MiB; curl, one connection). All clients are
# released at once after every one is ready.
#
# Printed per server: each phase's per-client time (mean, median, 95th
# percentile, max), the storm's total (release to the last client done)
# and failed clients; the ratio bootlabd/anchor per phase and for the total
# (target: total <= 1.0x). Failed clients (no lease, wrong address, short
# file, wrong script, timeout) must be zero: any makes the exit non-zero,
# as does a server that does not start.
#
# The anchor: dnsmasq (Debian dnsmasq-base) run by hand with its own
# config, lease and pid files (reservations from the same lab,
# `dhcp-boot=undionly.kpxe`, tftp-max raised above CLIENTS: its default of
# 50 concurrent transfers would make it drop most of the storm) and nginx
# (2 workers, sendfile) serving `bootlab render`'s script for each node by
# the client's address (try_files $remote_addr.ipxe) and the assets under
# /assets/ on the same address and port as bootlabd.
#
# Needs root, iproute2, python3, udhcpc, atftp, curl, dnsmasq, nginx, ipxe.
# Everything it creates (namespaces, bridge, processes, files) is removed
# on exit, also after a failure and on INT/TERM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CLIENTS=${CLIENTS:-500}
KERNEL_MIB=${KERNEL_MIB:-16}
INITRD_MIB=${INITRD_MIB:-48}
ROUNDS=${ROUNDS:-1}
STORM_TIMEOUT=${STORM_TIMEOUT:-900}
BUILD_PROFILE=${BUILD_PROFILE:-release}
LOADER=${LOADER:-/usr/lib/ipxe/undionly.kpxe}

die() { echo "bench/storm.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
export PATH=$PATH:/usr/sbin:/sbin
for t in ip python3 udhcpc atftp curl dnsmasq nginx; do
  command -v "$t" >/dev/null || die "$t missing (apt-get install iproute2 python3 udhcpc atftp curl dnsmasq-base nginx)"
done
[ -f "$LOADER" ] || die "$LOADER missing (apt-get install ipxe)"

if [ -z "${BOOTLABD:-}" ] || [ -z "${BOOTLAB:-}" ]; then
  if [ "$BUILD_PROFILE" = release ]; then
    cargo build --release -q -p bootlab-bootlabd -p bootlab-bootlab || die "cannot build"
  else
    cargo build -q -p bootlab-bootlabd -p bootlab-bootlab || die "cannot build"
  fi
  BOOTLABD=$ROOT/target/$BUILD_PROFILE/bootlabd
  BOOTLAB=$ROOT/target/$BUILD_PROFILE/bootlab
fi

TAG=$$
SNS=bl-storm-$TAG-srv
CPFX=bl-storm-$TAG-c
SRV=10.81.0.2
HTTP_PORT=8080
WORK=$(mktemp -d /tmp/bootlab-bench-storm.XXXXXX)
SERVER_PIDS=()
CLIENT_PIDS=()
NS_MADE=0

stop_servers() {
  for p in "${SERVER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${SERVER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SERVER_PIDS=()
}
cleanup() {
  for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_servers
  # nginx's workers and dnsmasq's children go with their namespace's
  # processes: kill whatever still runs in our namespaces.
  for ns in "$SNS" $(seq -f "$CPFX%g" 1 "$NS_MADE"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$NS_MADE" -gt 0 ]; then
    seq -f "netns del $CPFX%g" 1 "$NS_MADE" | ip -force -batch - 2>/dev/null || true
  fi
  ip netns del "$SNS" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "bench/storm.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # so EXIT cleanup also runs when the bench is interrupted

echo "bench/storm.sh: $CLIENTS clients, ${KERNEL_MIB}+${INITRD_MIB} MiB each; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at start"

# --- the lab, the files, the scripts -------------------------------------
python3 bench/labgen.py --mode storm --nodes "$CLIENTS" --cidr-base 10.81 --out "$WORK/lab" \
  --interface br0 --data-dir "$WORK/data" --assets-dir "$WORK/assets" --http-port "$HTTP_PORT"
mkdir -p "$WORK/assets/storm" "$WORK/www/scripts" "$WORK/results" "$WORK/ready" "$WORK/tmp"
cp "$LOADER" "$WORK/assets/undionly.kpxe"
head -c $((KERNEL_MIB << 20)) /dev/urandom > "$WORK/assets/storm/vmlinuz"
head -c $((INITRD_MIB << 20)) /dev/urandom > "$WORK/assets/storm/initrd.img"
cp "$WORK/lab/nodes.txt" "$WORK/nodes.txt"
"$BOOTLAB" check "$WORK/lab/lab.toml" > /dev/null || die "the generated lab does not check"
while read -r name mac ip; do
  "$BOOTLAB" render "$WORK/lab/lab.toml" "boot.ipxe?mac=$mac" > "$WORK/www/scripts/$ip.ipxe"
done < "$WORK/nodes.txt"
cat > "$WORK/udhcpc.script" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    echo "$ip $siaddr $boot_file" > "$LEASE_OUT"
    ;;
esac
EOF
chmod +x "$WORK/udhcpc.script"
# nginx workers and dnsmasq's TFTP drop privileges: let them read the files.
chmod -R a+rX "$WORK"

# --- namespaces: the servers' with the bridge, one per client ------------
ip netns add "$SNS"
ip -n "$SNS" link set lo up
ip -n "$SNS" link add br0 type bridge
ip -n "$SNS" addr add "$SRV/16" dev br0
ip -n "$SNS" link set br0 up
t0=$(date +%s.%N)
seq -f "netns add $CPFX%g" 1 "$CLIENTS" | ip -batch -
NS_MADE=$CLIENTS
i=0
while read -r name mac ip; do
  i=$((i + 1))
  echo "link add p$i type veth peer name eth0 netns $CPFX$i address $mac"
  echo "link set p$i master br0"
  echo "link set p$i up"
done < "$WORK/nodes.txt" | ip -n "$SNS" -batch -
printf 'namespaces: %d clients + 1 server, veths and bridge made in %.1f s\n' "$CLIENTS" "$(echo "$(date +%s.%N) - $t0" | bc -l)"

# --- the servers -----------------------------------------------------------
wait_http() { # url what log
  local deadline=$(( $(date +%s) + 60 ))
  until ip netns exec "$SNS" curl -sf -o /dev/null "$1"; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$3" >&2; die "$2 did not come up"; }
    sleep 0.1
  done
}
start_bootlabd() {
  rm -rf "$WORK/data"
  ip netns exec "$SNS" "$BOOTLABD" --config "$WORK/lab/lab.toml" > "$WORK/bootlabd.log" 2>&1 &
  SERVER_PIDS+=($!)
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q "bootlabd ready" "$WORK/bootlabd.log"; do
    [ "$(date +%s)" -lt "$deadline" ] && kill -0 "${SERVER_PIDS[-1]}" 2>/dev/null \
      || { cat "$WORK/bootlabd.log" >&2; die "bootlabd did not start"; }
    sleep 0.05
  done
  wait_http "http://$SRV:$HTTP_PORT/metrics" bootlabd "$WORK/bootlabd.log"
}
start_anchor() {
  rm -f "$WORK/dnsmasq.leases"
  : > "$WORK/dnsmasq.leases"
  awk '{ print $2 "," $3 "," $1 }' "$WORK/nodes.txt" > "$WORK/dnsmasq.hosts"
  cat > "$WORK/dnsmasq.conf" <<CONF
port=0
interface=br0
bind-interfaces
dhcp-range=10.81.0.0,static,255.255.0.0,1h
dhcp-hostsfile=$WORK/dnsmasq.hosts
dhcp-lease-max=$((CLIENTS + 100))
dhcp-option=option:router,10.81.0.1
dhcp-boot=undionly.kpxe,,$SRV
enable-tftp
tftp-root=$WORK/assets
tftp-max=$((CLIENTS + 100))
dhcp-leasefile=$WORK/dnsmasq.leases
pid-file=$WORK/dnsmasq.pid
log-facility=$WORK/dnsmasq.log
${DNSMASQ_LOG:+#}quiet-dhcp
${DNSMASQ_LOG:+#}quiet-tftp
CONF
  cat > "$WORK/nginx.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 8192;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_timeout 30;
  default_type application/octet-stream;
  server {
    listen $SRV:$HTTP_PORT;
    location = /boot.ipxe { root $WORK/www/scripts; try_files /\$remote_addr.ipxe =404; }
    location /assets/ { alias $WORK/assets/; }
  }
}
CONF
  ip netns exec "$SNS" dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" 2> "$WORK/dnsmasq.err" &
  SERVER_PIDS+=($!)
  ip netns exec "$SNS" nginx -c "$WORK/nginx.conf" -g 'daemon off;' 2> "$WORK/nginx.log" &
  SERVER_PIDS+=($!)
  wait_http "http://$SRV:$HTTP_PORT/assets/undionly.kpxe" nginx "$WORK/nginx.err"
  local deadline=$(( $(date +%s) + 30 ))
  until ip netns exec "$SNS" ss -Hlun 'sport = :67' | grep -q .; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$WORK/dnsmasq.err" "$WORK/dnsmasq.log" >&2; die "dnsmasq did not start"; }
    sleep 0.05
  done
}

# --- one storm -------------------------------------------------------------
storm() { # label -> results in $WORK/res-<label>
  local label=$1
  rm -rf "$WORK/results" "$WORK/ready" "$WORK/tmp" "$WORK/go"
  mkdir -p "$WORK/results" "$WORK/ready" "$WORK/tmp"
  ip -n "$SNS" neigh flush all 2>/dev/null || true
  mkfifo "$WORK/go"
  # Held open read-write here, so the clients' opens never block and a
  # client that reaches its read late still finds its line.
  exec {go}<>"$WORK/go"
  CLIENT_PIDS=()
  local i=0 name
  while read -r name _ _; do
    i=$((i + 1))
    STORM_DIR=$WORK SRV=$SRV HTTP_PORT=$HTTP_PORT LOADER_BYTES=$(stat -c %s "$WORK/assets/undionly.kpxe") \
      KERNEL_BYTES=$((KERNEL_MIB << 20)) INITRD_BYTES=$((INITRD_MIB << 20)) \
      ip netns exec "$CPFX$i" bash "$ROOT/bench/storm-client.sh" "$i" "$name" > /dev/null 2>&1 &
    CLIENT_PIDS+=($!)
  done < "$WORK/nodes.txt"
  local deadline=$(( $(date +%s) + 120 ))
  until [ "$(find "$WORK/ready" -type f | wc -l)" -ge "$CLIENTS" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "only $(find "$WORK/ready" -type f | wc -l) of $CLIENTS clients got ready"
    sleep 0.1
  done
  local t_go
  t_go=$(date +%s.%N)
  printf 'go\n%.0s' $(seq "$CLIENTS") >&"$go"
  deadline=$(( $(date +%s) + STORM_TIMEOUT ))
  for p in "${CLIENT_PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$deadline" ]; then kill "$p" 2>/dev/null || true; break; fi
      sleep 0.2
    done
    wait "$p" 2>/dev/null || true
  done
  CLIENT_PIDS=()
  exec {go}>&-
  # A client that ran out of time may leave udhcpc, atftp or curl behind.
  for i in $(seq "$CLIENTS"); do
    [ -f "$WORK/results/$i" ] || ip netns pids "$CPFX$i" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for i in $(seq "$CLIENTS"); do
    if [ -f "$WORK/results/$i" ]; then cat "$WORK/results/$i"; else echo "fail timeout: no result after ${STORM_TIMEOUT}s"; fi
  done | awk -v go="$t_go" '{ print go, $0 }' > "$WORK/res-$label"
}

# summary label -> one line per phase: "phase mean p50 p95 max", then
# "total <makespan> <mean per client>" and "failed <n>"
summary() {
  awk '
    $2 == "ok" {
      n++
      for (k = 1; k <= 4; k++) { d[k, n] = $(k + 3) - $(k + 2) }
      d[5, n] = $7 - $3
      if ($7 - $1 > span) span = $7 - $1
    }
    $2 != "ok" { failed++ }
    function sort_col(k,   i, j, t) {
      for (i = 1; i <= n; i++) v[i] = d[k, i]
      for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    }
    END {
      split("dhcp tftp script kernel+initrd client-total", names, " ")
      for (k = 1; k <= 5; k++) {
        if (n == 0) { print names[k], 0, 0, 0, 0; continue }
        sort_col(k); s = 0
        for (i = 1; i <= n; i++) s += v[i]
        p95 = v[int((n - 1) * 0.95) + 1]
        printf "%s %.3f %.3f %.3f %.3f\n", names[k], s / n, v[int((n + 1) / 2)], p95, v[n]
      }
      printf "storm-total %.3f\n", span
      printf "failed %d\n", failed + 0
    }' "$WORK/res-$1"
}

for r in $(seq "$ROUNDS"); do
  start_bootlabd
  storm "bootlabd-$r"
  # bootlabd's own view of the storm: errors, retransmits, refusals.
  ip netns exec "$SNS" curl -sf "http://$SRV:$HTTP_PORT/metrics" > "$WORK/metrics-$r" || true
  stop_servers
  start_anchor
  storm "anchor-$r"
  stop_servers
  echo "round $r, bootlabd's counters (non-zero errors, drops, retransmits):"
  grep -E '^bootlab_(tftp|dhcp|http)_(errors|retransmits|dropped|drops)[a-z_]*(\{[^}]*\})? [1-9]' "$WORK/metrics-$r" | sed 's/^/    /' || true
  for who in bootlabd anchor; do
    echo "round $r, $who: $(summary "$who-$r" | awk '/^storm-total/ { t = $2 } /^failed/ { f = $2 } END { printf "storm total %.2f s, %d failed", t, f }')"
    { grep -v ' ok ' "$WORK/res-$who-$r" || true; } | cut -d' ' -f2- | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
  done
done

# --- report: the median round by storm total ------------------------------
pick() { # who -> the round label with the median storm total
  for r in $(seq "$ROUNDS"); do
    echo "$(summary "$1-$r" | awk '/^storm-total/ { print $2 }') $1-$r"
  done | sort -g | awk '{ l[NR] = $2 } END { print l[int((NR + 1) / 2)] }'
}
B=$(pick bootlabd)
A=$(pick anchor)
summary "$B" > "$WORK/sum-b"
summary "$A" > "$WORK/sum-a"
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(nproc) cores; $CLIENTS clients, ${KERNEL_MIB}+${INITRD_MIB} MiB; median of $ROUNDS round(s)"
printf '%-16s %-32s %-32s %8s\n' "seconds" "bootlabd: mean p50 p95 max" "dnsmasq+nginx: mean p50 p95 max" "ratio"
paste -d' ' "$WORK/sum-b" "$WORK/sum-a" | awk '
  $1 == "failed" { fb = $2; fa = $4; next }
  $1 == "storm-total" { printf "%-16s %-32.3f %-32.3f %7.2fx  (target <= 1.00x)\n", "storm total", $2, $4, ($4 > 0 ? $2 / $4 : 0); next }
  { printf "%-16s %-32s %-32s %7.2fx\n", $1, sprintf("%.3f %.3f %.3f %.3f", $2, $3, $4, $5), sprintf("%.3f %.3f %.3f %.3f", $7, $8, $9, $10), ($7 > 0 ? $2 / $7 : 0) }
  END { printf "%-16s %-32d %-32d\n", "failed clients", fb, fa }'
echo "(per-phase figures are per client; the ratio compares the means; storm total is release to the last client done)"
failed_b=$(for r in $(seq "$ROUNDS"); do summary "bootlabd-$r"; done | awk '$1 == "failed" { s += $2 } END { print s + 0 }')
failed_a=$(for r in $(seq "$ROUNDS"); do summary "anchor-$r"; done | awk '$1 == "failed" { s += $2 } END { print s + 0 }')
if [ "$failed_b" -gt 0 ] || [ "$failed_a" -gt 0 ]; then
  echo "bench/storm.sh: failed clients: bootlabd $failed_b, dnsmasq+nginx $failed_a (over $ROUNDS round(s))" >&2
  exit 1
fi
