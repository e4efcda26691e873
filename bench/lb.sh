#!/usr/bin/env bash
# bench/lb.sh - bootlab's load balancer vs haproxy, same run, same backend
# (nginx), same clients, loopback only.
#
#   bench/lb.sh                 # builds bootlabd and bootlab if needed
#   ROUNDS=7 SECONDS_PER_RUN=5 bench/lb.sh
#
# bootlabd runs a lab whose one [[balancers]] sends to one node, "web"
# (127.0.0.10); haproxy runs what `bootlab render LAB haproxy.cfg` prints
# for the same lab (its port moved), started by hand in the foreground with
# its own pid file, never as the system service. Both forward to one nginx
# (started by hand too, on the node's address) serving a 1 GiB file and a
# small response. bootlabd splices bulk transfers as haproxy's
# `option splice-auto` does (the rendered config has it).
#
# Workloads, ROUNDS rounds each, order alternated (odd rounds bootlab first,
# even rounds haproxy first), median reported:
#   stream  - one 1 GiB download through the balancer (curl, MB/s)
#   connect - new connections per second with small responses
#             (wrk -t2 -c64, keep-alive off: -H 'Connection: close')
#   latency - p99 of one client making new connections back to back
#             (wrk -t1 -c1 --latency), minus the same against nginx directly
# Also the balancers' own CPU time (user + system, from /proc) per GiB
# streamed and per 1000 new connections: on a busy machine the rates swing
# with the neighbours' load, the CPU each balancer spends per unit of work
# much less.
# Prints both balancers' numbers and the ratios. Targets: stream and
# connect >= 1.0x haproxy. Timing never fails a test: this is a report; it
# exits 0 unless something could not be started.
#
# Needs: haproxy, nginx, wrk, curl, ss (iproute2), bc.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
for tool in haproxy nginx wrk curl ss bc; do
  command -v "$tool" >/dev/null || { echo "bench/lb.sh: $tool is required (apt-get install haproxy nginx wrk curl iproute2 bc)" >&2; exit 69; }
done

if [ -z "${BOOTLABD:-}" ] || [ -z "${BOOTLAB:-}" ]; then
  cargo build --release -q -p bootlab-bootlabd -p bootlab-bootlab
  BOOTLABD=target/release/bootlabd
  BOOTLAB=target/release/bootlab
fi

work=$(mktemp -d /tmp/bootlab-bench-lb.XXXXXX)
chmod 755 "$work" # nginx workers may run as another user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000))
    ss -Htan "sport = :$p" | grep . >/dev/null || { echo "$p"; return; }
  done
}

# Clients, two balancers and nginx all open many sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$work/www" "$work/nginx/logs"
echo "preparing a 1 GiB file in $work/www ..."
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$work/www/big.img"
head -c 512 /dev/urandom | base64 -w 64 >"$work/www/small.txt"
cat "$work/www/big.img" >/dev/null # warm the page cache

ng_port=$(free_port)
bl_port=$(free_port)
hp_port=$(free_port)

cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  sendfile_max_chunk 0;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 60;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.10:$ng_port backlog=4096;
    root $work/www;
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

lab_config() { # BALANCER-PORT -> lab.toml: the dev lab, one node "web", one balancer
  cat <<TOML
[lab]
name = "bench"
domain = "lab.test"
[network]
cidr = "127.0.0.0/24"
gateway = "127.0.0.254"
host_ip = "127.0.0.254"
bridge = "virbr-bench"
[services]
ip = "127.0.0.1"
mac = "52:54:00:77:00:fe"
listen = { dhcp = "127.0.0.1:$(free_port)", dns = "127.0.0.1:$(free_port)", tftp = "127.0.0.1:$(free_port)", http = "127.0.0.1:$(free_port)", ntp = "127.0.0.1:$(free_port)" }
data_dir = "$work/data"
assets_dir = "$work/assets"
firewall = false
[profiles.p]
kernel = "k"
[[nodes]]
name = "web"
profile = "p"
ip = "127.0.0.10"
[[balancers]]
name = "bench"
port = $1
address = "127.0.0.1"
backends = ["web"]
backend_port = $ng_port
TOML
}
lab_config "$bl_port" >"$work/lab.toml"
lab_config "$hp_port" >"$work/haproxy-lab.toml"
"$BOOTLAB" render "$work/haproxy-lab.toml" haproxy.cfg >"$work/haproxy.cfg"

