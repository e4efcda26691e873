#!/usr/bin/env bash
# bench/dhcp.sh - perfdhcp against bootlabd and ISC Kea (memfile) in the
# same run and the same network-namespace setup; prints 4-way exchanges/s,
# drop ratio and the ratio between the two.
#
# "Rate" is the highest offered perfdhcp -r rate (steps of 1.5x, STEP_SECS
# each, then REFINE bisection steps between the last pass and the first
# failure) that still has <= MAX_DROP_PCT drops. Two ladders:
#  1. unconstrained: each server may use the whole machine. On a 2-core box
#     the generator (perfdhcp) tops out near 17,000 exchanges/s, below what
#     either server does, so this ladder shows where the generator ends;
#  2. equal CPU budget: each server runs in a cgroup limited to
#     SERVER_CPU_PCT of one core (default 20), so the server, not the
#     generator, is the bottleneck and the ratio measures the servers (at
#     33% bootlabd answered every request of a 25,600/s step while perfdhcp,
#     at 100% CPU, lost the answers: a bootlabd step where every request
#     was answered and perfdhcp ran out of CPU ends its ladder as
#     "generator-bound", a lower bound). Each step starts its server
# afresh (empty lease file), so steps do not exhaust the pool. bootlabd
# fsyncs every ACKed lease before the ACK leaves (group commit); Kea's
# memfile appends without fsync.
#
# Needs root, iproute2, perfdhcp (kea-admin), kea-dhcp4 (kea-dhcp4-server)
# and a release bootlabd (built here if missing).
#
#   bench/dhcp.sh                 # full run
#   STEP_SECS=3 START_RATE=500 bench/dhcp.sh
set -euo pipefail

