#!/usr/bin/env bash
# Builds the real Kubernetes control plane that the end-to-end tests run:
# kube-apiserver, kube-scheduler, etcd and nfd-master, and the parts that make
# a node of this machine (kube-controller-manager, kubelet), each from its own
# Go module at a pinned version, plus NFD's CRDs; and nfd-worker of the same NFD
# release, the yardstick of hack/footprint.sh. Everything lands in a cache
# directory outside git:
#
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/{kube-apiserver,kube-scheduler,etcd,nfd-master,nfd-worker}
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin/{kube-controller-manager,kubelet}
#   ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/crds/nfd-api-crds.yaml
#
# The versions are pinned twice on purpose: below (what we want) and in the
# committed go.mod/go.sum of hack/tools/controlplane (kube-apiserver,
# kube-scheduler, etcd), hack/tools/controlplane/node (kube-controller-manager,
# kubelet: a module of their own, so that their extra dependencies do not change
# the go.sum, and so force a rebuild, of the other three) and
# hack/tools/controlplane/nfd (nfd-master, nfd-worker). A normal
# run checks that both agree and builds; `--sync` rewrites the go.mod files
# from the versions below (the staging-module replaces are generated from
# k8s.io/kubernetes' own go.mod, so none is missed) and must be followed by a
# commit of the go.mod/go.sum changes.
#
# A binary is rebuilt only when it is missing or its stamp (versions, Go
# version, go.sum hash) differs, so a warm run takes seconds.
#
# Usage: hack/build-controlplane.sh [--sync] [--force]
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

# k8s.io/kubernetes release and the matching k8s.io/* staging module version.
KUBE_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
# The etcd that k8s.io/kubernetes v1.37.2's go.mod names.
ETCD_VERSION=v3.7.0
NFD_VERSION=v0.19.0

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_MOD_DIR=${REPO_ROOT}/hack/tools/controlplane
NODE_MOD_DIR=${KUBE_MOD_DIR}/node
NFD_MOD_DIR=${KUBE_MOD_DIR}/nfd
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}
BIN_DIR=${TOOLS_DIR}/bin
CRD_DIR=${TOOLS_DIR}/crds
STAMP_DIR=${TOOLS_DIR}/stamps

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
export GOWORK=off

SYNC=false
FORCE=false
for arg in "$@"; do
  case "${arg}" in
    --sync) SYNC=true ;;
    --force) FORCE=true ;;
    -h | --help)
      sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build-controlplane: unknown argument ${arg}" >&2
      exit 2
      ;;
  esac
done

log() { echo "build-controlplane: $*"; }
die() {
  echo "build-controlplane: error: $*" >&2
  exit 1
}

# kube_gomod prints the path of k8s.io/kubernetes' go.mod in the module cache,
# downloading only that file.
kube_gomod() {
  (cd "${KUBE_MOD_DIR}" && go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}") |
    jq -er '.GoMod'
}

# staging_modules prints every module that k8s.io/kubernetes replaces with its
# own ./staging tree; each one has to be replaced by its published version.
staging_modules() {
  local gomod
  gomod=$(kube_gomod)
  go mod edit -json "${gomod}" |
    jq -er '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path' |
    sort
}

# write_replaces replaces every replace directive of the go.mod in the
# current directory by one block of "old => new version" lines read from stdin.
write_replaces() {
  local m
  go mod edit -json | jq -r '.Replace[]?.Old.Path' | while read -r m; do
    go mod edit "-dropreplace=${m}"
  done
  {
    printf '\nreplace (\n'
    while read -r m; do
      printf '\t%s\n' "${m}"
    done
    printf ')\n'
  } >>go.mod
  go mod edit -fmt
}

# write_godebug replaces the godebug lines of the go.mod in the current
# directory by those of k8s.io/kubernetes' go.mod (the GODEBUG defaults that
# upstream builds its binaries with).
write_godebug() {
  local gomod=$1 k
  go mod edit -json | jq -r '.GoDebug[]?.Key' | while read -r k; do
    go mod edit "-dropgodebug=${k}"
  done
  go mod edit -json "${gomod}" | jq -r '.GoDebug[]? | "\(.Key)=\(.Value)"' | while read -r k; do
    go mod edit "-godebug=${k}"
  done
}

