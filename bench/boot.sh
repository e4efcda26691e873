#!/usr/bin/env bash
# bench/boot.sh - boot time of every firmware path, bootlabd vs dnsmasq
# (+ nginx for HTTP) where dnsmasq can serve the same path, same run.
#
# Paths (docs/firmware.md), each a QEMU (TCG) guest booting the e2e test OS
# (a Debian cloud kernel + busybox marker initramfs) to its marker line:
#
#   path        firmware                                    bootlabd   dnsmasq + nginx
#   bios        SeaBIOS + iPXE ROM                          yes        yes
#   uefi-pxe    OVMF PXE -> snponly.efi -> iPXE              yes        yes
#   http-ipxe   OVMF HTTP boot -> ipxe.efi                   yes        -
#   http-grub   OVMF HTTP boot -> GRUB (stamped image)       yes        -
#   arm64       AAVMF PXE -> grubnetaa64.efi                 yes        -
#   secure-boot OVMF Secure Boot -> shim -> GRUB -> kernel   yes        -
#   proxy-bios  BIOS iPXE ROM, another DHCP server (dnsmasq) yes        yes (dnsmasq in proxy mode)
#   proxy-uefi  OVMF PXE, another DHCP server                yes        yes (dnsmasq in proxy mode)
#
# '-': not compared (the anchor is dnsmasq's PXE and proxyDHCP paths).
# Guests boot one at a time (TCG on a shared machine). Prints seconds from
# QEMU start to the marker and bootlabd/dnsmasq ratios. Target: <= 1.00.
# Needs root and the packages in tests/apt-packages.txt (nginx-light is
# installed if missing). Downloads are cached in target/e2e-cache.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
NS=blbb-$$
NSO=blbo-$$
SRV=10.77.0.254
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$NSO" 2>/dev/null || true
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
cache=$here/target/e2e-cache
mkdir -p "$work/assets" "$work/data" "$work/pdata" "$cache"
tests/e2e/build-test-os.sh "$work/assets" 2>/dev/null
tests/e2e/build-test-os.sh --arch arm64 "$work/assets/arm64" 2>/dev/null
BOOTLAB_APT_ARM64_STATE=$cache/apt-arm64 boot-assets/gather.sh --arm64 "$work/assets" >/dev/null

# name mac ip profile tap firmware
NODES=(
  "bios-0 52:54:00:77:00:10 10.77.0.10 testos tap0 bios"
  "uefi-0 52:54:00:77:00:11 10.77.0.11 testos tap1 uefi-pxe"
  "http-ipxe 52:54:00:77:00:21 10.77.0.21 testos tap2 uefi-http"
  "http-grub 52:54:00:77:00:22 10.77.0.22 grubos tap3 uefi-http"
  "arm64-0 52:54:00:77:00:41 10.77.0.41 arm64os tap4 arm64"
  "sb-0 52:54:00:77:00:51 10.77.0.51 signed tap5 secure-boot"
)

lab_toml() { # dhcp-mode data-dir
  cat <<TOML
[lab]
name = "bench"
domain = "lab.test"
[network]
cidr = "10.77.0.0/24"
mode = "bridge"
bridge = "br0"
gateway = "10.77.0.1"
dhcp = "$1"
[services]
ip = "$SRV"
mac = "52:54:00:77:00:fe"
interface = "br0"
listen = { dhcp = "0.0.0.0:67", dns = "$SRV:53", tftp = "0.0.0.0:69", http = "0.0.0.0:8080" }
data_dir = "$2"
assets_dir = "$work/assets"
firewall = false
[profiles.testos]
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 panic=-1 bootlab.node={{ node.name }}"
[profiles.grubos]
loader = "grub"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 panic=-1 bootlab.node={{ node.name }}"
[profiles.signed]
loader = "shim-grub"
kernel = "vmlinuz"
initrd = ["initrd.img"]
args = "console=ttyS0 panic=-1 bootlab.node={{ node.name }}"
[profiles.arm64os]
loader = "grub"
kernel = "arm64/vmlinuz"
initrd = ["arm64/initrd.img"]
args = "console=ttyAMA0 panic=-1 bootlab.node={{ node.name }}"
TOML
  for n in "${NODES[@]}"; do
    set -- $n
    printf '[[nodes]]\nname = "%s"\nprofile = "%s"\nfirmware = "uefi"\nmac = "%s"\nip = "%s"\n' "$1" "$4" "$2" "$3"
  done
}
lab_toml server "$work/data" >"$work/lab.toml"
lab_toml proxy "$work/pdata" >"$work/proxy.toml"

ip netns add "$NS"
# nsx/nso run a command in a namespace. Background processes are started
# with `ip netns exec ... &` directly, never through these functions: $! of
# a backgrounded function is a subshell, and killing it leaves the daemon
# (or QEMU) running (measured: step 1's bootlabd outlived its kill and held
# port 53, so the proxy-mode bootlabd of step 2 could not start).
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip link add br0 type bridge
nsx ip addr add "$SRV/24" dev br0
nsx ip link set br0 up
for t in tap0 tap1 tap2 tap3 tap4 tap5; do
  nsx ip tuntap add dev $t mode tap
  nsx ip link set $t master br0
  nsx ip link set $t up
