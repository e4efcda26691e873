#!/usr/bin/env bash
# bench/boot.sh - PXE boot time, bootlabd vs dnsmasq (+ nginx for HTTP), same run.
#
# Boots the e2e test OS (Debian cloud kernel + busybox marker initramfs) on a
# BIOS guest (SeaBIOS + iPXE ROM) and a UEFI guest (OVMF native PXE -> TFTP
# snponly.efi -> iPXE -> HTTP) under QEMU TCG, in a private network
# namespace, first from bootlabd, then from dnsmasq (DHCP + TFTP) with nginx
# serving the same per-node iPXE scripts (rendered by `bootlab render`) and
# assets. Prints seconds from QEMU start to the marker and the ratios.
# Target: bootlabd <= dnsmasq. Needs root; packages as in tests/apt-packages.txt
# plus dnsmasq-base and nginx-light (installed if missing).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
NS=bl-bench-boot-$$
SRV=10.77.0.254
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' INT TERM  # so EXIT cleanup also runs when the bench is interrupted
need() { command -v "$1" >/dev/null || apt-get install -y -qq "$2" >/dev/null; }
need dnsmasq dnsmasq-base
need nginx nginx-light

cargo build --release -q -p bootlab-bootlabd -p bootlab-bootlab
BOOTLABD=$here/target/release/bootlabd
BOOTLAB=$here/target/release/bootlab
mkdir -p "$work/assets" "$work/data"
tests/e2e/build-test-os.sh "$work/assets" 2>/dev/null
boot-assets/gather.sh "$work/assets" >/dev/null

cat > "$work/lab.toml" <<TOML
[lab]
name = "bench"
domain = "lab.test"
[network]
cidr = "10.77.0.0/24"
mode = "bridge"
bridge = "br0"
gateway = "10.77.0.1"
[services]
ip = "$SRV"
mac = "52:54:00:77:00:fe"
interface = "br0"
listen = { dhcp = "0.0.0.0:67", dns = "$SRV:53", tftp = "0.0.0.0:69", http = "0.0.0.0:8080" }
data_dir = "$work/data"
assets_dir = "$work/assets"
firewall = false
[profiles.testos]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 panic=-1 bootlab.node={{ node.name }}"
[[nodes]]
name = "bios-0"
profile = "testos"
mac = "52:54:00:77:00:10"
ip = "10.77.0.10"
[[nodes]]
name = "uefi-0"
profile = "testos"
firmware = "uefi"
mac = "52:54:00:77:00:11"
ip = "10.77.0.11"
TOML

ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip link add br0 type bridge
nsx ip addr add "$SRV/24" dev br0
nsx ip link set br0 up
for t in tap0 tap1; do
  nsx ip tuntap add dev $t mode tap
  nsx ip link set $t master br0
  nsx ip link set $t up
done

# Boots one guest; prints seconds from QEMU start to the marker (or FAIL).
boot() { # name mac tap uefi
  local name=$1 mac=$2 tap=$3 uefi=$4 log=$work/$1.serial
  rm -f "$log"
  local args=(-accel tcg -m 512 -display none -no-reboot -monitor none -serial "file:$log"
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no")
  if [ "$uefi" = 1 ]; then
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/$name.vars"
    args+=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=,bootindex=1"
      -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
      -drive "if=pflash,format=raw,file=$work/$name.vars")
  else
    args+=(-device "virtio-net-pci,netdev=n0,mac=$mac" -boot n)
  fi
  local t0; t0=$(date +%s.%N)
  nsx qemu-system-x86_64 "${args[@]}" </dev/null >/dev/null 2>&1 &
  local q=$!
  local deadline=$(( $(date +%s) + 240 ))
  while ! grep -qa BOOTLAB-MARKER "$log" 2>/dev/null; do
    if [ "$(date +%s)" -gt "$deadline" ]; then kill $q 2>/dev/null; echo FAIL; return; fi
    sleep 0.1
  done
  local t1; t1=$(date +%s.%N)
  kill $q 2>/dev/null || true; wait $q 2>/dev/null || true
  printf "%.2f\n" "$(echo "$t1 - $t0" | bc)"
}

run_pair() { # label -> "bios uefi" seconds (the two boots run in parallel)
  local f1=$work/t.bios f2=$work/t.uefi
  boot bios-0 52:54:00:77:00:10 tap0 0 >"$f1" &
  local a=$!
  boot uefi-0 52:54:00:77:00:11 tap1 1 >"$f2" &
  local b=$!
  wait $a $b
  echo "$(cat "$f1") $(cat "$f2")"
}

# 1. bootlabd
nsx "$BOOTLABD" --config "$work/lab.toml" 2>"$work/bootlabd.log" &
pids+=($!)
wait_http() { # url log
  local deadline=$(( $(date +%s) + 60 ))
  until nsx curl -sf -o /dev/null "$1"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "server did not come up:" >&2; cat "$2" >&2; exit 1; fi
    sleep 0.2
  done
}
wait_http "http://$SRV:8080/metrics" "$work/bootlabd.log"
read -r b_bios b_uefi < <(run_pair)
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. dnsmasq (DHCP + TFTP) + nginx (HTTP): the same scripts and files.
mkdir -p "$work/www/assets"
cp -r "$work/assets/." "$work/www/assets/"
# nginx workers and dnsmasq's TFTP drop privileges: let them read the files.
chmod -R a+rX "$work"
for n in "bios-0 52:54:00:77:00:10" "uefi-0 52:54:00:77:00:11"; do
  set -- $n
  "$BOOTLAB" render "$work/lab.toml" "boot.ipxe?mac=$2" > "$work/www/$1.ipxe"
done
cat > "$work/dnsmasq.conf" <<CONF
port=0
interface=br0
bind-interfaces
dhcp-range=10.77.0.0,static,255.255.255.0
dhcp-host=52:54:00:77:00:10,10.77.0.10,bios-0,set:bios0
dhcp-host=52:54:00:77:00:11,10.77.0.11,uefi-0,set:uefi0
dhcp-option=option:router,10.77.0.1
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:ipxe,tag:bios0,http://$SRV:8081/bios-0.ipxe
dhcp-boot=tag:ipxe,tag:uefi0,http://$SRV:8081/uefi-0.ipxe
dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi,,$SRV
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,$SRV
enable-tftp
tftp-root=$work/assets
dhcp-leasefile=$work/dnsmasq.leases
pid-file=$work/dnsmasq.pid
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 256; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_timeout 30;
  default_type application/octet-stream;
  server { listen $SRV:8081; root $work/www; }
}
CONF
nsx dnsmasq --keep-in-foreground --conf-file="$work/dnsmasq.conf" 2>"$work/dnsmasq.log" &
pids+=($!)
nsx nginx -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" &
pids+=($!)
wait_http "http://$SRV:8081/bios-0.ipxe" "$work/nginx.err"
sleep 0.5
read -r d_bios d_uefi < <(run_pair)

ratio() { if [[ $1 == FAIL || $2 == FAIL ]]; then echo n/a; else echo "scale=2; $1 / $2" | bc; fi; }
printf '\n%-8s %12s %12s %18s\n' firmware bootlabd_s dnsmasq_s "bootlabd/dnsmasq"
printf '%-8s %12s %12s %18s\n' BIOS "$b_bios" "$d_bios" "$(ratio "$b_bios" "$d_bios")"
printf '%-8s %12s %12s %18s\n' UEFI "$b_uefi" "$d_uefi" "$(ratio "$b_uefi" "$d_uefi")"
echo "target: ratio <= 1.00 (bootlabd no slower than dnsmasq + nginx)"
