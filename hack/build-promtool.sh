#!/usr/bin/env bash
# Builds promtool, which the chart tests use to check and unit-test the
# chart's alerting rules (`promtool test rules`), outside git and without a
# download of release binaries:
#
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/promtool
#       promtool built from its Go module github.com/prometheus/prometheus at
#       the version pinned in hack/tools/promtool/go.mod (and below, checked
#       to agree). Module version v0.3XX.Y is Prometheus v3.XX.Y.
#
# Built with Prometheus's own build tag remove_all_sd, which leaves out the
# service-discovery plugins (cloud SDKs, client-go): `promtool check rules` and
# `promtool test rules` do not use them, and they are most of a full build
# (measured on a shared 2-core machine with an empty build cache: 2.8 CPU-minutes,
# 140 s, 54 MB binary, against 6.7 CPU-minutes, 348 s, 88 MB for the full one).
# promtool is rebuilt only when it is missing or its stamp (version, tags, Go
# version, go.sum hash) differs, so a warm run takes about a second.
#
# Usage: hack/build-promtool.sh [--force]
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

PROMETHEUS_VERSION=v0.316.0
PROMETHEUS_RELEASE=3.16.0 # the Prometheus release of that module version, for promtool --version

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD_DIR=${REPO_ROOT}/hack/tools/promtool
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}
BIN_DIR=${TOOLS_DIR}/bin
STAMP_DIR=${TOOLS_DIR}/stamps

export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOWORK=off

FORCE=false
for arg in "$@"; do
  case "${arg}" in
    --force) FORCE=true ;;
    -h | --help)
      sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-promtool: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-promtool: $*"; }
die() {
  echo "build-promtool: error: $*" >&2
  exit 1
}

stamp() {
  printf 'promtool %s tags=remove_all_sd %s gosum=%s\n' "${PROMETHEUS_VERSION}" "$(go env GOVERSION)" \
    "$(sha256sum "${MOD_DIR}/go.sum" | cut -c1-16)"
}

main() {
  command -v go >/dev/null || die "go is not on PATH"
  local got
  got=$(cd "${MOD_DIR}" && go list -m -f '{{.Version}}' github.com/prometheus/prometheus)
  [[ ${got} == "${PROMETHEUS_VERSION}" ]] ||
    die "hack/tools/promtool/go.mod pins github.com/prometheus/prometheus ${got:-nothing}, want ${PROMETHEUS_VERSION}"
  mkdir -p "${BIN_DIR}" "${STAMP_DIR}"
  if [[ ${FORCE} == false && -x ${BIN_DIR}/promtool && -f ${STAMP_DIR}/promtool ]] &&
    [[ $(cat "${STAMP_DIR}/promtool") == "$(stamp)" ]]; then
    log "promtool is up to date ($(cut -d' ' -f2- "${STAMP_DIR}/promtool"))"
    return 0
  fi
  log "building promtool ${PROMETHEUS_VERSION} from hack/tools/promtool (without service discovery; a cold build takes a few minutes)"
  local start=${SECONDS} tmp
  tmp=$(mktemp -d "${BIN_DIR}/.build.XXXXXX")
  # shellcheck disable=SC2064 # expand tmp now
  trap "rm -rf '${tmp}'" RETURN
  # The version stamps are what promtool --version prints.
  (cd "${MOD_DIR}" && go build -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_RELEASE} -X github.com/prometheus/common/version.Branch=HEAD" \
    -o "${tmp}/promtool" github.com/prometheus/prometheus/cmd/promtool)
  mv -f "${tmp}/promtool" "${BIN_DIR}/promtool"
  stamp >"${STAMP_DIR}/promtool"
  log "built promtool in $((SECONDS - start))s"
}

main
