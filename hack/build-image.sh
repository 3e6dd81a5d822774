#!/usr/bin/env bash
# Builds the pin-feature-daemon container image without a container engine
# (`make image`), for linux/amd64 and linux/arm64 as one OCI image index:
#
#   _output/image/oci/                      OCI image layout (index.json names the image)
#   _output/image/pin-feature-daemon.tar    the layout as one tar, with a docker manifest.json for
#                                           linux/amd64: docker load, podman load, ctr images import
#
# Each image: a skeleton layer (passwd/group with the nonroot user 65532, tmp, home), glibc from
# Debian's libc6 package of that architecture (apt-get download, cached in .cache/debs), and the
# binary, built by `make build` with cgo (arm64: cross-compiled with gcc-aarch64-linux-gnu). The
# layers and configs are written by hack/tools/image (go-containerregistry) with every time set to
# SOURCE_DATE_EPOCH (default: the commit time of HEAD), so two builds of one commit give the same
# digest. The Dockerfile builds the same image with docker, from distroless instead of Debian's
# package; it is the home of the image's static labels, which this script reads from it.
#
# Needs: go, gcc, gcc-aarch64-linux-gnu, dpkg-deb, apt-get with arm64 enabled
# (dpkg --add-architecture arm64 && apt-get update; hack/deps.sh does this, and make test runs it first).
#
# Usage: hack/build-image.sh   (env: IMAGE, VERSION, REVISION, SOURCE_DATE_EPOCH, PLATFORMS, OUT_DIR)
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${REPO_ROOT}"

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
REVISION=${REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
IMAGE=${IMAGE:-ghcr.io/pinmemory/pin-feature-daemon:${VERSION}}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
OUT_DIR=${OUT_DIR:-${REPO_ROOT}/_output/image}
DEB_DIR=${REPO_ROOT}/.cache/debs

log() { echo "build-image: $*" >&2; }
die() {
  echo "build-image: error: $*" >&2
  exit 1
}

# cross_cc prints the C compiler for a Go architecture.
cross_cc() {
  case $1 in
    amd64) echo "${CC_amd64:-x86_64-linux-gnu-gcc}" ;;
    arm64) echo "${CC_arm64:-aarch64-linux-gnu-gcc}" ;;
    *) die "no C cross compiler known for ${1}" ;;
  esac
}

# libc6_deb downloads (once) Debian's libc6 package of an architecture and prints its path.
libc6_deb() {
  local arch=$1 file
  file=$(apt-cache show --no-all-versions "libc6:${arch}" 2>/dev/null | sed -n 's/^Filename: //p' | head -1)
  [[ -n ${file} ]] ||
    die "apt knows no libc6:${arch}; run hack/deps.sh as root (it adds dpkg's ${arch} architecture and runs apt-get update)"
  file=${DEB_DIR}/$(basename "${file}")
  if [[ ! -f ${file} ]]; then
    mkdir -p "${DEB_DIR}"
    (cd "${DEB_DIR}" && apt-get download -qq -o APT::Sandbox::User=root "libc6:${arch}") || die "apt-get download libc6:${arch} failed"
  fi
  [[ -f ${file} ]] || die "apt-get download libc6:${arch} did not write ${file}"
  echo "${file}"
}

# glibc_tree fills a directory with the dynamic loader and libraries of a libc6 package, its
# copyright, and the package's control data in /var/lib/dpkg/status.d (as distroless does), so that
# image scanners see which glibc is inside.
glibc_tree() {
  local deb=$1 dir=$2 x
  x=$(mktemp -d)
  dpkg-deb -x "${deb}" "${x}"
  mkdir -p "${dir}/usr/share/doc/libc6" "${dir}/var/lib/dpkg/status.d"
  cp -a "${x}/lib" "${dir}/"
  [[ ! -d ${x}/lib64 ]] || cp -a "${x}/lib64" "${dir}/"
  cp "${x}/usr/share/doc/libc6/copyright" "${dir}/usr/share/doc/libc6/"
  dpkg-deb -f "${deb}" Package Source Version Architecture Maintainer Multi-Arch Homepage \
    >"${dir}/var/lib/dpkg/status.d/libc6"
  rm -rf "${x}"
}

# binary builds the daemon for one architecture into <dir>/usr/bin with the same recipe as `make build`.
binary() {
  local arch=$1 dir=$2 cc
  cc=$(cross_cc "${arch}")
  command -v "${cc}" >/dev/null || die "${cc} is not on PATH (Debian: apt-get install gcc-${cc%-gcc})"
  log "building the binary for linux/${arch} with ${cc}"
  GOOS=linux GOARCH=${arch} CC=${cc} make --no-print-directory build \
    BIN="${dir}/usr/bin/pin-feature-daemon" VERSION="${VERSION}" REVISION="${REVISION}" >&2
}

# check_libraries fails unless the glibc tree holds the binary's ELF interpreter and every library it needs,
# so that an image whose binary cannot start on its architecture is never written (nothing here runs arm64).
check_libraries() {
  local bin=$1 glibc=$2 interp lib
  interp=$(readelf -l "${bin}" | sed -n 's/.*interpreter: \(.*\)]$/\1/p')
  [[ -n ${interp} && ( -L ${glibc}${interp} || -e ${glibc}${interp} ) ]] ||
    die "${bin}: interpreter ${interp:-none} is not in ${glibc}"
  for lib in $(readelf -d "${bin}" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
    [[ -n $(find "${glibc}" -name "${lib}" -print -quit) ]] || die "${bin} needs ${lib}, which libc6 does not hold"
  done
}

# label prints the value of one org.opencontainers.image.* LABEL of the Dockerfile.
label() {
  sed -n "s/.*org\.opencontainers\.image\.$1=\"\([^\"]*\)\".*/\1/p" Dockerfile | head -1
}

main() {
  command -v dpkg-deb >/dev/null || die "dpkg-deb is not on PATH"
  command -v readelf >/dev/null || die "readelf is not on PATH (Debian: binutils)"
  rm -rf "${OUT_DIR}/rootfs"
  local layers=() platform arch root
  for platform in ${PLATFORMS}; do
    arch=${platform#linux/}
    root=${OUT_DIR}/rootfs/${arch}
    glibc_tree "$(libc6_deb "${arch}")" "${root}/glibc"
    binary "${arch}" "${root}/pin-feature-daemon"
    check_libraries "${root}/pin-feature-daemon/usr/bin/pin-feature-daemon" "${root}/glibc"
    layers+=(--layer "${platform}=${root}/glibc" --layer "${platform}=${root}/pin-feature-daemon")
  done
  local created k labels=()
  created=$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)
  for k in title description source; do
    labels+=(--label "org.opencontainers.image.${k}=$(label "${k}")")
  done
  labels+=(--label "org.opencontainers.image.version=${VERSION}"
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo "${REVISION}")"
    --label "org.opencontainers.image.created=${created}")
  log "writing ${IMAGE} (${PLATFORMS// /, }; SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}, ${created})"
  (cd hack/tools/image && GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go run . \
    --ref "${IMAGE}" --epoch "${SOURCE_DATE_EPOCH}" \
    --entrypoint /usr/bin/pin-feature-daemon --cmd probe --port 9471/tcp \
    "${labels[@]}" "${layers[@]}" \
    --layout "${OUT_DIR}/oci" --tarball "${OUT_DIR}/pin-feature-daemon.tar")
  log "$(du -sh "${OUT_DIR}/pin-feature-daemon.tar" | cut -f1) ${OUT_DIR#"${REPO_ROOT}"/}/pin-feature-daemon.tar"
}

main