# sync rewrites the tool modules' go.mod files from the versions above.
sync_modules() {
  log "syncing hack/tools/controlplane/go.mod to k8s.io/kubernetes ${KUBE_VERSION}, etcd ${ETCD_VERSION}"
  local staging kube_mod
  staging=$(staging_modules)
  kube_mod=$(kube_gomod)
  [[ $(wc -l <<<"${staging}") -gt 10 ]] ||
    die "found only $(wc -l <<<"${staging}") staging modules in k8s.io/kubernetes ${KUBE_VERSION} go.mod"
  (
    cd "${KUBE_MOD_DIR}"
    # shellcheck disable=SC2001 # the same path on both sides of =>
    sed "s|.*|& => & ${STAGING_VERSION}|" <<<"${staging}" | write_replaces
    write_godebug "${kube_mod}"
    go mod edit \
      "-require=k8s.io/kubernetes@${KUBE_VERSION}" \
      "-require=go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
      -tool=k8s.io/kubernetes/cmd/kube-apiserver \
      -tool=k8s.io/kubernetes/cmd/kube-scheduler
    go mod tidy
  )
  log "syncing hack/tools/controlplane/node/go.mod to k8s.io/kubernetes ${KUBE_VERSION}"
  (
    cd "${NODE_MOD_DIR}"
    # shellcheck disable=SC2001 # the same path on both sides of =>
    sed "s|.*|& => & ${STAGING_VERSION}|" <<<"${staging}" | write_replaces
    write_godebug "${kube_mod}"
    go mod edit \
      "-require=k8s.io/kubernetes@${KUBE_VERSION}" \
      -tool=k8s.io/kubernetes/cmd/kube-controller-manager \
      -tool=k8s.io/kubernetes/cmd/kubelet
    go mod tidy
  )
  log "syncing hack/tools/controlplane/nfd/go.mod to node-feature-discovery ${NFD_VERSION}"
  (
    cd "${NFD_MOD_DIR}"
    local nfd_gomod
    nfd_gomod=$(go mod download -json "sigs.k8s.io/node-feature-discovery@${NFD_VERSION}" | jq -er '.GoMod')
    # NFD's own replaces pin the k8s.io/* modules; its ./api/nfd replace is
    # a nested module that is not in NFD's module zip, so the release of
    # that module is required instead.
    go mod edit -json "${nfd_gomod}" |
      jq -er '.Replace[] | select(.New.Version != null) | "\(.Old.Path) => \(.New.Path) \(.New.Version)"' |
      write_replaces
    go mod edit \
      "-require=sigs.k8s.io/node-feature-discovery@${NFD_VERSION}" \
      "-require=sigs.k8s.io/node-feature-discovery/api/nfd@${NFD_VERSION}" \
      -tool=sigs.k8s.io/node-feature-discovery/cmd/nfd-master \
      -tool=sigs.k8s.io/node-feature-discovery/cmd/nfd-worker
    go mod tidy
  )
}

# check_modules fails when the committed go.mod files do not pin what this
# script expects, or miss a staging module of k8s.io/kubernetes.
check_modules() {
  local want got missing dir
  want=$(staging_modules | sed "s|\$|@${STAGING_VERSION}|")
  for dir in "${KUBE_MOD_DIR}" "${NODE_MOD_DIR}"; do
    got=$(cd "${dir}" && go mod edit -json |
      jq -r '.Replace[]? | select(.Old.Path == .New.Path) | "\(.Old.Path)@\(.New.Version)"' | sort)
    missing=$(comm -23 <(echo "${want}") <(echo "${got}"))
    [[ -z ${missing} ]] ||
      die "${dir#"${REPO_ROOT}"/}/go.mod lacks staging replaces: ${missing//$'\n'/ } (run hack/build-controlplane.sh --sync)"
    require_version "${dir}" k8s.io/kubernetes "${KUBE_VERSION}"
  done
  require_version "${KUBE_MOD_DIR}" go.etcd.io/etcd/server/v3 "${ETCD_VERSION}"
  require_version "${NFD_MOD_DIR}" sigs.k8s.io/node-feature-discovery "${NFD_VERSION}"
  require_version "${NFD_MOD_DIR}" sigs.k8s.io/node-feature-discovery/api/nfd "${NFD_VERSION}"
}

require_version() {
  local dir=$1 mod=$2 want=$3 got
  got=$(cd "${dir}" && go mod edit -json | jq -r --arg m "${mod}" '.Require[] | select(.Path == $m) | .Version')
  [[ ${got} == "${want}" ]] ||
    die "${dir#"${REPO_ROOT}"/}/go.mod requires ${mod} ${got:-nothing}, want ${want} (run hack/build-controlplane.sh --sync)"
}

# stamp prints what a binary was built from (the versions it pins, the Go
# toolchain and its module's go.sum); a change forces a rebuild.
stamp() {
  local name=$1 moddir=$2 versions=$3
  printf '%s %s %s gosum=%s\n' "${name}" "${versions}" "$(go env GOVERSION)" \
    "$(sha256sum "${moddir}/go.sum" | cut -c1-16)"
}

up_to_date() {
  local name=$1 moddir=$2 versions=$3
  [[ ${FORCE} == false && -x ${BIN_DIR}/${name} && -f ${STAMP_DIR}/${name} ]] &&
    [[ $(cat "${STAMP_DIR}/${name}") == "$(stamp "${name}" "${moddir}" "${versions}")" ]]
}

