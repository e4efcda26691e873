#!/usr/bin/env bash
# bench/http.sh - bootlabd's HTTP service vs nginx (sendfile on), same run,
# same files, same client (curl), loopback only.
#
#   bench/http.sh            # builds target/release/bootlabd if needed
#   ROUNDS=5 CLIENTS=50 bench/http.sh
#
# Workloads:
#   single - one 1 GiB file, one stream (MB/s; best of ROUNDS)
#   storm  - CLIENTS concurrent clients, each fetching a 64 MiB
#            "kernel+initrd" pair (16 MiB + 48 MiB) over one keep-alive
#            connection (total wall time; best of ROUNDS)
# Prints both servers' numbers and the ratios. Targets: single >= 0.9x
# nginx; storm <= 1.1x nginx's time. Timing never fails a test: this is a
# report, it exits 0 unless a server could not be started.
#
# Needs: nginx (Debian `nginx`; started here by hand on its own port, config,
# pid and log paths - never the system service), curl, ss.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-50}
for tool in nginx curl ss bc; do
  command -v "$tool" >/dev/null || { echo "bench/http.sh: $tool is required (apt-get install nginx curl iproute2 bc)" >&2; exit 69; }
done

if [ -z "${BOOTLABD:-}" ]; then
  cargo build --release -q -p bootlab-bootlabd
  BOOTLABD=target/release/bootlabd
fi

work=$(mktemp -d /tmp/bootlab-bench-http.XXXXXX)
chmod 755 "$work" # nginx workers may run as another user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # so EXIT cleanup also runs when the bench is interrupted

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    ss -Htan "sport = :$p" | grep . >/dev/null || { echo "$p"; return; }
  done
}

assets=$work/assets
mkdir -p "$assets" "$work/data" "$work/nginx/logs"
echo "preparing files in $assets ..."
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$assets/big.img"
head -c $((16 * 1024 * 1024)) /dev/urandom >"$assets/vmlinuz"
head -c $((48 * 1024 * 1024)) /dev/urandom >"$assets/initrd.img"
cat "$assets"/* >/dev/null # warm the page cache for both servers

bl_port=$(free_port)
ng_port=$(free_port)

# bootlabd: the dev lab with its ports moved out of the way, HTTP on bl_port.
sed -e "s#http = \"127.0.0.1:8080\"#http = \"127.0.0.1:$bl_port\"#" \
    -e "s#dhcp = \"127.0.0.1:6767\"#dhcp = \"127.0.0.1:$(free_port)\"#" \
    -e "s#dns = \"127.0.0.1:5353\"#dns = \"127.0.0.1:$(free_port)\"#" \
    -e "s#tftp = \"127.0.0.1:6969\"#tftp = \"127.0.0.1:$(free_port)\"#" \
    -e "s#^data_dir .*#data_dir = \"$work/data\"#" \
    -e "s#^assets_dir .*#assets_dir = \"$assets\"#" \
    config/dev.toml >"$work/lab.toml"
RUST_LOG=warn "$BOOTLABD" --config "$work/lab.toml" >"$work/bootlabd.log" 2>&1 &
bl_pid=$!
pids+=($bl_pid)

cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  sendfile_max_chunk 0; # nginx's fastest setting here (the 2m default is slower)
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
    listen 127.0.0.1:$ng_port;
    location /assets/ { alias $assets/; }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

wait_up() { # URL NAME
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench/http.sh: $2 did not come up" >&2
  cat "$work/bootlabd.log" "$work/nginx/logs/error.log" >&2 2>/dev/null || true
  exit 1
}
bl=http://127.0.0.1:$bl_port/assets
ng=http://127.0.0.1:$ng_port/assets
wait_up "$bl/vmlinuz" bootlabd
wait_up "$ng/vmlinuz" nginx

now() { date +%s.%N; }
single() { # BASE -> MB/s (fails unless the whole GiB arrived)
  curl -s -f -o /dev/null -w '%{speed_download} %{size_download}' "$1/big.img" |
    awk '$2 != 1073741824 { print "short transfer: " $2 > "/dev/stderr"; exit 1 }
         { printf "%.1f", $1 / 1e6 }'
}
storm() { # BASE -> seconds
  local t0 t1
  t0=$(now)
  seq "$CLIENTS" | xargs -P "$CLIENTS" -I{} \
    curl -s -f -o /dev/null -o /dev/null "$1/vmlinuz" "$1/initrd.img"
  t1=$(now)
  echo "$t1 - $t0" | bc -l | awk '{ printf "%.3f", $1 }'
}
best_max() { tr ' ' '\n' | sort -g | tail -1; }
best_min() { tr ' ' '\n' | sort -g | head -1; }

echo "single stream, 1 GiB, best of $ROUNDS ..."
bl_single=() ng_single=()
for _ in $(seq "$ROUNDS"); do
  bl_single+=("$(single "$bl")")
  ng_single+=("$(single "$ng")")
done
echo "storm, $CLIENTS clients x (16 MiB + 48 MiB), best of $ROUNDS ..."
bl_storm=() ng_storm=()
for _ in $(seq "$ROUNDS"); do
  bl_storm+=("$(storm "$bl")")
  ng_storm+=("$(storm "$ng")")
done

bs=$(echo "${bl_single[*]}" | best_max)
ns=$(echo "${ng_single[*]}" | best_max)
bt=$(echo "${bl_storm[*]}" | best_min)
nt=$(echo "${ng_storm[*]}" | best_min)
storm_mb=$((CLIENTS * 64 * 1024 * 1024))
echo
printf '%-28s %14s %14s %10s  %s\n' "workload" "bootlabd" "nginx" "ratio" "target"
printf '%-28s %10s MB/s %10s MB/s %9.2fx  %s\n' "single 1 GiB" "$bs" "$ns" \
  "$(echo "$bs / $ns" | bc -l)" ">= 0.90x nginx"
printf '%-28s %12s s %12s s %9.2fx  %s\n' "storm ${CLIENTS}x64 MiB (time)" "$bt" "$nt" \
  "$(echo "$bt / $nt" | bc -l)" "<= 1.10x nginx's time"
printf '%-28s %10.1f MB/s %10.1f MB/s\n' "storm throughput" \
  "$(echo "$storm_mb / $bt / 1000000" | bc -l)" "$(echo "$storm_mb / $nt / 1000000" | bc -l)"
echo "bootlabd peak RSS: $(awk '/VmHWM/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$bl_pid/status")"
echo "rounds: bootlabd single [${bl_single[*]}] storm [${bl_storm[*]}]"
echo "        nginx    single [${ng_single[*]}] storm [${ng_storm[*]}]"
