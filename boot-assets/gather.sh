#!/usr/bin/env bash
# gather.sh [--installed | --packages PKGDIR] DIR - put the first-stage boot
# binaries into an assets directory, from the host distribution's packages
# (nothing third-party is committed to bootlab).
#
# What lands in DIR, and where each distribution ships it:
#
#   DIR/                  Debian, Ubuntu (.deb)               Fedora, RHEL, CentOS, Rocky, Alma (.rpm)
#   undionly.kpxe         ipxe: /usr/lib/ipxe/undionly.kpxe   ipxe-bootimgs-x86: /usr/share/ipxe/undionly.kpxe
#   snponly.efi           ipxe: /usr/lib/ipxe/snponly.efi     ipxe-bootimgs-x86: /usr/share/ipxe/ipxe-snponly-x86_64.efi
#   ipxe.efi              ipxe: /usr/lib/ipxe/ipxe.efi        ipxe-bootimgs-x86: /usr/share/ipxe/ipxe-x86_64.efi
#   grubnetx64.efi        grub-efi-amd64-signed:              grub2-efi-x64:
#                         /usr/lib/grub/x86_64-efi-signed/    /boot/efi/EFI/<vendor>/grubx64.efi
#                         grubnetx64.efi.signed               (signed; its network modules are built in)
#   grub/x86_64-efi/      grub-efi-amd64-bin:                 grub2-efi-x64-modules:
#     *.mod *.lst         /usr/lib/grub/x86_64-efi/           /usr/lib/grub/x86_64-efi/
#   shimx64.efi           shim-signed:                        shim-x64:
#                         /usr/lib/shim/shimx64.efi.signed    /boot/efi/EFI/<vendor>/shimx64.efi
#   grubx64.efi           the signed GRUB netboot image again, under the name shim loads
#                         from its own directory (Secure Boot: shim -> GRUB -> kernel)
#   grubx64-http.efi      built here with grub-mkimage (grub-common / grub2-tools) from the
#                         modules above: GRUB with efinet, http and tftp built in, prefix
#                         /grub, for UEFI HTTP boot (the signed image cannot fetch over HTTP)
#
# With --arm64 also (Debian packages only, fetched with a private arm64
# package index by boot-assets/apt-arch.sh, kept in BOOTLAB_APT_ARM64_STATE,
# default ~/.cache/bootlab/apt-arm64; the host's dpkg architectures are left
# alone):
#   grubnetaa64.efi       grub-efi-arm64-signed: /usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed
#   grub/arm64-efi/       grub-efi-arm64-bin: /usr/lib/grub/arm64-efi/ (http.mod for grub.cfg's insmod)
#
# Every EFI binary is checked to be a PE/COFF image for its machine
# (x86-64 or arm64), and the signed ones (shim, GRUB) to carry an
# Authenticode signature; with sbverify (sbsigntool) on the host, shim's
# signer is checked to be Microsoft's UEFI CA.
#
# plus DIR/SHA256SUMS (check with: cd DIR && sha256sum -c SHA256SUMS) and
# DIR/PACKAGES (which package versions the files came from). Other files in
# DIR (kernels, initrds...) are left alone.
#
# Where the packages come from:
#   (default)        the host's package manager downloads them: `apt-get
#                    download` (run `apt-get update` once first) or `dnf
#                    download` (dnf-plugins-core on dnf 4; built into dnf5).
#                    Extra options go in BOOTLAB_APT_OPTS / BOOTLAB_DNF_OPTS
#                    (e.g. a local mirror: BOOTLAB_DNF_OPTS="--repofrompath=
#                    mirror,/srv/mirror --repo=mirror").
#   --installed      the installed packages' files at the paths above
#                    (apt-get install ipxe grub-efi-amd64-signed
#                    grub-efi-amd64-bin / dnf install ipxe-bootimgs-x86
#                    grub2-efi-x64 grub2-efi-x64-modules).
#   --packages DIR   package files fetched beforehand (an offline host): the
#                    three .deb or the three .rpm files above, in PKGDIR.
#
# The host's package format comes from /etc/os-release (ID, ID_LIKE); with
# BOOTLAB_HOST_ROOT set, os-release, --installed files and the package
# database are read under that root instead of /.
#
# Requires: sha256sum, and for .deb: dpkg-deb (+ apt-get to download,
# dpkg-query for --installed); for .rpm: rpm, rpm2cpio, cpio (+ dnf to
# download).
set -euo pipefail

usage() { echo "usage: $0 [--installed | --packages PKGDIR] [--arm64] DIR" >&2; exit 64; }
die() { local code=$1; shift; echo "gather.sh: $*" >&2; exit "$code"; }