done
# Another host on the link: the address-owning DHCP server for proxyDHCP.
ip netns add "$NSO"
nso() { ip netns exec "$NSO" "$@"; }
nsx ip link add vpeer type veth peer name lan0
nsx ip link set lan0 netns "$NSO"
nsx ip link set vpeer master br0
nsx ip link set vpeer up
nso ip link set lo up
nso ip addr add 10.77.0.1/24 dev lan0
nso ip link set lan0 up

# Boots one guest; prints seconds from QEMU start to the marker (or FAIL).
boot() { # name mac tap firmware
  local name=$1 mac=$2 tap=$3 fw=$4 log=$work/$1.$RANDOM.serial
  local qemu=qemu-system-x86_64
  local args=(-accel tcg -m 512 -display none -no-reboot -monitor none -serial "file:$log"
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no")
  local code=/usr/share/OVMF/OVMF_CODE_4M.fd vars=/usr/share/OVMF/OVMF_VARS_4M.fd
  case $fw in
    bios) args+=(-device "virtio-net-pci,netdev=n0,mac=$mac" -boot n) ;;
    secure-boot)
      code=/usr/share/OVMF/OVMF_CODE_4M.ms.fd vars=/usr/share/OVMF/OVMF_VARS_4M.ms.fd
      args+=(-machine q35,smm=on -global driver=cfi.pflash01,property=secure,value=on) ;;
    uefi-http)
      args+=(-fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n
        -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n) ;;
    arm64)
      qemu=qemu-system-aarch64
      code=/usr/share/AAVMF/AAVMF_CODE.fd vars=/usr/share/AAVMF/AAVMF_VARS.fd
      args=(-machine virt -cpu cortex-a57 "${args[@]}") ;;
  esac
  if [ "$fw" != bios ]; then
    cp "$vars" "$work/$name.vars"
    args+=(-device "virtio-net-pci,netdev=n0,mac=$mac,romfile=,bootindex=1"
      -drive "if=pflash,format=raw,readonly=on,file=$code"
      -drive "if=pflash,format=raw,file=$work/$name.vars")
  fi
  local t0; t0=$(date +%s.%N)
  ip netns exec "$NS" "$qemu" "${args[@]}" </dev/null >/dev/null 2>&1 &
  local q=$!
  local deadline=$(( $(date +%s) + 420 ))
  while ! grep -qa BOOTLAB-MARKER "$log" 2>/dev/null; do
    if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 $q 2>/dev/null; then
      kill $q 2>/dev/null; wait $q 2>/dev/null || true; echo FAIL; return; fi
    sleep 0.1
  done
  local t1; t1=$(date +%s.%N)
  kill $q 2>/dev/null || true; wait $q 2>/dev/null || true
  printf "%.2f\n" "$(echo "$t1 - $t0" | bc)"
}
boot_node() { # NAME=<node> [FW=<firmware>] boot_node
  local n
  for n in "${NODES[@]}"; do
    set -- $n
    if [ "$1" = "$NAME" ]; then boot "$1" "$2" "$5" "${FW:-$6}"; return; fi
  done
}
wait_http() { # url log
  local deadline=$(( $(date +%s) + 60 ))
  until nsx curl -sf -o /dev/null "$1"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "server did not come up:" >&2; cat "$2" >&2; exit 1; fi
    sleep 0.2
  done
}
declare -A B D

