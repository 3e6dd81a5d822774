#!/usr/bin/env bash
# Builds golangci-lint at a pinned version from the Go module proxy into the tools cache (outside git).
# Idempotent: a binary that reports the pinned version, built by the Go toolchain of hack/toolchain.sh, is kept
# (golangci-lint must be built by a Go at least as new as the go.mod it checks).
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
GOLANGCI_LINT_VERSION=v2.15.0
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="${PFD_TOOLS_DIR:-$repo/.cache/tools}/bin"
mkdir -p "$bin"
goversion=$(go env GOVERSION)
if [ -x "$bin/golangci-lint" ] &&
  "$bin/golangci-lint" version 2>/dev/null | grep -qE "version v?${GOLANGCI_LINT_VERSION#v} built with ${goversion} "; then
  exit 0
fi
echo "hack/build-lint.sh: building golangci-lint $GOLANGCI_LINT_VERSION with $goversion into $bin (a few minutes on a cold cache)" >&2
GOBIN="$bin" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_LINT_VERSION"