STEP_SECS=${STEP_SECS:-6}
START_RATE=${START_RATE:-1000}
MAX_RATE=${MAX_RATE:-100000}
MAX_DROP_PCT=${MAX_DROP_PCT:-1}
# perfdhcp's thread mode. Its default on a multi-core machine ("multi") adds
# a receive thread that competes with the server for this box's two cores
# and tops out near 11,000 exchanges/s whatever the server; "single" drives
# twice that from one core. The same generator settings serve both servers.
PERFDHCP_THREADS=${PERFDHCP_THREADS:-single}
# A step passes when one of TRIES runs stays within MAX_DROP_PCT (the same
# for both servers; it smooths out other load on a shared machine).
TRIES=${TRIES:-2}
SERVER_CPU_PCT=${SERVER_CPU_PCT:-20}
# Which ladders: "both", "free" (unconstrained) or "budget".
LADDERS=${LADDERS:-both}
# Bisection steps after each ladder (see refine).
REFINE=${REFINE:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BOOTLABD=${BOOTLABD:-$ROOT/target/release/bootlabd}

die() { echo "bench/dhcp.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
for t in ip perfdhcp kea-dhcp4; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t missing (apt-get install iproute2 kea-admin kea-dhcp4-server)"
done
export PATH=$PATH:/usr/sbin
if [ ! -x "$BOOTLABD" ]; then
    (cd "$ROOT" && cargo build --release -p bootlab-bootlabd) || die "cannot build bootlabd"
fi

TAG=$$
SNS=dhcpbench-s$TAG
CNS=dhcpbench-c$TAG
SIF=bbs$TAG
CIF=bbc$TAG
WORK=$(mktemp -d /tmp/bootlab-bench-dhcp.XXXXXX)
SERVER_PID=
CURRENT=
# The cgroup.procs file of the CPU-budget cgroup while a budget ladder
# runs (empty: servers run unconstrained).
CG_PROCS=
CG_DIR=

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    if [ -n "${RMEM_DEFAULT_WAS:-}" ]; then
        sysctl -qw net.core.rmem_default="$RMEM_DEFAULT_WAS" || true
        sysctl -qw net.core.rmem_max="$RMEM_MAX_WAS" || true
    fi
    if [ -n "$CG_DIR" ]; then rmdir "$CG_DIR" 2>/dev/null || true; fi
    ip netns del "$CNS" 2>/dev/null || true
    ip netns del "$SNS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # so EXIT cleanup also runs when the bench is interrupted

# perfdhcp's socket keeps the kernel's default receive buffer (208 KiB),
# which a burst of replies overflows (a group commit's ACKs leave together;
# in the CPU-budget ladder replies leave in bursts after each throttled
# period). Lost there, they count as the server's drops, so the default
# is raised for the run (restored on exit); the servers' sockets get the
# same default.
RMEM_DEFAULT_WAS=$(sysctl -n net.core.rmem_default)
if [ "$RMEM_DEFAULT_WAS" -lt $((4 << 20)) ]; then
    RMEM_MAX_WAS=$(sysctl -n net.core.rmem_max)
    [ "$RMEM_MAX_WAS" -ge $((4 << 20)) ] || sysctl -qw net.core.rmem_max=$((4 << 20))
    sysctl -qw net.core.rmem_default=$((4 << 20))
else
    RMEM_DEFAULT_WAS=
fi

ip netns add "$SNS"
ip netns add "$CNS"
ip link add "$SIF" netns "$SNS" type veth peer name "$CIF" netns "$CNS"
ip -n "$SNS" link set lo up
ip -n "$SNS" addr add 10.76.0.254/14 dev "$SIF"
ip -n "$SNS" link set "$SIF" up
ip -n "$CNS" link set lo up
ip -n "$CNS" addr add 10.76.0.2/14 dev "$CIF"
ip -n "$CNS" link set "$CIF" up

cat > "$WORK/lab.toml" <<EOF
[lab]
name = "bench"
domain = "lab.test"

[network]
cidr = "10.76.0.0/14"
mode = "nat"
gateway = "10.76.0.1"
host_ip = "10.76.0.1"
bridge = "virbr-bench"
lease = "1h"
pool = { start = "10.76.1.0", end = "10.79.255.250" }

[libvirt]
pool = "bench"
pool_path = "/var/lib/libvirt/images/bench"
vm_prefix = "bench-"
virt_type = "qemu"

[services]
name = "services"
ip = "10.76.0.254"
mac = "52:54:00:4c:00:fe"
interface = "$SIF"
listen = { dhcp = "0.0.0.0:67", dns = "10.76.0.254:53", tftp = "10.76.0.254:69", http = "10.76.0.254:8080" }
data_dir = "$WORK/bootlabd-data"
assets_dir = "$WORK/assets"
firewall = false

[profiles.tiny]
loader = "ipxe"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0"
EOF
mkdir -p "$WORK/assets"

cat > "$WORK/kea.json" <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$SIF" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$WORK/kea/leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 3600,
    "subnet4": [ {
        "id": 1,
        "subnet": "10.76.0.0/14",
        "pools": [ { "pool": "10.76.1.0 - 10.79.255.250" } ],
        "option-data": [
            { "name": "routers", "data": "10.76.0.1" },
            { "name": "domain-name-servers", "data": "10.76.0.254" },
            { "name": "domain-name", "data": "bench.lab.test" }
        ]
    } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$WORK/kea/kea.log" } ], "severity": "WARN" } ]
} }
EOF

# make_budget PCT: a cgroup (v2 or v1 cpu controller) limited to PCT% of
# one core in ~3 ms periods (short periods keep the bursts after each
# throttle small for both servers); sets CG_DIR and CG_PROCS.
make_budget() {
    local pct=$1 period=3000 quota
    [ "$pct" -ge 1 ] && [ "$pct" -le 100 ] || die "SERVER_CPU_PCT=$pct: give a percentage of one core, 1..100"
    # The kernel's smallest quota is 1 ms: stretch the period for small budgets.
    if [ $(( period * pct / 100 )) -lt 1000 ]; then
        period=$(( (100000 + pct - 1) / pct ))
    fi
    quota=$(( period * pct / 100 ))
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        grep -qw cpu /sys/fs/cgroup/cgroup.controllers || die "cgroup v2 without the cpu controller"
        echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        CG_DIR=/sys/fs/cgroup/bootlab-bench-$TAG
        mkdir "$CG_DIR"
        echo "$quota $period" > "$CG_DIR/cpu.max"
    elif [ -d /sys/fs/cgroup/cpu ]; then
        CG_DIR=/sys/fs/cgroup/cpu/bootlab-bench-$TAG
        mkdir "$CG_DIR"
        echo "$period" > "$CG_DIR/cpu.cfs_period_us"
        echo "$quota" > "$CG_DIR/cpu.cfs_quota_us"
    else
        die "no cgroup cpu controller (needed for the CPU-budget ladder; LADDERS=free skips it)"
    fi
    CG_PROCS=$CG_DIR/cgroup.procs
}

# in_budget CMD...: runs CMD in the budget cgroup when one is set (the
# shell joins it, then execs; ip netns exec execs too, so the PID is the
# server's).
in_budget() {
    if [ -n "$CG_PROCS" ]; then
        exec sh -c 'echo $$ > "$0" && exec "$@"' "$CG_PROCS" "$@"
    else
        exec "$@"
    fi
}

start_bootlabd() {
    CURRENT=bootlabd
    rm -rf "$WORK/bootlabd-data"
    (in_budget ip netns exec "$SNS" "$BOOTLABD" --config "$WORK/lab.toml") > "$WORK/bootlabd.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "listening for dhcp" "$WORK/bootlabd.log" 2>/dev/null && return 0
        sleep 0.05
    done
    cat "$WORK/bootlabd.log" >&2
    die "bootlabd did not start"
}

start_kea() {
    CURRENT=kea
    rm -rf "$WORK/kea"
    mkdir -p "$WORK/kea"
    (KEA_PIDFILE_DIR="$WORK/kea" KEA_LOCKFILE_DIR="$WORK/kea" \
        in_budget ip netns exec "$SNS" kea-dhcp4 -c "$WORK/kea.json") > "$WORK/kea/stdout.log" 2>&1 &
    SERVER_PID=$!
    # Ready when its UDP socket on port 67 is open.
    for _ in $(seq 100); do
        if ip netns exec "$SNS" ss -Hlun 'sport = :67' | grep . >/dev/null; then
            sleep 0.2
            return 0
        fi
        sleep 0.05
    done
    cat "$WORK/kea/stdout.log" "$WORK/kea/kea.log" >&2 || true
    die "kea-dhcp4 did not start"
}

# CPU seconds (user + system) the server process has used so far.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"
}

