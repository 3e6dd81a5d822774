#!/usr/bin/env bash
# Builds what `make vet` needs to look for known vulnerabilities offline, outside git:
#
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/govulncheck
#       govulncheck from golang.org/x/vuln at the version pinned in hack/tools/vuln/go.mod (and below,
#       checked to agree).
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/mkvulndb
#       hack/tools/vuln/main.go: turns the vulndb module's OSV files into the database layout that
#       govulncheck's -db file://DIR reads.
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/vulndb/<VULNDB_VERSION>/{index,ID}
#       the Go vulnerability database, built from the golang.org/x/vulndb module at VULNDB_VERSION (its
#       data/osv holds every published entry as OSV JSON). Taken from the Go module proxy like any module
#       (checked against the checksum database), so no vulnerability service is needed.
#
# To take newer vulnerability data, bump VULNDB_VERSION (one line; `go list -m -versions` does not list
# pseudo-versions: take the newest commit's pseudo-version, e.g. from `go list -m golang.org/x/vulndb@master`
# where the proxy answers it). Each output is rebuilt only when it is missing or its stamp (versions, Go
# version, go.sum hash, converter source) differs, so a warm run takes about a second.
#
# Usage: hack/build-vulncheck.sh [--force]; prints nothing but errors and what it builds; the database
# directory is printed by `hack/build-vulncheck.sh --db-dir`.
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

VULN_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD_DIR=${REPO_ROOT}/hack/tools/vuln
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}
BIN_DIR=${TOOLS_DIR}/bin
STAMP_DIR=${TOOLS_DIR}/stamps
DB_DIR=${TOOLS_DIR}/vulndb/${VULNDB_VERSION}

export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOWORK=off

FORCE=false
for arg in "$@"; do
  case "${arg}" in
    --force) FORCE=true ;;
    --db-dir)
      echo "${DB_DIR}"
      exit 0
      ;;
    -h | --help)
      sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-vulncheck: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-vulncheck: $*" >&2; }
die() {
  echo "build-vulncheck: error: $*" >&2
  exit 1
}

# fresh NAME STAMP succeeds when the output NAME (a path) exists and was built from STAMP.
fresh() {
  local name=$1 want=$2
  [[ ${FORCE} == false && -e ${name} && -f ${STAMP_DIR}/$(basename "${name}") ]] &&
    [[ $(cat "${STAMP_DIR}/$(basename "${name}")") == "${want}" ]]
}

main() {
  command -v go >/dev/null || die "go is not on PATH"
  local got
  got=$(cd "${MOD_DIR}" && go list -m -f '{{.Version}}' golang.org/x/vuln)
  [[ ${got} == "${VULN_VERSION}" ]] ||
    die "hack/tools/vuln/go.mod pins golang.org/x/vuln ${got:-nothing}, want ${VULN_VERSION} (cd hack/tools/vuln && go get golang.org/x/vuln@${VULN_VERSION})"
  mkdir -p "${BIN_DIR}" "${STAMP_DIR}"
  local gosum src start tmp
  gosum=$(sha256sum "${MOD_DIR}/go.sum" | cut -c1-16)
  src=$(cat "${MOD_DIR}"/*.go | sha256sum | cut -c1-16)
  local tools_stamp="govulncheck ${VULN_VERSION} mkvulndb src=${src} $(go env GOVERSION) gosum=${gosum}"
  if ! fresh "${BIN_DIR}/govulncheck" "${tools_stamp}" || ! fresh "${BIN_DIR}/mkvulndb" "${tools_stamp}"; then
    log "building govulncheck ${VULN_VERSION} and mkvulndb from hack/tools/vuln"
    start=${SECONDS}
    tmp=$(mktemp -d "${BIN_DIR}/.build.XXXXXX")
    # shellcheck disable=SC2064 # expand tmp now
    trap "rm -rf '${tmp}'" RETURN
    (cd "${MOD_DIR}" && go build -trimpath -ldflags "-s -w" -o "${tmp}/" golang.org/x/vuln/cmd/govulncheck . &&
      mv "${tmp}/vuln" "${tmp}/mkvulndb")
    mv -f "${tmp}/govulncheck" "${tmp}/mkvulndb" "${BIN_DIR}/"
    echo "${tools_stamp}" >"${STAMP_DIR}/govulncheck"
    echo "${tools_stamp}" >"${STAMP_DIR}/mkvulndb"
    log "built govulncheck and mkvulndb in $((SECONDS - start))s"
  fi

  local db_stamp="vulndb ${VULNDB_VERSION} mkvulndb src=${src}"
  if ! fresh "${DB_DIR}" "${db_stamp}"; then
    log "building the vulnerability database from golang.org/x/vulndb@${VULNDB_VERSION}"
    start=${SECONDS}
    local info dir modified outside
    # Outside any module (a fresh empty directory), so that no go.mod or go.sum changes; the checksum
    # database vouches for the download.
    outside=$(mktemp -d)
    info=$(cd "${outside}" && GOFLAGS= go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION}") ||
      die "go mod download golang.org/x/vulndb@${VULNDB_VERSION} failed: ${info}"
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"${info}")
    [[ -d ${dir}/data/osv ]] || die "golang.org/x/vulndb@${VULNDB_VERSION} has no data/osv (at ${dir:-?})"
    # The entries' own "modified" times are not in the module; the commit time of the version stands in.
    modified=$(cd "${outside}" && GOFLAGS= go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z07:00"}}' \
      "golang.org/x/vulndb@${VULNDB_VERSION}")
    rmdir "${outside}"
    "${BIN_DIR}/mkvulndb" -osv "${dir}/data/osv" -out "${DB_DIR}" -modified "${modified}" >&2
    echo "${db_stamp}" >"${STAMP_DIR}/$(basename "${DB_DIR}")"
    log "built the database in $((SECONDS - start))s"
  fi
}

main
