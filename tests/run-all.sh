#!/usr/bin/env bash
# The whole test suite, installing what it needs first.
#
#   tests/run-all.sh
#
# Debian 12, as root (it re-runs itself with sudo when started as a user):
# tests create network namespaces, bridges, nftables tables and QEMU guests.
# Steps: apt packages (tests/apt-packages.txt) -> cargo fmt --check ->
# unused dependencies (cargo machete) -> cargo clippy -D warnings -> cargo test --workspace --locked --no-fail-fast ->
# smoke runs of bench/scale.sh and bench/storm.sh -> every fuzz
# target for FUZZ_SECONDS (default 60) each.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME,FUZZ_SECONDS "$0" "$@"
  fi
  echo "tests/run-all.sh: run as root (network namespaces, nftables, QEMU)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

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
# Packaged daemons some tests compare against must not run as system services.
for svc in tftpd-hpa nginx haproxy kea-dhcp4-server knot isc-dhcp-server dnsmasq; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "unused dependencies (cargo machete)"
if ! command -v cargo-machete >/dev/null 2>&1; then
  cargo install cargo-machete --locked
fi
cargo machete

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace --locked"
cargo test --workspace --locked --no-fail-fast

# Smoke runs of the scale and storm benches (reduced sizes, the test
# build): they fail on lost DNS queries, dropped DHCP exchanges, a reload
# that did not happen or a client that did not boot; their timings are
# printed, never judged. Full sizes are run by hand (docs/performance.md).
step "bench/scale.sh smoke (1,000 vs 13 nodes)"
NODES=1000 ROUNDS=1 CHECKS=1 STARTS=1 DNS_SECS=3 DHCP_SECS=3 DHCP_RATE=200 RELOADS=2 RELOAD_GAP=1 \
  BUILD_PROFILE=debug bench/scale.sh

step "bench/storm.sh smoke (20 clients)"
CLIENTS=20 KERNEL_MIB=4 INITRD_MIB=12 STORM_TIMEOUT=300 BUILD_PROFILE=debug bench/storm.sh

step "fuzzing (${FUZZ_SECONDS:-60} s per target)"
tests/fuzz.sh