RUST_LOG=warn "$BOOTLABD" --config "$work/lab.toml" >"$work/lb.log" 2>&1 &
lb_pid=$!
pids+=($lb_pid)
haproxy -db -f "$work/haproxy.cfg" -p "$work/haproxy.pid" >"$work/haproxy.log" 2>&1 &
hp_pid=$!
pids+=($hp_pid)

wait_up() { # URL NAME
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench/lb.sh: $2 did not come up" >&2
  cat "$work/lb.log" "$work/haproxy.log" "$work/nginx/logs/error.log" >&2 2>/dev/null || true
  exit 1
}
direct=http://127.0.0.10:$ng_port
bootlab=http://127.0.0.1:$bl_port
haproxy=http://127.0.0.1:$hp_port
wait_up "$direct/small.txt" nginx
wait_up "$bootlab/small.txt" bootlab
wait_up "$haproxy/small.txt" haproxy

# CPU time (user + system, all threads) of PID, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

stream() { # BASE [PID] -> "MB/s CPU-ms-per-GiB" (fails unless the whole GiB arrived)
  local t0 out
  t0=$(ticks "${2:-self}")
  out=$(curl -s -f -o /dev/null -w '%{speed_download} %{size_download}' "$1/big.img")
  echo "$out $(( $(ticks "${2:-self}") - t0 ))" |
    awk -v hz="$hz" '$2 != 1073741824 { print "short transfer: " $2 > "/dev/stderr"; exit 1 }
         { printf "%.1f %.0f", $1 / 1e6, $3 * 1000 / hz }'
}
connect_rate() { # BASE PID -> "connections/s CPU-ms-per-1000-connections"
  local t0 out
  t0=$(ticks "$2")
  out=$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" -H 'Connection: close' "$1/small.txt")
  echo "$out" | awk -v t="$(( $(ticks "$2") - t0 ))" -v hz="$hz" '
    /Non-2xx|Socket errors/ { print "wrk: " $0 > "/dev/stderr" }
    / requests in / { n = $1 }
    /^Requests\/sec:/ { r = $2 }
    END { printf "%.0f %.1f", r, t * 1000 / hz / n * 1000 }'
}
p99_us() { # BASE [PID] -> p99 latency of back-to-back new connections, in µs
  wrk -t1 -c1 -d"${SECONDS_PER_RUN}s" --latency -H 'Connection: close' "$1/small.txt" |
    awk '$1 == "99%" {
           v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v)
           f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 0
           printf "%.0f", v * f }'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

run_pair() { # FUNCTION ARRAY_PREFIX ROUND: each result "value [cpu]"
  local f=$1 prefix=$2 round=$3 a b
  if [ $((round % 2)) -eq 1 ]; then
    a=$($f "$bootlab" "$lb_pid"); b=$($f "$haproxy" "$hp_pid")
  else
    b=$($f "$haproxy" "$hp_pid"); a=$($f "$bootlab" "$lb_pid")
  fi
  eval "${prefix}_bl+=(\"${a%% *}\"); ${prefix}_hp+=(\"${b%% *}\")"
  if [ "${a#* }" != "$a" ]; then
    eval "${prefix}_cpu_bl+=(\"${a#* }\"); ${prefix}_cpu_hp+=(\"${b#* }\")"
  fi
}

