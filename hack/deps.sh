#!/usr/bin/env bash
# Installs the Debian packages that `make test` needs and a fresh machine lacks; `make test` (its first
# step, `make deps`) and .ci/run run it before anything else. It installs only what is missing, so on a
# ready machine it checks and returns in well under a second.
#
#   jq                                        the tool build scripts read `go mod ... -json`
#   gcc-aarch64-linux-gnu libc6-dev-arm64-cross   `make image` cross-compiles the arm64 binary (cgo)
#   dpkg's arm64 architecture                 `make image` downloads Debian's libc6:arm64 for the arm64 image
#   containerd runc containernetworking-plugins iproute2
#                                             test/node: a kubelet on this machine runs the built image
#   qemu-user                                 test/node runs the image's arm64 binary and the arm64 runtime
#                                             shims under qemu-aarch64
#   libamdhip64-5                             test/vendorlib and internal/benchchild load Debian's real HIP runtime
#                                             (no AMD GPU here, so hipInit fails with its own status)
#
# As root it runs apt-get (cold: apt-get update and the install take about a minute). As any other user it
# installs nothing: it prints the one command that does, and exits 1, so that no test runs on a machine
# that cannot pass them.
#
# Usage: hack/deps.sh [--check]   (--check: only report what is missing; exit 1 if anything is)
set -euo pipefail

CHECK=false
case "${1:-}" in
  --check) CHECK=true ;;
  "") ;;
  -h | --help)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "deps: unknown argument $1" >&2
    exit 2
    ;;
esac

# missing_packages prints the Debian packages to install, one a line: a package is wanted when the file or
# command the tests use is absent (so a machine that has them from elsewhere installs nothing).
missing_packages() {
  command -v jq >/dev/null || echo jq
  command -v aarch64-linux-gnu-gcc >/dev/null || echo gcc-aarch64-linux-gnu
  [[ -f /usr/aarch64-linux-gnu/include/stdio.h ]] || echo libc6-dev-arm64-cross
  command -v containerd >/dev/null && command -v ctr >/dev/null &&
    command -v containerd-shim-runc-v2 >/dev/null || echo containerd
  command -v runc >/dev/null || echo runc
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    echo containernetworking-plugins
  command -v ip >/dev/null || echo iproute2
  command -v qemu-aarch64 >/dev/null || echo qemu-user
  dpkg-query -W -f='${Status}\n' libamdhip64-5 2>/dev/null | grep -q '^install ok installed$' || echo libamdhip64-5
}

arm64_missing() {
  ! dpkg --print-foreign-architectures | grep -qx arm64
}

command -v apt-get >/dev/null || {
  echo "deps: no apt-get here: install by hand the packages named at the top of hack/deps.sh" >&2
  exit 1
}
mapfile -t pkgs < <(missing_packages | sort -u)
arch=false
if arm64_missing; then arch=true; fi
if [[ ${#pkgs[@]} -eq 0 && ${arch} == false ]]; then
  echo "deps: every package the tests need is installed"
  exit 0
fi
what=${pkgs[*]:-no packages}
if [[ ${arch} == true ]]; then what+=", and dpkg's arm64 architecture"; fi
if [[ ${CHECK} == true ]]; then
  echo "deps: missing: ${what}" >&2
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing: ${what}" >&2
  echo "deps: installing them needs root; run this once, then make test again:" >&2
  echo "  sudo $(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/deps.sh" >&2
  exit 1
fi
echo "deps: installing ${what}" >&2
start=${SECONDS}
if [[ ${arch} == true ]]; then
  dpkg --add-architecture arm64
fi
apt-get update -qq -o DPkg::Lock::Timeout=600
if [[ ${#pkgs[@]} -gt 0 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${pkgs[@]}" >/dev/null
fi
mapfile -t still < <(missing_packages)
[[ ${#still[@]} -eq 0 ]] || {
  echo "deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
}
echo "deps: installed in $((SECONDS - start))s" >&2
