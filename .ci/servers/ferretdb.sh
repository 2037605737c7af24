#!/usr/bin/env bash
# FerretDB v1.24.2 (a MongoDB wire-protocol server over SQLite) for tests/servers/ferretdb.py:
# tests/servers/ferretdb/main.go embeds it as a library, built with modules from the Go
# module proxy into a cache directory. Idempotent: rebuilt only when main.go, go.mod or
# go.sum change (their hash names the binary).
set -euo pipefail
source_dir="$(cd "$(dirname "$0")/../../tests/servers/ferretdb" && pwd)"
cache="${QMIGRATE_CI_CACHE:-$HOME/.cache/qmigrate-ci}/ferretdb"
hash="$(cat "$source_dir/main.go" "$source_dir/go.mod" "$source_dir/go.sum" | sha256sum | cut -c1-12)"
binary="$cache/ferretdb-$hash"
if [ -x "$binary" ]; then
    ln -sf "$binary" "$cache/ferretdb"
    exit 0
fi
command -v go >/dev/null || { echo "ferretdb.sh: Go 1.22+ is needed to build FerretDB" >&2; exit 1; }
mkdir -p "$cache"
# Pure Go (SQLite from modernc.org): no C toolchain needed.
(cd "$source_dir" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
    go build -trimpath -o "$binary.tmp" .)
mv "$binary.tmp" "$binary"
ln -sf "$binary" "$cache/ferretdb"