mode=download
pkgdir=
arm64=false
while [ $# -gt 1 ]; do
  case "$1" in
    --installed) mode=installed; shift ;;
    --packages) mode=packages; pkgdir=${2:-}; [ -n "$pkgdir" ] || usage; shift 2 ;;
    --arm64) arm64=true; shift ;;
    *) usage ;;
  esac
done
[ $# -eq 1 ] || usage
dest=$1
host_root=${BOOTLAB_HOST_ROOT:-}
host_root=${host_root%/}

# The package format: the files given, else the distribution's.
format=
distro=unknown
if [ "$mode" = packages ]; then
  [ -d "$pkgdir" ] || die 66 "$pkgdir is not a directory"
  if compgen -G "$pkgdir/*.deb" >/dev/null; then format=deb
  elif compgen -G "$pkgdir/*.rpm" >/dev/null; then format=rpm
  else die 66 "no .deb or .rpm files in $pkgdir"
  fi
else
  os_release=$host_root/etc/os-release
  [ -f "$os_release" ] || os_release=$host_root/usr/lib/os-release
  if [ -f "$os_release" ]; then
    osr() { sed -n "s/^$1=//p" "$os_release" | tail -n1 | tr -d "\"'"; }
    distro=$(osr ID)
    ids="$distro $(osr ID_LIKE)"
    for id in $ids; do
      case $id in
        debian|ubuntu) format=deb; break ;;
        fedora|rhel|centos|rocky|almalinux|ol) format=rpm; break ;;
      esac
    done
  fi
  [ -n "$format" ] || die 69 "cannot tell whether $distro uses .deb or .rpm packages;" \
    "put the packages listed in this script's header in a directory and use --packages DIR"
fi

need() { for tool; do command -v "$tool" >/dev/null || die 69 "$tool is required (see the header of $0)"; done; }
need sha256sum
if [ "$format" = deb ]; then
  packages=(ipxe grub-efi-amd64-signed grub-efi-amd64-bin shim-signed)
  ipxe_dir=/usr/lib/ipxe
  files=(
    "ipxe $ipxe_dir/undionly.kpxe undionly.kpxe"
    "ipxe $ipxe_dir/snponly.efi snponly.efi"
    "ipxe $ipxe_dir/ipxe.efi ipxe.efi"
    "grub-efi-amd64-signed /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grubnetx64.efi"
    "grub-efi-amd64-signed /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grubx64.efi"
    "shim-signed /usr/lib/shim/shimx64.efi.signed shimx64.efi"
  )
  grub_modules=grub-efi-amd64-bin
  need dpkg-deb
  case $mode in
    download) need apt-get ;;
    installed) need dpkg-query ;;
  esac
else
  packages=(ipxe-bootimgs-x86 grub2-efi-x64 grub2-efi-x64-modules shim-x64)
  ipxe_dir=/usr/share/ipxe
  files=(
    "ipxe-bootimgs-x86 $ipxe_dir/undionly.kpxe undionly.kpxe"
    "ipxe-bootimgs-x86 $ipxe_dir/ipxe-snponly-x86_64.efi snponly.efi"
    "ipxe-bootimgs-x86 $ipxe_dir/ipxe-x86_64.efi ipxe.efi"
    "grub2-efi-x64 /boot/efi/EFI/*/grubx64.efi grubnetx64.efi"
    "grub2-efi-x64 /boot/efi/EFI/*/grubx64.efi grubx64.efi"
    "shim-x64 /boot/efi/EFI/*/shimx64.efi shimx64.efi"
  )
  grub_modules=grub2-efi-x64-modules
  need rpm
  case $mode in
    download) need dnf rpm2cpio cpio ;;
    packages) need rpm2cpio cpio ;;
  esac
fi

mkimage=$(command -v grub-mkimage || command -v grub2-mkimage || true)
[ -n "$mkimage" ] || die 69 "grub-mkimage is required to build grubx64-http.efi (apt-get install grub-common / dnf install grub2-tools)"
if $arm64; then
  [ "$format" = deb ] || die 69 "--arm64 takes Debian's arm64 GRUB packages; on $distro put grubnetaa64.efi and grub/arm64-efi/ in $1 by hand"
  [ "$mode" != installed ] || die 69 "--arm64 cannot take installed packages (arm64 packages do not install on this host); drop --installed"
  packages+=(grub-efi-arm64-signed grub-efi-arm64-bin)
  files+=("grub-efi-arm64-signed /usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed grubnetaa64.efi")
