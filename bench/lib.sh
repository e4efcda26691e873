# bench/lib.sh - sourced by the benches that run the two binaries.

# Sets BOOTLABD and BOOTLAB: kept when both are given, otherwise built with
# cargo in BUILD_PROFILE (release or debug) and taken from target/. Needs
# ROOT (the repository) and a die function.
bench_binaries() {
  if [ -n "${BOOTLABD:-}" ] && [ -n "${BOOTLAB:-}" ]; then
    return
  fi
  local flags=(-q -p bootlab-bootlabd -p bootlab-bootlab)
  [ "$BUILD_PROFILE" = release ] && flags+=(--release)
  cargo build "${flags[@]}" || die "cannot build"
  BOOTLABD=$ROOT/target/$BUILD_PROFILE/bootlabd
  BOOTLAB=$ROOT/target/$BUILD_PROFILE/bootlab
}