# build_group builds the named binaries of one tool module in one go build
# invocation (shared packages compile once), then stamps them.
#   build_group <moddir> <versions> <ldflags> <name>=<package>...
build_group() {
  local moddir=$1 versions=$2 ldflags=$3
  shift 3
  local spec name pkg names=() pkgs=()
  for spec in "$@"; do
    name=${spec%%=*}
    pkg=${spec#*=}
    if up_to_date "${name}" "${moddir}" "${versions}"; then
      log "${name} is up to date ($(cut -d' ' -f2- "${STAMP_DIR}/${name}"))"
      continue
    fi
    names+=("${name}")
    pkgs+=("${pkg}")
  done
  [[ ${#pkgs[@]} -gt 0 ]] || return 0
  log "building ${names[*]} in ${moddir#"${REPO_ROOT}"/} (a cold build takes many minutes)"
  local start=${SECONDS} tmp
  tmp=$(mktemp -d "${BIN_DIR}/.build.XXXXXX")
  # shellcheck disable=SC2064 # expand tmp now
  trap "rm -rf '${tmp}'" RETURN
  (cd "${moddir}" && go build -trimpath -ldflags "${ldflags}" -o "${tmp}/" "${pkgs[@]}")
  for name in "${names[@]}"; do
    mv -f "${tmp}/${name}" "${BIN_DIR}/${name}"
    stamp "${name}" "${moddir}" "${versions}" >"${STAMP_DIR}/${name}"
  done
  log "built ${names[*]} in $((SECONDS - start))s"
}

main() {
  command -v go >/dev/null || die "go is not on PATH"
  command -v jq >/dev/null || die "jq is not on PATH"
  if [[ ${SYNC} == true ]]; then
    sync_modules
  fi
  check_modules
  mkdir -p "${BIN_DIR}" "${CRD_DIR}" "${STAMP_DIR}"
  log "tools dir ${TOOLS_DIR}"

  # What kubernetes' hack/lib/version.sh stamps; the build date is the
  # release tag's time so that binaries are reproducible.
  local kube_time minor
  kube_time=$(cd "${KUBE_MOD_DIR}" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  minor=${KUBE_VERSION#v*.}
  minor=${minor%%.*}
  local kube_ldflags="-s -w" pkg
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    kube_ldflags+=" -X ${pkg}.gitVersion=${KUBE_VERSION}"
    kube_ldflags+=" -X ${pkg}.gitMajor=$(echo "${KUBE_VERSION#v}" | cut -d. -f1)"
    kube_ldflags+=" -X ${pkg}.gitMinor=${minor}"
    kube_ldflags+=" -X ${pkg}.buildDate=${kube_time}"
  done
  build_group "${KUBE_MOD_DIR}" \
    "kubernetes=${KUBE_VERSION} staging=${STAGING_VERSION} etcd=${ETCD_VERSION}" "${kube_ldflags}" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    etcd=./etcd

  build_group "${NODE_MOD_DIR}" \
    "kubernetes=${KUBE_VERSION} staging=${STAGING_VERSION}" "${kube_ldflags}" \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kubelet=k8s.io/kubernetes/cmd/kubelet

  build_group "${NFD_MOD_DIR}" "nfd=${NFD_VERSION}" \
    "-s -w -X sigs.k8s.io/node-feature-discovery/pkg/version.version=${NFD_VERSION}" \
    nfd-master=sigs.k8s.io/node-feature-discovery/cmd/nfd-master \
    nfd-worker=sigs.k8s.io/node-feature-discovery/cmd/nfd-worker

  local nfd_dir crd=${CRD_DIR}/nfd-api-crds.yaml
  nfd_dir=$(cd "${NFD_MOD_DIR}" && go list -m -f '{{.Dir}}' sigs.k8s.io/node-feature-discovery)
  [[ -n ${nfd_dir} ]] || die "sigs.k8s.io/node-feature-discovery ${NFD_VERSION} is not in the module cache"
  if ! cmp -s "${nfd_dir}/deployment/base/nfd-crds/nfd-api-crds.yaml" "${crd}"; then
    install -m 0644 "${nfd_dir}/deployment/base/nfd-crds/nfd-api-crds.yaml" "${crd}"
    log "copied NFD ${NFD_VERSION} CRDs to ${crd}"
  fi

  local b
  for b in kube-apiserver kube-scheduler etcd nfd-master nfd-worker kube-controller-manager kubelet; do
    [[ -x ${BIN_DIR}/${b} ]] || die "${BIN_DIR}/${b} was not built"
  done
  log "ready: $("${BIN_DIR}/kube-apiserver" --version), $("${BIN_DIR}/kubelet" --version), $("${BIN_DIR}/etcd" --version | head -1), $("${BIN_DIR}/nfd-master" -version 2>&1 | tail -1)"
}

main
