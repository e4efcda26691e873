#!/usr/bin/env bash
# Builds the tiny test OS the PXE end-to-end tests boot, into DIR:
#   DIR/vmlinuz     a Debian cloud kernel (apt-get download linux-image-*-cloud-<arch>;
#                   the amd64 one is signed for Secure Boot by Debian)
#   DIR/initrd.img  a busybox initramfs whose /init prints
#                   "BOOTLAB-MARKER <kernel command line>" on the console (and
#                   "BOOTLAB-FILE <content>" when a second initrd put
#                   /etc/bootlab-marker in) and powers off.
#
#   build-test-os.sh [--arch amd64|arm64] DIR
#
# amd64 (the default) uses the host's busybox-static; arm64 takes the kernel
# and busybox-static from Debian's arm64 packages, fetched with a private
# package index (boot-assets/apt-arch.sh; the host's dpkg architectures are
# left alone). Downloads are cached in ${BOOTLAB_E2E_CACHE:-target/e2e-cache}.
set -euo pipefail
arch=amd64
if [ "${1:-}" = --arch ]; then arch=${2:?--arch needs amd64 or arm64}; shift 2; fi
out=${1:?usage: build-test-os.sh [--arch amd64|arm64] DIR}
here=$(cd "$(dirname "$0")" && pwd)
cache=${BOOTLAB_E2E_CACHE:-$here/../../target/e2e-cache}
mkdir -p "$out" "$cache"
cache=$(cd "$cache" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case $arch in
  amd64)
    apt_cache() { apt-cache "$@"; }
    apt_download() { apt-get download "$@"; }
    kernel_cache=$cache/vmlinuz
    ;;
  arm64)
    apt_cache() { "$here/../../boot-assets/apt-arch.sh" arm64 "$cache/apt-arm64" "$@"; }
    apt_download() { "$here/../../boot-assets/apt-arch.sh" arm64 "$cache/apt-arm64" download "$@"; }
    kernel_cache=$cache/arm64/vmlinuz
    ;;
  *) echo "build-test-os.sh: unknown --arch $arch (amd64 or arm64)" >&2; exit 64 ;;
esac
mkdir -p "$(dirname "$kernel_cache")"

if [ ! -s "$kernel_cache" ]; then
  pkg=$(apt_cache depends "linux-image-cloud-$arch" | awk '/Depends: linux-image-[0-9]/ && !found {print $2; found = 1}')
  [ -n "$pkg" ] || { echo "no linux-image-*-cloud-$arch package known to apt (run apt-get update)" >&2; exit 1; }
  (cd "$tmp" && apt_download "$pkg" >/dev/null 2>&1)
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  cp "$tmp"/x/boot/vmlinuz-* "$kernel_cache.tmp"
  mv "$kernel_cache.tmp" "$kernel_cache"
  rm -rf "$tmp"/*
fi
cp "$kernel_cache" "$out/vmlinuz"

if [ "$arch" = amd64 ]; then
  busybox=/bin/busybox
  # The list is read whole before grep looks at it: `busybox --list | grep -q`
  # under pipefail fails at random (grep exits early, busybox gets SIGPIPE).
  applets=$([ -x "$busybox" ] && "$busybox" --list || true)
  grep -qx poweroff <<< "$applets" \
    || { echo "busybox-static is needed (/bin/busybox with poweroff)" >&2; exit 1; }
else
  busybox=$cache/arm64/busybox
  if [ ! -s "$busybox" ]; then
    (cd "$tmp" && apt_download busybox-static >/dev/null 2>&1)
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb"
    cp "$tmp/bb/bin/busybox" "$busybox.tmp"
    mv "$busybox.tmp" "$busybox"
  fi
fi
root=$tmp/root
mkdir -p "$root/bin" "$root/proc" "$root/dev" "$root/sys"
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
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
ls -l "$out/vmlinuz" "$out/initrd.img" >&2
