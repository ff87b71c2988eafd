#!/usr/bin/env bash
# Installs the TypeScript client's dependencies exactly as package-lock.json
# says (`npm ci`), into a cache outside the repository keyed by the lockfile's
# SHA-256 (so a second run, or another clone, installs nothing), and links
# clients/ts/node_modules to it.
# Usage: clients/ts/install.sh   (BACKEND_TS_CACHE overrides the cache dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null || { echo "node is missing (apt-get install -y nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is missing (apt-get install -y npm)" >&2; exit 1; }
sum=$(sha256sum "$here/package-lock.json" | cut -c1-16)
cache=${BACKEND_TS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/backend/ts-client}
dir="$cache/$sum"
if [ ! -f "$dir/.installed" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error --cache "$cache/npm")
  touch "$dir/.installed"
fi
if [ "$(readlink "$here/node_modules" 2>/dev/null)" != "$dir/node_modules" ]; then
  rm -rf "$here/node_modules"
  ln -s "$dir/node_modules" "$here/node_modules"
fi