# CPU seconds used by the calling shell's finished children (perfdhcp).
children_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($16 + $17) / hz }' "/proc/$1/stat"
}

# bootlabd's own counters (received DISCOVER+REQUEST, sent OFFER+ACK).
bootlabd_counts() {
    ip netns exec "$SNS" curl -s --max-time 2 http://10.76.0.254:8080/metrics | awk '
        /^bootlab_dhcp_received_total\{type="(discover|request)"\}/ { r += $2 }
        /^bootlab_dhcp_sent_total\{type="(offer|ack)"\}/ { s += $2 }
        END { printf "%d %d\n", r, s }'
}

# run_step RATE -> prints "exchanges/s drop% server-us-CPU/exchange perfdhcp-CPU% discovers-sent/s requests-sent [bootlabd received sent]"
run_step() {
    local rate=$1 out cpu0 cpu1 pc0 pc1 me=$BASHPID
    cpu0=$(cpu_secs)
    pc0=$(children_cpu "$me")
    out=$(ip netns exec "$CNS" perfdhcp -4 -g "$PERFDHCP_THREADS" -l 10.76.0.2 -r "$rate" -R 100000000 \
        -p "$STEP_SECS" -W 500000 10.76.0.254 2>&1) || true
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "bench/dhcp.sh: the server died during the step; its log:" >&2
        tail -30 "$WORK/bootlabd.log" "$WORK/kea/stdout.log" "$WORK/kea/kea.log" >&2 2>/dev/null || true
        die "server died"
    fi
    cpu1=$(cpu_secs)
    pc1=$(children_cpu "$me")
    local counts="- -"
    if [ "$CURRENT" = bootlabd ]; then
        counts=$(bootlabd_counts)
    fi
    echo "$out" > "$WORK/perfdhcp-last.txt"
    echo "$out" | awk -v counts="$counts" -v secs="$STEP_SECS" -v pcpu="$(awk -v a="$pc0" -v b="$pc1" -v t="$STEP_SECS" 'BEGIN { printf "%.0f", 100 * (b - a) / (t + 0.5) }')" -v cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" '
        /Statistics for: DISCOVER-OFFER/ { sec = "do" }
        /Statistics for: REQUEST-ACK/ { sec = "ra" }
        /^sent packets:/ { sent[sec] = $3 }
        /^drops:/ { drops[sec] = $2 }
        /^received packets:/ { recv[sec] = $3 }
        END {
            total = sent["do"] + sent["ra"]
            d = (total > 0) ? 100 * (drops["do"] + drops["ra"]) / total : 100
            us = (recv["ra"] > 0) ? 1e6 * cpu / recv["ra"] : 0
            printf "%.0f %.3f %.1f %s %.0f %d %s\n", recv["ra"] / secs, d, us, pcpu, sent["do"] / secs, total, counts
        }'
}

