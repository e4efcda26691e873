#!/usr/bin/env bash
# Builds the Debian package: target/debian/bootlab_<version>_<arch>.deb.
#
#   tests/build-deb.sh
#
# Release builds of bootlabd and bootlab exactly as `cargo install --path
# crates/bootlabd` and `cargo install --path crates/bootlab` make them (into
# target/install, sharing target/), the man pages and completions generated
# from their clap definitions (bootlab-xtask dist, gzipped), then cargo-deb
# (installed with `cargo install cargo-deb --locked` when missing) packages
# them. Prints the .deb's path as its last line. Needs dpkg-dev
# (dpkg-shlibdeps) and libvirt-dev (tests/apt-packages.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: installing cargo-deb (cargo install cargo-deb --locked)" >&2
  cargo install cargo-deb --locked >&2
fi
target=${CARGO_TARGET_DIR:-target}
for crate in bootlabd bootlab; do
  cargo install --locked --force --quiet --path "crates/$crate" \
    --root "$target/install" --target-dir "$target" >&2
done
rm -rf "$target/release/dist"
cargo run --locked -q -p bootlab-xtask -- dist "$target/release/dist" >/dev/null
gzip -9n "$target/release/dist/man/"*
cargo deb --locked --no-build --strip -p bootlab-bootlabd 2>&1 | tail -n 1
