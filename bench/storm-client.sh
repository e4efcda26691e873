#!/usr/bin/env bash
# bench/storm-client.sh - one synthetic PXE client of bench/storm.sh, run
# inside its own network namespace (its NIC is eth0, with the MAC of the
# node it plays). Not meant to be run by hand.
#
#   storm-client.sh INDEX NAME   (environment: STORM_DIR, SRV, HTTP_PORT,
#                                 LOADER_BYTES, KERNEL_BYTES, INITRD_BYTES)
#
# Waits for the go line on STORM_DIR/go, then boots as a BIOS PXE ROM and
# iPXE would: DHCP (udhcpc, announcing PXEClient arch 0; a DISCOVER every
# 2 s for up to 60 s, about a PXE ROM's patience: 4+8+16+32 s) -> TFTP of the
# boot file the DHCP answer names (atftp, blksize 1432 and tsize as iPXE
# asks) -> HTTP GET /boot.ipxe (the server picks the script by the source
# address) -> HTTP GET of the kernel and initrd the script names (curl, one
# connection). Writes STORM_DIR/results/INDEX: "ok t0 t1 t2 t3 t4" (epoch
# seconds at the start and after each phase) or "fail <phase>: <why>".
set -u
i=$1
name=$2
dir=$STORM_DIR
out=$dir/results/$i
tmp=$dir/tmp/$i
mkdir -p "$tmp"
fail() { echo "fail $*" > "$out"; exit 1; }

ip link set lo up
ip addr flush dev eth0
ip link set eth0 up
: > "$dir/ready/$i"
read -r _ < "$dir/go" || fail "start: no go line"

t0=$EPOCHREALTIME
# udhcpc runs this script with the answer in its environment.
export LEASE_OUT=$tmp/lease
rm -f "$LEASE_OUT"
udhcpc -f -q -n -i eth0 -t 30 -T 2 -s "$dir/udhcpc.script" \
  -V PXEClient:Arch:00000:UNDI:002001 -x 0x5d:0000 -x 0x5e:010201 \
  > "$tmp/udhcpc.log" 2>&1 || fail "dhcp: no lease: $(tail -1 "$tmp/udhcpc.log")"
read -r ip siaddr file < "$LEASE_OUT" || fail "dhcp: no lease recorded"
want_ip=$(awk -v n="$name" '$1 == n { print $3 }' "$dir/nodes.txt")
[ "$ip" = "$want_ip" ] || fail "dhcp: got $ip, reservation is $want_ip"
[ -n "$file" ] && [ -n "$siaddr" ] || fail "dhcp: no boot file ('$file') or next server ('$siaddr')"
t1=$EPOCHREALTIME

atftp --option "blksize 1432" --option "tsize 0" --tftp-timeout 1 -g -r "$file" -l "$tmp/loader" "$siaddr" \
  > "$tmp/atftp.log" 2>&1 || fail "tftp: $file from $siaddr: $(tail -1 "$tmp/atftp.log")"
got=$(stat -c %s "$tmp/loader")
rm -f "$tmp/loader"
[ "$got" = "$LOADER_BYTES" ] || fail "tftp: $file is $got bytes, want $LOADER_BYTES"
t2=$EPOCHREALTIME

curl -sf --max-time 60 -o "$tmp/boot.ipxe" "http://$SRV:$HTTP_PORT/boot.ipxe" || fail "script: curl exit $?"
grep -q "bootlab.node=$name " "$tmp/boot.ipxe" || fail "script: not $name's: $(head -c 200 "$tmp/boot.ipxe")"
kernel=$(awk '$1 == "kernel" { print $2; exit }' "$tmp/boot.ipxe")
initrd=$(awk '$1 == "initrd" { print $2; exit }' "$tmp/boot.ipxe")
[ -n "$kernel" ] && [ -n "$initrd" ] || fail "script: no kernel or initrd line"
t3=$EPOCHREALTIME

sizes=$(curl -sf --max-time 900 -o /dev/null -o /dev/null -w '%{size_download}\n' "$kernel" "$initrd") \
  || fail "kernel+initrd: curl exit $?"
[ "$sizes" = "$KERNEL_BYTES"$'\n'"$INITRD_BYTES" ] || fail "kernel+initrd: got $(echo $sizes) bytes, want $KERNEL_BYTES $INITRD_BYTES"
t4=$EPOCHREALTIME
echo "ok $t0 $t1 $t2 $t3 $t4" > "$out"
