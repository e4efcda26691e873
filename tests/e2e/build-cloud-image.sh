#!/bin/sh
# Builds a small Debian cloud image for the cloud-image end-to-end test,
# from Debian packages only, without loop devices or mounts:
#   OUT         a qcow2: MBR (syslinux), a FAT boot partition (kernel,
#               initrd, syslinux.cfg) and an ext4 root (mke2fs -d) with
#               systemd, udev, cloud-init (NoCloud only), nftables,
#               e2fsprogs and the cloud kernel; systemd-networkd enabled
#               (cloud-init's renderer when ifupdown is absent).
# The rootfs tarball and the image are cached in ${BOOTLAB_E2E_CACHE:-target/e2e-cache}
# (the repository's target/).
# Needs mmdebstrap, mtools, syslinux, syslinux-common, fdisk (sfdisk),
# e2fsprogs, qemu-utils; root (the rootfs keeps its owners).
set -eu
out=${1:?usage: build-cloud-image.sh OUT.qcow2}
here=$(cd "$(dirname "$0")" && pwd)
cache=${BOOTLAB_E2E_CACHE:-$here/../../target/e2e-cache}
mkdir -p "$cache"
img="$cache/debian-cloud-v1.qcow2"
if [ ! -s "$img" ]; then
  tarball="$cache/debian-cloud-rootfs-v1.tar"
  if [ ! -f "$tarball" ] || [ ! -s "$tarball" ]; then
    # --format: mmdebstrap picks the format from the name, and "*.part"
    # would make it a directory.
    rm -rf "$tarball" "$tarball.part"
    mmdebstrap --variant=minbase --format=tar \
      --include=systemd-sysv,udev,cloud-init,linux-image-cloud-amd64,nftables,e2fsprogs,tar,util-linux,openssh-server,sudo,iproute2,netbase \
      bookworm "$tarball.part"
    mv "$tarball.part" "$tarball"
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/root"
  tar -C "$work/root" -xpf "$tarball"
  systemctl --root="$work/root" enable systemd-networkd.service >/dev/null 2>&1
  printf 'datasource_list: [ NoCloud, None ]\n' > "$work/root/etc/cloud/cloud.cfg.d/90-bootlab.cfg"
  printf 'LABEL=bootlab-root / ext4 defaults 0 1\n' > "$work/root/etc/fstab"
  kernel=$(ls "$work"/root/boot/vmlinuz-* | head -n1)
  initrd=$(ls "$work"/root/boot/initrd.img-* | head -n1)
  # FAT boot partition: 64 MiB at 1 MiB; ext4 root: 1536 MiB after it.
  boot_mib=64
  root_mib=1536
  truncate -s "${boot_mib}M" "$work/boot.img"
  mformat -i "$work/boot.img" -v BOOT ::
  mcopy -i "$work/boot.img" "$kernel" ::vmlinuz
  mcopy -i "$work/boot.img" "$initrd" ::initrd.img
  printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 1\nLABEL linux\n  KERNEL vmlinuz\n  APPEND initrd=initrd.img root=LABEL=bootlab-root rw console=ttyS0,115200\n' > "$work/syslinux.cfg"
  mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg
  syslinux --install "$work/boot.img"
  # One sparse raw disk, every piece written in place: the FAT partition
  # with conv=sparse and the ext4 root by mke2fs at its offset, so the
  # build never holds more than the files' own blocks (CI disks are small).
  disk="$work/disk.img"
  truncate -s "$((1 + boot_mib + root_mib + 1))M" "$disk"
  printf 'label: dos\nstart=1MiB, size=%sMiB, type=c, bootable\nstart=%sMiB, size=%sMiB, type=83\n' \
    "$boot_mib" "$((1 + boot_mib))" "$root_mib" | sfdisk -q "$disk"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
  dd if="$work/boot.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  rm -f "$work/boot.img"
  mke2fs -q -F -t ext4 -L bootlab-root -E offset=$(((1 + boot_mib) * 1024 * 1024)) \
    -d "$work/root" "$disk" "${root_mib}M"
  rm -rf "$work/root"
  qemu-img convert -q -f raw -O qcow2 "$disk" "$img.part"
  mv "$img.part" "$img"
fi
cp "$img" "$out"
