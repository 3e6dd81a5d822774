#!/usr/bin/env bash
# Looks for known vulnerabilities in what ships, offline (`make vet` runs it): govulncheck, built and fed a
# database by hack/build-vulncheck.sh (the golang.org/x/vulndb module at a pinned version), scans the
# source of
#
#   - the root module (./...): the daemon binary that the image ships, built by the same go.mod and Go
#     toolchain, and the hack/ commands of the root module;
#   - hack/tools/image: the writer of the image's layers and configs.
#
# It reports vulnerabilities whose vulnerable functions the code can reach (with the Go toolchain of
# hack/toolchain.sh as the standard library), and exits non-zero when there is one. The test-only tools
# (control plane, helm, promtool, golangci-lint) run only on the test machine and are not scanned.
#
# Usage: hack/vulncheck.sh [govulncheck flags, e.g. -show verbose]
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}

"${REPO_ROOT}/hack/build-vulncheck.sh"
db=$("${REPO_ROOT}/hack/build-vulncheck.sh" --db-dir)
govulncheck=${TOOLS_DIR}/bin/govulncheck

export CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
failed=0
scan() {
  local dir=$1
  shift
  echo "vulncheck: govulncheck -db file://${db} $* in ${dir#"${REPO_ROOT}"}/"
  if ! (cd "${REPO_ROOT}/${dir}" && "${govulncheck}" -db "file://${db}" "$@"); then
    failed=1
  fi
}
scan . "$@" ./...
GOWORK=off scan hack/tools/image "$@" ./...
if [[ ${failed} -ne 0 ]]; then
  echo "vulncheck: FAILED: govulncheck found vulnerabilities (above) or could not scan" >&2
  exit 1
fi
echo "vulncheck: no reachable vulnerability (Go $(go env GOVERSION), vulndb $(basename "${db}"))"
