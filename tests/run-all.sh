#!/usr/bin/env bash
# The whole test suite, installing what it needs first.
#
#   tests/run-all.sh
#
# Debian 12, as root (it re-runs itself with sudo when started as a user):
# tests create network namespaces, bridges, nftables tables and QEMU guests.
# Steps: apt packages (tests/apt-packages.txt) -> a check that no packaged
# daemon the tests run their own copies of is running as a service (it says
# which to stop; under CI=true it stops them and says so) -> cargo fmt
# --check -> unused dependencies (cargo machete) -> cargo clippy -D warnings
# -> the Debian package (tests/build-deb.sh) -> cargo test --workspace
# --locked --no-fail-fast -> smoke runs of bench/scale.sh and bench/storm.sh
# -> every fuzz target for FUZZ_SECONDS (default 60) each.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,FUZZ_SECONDS,CI "$0" "$@"
  fi
  echo "tests/run-all.sh: run as root (network namespaces, nftables, QEMU)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }
free_disk() { df -h --output=avail . | tail -n1 | tr -d ' '; }

# No incremental build state: this is a from-scratch build of every test
# binary, and the state is ~7 GB the disk of a CI machine may not have.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step "disk: $(free_disk) free for target/"

step "system packages (tests/apt-packages.txt)"
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' tests/apt-packages.txt | grep -v '^$' | sort -u)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Some machine images carry qemu-utils from bookworm-backports, which
# Breaks: bookworm's qemu-system-common; take every qemu package from the
# same (stable) release so apt can resolve the set.
extra=()
if dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q '~bpo'; then
  echo "qemu-utils is a backport; installing bookworm's to match qemu-system-x86"
  extra=(--allow-downgrades qemu-utils/bookworm)
  mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | grep -vx qemu-utils)
fi
apt-get install -y -qq --no-install-recommends "${extra[@]}" "${pkgs[@]}" >/dev/null

step "conflicting services"
# Tests and benches start their own Kea, Knot, nginx, haproxy, tftpd-hpa,
# dnsmasq and dhcpd; the same daemons running as system services (apt starts them on
# install) hold their ports, lock and lease files.
conflicts=()
if [ -d /run/systemd/system ]; then
  for svc in tftpd-hpa nginx haproxy kea-dhcp4-server knot isc-dhcp-server dnsmasq; do
    if systemctl is-active --quiet "$svc" 2>/dev/null; then conflicts+=("$svc"); fi
  done
fi
if [ "${#conflicts[@]}" -eq 0 ]; then
  echo "none running"
elif [ "${CI:-}" = true ]; then
  echo "CI=true: stopping ${conflicts[*]} (they conflict with the tests' own instances)"
  systemctl stop "${conflicts[@]}"
else
  echo "tests/run-all.sh: these services are running and conflict with the tests' own instances:" >&2
  echo "  ${conflicts[*]}" >&2
  echo "stop them (systemctl stop ${conflicts[*]}), or run with CI=true to let this script stop them" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "unused dependencies (cargo machete)"
if ! command -v cargo-machete >/dev/null 2>&1; then
  cargo install cargo-machete --locked
fi
cargo machete

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Debian package (tests/build-deb.sh)"
tests/build-deb.sh

step "cargo test --workspace --locked ($(free_disk) free)"
cargo test --workspace --locked --no-fail-fast

# Smoke runs of the scale and storm benches (reduced sizes, the test
# build): they fail on lost DNS queries, dropped DHCP exchanges, a reload
# that did not happen or a client that did not boot; their timings are
# printed, never judged. Full sizes are run by hand (see each script's header).
step "bench/scale.sh smoke (1,000 vs 13 nodes)"
NODES=1000 ROUNDS=1 CHECKS=1 STARTS=1 DNS_SECS=3 DHCP_SECS=3 DHCP_RATE=200 RELOADS=2 RELOAD_GAP=1 \
  BUILD_PROFILE=debug bench/scale.sh

step "bench/storm.sh smoke (20 clients)"
CLIENTS=20 KERNEL_MIB=4 INITRD_MIB=12 STORM_TIMEOUT=300 BUILD_PROFILE=debug bench/storm.sh

step "fuzzing (${FUZZ_SECONDS:-60} s per target; $(free_disk) free)"
tests/fuzz.sh
