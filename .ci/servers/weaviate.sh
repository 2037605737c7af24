#!/usr/bin/env bash
# Weaviate's real server for tests/servers/weaviate.py, built from its Go module (no CGO;
# the netgo resolver). Idempotent: once the binary exists this does nothing. The build
# takes minutes on 2 cores (the first one also downloads the module tree).
set -euo pipefail
VERSION="${WEAVIATE_VERSION:-v1.38.11}"
BIN_DIR="$HOME/.cache/qmigrate-ci/weaviate-$VERSION/bin"
if [ -x "$BIN_DIR/weaviate-server" ]; then
    exit 0
fi
mkdir -p "$BIN_DIR"
CGO_ENABLED=0 GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false \
    go install -tags netgo "github.com/weaviate/weaviate/cmd/weaviate-server@$VERSION"
