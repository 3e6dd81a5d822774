#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a while each (default 20s): hack/fuzz.sh [DURATION].
# `go test` alone (make test) only replays the seed corpora; this explores new inputs.
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"
cd "$(dirname "$0")/.."
fuzztime=${1:-20s}
export CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}"
found=0
while IFS= read -r file; do
	pkg=./$(dirname "$file")
	for fn in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		found=$((found + 1))
		echo "== $pkg $fn ($fuzztime)"
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" "$pkg"
	done
done < <(grep -rlE '^func Fuzz' --include='*_test.go' pkg cmd internal)
[ "$found" -gt 0 ] || { echo "hack/fuzz.sh: no fuzz targets found" >&2; exit 1; }
echo "hack/fuzz.sh: $found fuzz targets ran for $fuzztime each"