# 1. bootlabd as the DHCP server: every path.
ip netns exec "$NS" "$BOOTLABD" --config "$work/lab.toml" 2>"$work/bootlabd.log" &
pids+=($!)
wait_http "http://$SRV:8080/metrics" "$work/bootlabd.log"
for path in bios:bios-0 uefi-pxe:uefi-0 http-ipxe:http-ipxe http-grub:http-grub arm64:arm64-0 secure-boot:sb-0; do
  B[${path%%:*}]=$(NAME=${path#*:} boot_node)
  echo "bootlabd ${path%%:*}: ${B[${path%%:*}]}" >&2
done
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 2. proxyDHCP: dnsmasq on the other host hands out the addresses, bootlabd
#    (proxy mode) the boot information.
cat > "$work/dnsmasq-addr.conf" <<CONF
port=0
interface=lan0
bind-interfaces
dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h
dhcp-leasefile=$work/dnsmasq-addr.leases
pid-file=$work/dnsmasq-addr.pid
CONF
ip netns exec "$NSO" dnsmasq --keep-in-foreground --user=root --conf-file="$work/dnsmasq-addr.conf" 2>"$work/dnsmasq-addr.log" &
pids+=($!)
ip netns exec "$NS" "$BOOTLABD" --config "$work/proxy.toml" 2>"$work/bootlabd-proxy.log" &
pids+=($!)
wait_http "http://$SRV:8080/metrics" "$work/bootlabd-proxy.log"
B[proxy-bios]=$(NAME=bios-0 boot_node); echo "bootlabd proxy-bios: ${B[proxy-bios]}" >&2
B[proxy-uefi]=$(NAME=uefi-0 boot_node); echo "bootlabd proxy-uefi: ${B[proxy-uefi]}" >&2
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 3. dnsmasq (DHCP + TFTP) + nginx (HTTP): the same scripts and files.
mkdir -p "$work/www/assets"
cp -r "$work/assets/." "$work/www/assets/"
# nginx workers and dnsmasq's TFTP drop privileges: let them read the files.
chmod -R a+rX "$work"
for n in "bios-0 52:54:00:77:00:10" "uefi-0 52:54:00:77:00:11"; do
  set -- $n
  # The node's own script, pointed at nginx (bootlabd is not running now:
  # its URLs would leave iPXE retrying until the deadline).
  "$BOOTLAB" render "$work/lab.toml" "boot.ipxe?mac=$2" \
    | sed "s#http://$SRV:8080/#http://$SRV:8081/#g" > "$work/www/$1.ipxe"
done
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
ip netns exec "$NS" nginx -c "$work/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" &
pids+=($!)
wait_http "http://$SRV:8081/bios-0.ipxe" "$work/nginx.err"
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
# The address server of step 2 steps aside while dnsmasq serves everything.
kill "${pids[-3]}"; wait "${pids[-3]}" 2>/dev/null || true
ip netns exec "$NS" dnsmasq --keep-in-foreground --user=root --conf-file="$work/dnsmasq.conf" 2>"$work/dnsmasq.log" &
pids+=($!)
sleep 0.5
D[bios]=$(NAME=bios-0 boot_node); echo "dnsmasq bios: ${D[bios]}" >&2
D[uefi-pxe]=$(NAME=uefi-0 boot_node); echo "dnsmasq uefi-pxe: ${D[uefi-pxe]}" >&2
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

# 4. dnsmasq as the proxyDHCP server next to the address server.
ip netns exec "$NSO" dnsmasq --keep-in-foreground --user=root --conf-file="$work/dnsmasq-addr.conf" 2>>"$work/dnsmasq-addr.log" &
pids+=($!)
cat > "$work/dnsmasq-proxy.conf" <<CONF
port=0
interface=br0
bind-interfaces
dhcp-range=10.77.0.0,proxy,255.255.255.0
dhcp-host=52:54:00:77:00:10,set:bios0
dhcp-host=52:54:00:77:00:11,set:uefi0
dhcp-userclass=set:ipxe,iPXE
# iPXE (the BIOS NIC ROM, or snponly.efi) gets its script from dhcp-boot:
# a pxe-service matching it would take over (a "0" basename there means
# "boot from local disk"). The script's server address is the next-server:
# iPXE ignores a proxyDHCP answer without one (measured: it sent
# ProxyDHCPREQUESTs to 4011 until it gave up, as with bootlabd before it
# set siaddr). Firmware PXE gets snponly.efi from pxe-service.
dhcp-boot=tag:ipxe,tag:bios0,http://$SRV:8081/bios-0.ipxe,,$SRV
dhcp-boot=tag:ipxe,tag:uefi0,http://$SRV:8081/uefi-0.ipxe,,$SRV
pxe-service=tag:!ipxe,X86-64_EFI,"bootlab",snponly.efi,$SRV
enable-tftp
tftp-root=$work/assets
dhcp-leasefile=$work/dnsmasq-proxy.leases
pid-file=$work/dnsmasq-proxy.pid
CONF
ip netns exec "$NS" dnsmasq --keep-in-foreground --user=root --conf-file="$work/dnsmasq-proxy.conf" 2>"$work/dnsmasq-proxy.log" &
pids+=($!)
sleep 0.5
D[proxy-bios]=$(NAME=bios-0 boot_node); echo "dnsmasq proxy-bios: ${D[proxy-bios]}" >&2
D[proxy-uefi]=$(NAME=uefi-0 boot_node); echo "dnsmasq proxy-uefi: ${D[proxy-uefi]}" >&2

ratio() { if [[ ${1:-} == FAIL || ${2:-} == FAIL || -z ${1:-} || -z ${2:-} ]]; then echo n/a; else echo "scale=2; $1 / $2" | bc; fi; }
printf '\n%-12s %12s %12s %18s\n' path bootlabd_s dnsmasq_s "bootlabd/dnsmasq"
for p in bios uefi-pxe proxy-bios proxy-uefi http-ipxe http-grub arm64 secure-boot; do
  printf '%-12s %12s %12s %18s\n' "$p" "${B[$p]:-}" "${D[$p]:--}" "$(ratio "${B[$p]:-}" "${D[$p]:-}")"
done
echo "target: ratio <= 1.00 (bootlabd no slower than dnsmasq + nginx); '-': dnsmasq has no such path here"
