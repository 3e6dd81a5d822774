#!/usr/bin/env bash
# Prints the daemon's memory and disk footprint beside nfd-worker's, in one run
# on this machine:
#
#   - binary size;
#   - one shot: peak RSS (VmHWM) and RssAnon at exit of
#       pin-feature-daemon probe -o labels --host-root testdata/dgx-2gpu-switch
#       nfd-worker -oneshot -no-publish
#     (read from /proc/<pid>/status at the exit stop by hack/exitstat);
#   - idle: VmRSS, RssAnon and VmHWM after three passes of
#       pin-feature-daemon run --output stdout --interval 1s --host-root testdata/dgx-2gpu-switch
#       nfd-worker -no-publish with core.sleepInterval 1s
#     sampled from /proc/<pid>/status once the third pass is logged.
#
# and checks issue 9's targets: probe peak and run idle RSS at most 30 MiB and
# at most nfd-worker's, binary at most 35 MB. It exits 1 when one is missed.
#
# nfd-worker reads this machine's /sys and /proc (it has no --host-root); it
# needs a kubeconfig even with -no-publish, and gets one that points nowhere.
# The daemon's DMA check stays on (as in the DaemonSet); it runs in a child
# process, which is not counted.
#
# Inputs: bin/pin-feature-daemon (make build) and nfd-worker in
# ${PFD_TOOLS_DIR:-<repo>/.cache/tools}/bin (hack/build-controlplane.sh);
# PFD_BIN and NFD_WORKER override the paths.
#
# Usage: hack/footprint.sh
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${PFD_TOOLS_DIR:-${REPO_ROOT}/.cache/tools}
PFD_BIN=${PFD_BIN:-${REPO_ROOT}/bin/pin-feature-daemon}
NFD_WORKER=${NFD_WORKER:-${TOOLS_DIR}/bin/nfd-worker}
FIXTURE=${REPO_ROOT}/testdata/dgx-2gpu-switch
PASSES=3
MIB=1024 # kB

die() {
  echo "footprint: error: $*" >&2
  exit 1
}

[[ -x ${PFD_BIN} ]] || die "${PFD_BIN} is missing (make build)"
[[ -x ${NFD_WORKER} ]] || die "${NFD_WORKER} is missing (hack/build-controlplane.sh)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "${p}" 2>/dev/null || true
  done
  rm -rf "${WORK}"
}
trap cleanup EXIT

(cd "${REPO_ROOT}" && go build -o "${WORK}/exitstat" ./hack/exitstat)

cat >"${WORK}/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {}}]
EOF

# field FILE KEY prints the kB value of KEY in a /proc/<pid>/status excerpt.
field() { awk -v k="$2:" '$1 == k { print $2 }' "$1"; }

# oneshot NAME COMMAND... runs a command to its end under exitstat.
oneshot() {
  local name=$1
  shift
  "${WORK}/exitstat" -o "${WORK}/${name}.oneshot" -- "$@" >"${WORK}/${name}.oneshot.out" 2>"${WORK}/${name}.oneshot.log" ||
    die "$* failed: $(tail -3 "${WORK}/${name}.oneshot.log")"
}

# idle NAME PATTERN COMMAND... starts a long-running command, waits until its
# log has PASSES lines matching PATTERN, samples its status and stops it.
idle() {
  local name=$1 pattern=$2
  shift 2
  : >"${WORK}/${name}.idle.log"
  "$@" >"${WORK}/${name}.idle.out" 2>"${WORK}/${name}.idle.log" &
  local pid=$!
  PIDS+=("${pid}")
  local deadline=$((SECONDS + 60))
  until [[ $(grep -c -- "${pattern}" "${WORK}/${name}.idle.log" || true) -ge ${PASSES} ]]; do
    kill -0 "${pid}" 2>/dev/null || die "$1 exited early: $(tail -3 "${WORK}/${name}.idle.log")"
    ((SECONDS < deadline)) || die "$1: no ${PASSES} passes within 60s"
    sleep 0.1
  done
  grep -E '^(VmHWM|VmRSS|RssAnon|RssFile):' "/proc/${pid}/status" >"${WORK}/${name}.idle" ||
    die "$1 exited before its status could be read"
  kill "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

oneshot pfd "${PFD_BIN}" probe -o labels --host-root "${FIXTURE}"
oneshot nfd env NODE_NAME=footprint "${NFD_WORKER}" -oneshot -no-publish -kubeconfig "${WORK}/kubeconfig"
idle pfd '"Probed node"' "${PFD_BIN}" run --output stdout --interval 1s --host-root "${FIXTURE}" \
  --state-dir= --metrics-address 127.0.0.1:0
idle nfd '"feature discovery completed"' env NODE_NAME=footprint "${NFD_WORKER}" -no-publish \
  -kubeconfig "${WORK}/kubeconfig" -port 0 -options '{"core":{"sleepInterval":"1s"}}'

pfd_size=$(stat -c %s "${PFD_BIN}")
nfd_size=$(stat -c %s "${NFD_WORKER}")
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

printf '%-36s %-22s %-22s\n' "" "pin-feature-daemon" "nfd-worker $("${NFD_WORKER}" -version 2>&1 | awk '{ print $NF }' | tail -1)"
printf '%-36s %-22s %-22s\n' "binary size" "$(mb "${pfd_size}")" "$(mb "${nfd_size}")"
row() {
  local label=$1 file=$2 key=$3
  printf '%-36s %-22s %-22s\n' "${label}" "$(mib "$(field "${WORK}/pfd.${file}" "${key}")")" \
    "$(mib "$(field "${WORK}/nfd.${file}" "${key}")")"
}
row "one shot: peak RSS (VmHWM)" oneshot VmHWM
row "one shot: RssAnon at exit" oneshot RssAnon
row "one shot: RssFile at exit" oneshot RssFile
row "idle after ${PASSES} passes: RSS (VmRSS)" idle VmRSS
row "idle after ${PASSES} passes: RssAnon" idle RssAnon
row "idle after ${PASSES} passes: RssFile" idle RssFile
row "idle after ${PASSES} passes: VmHWM" idle VmHWM
echo "(one shot: probe -o labels on testdata/dgx-2gpu-switch vs nfd-worker -oneshot -no-publish on this host;"
echo " idle: run --output stdout --interval 1s vs nfd-worker -no-publish, sleepInterval 1s)"

failed=0
check() {
  local what=$1 got=$2 limit=$3
  if ((got <= limit)); then
    echo "ok    ${what}"
  else
    echo "MISS  ${what}"
    failed=1
  fi
}
probe_hwm=$(field "${WORK}/pfd.oneshot" VmHWM)
run_rss=$(field "${WORK}/pfd.idle" VmRSS)
check "probe peak RSS $(mib "${probe_hwm}") <= 30 MiB" "${probe_hwm}" $((30 * MIB))
check "probe peak RSS <= nfd-worker's one-shot peak $(mib "$(field "${WORK}/nfd.oneshot" VmHWM)")" \
  "${probe_hwm}" "$(field "${WORK}/nfd.oneshot" VmHWM)"
check "run idle RSS $(mib "${run_rss}") <= 30 MiB" "${run_rss}" $((30 * MIB))
check "run idle RSS <= nfd-worker's idle RSS $(mib "$(field "${WORK}/nfd.idle" VmRSS)")" \
  "${run_rss}" "$(field "${WORK}/nfd.idle" VmRSS)"
check "binary $(mb "${pfd_size}") <= 35 MB" "${pfd_size}" 35000000
exit "${failed}"