st_bl=() st_hp=() cr_bl=() cr_hp=() la_bl=() la_hp=() la_direct=() st_direct=()
st_cpu_bl=() st_cpu_hp=() cr_cpu_bl=() cr_cpu_hp=()
echo "stream: 1 GiB through each balancer, $ROUNDS rounds ..."
for r in $(seq "$ROUNDS"); do
  run_pair stream st "$r"
  d=$(stream "$direct")
  st_direct+=("${d%% *}")
done
echo "connect: new connections/s, wrk -c64 keep-alive off, ${SECONDS_PER_RUN}s x $ROUNDS rounds ..."
for r in $(seq "$ROUNDS"); do run_pair connect_rate cr "$r"; done
echo "latency: p99 of one client's back-to-back connections, ${SECONDS_PER_RUN}s x $ROUNDS rounds ..."
for r in $(seq "$ROUNDS"); do
  run_pair p99_us la "$r"
  la_direct+=("$(p99_us "$direct")")
done

sb=$(echo "${st_bl[*]}" | median)
sh=$(echo "${st_hp[*]}" | median)
sd=$(echo "${st_direct[*]}" | median)
cb=$(echo "${cr_bl[*]}" | median)
ch=$(echo "${cr_hp[*]}" | median)
lb=$(echo "${la_bl[*]}" | median)
lh=$(echo "${la_hp[*]}" | median)
ld=$(echo "${la_direct[*]}" | median)
scb=$(echo "${st_cpu_bl[*]}" | median)
sch=$(echo "${st_cpu_hp[*]}" | median)
ccb=$(echo "${cr_cpu_bl[*]}" | median)
cch=$(echo "${cr_cpu_hp[*]}" | median)
added_b=$(echo "$lb - $ld" | bc -l)
added_h=$(echo "$lh - $ld" | bc -l)
echo
printf '%-34s %14s %14s %9s  %s\n' "workload (median of $ROUNDS)" "bootlab" "haproxy" "ratio" "target"
printf '%-34s %9.1f MB/s %9.1f MB/s %8.2fx  %s\n' "stream 1 GiB" "$sb" "$sh" "$(echo "$sb / $sh" | bc -l)" ">= 1.00x haproxy"
printf '%-34s %11.0f /s %11.0f /s %8.2fx  %s\n' "new connections (small responses)" "$cb" "$ch" "$(echo "$cb / $ch" | bc -l)" ">= 1.00x haproxy"
printf '%-34s %11.0f us %11.0f us %9s  %s\n' "p99 latency added (vs direct)" "$added_b" "$added_h" \
  "$(if [ "$(echo "$added_h > 0" | bc)" = 1 ]; then printf '%.2fx' "$(echo "$added_b / $added_h" | bc -l)"; else echo n/a; fi)" "lower is better"
printf '%-34s %9.0f ms   %9.0f ms   %8.2fx  %s\n' "CPU per GiB streamed" "$scb" "$sch" "$(echo "$scb / $sch" | bc -l)" "lower is better"
printf '%-34s %9.1f ms   %9.1f ms   %8.2fx  %s\n' "CPU per 1000 new connections" "$ccb" "$cch" "$(echo "$ccb / $cch" | bc -l)" "lower is better"
echo "direct to nginx: stream $sd MB/s, p99 $ld us"
echo "bootlab peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$lb_pid/status")," \
  "haproxy peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$hp_pid/status")"
echo "rounds: bootlab stream [${st_bl[*]}] connect [${cr_bl[*]}] p99 [${la_bl[*]}]"
echo "                cpu/GiB [${st_cpu_bl[*]}] cpu/1000 conns [${cr_cpu_bl[*]}]"
echo "        haproxy stream [${st_hp[*]}] connect [${cr_hp[*]}] p99 [${la_hp[*]}]"
echo "                cpu/GiB [${st_cpu_hp[*]}] cpu/1000 conns [${cr_cpu_hp[*]}]"
echo "        direct  stream [${st_direct[*]}] p99 [${la_direct[*]}]"
