#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each; fails on
# any crash, leak or timeout. Installs cargo-fuzz when missing. Stable
# toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-60}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mapfile -t targets < <(cargo fuzz list)
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets" >&2; exit 1; }
cargo fuzz build -O
failed=()
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  [ -d "corpus/$t" ] && cp -r "corpus/$t/." "$work/"
  echo "fuzz: $t for ${secs}s"
  if ! cargo fuzz run -O "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$work.log" 2>&1; then
    grep -m1 -A6 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$work.log" || true
    grep -E "^(Reproduce|\s+cargo fuzz run|Failing input|\s+artifacts/)" "$work.log" || tail -n 20 "$work.log"
    failed+=("$t")
  else
    grep -E 'stat::number_of_executed_units' "$work.log" | sed "s/^/  $t: /" || true
  fi
  rm -rf "$work" "$work.log"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