# try_rate NAME START_FN RATE -> 0 when the rate passes, 1 when it fails,
# 2 when perfdhcp could not even send it (below 97% of the offered
# DISCOVERs: the generator's ceiling, which says nothing about the
# server); sets XPS DROP US
try_rate() {
    local name=$1 start=$2 rate=$3 res try sent
    for try in $(seq "$TRIES"); do
        $start
        res=$(run_step "$rate")
        stop_server
        local srv_recv srv_sent own=""
        read -r XPS DROP US PCPU sent total_sent srv_recv srv_sent <<< "$res"
        if [ "$name" = bootlabd ]; then
            own=", bootlabd answered $srv_sent of $srv_recv"
        fi
        printf '  %-8s offered %6d/s (try %d): %6d exchanges/s, %7.3f%% drops, %6.1f us CPU/exchange, perfdhcp CPU %s%%%s\n' \
            "$name" "$rate" "$try" "$XPS" "$DROP" "$US" "$PCPU" "$own"
        if [ "$sent" -lt $(( rate * 97 / 100 )) ]; then
            printf '  %-8s perfdhcp sent only %d DISCOVERs/s of %d: the generator, not the server, is the limit here\n' \
                "$name" "$sent" "$rate"
            return 2
        fi
        if awk -v d="$DROP" -v m="$MAX_DROP_PCT" 'BEGIN { exit !(d <= m) }'; then
            return 0
        fi
        # bootlabd counts what it received and answered: every request
        # perfdhcp sent received and answered while perfdhcp ran out of CPU
        # means the drops are the generator's (a request lost before
        # bootlabd's socket read it is the server's: it fell behind).
        if [ "$name" = bootlabd ] && [ "$srv_recv" = "$srv_sent" ] \
            && [ "$srv_recv" -ge $(( total_sent * 99 / 100 )) ] && [ "${PCPU:-0}" -ge 95 ]; then
            printf '  %-8s answered every request; perfdhcp at %s%% CPU lost the answers: the generator is the limit here\n' \
                "$name" "$PCPU"
            return 2
        fi
    done
    return 1
}

echo "DHCPv4 4-way exchanges (perfdhcp -g $PERFDHCP_THREADS, relayed, ${STEP_SECS}s steps x1.5, <= ${MAX_DROP_PCT}% drops, best of ${TRIES})"
echo "bootlabd: durable leases (fdatasync per group commit); kea: memfile, no fsync"

# climb NAME START_FN PREFIX RATE: one step of one server's ladder; a pass
# records PREFIX_RATE/_XPS/_DROP/_US, anything else ends the climb
# (PREFIX_ON=no; PREFIX_CEIL notes a generator-bound end).
climb() {
    local name=$1 start=$2 p=$3 rate=$4 r=0
    try_rate "$name" "$start" "$rate" || r=$?
    case $r in
        0)
            printf -v "${p}_RATE" %s "$rate"
            printf -v "${p}_XPS" %s "$XPS"
            printf -v "${p}_DROP" %s "$DROP"
            printf -v "${p}_US" %s "$US"
            ;;
        2)
            printf -v "${p}_ON" %s no
            printf -v "${p}_CEIL" %s " (or more: generator-bound)"
            ;;
        *)
            printf -v "${p}_ON" %s no
            printf -v "${p}_FAIL" %s "$rate"
            ;;
    esac
    return 0
}

