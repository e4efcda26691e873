#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each; fails on
# any crash, leak or timeout. FUZZ_JOBS targets (default: the number of
# cores) run at the same time, each on one core (libFuzzer runs one process
# per target), so the wall time is about targets x seconds / jobs while
# every target still gets its full FUZZ_SECONDS. Installs cargo-fuzz when
# missing. Stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its
# sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-$(nproc)}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mapfile -t targets < <(cargo fuzz list)
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets" >&2; exit 1; }
cargo fuzz build -O
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

# One target: its corpus copied to a scratch dir, its log and verdict in
# $results/<target>.{log,ok,failed}.
fuzz_one() { # target
  local t=$1 work
  work=$(mktemp -d)
  [ -d "corpus/$t" ] && cp -r "corpus/$t/." "$work/"
  if cargo fuzz run -O "$t" "$work" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"$results/$t.log" 2>&1; then
    touch "$results/$t.ok"
  else
    touch "$results/$t.failed"
  fi
  rm -rf "$work"
}

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  echo "fuzz: $t for ${secs}s"
  fuzz_one "$t" &
  running=$((running + 1))
done
wait

failed=()
for t in "${targets[@]}"; do
  log=$results/$t.log
  if [ -e "$results/$t.ok" ]; then
    grep -E 'stat::number_of_executed_units' "$log" | sed "s/^/  $t: /" || true
  else
    echo "fuzz: $t FAILED" >&2
    grep -m1 -A6 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" || true
    grep -E "^(Reproduce|\s+cargo fuzz run|Failing input|\s+artifacts/)" "$log" || tail -n 20 "$log"
    failed+=("$t")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash ($jobs at a time)"
