#!/usr/bin/env bash
# apt-arch.sh ARCH STATEDIR apt-get-ARGS... - run apt-get for another
# architecture's packages (e.g. arm64 on an amd64 host) with a private
# package index, never touching the host's dpkg architectures or its lists:
#
#   boot-assets/apt-arch.sh arm64 /var/cache/bootlab/apt-arm64 download grub-efi-arm64-signed
#
# The first call (or one with an index older than a day) runs `apt-get
# update` into STATEDIR/lists from the host's sources (its Release files
# are verified against the host's keyrings as usual; `apt-get download`
# then checks each package against the signed index). Packages land in the
# current directory, as with `apt-get download`.
set -euo pipefail
arch=${1:?usage: apt-arch.sh ARCH STATEDIR apt-get-ARGS...}
state=${2:?usage: apt-arch.sh ARCH STATEDIR apt-get-ARGS...}
shift 2
mkdir -p "$state"
state=$(cd "$state" && pwd)  # apt takes relative Dir:: paths as relative to /var/lib/apt
mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
[ -f "$state/status" ] || : >"$state/status"
opts=(
  -o "APT::Architectures::=$arch"
  -o "APT::Architecture=$arch"
  -o "Dir::State::Lists=$state/lists"
  -o "Dir::State::Status=$state/status"
  -o "Dir::Cache=$state/cache"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "Debug::NoLocking=1"
  -o "Acquire::Languages=none"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
)
if [ -z "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
  apt-get -q "${opts[@]}" update >"$state/update.log" 2>&1 ||
    { cat "$state/update.log" >&2; echo "apt-arch.sh: apt-get update for $arch failed" >&2; exit 69; }
fi
tool=apt-get
case ${1:-} in show|policy|depends|search|madison) tool=apt-cache ;; esac
exec "$tool" "${opts[@]}" "$@"
