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

usage() { echo "usage: $0 [--installed | --packages PKGDIR] DIR" >&2; exit 64; }
die() { local code=$1; shift; echo "gather.sh: $*" >&2; exit "$code"; }

mode=download
pkgdir=
case "${1:-}" in
  --installed) mode=installed; shift ;;
  --packages) mode=packages; pkgdir=${2:-}; [ -n "$pkgdir" ] || usage; shift 2 ;;
esac
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
  packages=(ipxe grub-efi-amd64-signed grub-efi-amd64-bin)
  ipxe_dir=/usr/lib/ipxe
  files=(
    "ipxe $ipxe_dir/undionly.kpxe undionly.kpxe"
    "ipxe $ipxe_dir/snponly.efi snponly.efi"
    "ipxe $ipxe_dir/ipxe.efi ipxe.efi"
    "grub-efi-amd64-signed /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grubnetx64.efi"
  )
  grub_modules=grub-efi-amd64-bin
  need dpkg-deb
  case $mode in
    download) need apt-get ;;
    installed) need dpkg-query ;;
  esac
else
  packages=(ipxe-bootimgs-x86 grub2-efi-x64 grub2-efi-x64-modules)
  ipxe_dir=/usr/share/ipxe
  files=(
    "ipxe-bootimgs-x86 $ipxe_dir/undionly.kpxe undionly.kpxe"
    "ipxe-bootimgs-x86 $ipxe_dir/ipxe-snponly-x86_64.efi snponly.efi"
    "ipxe-bootimgs-x86 $ipxe_dir/ipxe-x86_64.efi ipxe.efi"
    "grub2-efi-x64 /boot/efi/EFI/*/grubx64.efi grubnetx64.efi"
  )
  grub_modules=grub2-efi-x64-modules
  need rpm
  case $mode in
    download) need dnf rpm2cpio cpio ;;
    packages) need rpm2cpio cpio ;;
  esac
fi

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
      if [ "$format" = deb ]; then
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

(cd "$dest" && sha256sum -- "${installed[@]}") >"$dest/SHA256SUMS.tmp"
mv "$dest/SHA256SUMS.tmp" "$dest/SHA256SUMS"
for pkg in "${packages[@]}"; do
  printf '%s %s\n' "$pkg" "${version_of[$pkg]}"
done >"$dest/PACKAGES"

echo "gather.sh: ${#installed[@]} files from ${packages[*]} ($format, $mode) in $dest (SHA256SUMS, PACKAGES)"