# refine NAME START_FN PREFIX: REFINE bisection steps between the server's
# last passed rate and the rate its climb failed at, so the 1.5x ladder
# steps do not decide the ratio (3 steps: within ~5% of the ceiling).
refine() {
    local name=$1 start=$2 p=$3 lo hi mid r i
    lo=${p}_RATE hi=${p}_FAIL
    lo=${!lo} hi=${!hi}
    [ "$lo" -gt 0 ] && [ "$hi" -gt "$lo" ] || return 0
    for i in $(seq "$REFINE"); do
        mid=$(( (lo + hi) / 2 ))
        r=0
        try_rate "$name" "$start" "$mid" || r=$?
        case $r in
            0)
                lo=$mid
                printf -v "${p}_RATE" %s "$mid"
                printf -v "${p}_XPS" %s "$XPS"
                printf -v "${p}_DROP" %s "$DROP"
                printf -v "${p}_US" %s "$US"
                ;;
            2)
                printf -v "${p}_CEIL" %s " (or more: generator-bound)"
                return 0
                ;;
            *) hi=$mid ;;
        esac
    done
}

# ladder TITLE: climbs both servers' ladders together (interleaved, so both
# see the same machine load) and prints the table and the ratios.
ladder() {
    echo
    echo "== $1"
    # Both ladders climb together (interleaved), so both see the same load.
    B_RATE=0 B_XPS=0 B_DROP=100 B_US=0 B_ON=yes B_CEIL="" B_FAIL=0
    K_RATE=0 K_XPS=0 K_DROP=100 K_US=0 K_ON=yes K_CEIL="" K_FAIL=0
    rate=$START_RATE
    while [ "$rate" -le "$MAX_RATE" ] && { [ $B_ON = yes ] || [ $K_ON = yes ]; }; do
        [ $B_ON = yes ] && climb bootlabd start_bootlabd B "$rate"
        [ $K_ON = yes ] && climb kea start_kea K "$rate"
        rate=$(( rate * 3 / 2 ))
    done
    refine bootlabd start_bootlabd B
    refine kea start_kea K

    echo
    printf '%-10s %14s %14s %10s %18s\n' server "rate (/s)" "exchanges/s" "drops %" "us CPU/exchange"
    printf '%-10s %14d %14d %10.3f %18.1f%s\n' bootlabd "$B_RATE" "$B_XPS" "$B_DROP" "$B_US" "$B_CEIL"
    printf '%-10s %14d %14d %10.3f %18.1f%s\n' kea "$K_RATE" "$K_XPS" "$K_DROP" "$K_US" "$K_CEIL"
    if [ "$K_RATE" -gt 0 ]; then
        awk -v b="$B_RATE" -v k="$K_RATE" -v bx="$B_XPS" -v kx="$K_XPS" 'BEGIN {
            printf "ratio bootlabd/kea: rate %.2fx, exchanges/s %.2fx\n", b / k, (kx > 0 ? bx / kx : 0) }'
        if [ -n "$B_CEIL$K_CEIL" ]; then
            echo "(a server marked generator-bound never failed: its real ceiling is higher)"
        fi
    fi
    if awk -v b="$B_US" -v k="$K_US" 'BEGIN { exit !(b > 0 && k > 0) }'; then
        awk -v b="$B_US" -v k="$K_US" 'BEGIN { printf "CPU per exchange kea/bootlabd: %.2fx (higher = bootlabd cheaper)\n", k / b }'
    fi
}

if [ "$LADDERS" = both ] || [ "$LADDERS" = free ]; then
    ladder "unconstrained servers (the generator's ceiling shows here)"
    echo "(when perfdhcp's CPU nears 100% it, not the server, is the limit: compare"
    echo " 'bootlabd answered X of Y' with perfdhcp's drops)"
fi
if [ "$LADDERS" = both ] || [ "$LADDERS" = budget ]; then
    make_budget "$SERVER_CPU_PCT"
    ladder "equal CPU budget: each server limited to ${SERVER_CPU_PCT}% of one core (cgroup)"
fi
