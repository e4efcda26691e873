#!/usr/bin/env bash
# Installs the browser test's npm packages (tests/e2e/package-lock.json:
# puppeteer-core, which drives Debian's /usr/bin/chromium and never
# downloads a browser) into DIR/node_modules with `npm ci`, and prints DIR.
#   DIR = ${BOOTLAB_E2E_NPM:-target/e2e-npm}
# The install is kept while the lock file is unchanged (a stamp holds its
# hash), so only the first run after a change reaches the npm registry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${BOOTLAB_E2E_NPM:-$here/../../target/e2e-npm}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
command -v node >/dev/null || { echo "node is needed for the browser test" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is needed for the browser test" >&2; exit 1; }
want=$(sha256sum "$here/package-lock.json" "$here/package.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ] || [ ! -d "$dir/node_modules/puppeteer-core" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  rm -rf "$dir/node_modules" "$dir/.stamp"
  # --ignore-scripts: no install script runs (none is needed; puppeteer-core
  # has no browser download, and nothing else may fetch one).
  (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$dir/.stamp"
fi
echo "$dir"
