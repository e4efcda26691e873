#!/usr/bin/env bash
# Builds the tiny test OS the PXE end-to-end tests boot, into DIR:
#   DIR/vmlinuz     a Debian cloud kernel (apt-get download linux-image-*-cloud-amd64)
#   DIR/initrd.img  a busybox initramfs whose /init prints
#                   "BOOTLAB-MARKER <kernel command line>" on the console (and
#                   "BOOTLAB-FILE <content>" when a second initrd put
#                   /etc/bootlab-marker in) and powers off.
# Downloads are cached in ${BOOTLAB_E2E_CACHE:-target/e2e-cache}.
set -euo pipefail
out=${1:?usage: build-test-os.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${BOOTLAB_E2E_CACHE:-$here/../../target/e2e-cache}
mkdir -p "$out" "$cache"

if [ ! -s "$cache/vmlinuz" ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ && !found {print $2; found = 1}')
  [ -n "$pkg" ] || { echo "no linux-image-*-cloud-amd64 package known to apt (run apt-get update)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download "$pkg" >/dev/null)
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  cp "$tmp"/x/boot/vmlinuz-* "$cache/vmlinuz.tmp"
  mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
fi
cp "$cache/vmlinuz" "$out/vmlinuz"

busybox=/bin/busybox
# The list is read whole before grep looks at it: `busybox --list | grep -q`
# under pipefail fails at random (grep exits early, busybox gets SIGPIPE).
applets=$([ -x "$busybox" ] && "$busybox" --list || true)
grep -qx poweroff <<< "$applets" \
  || { echo "busybox-static is needed (/bin/busybox with poweroff)" >&2; exit 1; }
root=$(mktemp -d)
mkdir -p "$root/bin" "$root/proc" "$root/dev" "$root/sys"
cp "$busybox" "$root/bin/busybox"
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
echo "BOOTLAB-MARKER $(/bin/busybox cat /proc/cmdline)"
echo "BOOTLAB-MARKER $(/bin/busybox cat /proc/cmdline)" > /dev/console 2>/dev/null
[ -f /etc/bootlab-marker ] && echo "BOOTLAB-FILE $(/bin/busybox cat /etc/bootlab-marker)" > /dev/console 2>/dev/null
/bin/busybox sync
/bin/busybox poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out/initrd.img"
rm -rf "$root"
ls -l "$out/vmlinuz" "$out/initrd.img" >&2