fi
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The package file of PKG in DIR (its name checked inside the package).
package_file() {
  local pkg=$1 dir=$2 f name
  for f in "$dir"/*."$format"; do
    [ -f "$f" ] || continue
    if [ "$format" = deb ]; then name=$(dpkg-deb -f "$f" Package)
    else name=$(rpm -qp --qf '%{NAME}' "$f" 2>/dev/null)
    fi
    if [ "$name" = "$pkg" ]; then printf '%s\n' "$f"; return; fi
  done
  return 1
}

# Unpacks package file FILE of PKG into a tree of its own.
unpack() {
  local pkg=$1 file=$2
  root_of[$pkg]="$work/root/$pkg"
  mkdir -p "${root_of[$pkg]}"
  if [ "$format" = deb ]; then
    version_of[$pkg]=$(dpkg-deb -f "$file" Version)
    dpkg-deb -x "$file" "${root_of[$pkg]}"
  else
    version_of[$pkg]=$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$file" 2>/dev/null)
    (cd "${root_of[$pkg]}" && rpm2cpio "$file" | cpio -idm --quiet --no-absolute-filenames)
  fi
}

declare -A root_of version_of
for pkg in "${packages[@]}"; do
  case $mode in
    installed)
      if [ "$format" = deb ]; then
        version_of[$pkg]=$(dpkg-query --admindir="$host_root/var/lib/dpkg" -W -f='${Version}' "$pkg" 2>/dev/null) ||
          die 69 "$pkg is not installed (apt-get install $pkg, or drop --installed)"
      else
        version_of[$pkg]=$(rpm --root "${host_root:-/}" -q --qf '%{VERSION}-%{RELEASE}' "$pkg" 2>/dev/null) ||
          die 69 "$pkg is not installed (dnf install $pkg, or drop --installed)"
      fi
      root_of[$pkg]=${host_root:-/}
      ;;
    packages)
      file=$(package_file "$pkg" "$pkgdir") || die 66 "no $pkg package in $pkgdir"
      unpack "$pkg" "$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
      ;;
    download)
      mkdir -p "$work/dl/$pkg"
      if [ "$format" = deb ] && [[ $pkg == *-arm64-* ]]; then
        state=${BOOTLAB_APT_ARM64_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/bootlab/apt-arm64}
        # shellcheck disable=SC2086
        (cd "$work/dl/$pkg" && "$here/apt-arch.sh" arm64 "$state" download -q ${BOOTLAB_APT_OPTS:-} "$pkg") >"$work/$pkg.log" 2>&1 ||
          { cat "$work/$pkg.log" >&2; die 69 "downloading arm64 $pkg failed (see above; or use --packages)"; }
      elif [ "$format" = deb ]; then
        # shellcheck disable=SC2086 # word splitting of the user's options is wanted
        (cd "$work/dl/$pkg" && apt-get download -q ${BOOTLAB_APT_OPTS:-} "$pkg") >"$work/$pkg.log" 2>&1 ||
          { cat "$work/$pkg.log" >&2; die 69 "apt-get download $pkg failed (run apt-get update, or use --installed / --packages)"; }
      else
        # shellcheck disable=SC2086
        dnf download -q ${BOOTLAB_DNF_OPTS:-} --destdir "$work/dl/$pkg" "$pkg" >"$work/$pkg.log" 2>&1 ||
          { cat "$work/$pkg.log" >&2; die 69 "dnf download $pkg failed (enable the repository that has it, or use --installed / --packages)"; }
      fi
      file=$(package_file "$pkg" "$work/dl/$pkg") || die 69 "the download of $pkg holds no $pkg package"
      unpack "$pkg" "$file"
      ;;
  esac
done

# resolve ROOT PATH: PATH inside the package tree ROOT (one glob match),
# following symlinks (absolute ones are taken relative to ROOT, as inside
# the package).
resolve() {
  local root=${1%/} path=$2 hops=0 target matches
  if [[ $path == *'*'* ]]; then
    # shellcheck disable=SC2206 # the glob is the point
    matches=($root$path)
    [ "${#matches[@]}" -eq 1 ] && [ -e "${matches[0]}" ] ||
      die 70 "$path: expected one match in the package, found: ${matches[*]}"
    path=${matches[0]#"$root"}
  fi
  while [ -L "$root$path" ]; do
    target=$(readlink "$root$path")
    case $target in
      /*) path=$target ;;
      *) path=$(dirname "$path")/$target ;;
    esac
    hops=$((hops + 1))
    [ "$hops" -lt 16 ] || die 70 "symlink loop at $path"
  done
  [ -f "$root$path" ] || die 70 "$path missing from the package"
  printf '%s\n' "$root$path"
}

installed=()
put() { # put PKG PATH-IN-PACKAGE NAME-IN-DEST
  local src
  src=$(resolve "${root_of[$1]}" "$2")
  mkdir -p "$dest/$(dirname "$3")"
  install -m 0644 "$src" "$dest/$3"
  installed+=("$3")
}

mkdir -p "$dest"
for f in "${files[@]}"; do
  read -r pkg path name <<<"$f"
  put "$pkg" "$path" "$name"
done

modules=${root_of[$grub_modules]%/}/usr/lib/grub/x86_64-efi
[ -f "$modules/http.mod" ] || die 70 "no /usr/lib/grub/x86_64-efi/http.mod from $grub_modules"
for f in "$modules"/*.mod "$modules"/*.lst; do
  put "$grub_modules" "/usr/lib/grub/x86_64-efi/$(basename "$f")" "grub/x86_64-efi/$(basename "$f")"
done
if $arm64; then
  m64=${root_of[grub-efi-arm64-bin]%/}/usr/lib/grub/arm64-efi
  [ -f "$m64/http.mod" ] || die 70 "no /usr/lib/grub/arm64-efi/http.mod from grub-efi-arm64-bin"
  for f in "$m64"/*.mod "$m64"/*.lst; do
    put grub-efi-arm64-bin "/usr/lib/grub/arm64-efi/$(basename "$f")" "grub/arm64-efi/$(basename "$f")"
  done
fi

# GRUB for UEFI HTTP boot. Loaded by the firmware's HTTP client, GRUB 2.06
# learns neither its address nor where it came from, so its embedded config
# asks DHCP for an address, and bootlabd writes "(http,<ip>:<port>)/grub"
# over the prefix placeholder as it serves the image (crates/boot/src/stamp.rs);
# GRUB then reads $prefix/grub.cfg, the node's config.
printf '%s\n' 'net_bootp' "set prefix=@BOOTLAB_GRUB_PREFIX@$(printf '_%.0s' $(seq 1 80))" >"$work/grub-http.cfg"
"$mkimage" -O x86_64-efi -d "$modules" -p /grub -c "$work/grub-http.cfg" -o "$dest/grubx64-http.efi.tmp" \
  efinet net http tftp linux normal configfile echo test chain ||
  die 70 "grub-mkimage could not build grubx64-http.efi from $grub_modules"
mv "$dest/grubx64-http.efi.tmp" "$dest/grubx64-http.efi"
chmod 0644 "$dest/grubx64-http.efi"
installed+=(grubx64-http.efi)

# Little-endian unsigned integer of LEN bytes at OFFSET of FILE.
le() { od -An -t u"$3" -j "$2" -N "$3" "$1" | tr -d ' '; }
# pe_check FILE MACHINE SIGNED: a PE/COFF image for MACHINE (decimal
# IMAGE_FILE_MACHINE_*), with an Authenticode signature when SIGNED=1.
pe_check() {
  local f=$1 machine=$2 signed=$3 pe magic dd certs
  [ "$(head -c 2 "$f")" = MZ ] || die 70 "$f is not a PE/COFF image"
  pe=$(le "$f" 60 4)
  [ "$(le "$f" "$pe" 4)" = 17744 ] || die 70 "$f has no PE signature"
  [ "$(le "$f" $((pe + 4)) 2)" = "$machine" ] || die 70 "$f is not built for machine $machine"
  magic=$(le "$f" $((pe + 24)) 2)
  if [ "$magic" = 523 ]; then dd=$((pe + 24 + 112)); else dd=$((pe + 24 + 96)); fi
  certs=$(le "$f" $((dd + 4 * 8 + 4)) 4)
  if [ "$signed" = 1 ] && [ "$certs" = 0 ]; then die 70 "$f carries no Authenticode signature"; fi
}
for f in snponly.efi ipxe.efi grubx64-http.efi; do pe_check "$dest/$f" 34404 0; done
for f in grubnetx64.efi grubx64.efi shimx64.efi; do pe_check "$dest/$f" 34404 1; done
if $arm64; then pe_check "$dest/grubnetaa64.efi" 43620 1; fi
if command -v sbverify >/dev/null; then
  sbverify --list "$dest/shimx64.efi" 2>/dev/null | grep -q "Microsoft Corporation UEFI CA" ||
    die 70 "shimx64.efi is not signed by Microsoft's UEFI CA (sbverify --list $dest/shimx64.efi)"
fi

(cd "$dest" && sha256sum -- "${installed[@]}") >"$dest/SHA256SUMS.tmp"
mv "$dest/SHA256SUMS.tmp" "$dest/SHA256SUMS"
for pkg in "${packages[@]}"; do
  printf '%s %s\n' "$pkg" "${version_of[$pkg]}"
done >"$dest/PACKAGES"

echo "gather.sh: ${#installed[@]} files from ${packages[*]} ($format, $mode) in $dest (SHA256SUMS, PACKAGES)"
