#!/usr/bin/env bash
# Builds the chart tooling the deploy tests and `make manifests` use, outside
# git and without a download of release binaries:
#
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/helm
#       helm built from its Go module helm.sh/helm/v3 at the version pinned in
#       hack/tools/helm/go.mod (and below, checked to agree).
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/crds/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml
#       the ServiceMonitor and PrometheusRule CRDs of the prometheus-operator
#       release pinned in hack/tools/crds/go.mod, for the chart's server-side
#       dry run.
#
# helm is rebuilt only when it is missing or its stamp (helm version, Go
# version, go.sum hash) differs, so a warm run takes about a second.
#
# Usage: hack/build-helm.sh [--force]
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

HELM_VERSION=v3.22.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM_MOD_DIR=${REPO_ROOT}/hack/tools/helm
CRDS_MOD_DIR=${REPO_ROOT}/hack/tools/crds
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}
BIN_DIR=${TOOLS_DIR}/bin
CRD_DIR=${TOOLS_DIR}/crds
STAMP_DIR=${TOOLS_DIR}/stamps

export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOWORK=off

FORCE=false
for arg in "$@"; do
  case "${arg}" in
    --force) FORCE=true ;;
    -h | --help)
      sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-helm: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-helm: $*"; }
die() {
  echo "build-helm: error: $*" >&2
  exit 1
}

# require_version fails when a tool module does not pin what this script wants.
require_version() {
  local dir=$1 mod=$2 want=$3 got
  got=$(cd "${dir}" && go list -m -f '{{.Version}}' "${mod}")
  [[ ${got} == "${want}" ]] ||
    die "${dir#"${REPO_ROOT}"/}/go.mod pins ${mod} ${got:-nothing}, want ${want} (cd ${dir#"${REPO_ROOT}"/} && go get ${mod}@${want})"
}

stamp() {
  printf 'helm %s %s gosum=%s\n' "${HELM_VERSION}" "$(go env GOVERSION)" \
    "$(sha256sum "${HELM_MOD_DIR}/go.sum" | cut -c1-16)"
}

build_helm() {
  if [[ ${FORCE} == false && -x ${BIN_DIR}/helm && -f ${STAMP_DIR}/helm ]] &&
    [[ $(cat "${STAMP_DIR}/helm") == "$(stamp)" ]]; then
    log "helm is up to date ($(cut -d' ' -f2- "${STAMP_DIR}/helm"))"
    return 0
  fi
  log "building helm ${HELM_VERSION} from hack/tools/helm (a cold build takes a few minutes)"
  local start=${SECONDS} tmp client_go minor ldflags
  # helm's own Makefile stamps the Kubernetes version it was built against:
  # `helm lint` and `helm template` report it as .Capabilities.KubeVersion.
  client_go=$(cd "${HELM_MOD_DIR}" && go list -m -f '{{.Version}}' k8s.io/client-go)
  minor=$(echo "${client_go#v}" | cut -d. -f2)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X ${pkg}.k8sVersionMajor=1 -X ${pkg}.k8sVersionMinor=${minor}"
  done
  tmp=$(mktemp -d "${BIN_DIR}/.build.XXXXXX")
  # shellcheck disable=SC2064 # expand tmp now
  trap "rm -rf '${tmp}'" RETURN
  (cd "${HELM_MOD_DIR}" && go build -trimpath -ldflags "${ldflags}" -o "${tmp}/helm" helm.sh/helm/v3/cmd/helm)
  mv -f "${tmp}/helm" "${BIN_DIR}/helm"
  stamp >"${STAMP_DIR}/helm"
  log "built helm in $((SECONDS - start))s"
}

copy_crds() {
  local dir src dst crd
  dir=$(cd "${CRDS_MOD_DIR}" && go mod download -json github.com/prometheus-operator/prometheus-operator | jq -er '.Dir')
  for crd in servicemonitors prometheusrules; do
    src=${dir}/example/prometheus-operator-crd/monitoring.coreos.com_${crd}.yaml
    dst=${CRD_DIR}/monitoring.coreos.com_${crd}.yaml
    [[ -f ${src} ]] || die "${src} is missing from prometheus-operator ${PROMETHEUS_OPERATOR_VERSION}"
    if ! cmp -s "${src}" "${dst}"; then
      install -m 0644 "${src}" "${dst}"
      log "copied the ${crd} CRD of prometheus-operator ${PROMETHEUS_OPERATOR_VERSION} to ${dst}"
    fi
  done
}

main() {
  command -v go >/dev/null || die "go is not on PATH"
  command -v jq >/dev/null || die "jq is not on PATH"
  require_version "${HELM_MOD_DIR}" helm.sh/helm/v3 "${HELM_VERSION}"
  require_version "${CRDS_MOD_DIR}" github.com/prometheus-operator/prometheus-operator "${PROMETHEUS_OPERATOR_VERSION}"
  mkdir -p "${BIN_DIR}" "${CRD_DIR}" "${STAMP_DIR}"
  build_helm
  copy_crds
  log "ready: $("${BIN_DIR}/helm" version --short)"
}

main
