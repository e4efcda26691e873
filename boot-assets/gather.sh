#!/usr/bin/env bash
# gather.sh DIR - put the first-stage boot binaries into an assets directory.
#
# Copies, from Debian packages (nothing third-party is committed to bootlab):
#   ipxe                   -> DIR/undionly.kpxe DIR/snponly.efi DIR/ipxe.efi
#   grub-efi-amd64-signed  -> DIR/grubnetx64.efi
#   grub-efi-amd64-bin     -> DIR/grub/x86_64-efi/*.mod *.lst
#                             (the signed image lacks http.mod and friends)
# and writes DIR/SHA256SUMS (check with: cd DIR && sha256sum -c SHA256SUMS)
# and DIR/PACKAGES (which package versions the files came from).
#
# The .debs are fetched with `apt-get download` (run `apt-get update` once
# first); with --installed the files of the installed packages are used
# instead. Other files in DIR (kernels, initrds...) are left alone.
#
# Requires: apt-get, dpkg-deb, dpkg-query, sha256sum.
set -euo pipefail

usage() { echo "usage: $0 [--installed] DIR" >&2; exit 64; }

from_installed=0
if [ "${1:-}" = "--installed" ]; then from_installed=1; shift; fi
[ $# -eq 1 ] || usage
dest=$1

for tool in apt-get dpkg-deb dpkg-query sha256sum; do
  command -v "$tool" >/dev/null || { echo "gather.sh: $tool is required" >&2; exit 69; }
done

packages=(ipxe grub-efi-amd64-signed grub-efi-amd64-bin)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A root_of version_of
for pkg in "${packages[@]}"; do
  if [ "$from_installed" = 1 ]; then
    version_of[$pkg]=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) ||
      { echo "gather.sh: $pkg is not installed (apt-get install $pkg, or drop --installed)" >&2; exit 69; }
    root_of[$pkg]=/
  else
    mkdir -p "$work/deb/$pkg"
    if ! (cd "$work/deb/$pkg" && apt-get download -q "$pkg" >"$work/$pkg.log" 2>&1); then
      cat "$work/$pkg.log" >&2
      echo "gather.sh: apt-get download $pkg failed (run apt-get update, or use --installed)" >&2
      exit 69
    fi
    deb=$(ls "$work/deb/$pkg"/*.deb)
    version_of[$pkg]=$(dpkg-deb -f "$deb" Version)
    root_of[$pkg]="$work/root/$pkg"
    mkdir -p "${root_of[$pkg]}"
    dpkg-deb -x "$deb" "${root_of[$pkg]}"
  fi
done

# resolve ROOT PATH: PATH inside the package tree ROOT, following symlinks
# (absolute ones are taken relative to ROOT, as inside the package).
resolve() {
  local root=${1%/} path=$2 hops=0 target
  while [ -L "$root$path" ]; do
    target=$(readlink "$root$path")
    case $target in
      /*) path=$target ;;
      *) path=$(dirname "$path")/$target ;;
    esac
    hops=$((hops + 1))
    [ "$hops" -lt 16 ] || { echo "gather.sh: symlink loop at $path" >&2; exit 70; }
  done
  [ -f "$root$path" ] || { echo "gather.sh: $path missing from the package" >&2; exit 70; }
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
put ipxe /usr/lib/ipxe/undionly.kpxe undionly.kpxe
put ipxe /usr/lib/ipxe/snponly.efi snponly.efi
put ipxe /usr/lib/ipxe/ipxe.efi ipxe.efi
put grub-efi-amd64-signed /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grubnetx64.efi

modules=${root_of[grub-efi-amd64-bin]%/}/usr/lib/grub/x86_64-efi
[ -f "$modules/http.mod" ] || { echo "gather.sh: no http.mod in grub-efi-amd64-bin" >&2; exit 70; }
for f in "$modules"/*.mod "$modules"/*.lst; do
  put grub-efi-amd64-bin "/usr/lib/grub/x86_64-efi/$(basename "$f")" "grub/x86_64-efi/$(basename "$f")"
done

(cd "$dest" && sha256sum -- "${installed[@]}") >"$dest/SHA256SUMS.tmp"
mv "$dest/SHA256SUMS.tmp" "$dest/SHA256SUMS"
for pkg in "${packages[@]}"; do
  printf '%s %s\n' "$pkg" "${version_of[$pkg]}"
done >"$dest/PACKAGES"

echo "gather.sh: ${#installed[@]} files from ${packages[*]} in $dest (SHA256SUMS, PACKAGES)"
