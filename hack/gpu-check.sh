#!/usr/bin/env bash
# Checks the DMA bandwidth check on a real NVIDIA machine: runs `pin-feature-daemon probe --bench -o table`
# and `bench -o json`, measures the same copies with PyTorch (a pinned tensor copied with non_blocking=True,
# timed with CUDA events, same size, median of samples; pageable too), reads nvidia-smi's PCIe link idle and
# while PyTorch copies, and prints the figures side by side, one short table per GPU. It then times the pin trial's
# calls from PyTorch on the first GPU (as the daemon's trial runs on the first GPU measured OK):
# torch.empty(n, dtype=torch.uint8, pin_memory=True) (cudaHostAlloc through the caching host allocator, whose
# cache is emptied after each call) and cudaHostRegister of a pre-faulted mmap'd region through
# torch.cuda.cudart(), at half the trial size and the trial size, each twice, the faster call of each size fitted
# like the daemon's (time = per-call + bytes / rate), and prints both side by side.
#
# The machine needs no internet and no Go module cache: the script uses ./bin/pin-feature-daemon when it is
# there (build it elsewhere with `make build` and carry it over; the build machine's glibc must not be newer
# than this one's), and builds it only when it is missing (or BUILD=1) and `go` is installed.
#
# Usage: hack/gpu-check.sh
#   BENCH_SIZE=256Mi   size of each copy (both tools)
#   PIN_TRIAL_SIZE=1Gi the pin trial's larger call (both tools; the daemon caps it by MemAvailable/16 and its
#                      cgroup's headroom, and the table says the size each used)
#   SAMPLES=7 WARMUP=2 PyTorch samples and warm-up copies (the daemon uses its own defaults, the same)
#   OUT=dir            also keep the raw outputs there (probe table, bench JSON, PyTorch JSON, the table)
#   BIN=path           the daemon binary (default ./bin/pin-feature-daemon)
#   DAEMON_ARGS="..."  more flags for both daemon runs (e.g. --cuda-library=... --host-root=... for a dry run
#                      against the fake driver on a machine without a GPU)
# Normally done in well under a minute; each step has its own timeout (60 s, 60 s, 120 s).
set -euo pipefail
# shellcheck source=hack/toolchain.sh
source "$(dirname "${BASH_SOURCE[0]}")/toolchain.sh"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-./bin/pin-feature-daemon}
BENCH_SIZE=${BENCH_SIZE:-256Mi}
PIN_TRIAL_SIZE=${PIN_TRIAL_SIZE:-1Gi}
SAMPLES=${SAMPLES:-7}
WARMUP=${WARMUP:-2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT=${OUT:-}
DAEMON_ARGS=${DAEMON_ARGS:-}

log() { printf '[gpu-check] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command -v nvidia-smi >/dev/null || die "nvidia-smi not found: this is not an NVIDIA machine"
command -v python3 >/dev/null || die "python3 not found (it also parses the daemon's JSON)"

if [[ ! -x $BIN || ${BUILD:-0} == 1 ]]; then
	command -v go >/dev/null || die "$BIN is missing and go is not installed: build it elsewhere (make build) and copy it here"
	log "building $BIN"
	mkdir -p "$(dirname "$BIN")"
	CGO_ENABLED=1 CGO_CFLAGS="${CGO_CFLAGS:--O2 -Wno-deprecated-declarations}" \
		timeout 300 go build -trimpath -o "$BIN" ./cmd/pin-feature-daemon || die "go build failed (no module cache and no internet?)"
fi
if ! "$BIN" version >"$WORK/version" 2>&1; then
	cat "$WORK/version" >&2
	die "$BIN does not run here (built against a newer glibc? see above)"
fi
log "binary: $(head -n1 "$WORK/version")"

# The daemon: one probe with the check (the operator's view), one JSON run of the check alone (the figures).
# --state-dir= keeps them from reusing or writing stored results, so both really measure.
log "running $BIN probe --bench -o table"
start=$(date +%s.%N)
# shellcheck disable=SC2086 # DAEMON_ARGS is a list of flags
timeout 60 "$BIN" probe --bench --state-dir= --bench-size="$BENCH_SIZE" --pin-trial-size="$PIN_TRIAL_SIZE" --bench-timeout=45s $DAEMON_ARGS -o table >"$WORK/probe-table.txt" 2>"$WORK/probe.stderr" ||
	log "probe --bench exited with $? (stderr: $(tail -n3 "$WORK/probe.stderr" | tr '\n' ' '))"
probe_s=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.2f}')" "$start")
log "running $BIN bench -o json"
start=$(date +%s.%N)
# shellcheck disable=SC2086
timeout 60 "$BIN" bench --state-dir= --bench-size="$BENCH_SIZE" --pin-trial-size="$PIN_TRIAL_SIZE" --bench-timeout=45s $DAEMON_ARGS -o json >"$WORK/bench.json" 2>"$WORK/bench.stderr" ||
	log "bench exited with $? (stderr: $(tail -n3 "$WORK/bench.stderr" | tr '\n' ' '))"
bench_s=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.2f}')" "$start")

# PyTorch, GPU by GPU in PCI order (as nvidia-smi numbers them), sampling nvidia-smi's link while copying.
log "measuring with PyTorch"
CUDA_DEVICE_ORDER=PCI_BUS_ID timeout 120 python3 - "$BENCH_SIZE" "$SAMPLES" "$WARMUP" "$PIN_TRIAL_SIZE" >"$WORK/torch.json" 2>"$WORK/torch.stderr" <<'PY' ||
import json, mmap, re, statistics, subprocess, sys, threading, time

def size_bytes(s):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", s.strip())
    if not m:
        raise SystemExit(f"bad size {s!r}")
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}[m.group(2)]
    return int(m.group(1)) * mult

size, samples, warmup = size_bytes(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pin_size = size_bytes(sys.argv[4])
FIELDS = "index,name,pci.bus_id,pcie.link.gen.current,pcie.link.width.current,pcie.link.gen.max,pcie.link.width.max"

def smi():
    out = subprocess.run(["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20).stdout
    rows = {}
    for line in out.strip().splitlines():
        f = [x.strip() for x in line.split(",")]
        rows[int(f[0])] = dict(name=f[1], pci=f[2], gen=f[3], width=f[4], genMax=f[5], widthMax=f[6])
    return rows

def as_int(v):
    try:
        return int(v)
    except ValueError:
        return 0

result = {"sizeBytes": size, "gpus": [], "idle": smi()}
try:
    import torch
except Exception as e:  # no PyTorch: still report the links
    result["error"] = f"import torch: {e}"
    print(json.dumps(result))
    raise SystemExit(0)
result["torch"] = torch.__version__

def median_gbytes_per_sec(fn, copy, stream):
    for _ in range(warmup):
        fn(copy)
    torch.cuda.synchronize()
    times = [fn(copy) for _ in range(samples)]
    return size / statistics.median(times) / 1e9

for dev in range(torch.cuda.device_count()):
    torch.cuda.set_device(dev)
    stream = torch.cuda.Stream()
    gpu = torch.empty(size, dtype=torch.uint8, device=f"cuda:{dev}")
    pinned = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    pageable = torch.empty(size, dtype=torch.uint8)
    pageable.fill_(1)  # fault the pages in
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed_events(copy):  # pinned: CUDA events on the stream
        with torch.cuda.stream(stream):
            start.record(stream)
            copy()
            stop.record(stream)
        stop.synchronize()
        return start.elapsed_time(stop) / 1e3

    def timed_wall(copy):  # pageable: wall clock, as the daemon does
        t0 = time.perf_counter()
        with torch.cuda.stream(stream):
            copy()
        stream.synchronize()
        return time.perf_counter() - t0

    links, stop_sampling = [], threading.Event()
    def sample():
        while not stop_sampling.is_set():
            try:
                links.append(smi()[dev])
            except Exception:
                pass
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    r = {"index": dev, "name": torch.cuda.get_device_name(dev)}
    # Repeat the pinned copies until nvidia-smi has answered at least once while they ran.
    deadline = time.time() + 10
    while True:
        r["pinnedH2D"] = median_gbytes_per_sec(timed_events, lambda: gpu.copy_(pinned, non_blocking=True), stream)
        r["pinnedD2H"] = median_gbytes_per_sec(timed_events, lambda: pinned.copy_(gpu, non_blocking=True), stream)
        if links or time.time() > deadline:
            break
    stop_sampling.set()
    sampler.join(timeout=30)
    r["pageableH2D"] = median_gbytes_per_sec(timed_wall, lambda: gpu.copy_(pageable, non_blocking=True), stream)
    r["pageableD2H"] = median_gbytes_per_sec(timed_wall, lambda: pageable.copy_(gpu, non_blocking=True), stream)
    if links:
        r["linkUnderLoad"] = {"gen": max(as_int(l["gen"]) for l in links), "width": max(as_int(l["width"]) for l in links)}
    result["gpus"].append(r)
    del gpu, pinned, pageable
    torch.cuda.empty_cache()

def pin_trial(dev):
    """The daemon's pin trial from PyTorch on GPU dev: each size (half, full) twice, interleaved, wall clock."""
    torch.cuda.set_device(dev)
    torch.cuda.synchronize()
    half = (pin_size // 2) & ~4095
    sizes = [half, 2 * half] * 2
    empty_host_cache = getattr(torch._C, "_host_emptyCache", None)
    out = {"gpu": dev, "sizes": sizes}
    # torch.empty(pin_memory=True): cudaHostAlloc through the caching host allocator. A freed block is cached and
    # a second call of the same size would reuse it: without a way to empty the cache, each size is timed once.
    alloc = []
    for n in (sizes if empty_host_cache else sizes[:2]):
        t0 = time.perf_counter()
        t = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        alloc.append([n, time.perf_counter() - t0])
        del t
        if empty_host_cache:
            empty_host_cache()
    out["alloc"] = alloc
    # cudaHostRegister of one pre-faulted mmap'd region (what KV connectors do), its first n bytes each time.
    cudart = torch.cuda.cudart()
    region = mmap.mmap(-1, 2 * half)
    buf = torch.frombuffer(region, dtype=torch.uint8)
    buf.fill_(1)  # fault the pages in, untimed
    ptr = buf.data_ptr()
    register = []
    for n in sizes:
        t0 = time.perf_counter()
        err = cudart.cudaHostRegister(ptr, n, 0)
        d = time.perf_counter() - t0
        code = int(getattr(err, "value", err))
        if code != 0:
            out["registerError"] = f"cudaHostRegister({n}): {err}"
            break
        register.append([n, d])
        cudart.cudaHostUnregister(ptr)
    out["register"] = register
    del buf
    region.close()
    return out

if torch.cuda.device_count() > 0:
    try:
        result["pin"] = pin_trial(0)
    except Exception as e:
        result["pin"] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(result))
PY
	log "PyTorch measurement exited with $? (stderr: $(tail -n3 "$WORK/torch.stderr" | tr '\n' ' '))"

python3 - "$WORK" "$probe_s" "$bench_s" >"$WORK/table.txt" <<'PY'
import json, sys

work, probe_s, bench_s = sys.argv[1], sys.argv[2], sys.argv[3]

def load(name):
    try:
        with open(f"{work}/{name}") as f:
            return json.load(f)
    except Exception as e:
        return {"error": f"{name}: {e}"}

def find_result(doc):
    """The bench Result: the document itself, or nested (e.g. under "bench")."""
    if isinstance(doc, dict):
        if isinstance(doc.get("gpus"), list) and "state" in doc:
            return doc
        for v in doc.values():
            r = find_result(v)
            if r:
                return r
    return None

def norm_pci(s):
    try:
        dom, bus, devfn = s.strip().lower().split(":")
        return f"{int(dom, 16):04x}:{bus}:{devfn}"
    except Exception:
        return s

bench = find_result(load("bench.json")) or {}
torch = load("torch.json")
idle = {norm_pci(v["pci"]): v for v in torch.get("idle", {}).values()}
tgpus = {}
for g in torch.get("gpus", []):
    smi = torch.get("idle", {}).get(str(g["index"])) or {}
    tgpus[norm_pci(smi.get("pci", ""))] = g

def f(v, scale=1e9):
    return f"{v / scale:8.2f}" if v else "       -"

def diff(a, b):
    return f"{(a / b - 1) * 100:+6.1f}%" if a and b else "      -"

print(f"DMA check: pin-feature-daemon vs PyTorch, {torch.get('sizeBytes', 0) >> 20} MiB copies, GB/s = 1e9 bytes/s")
print(f"daemon: bench state {bench.get('state', '?')}"
      + (f" ({bench['error']})" if bench.get("error") else "")
      + f", CUDA driver {bench.get('cudaDriverVersion', '?')}; wall time: probe --bench {probe_s} s, bench {bench_s} s")
print(f"PyTorch {torch.get('torch', '-')}" + (f" ({torch['error']})" if torch.get("error") else ""))
for g in bench.get("gpus", []) or [{"pciAddress": k} for k in idle]:
    pci = norm_pci(g.get("pciAddress", ""))
    smi, t = idle.get(pci, {}), tgpus.get(pci, {})
    print()
    print(f"GPU {g.get('index', '?')} {smi.get('name') or g.get('model', '')} {pci}: daemon {g.get('state', '-')}"
          + (f" ({g['reason']})" if g.get("reason") else "")
          + (f", measured in {g['duration'] / 1e9:.2f} s" if g.get("duration") else ""))
    lu, tl = g.get("linkUnderLoad") or {}, t.get("linkUnderLoad") or {}
    print(f"  PCIe  nvidia-smi idle Gen{smi.get('gen', '?')} x{smi.get('width', '?')}, max Gen{smi.get('genMax', '?')} x{smi.get('widthMax', '?')}"
          f"; under load: nvidia-smi Gen{tl.get('gen', '?')} x{tl.get('width', '?')}, daemon (sysfs) Gen{lu.get('gen', '?')} x{lu.get('width', '?')}"
          + (", DEGRADED" if g.get("degraded") else ""))
    print(f"  {'':14} {'daemon':>8} {'PyTorch':>8} {'diff':>7}")
    for label, dk, tk in [("pinned H2D", "pinnedH2DBytesPerSecond", "pinnedH2D"),
                          ("pinned D2H", "pinnedD2HBytesPerSecond", "pinnedD2H"),
                          ("pageable H2D", "pageableH2DBytesPerSecond", "pageableH2D"),
                          ("pageable D2H", "pageableD2HBytesPerSecond", "pageableD2H")]:
        d, tv = g.get(dk, 0), t.get(tk, 0)
        print(f"  {label:14} {f(d)} {f(tv, 1)} {diff(d / 1e9 if d else 0, tv)}")
    if g.get("theoreticalBytesPerSecond"):
        print(f"  link rate {g['theoreticalBytesPerSecond'] / 1e9:.2f} GB/s per direction, efficiency {g.get('efficiency', 0) * 100:.1f}%"
              f", cuMemHostAlloc {'ok' if g.get('hostAllocOK') else 'FAILED'}, cuMemHostRegister "
              + ("ok" if g.get("hostRegisterOK") else f"FAILED ({g.get('hostRegisterError', '')})"))

def fit(samples):
    """The daemon's fit (pkg/bench fitPin): the fastest call of each size; rate and per-call cost through the two
    largest sizes, or the larger call's average rate when noise makes the fit meaningless."""
    best = {}
    for n, d in samples:
        best[n] = min(d, best.get(n, d))
    pts = sorted(best.items())
    if not pts or pts[-1][1] <= 0:
        return 0, 0
    (n2, t2) = pts[-1]
    if len(pts) < 2:
        return n2 / t2, 0
    (n1, t1) = pts[-2]
    if t2 <= t1:
        return n2 / t2, 0
    rate = (n2 - n1) / (t2 - t1)
    c = t1 - n1 / rate
    return (n2 / t2, 0) if c < 0 else (rate, c)

tp = torch.get("pin") or {}
trials = [p for p in bench.get("pinTrials") or [] if p.get("platform") == "cuda"]
dp = trials[0] if trials else {}
print()
print(f"Pin trial: pin-feature-daemon (cuMemHostAlloc, cuMemHostRegister on GPU {dp.get('gpu', '-')}, "
      f"{bench.get('pinTrialBytes', 0) >> 20} MiB) vs PyTorch (torch.empty(pin_memory=True), cudart().cudaHostRegister on GPU "
      f"{tp.get('gpu', '-')}, {max(tp.get('sizes') or [0]) >> 20} MiB)"
      + (f"; daemon: {dp['skipped']}" if dp.get("skipped") else "")
      + (f"; PyTorch: {tp['error']}" if tp.get("error") else ""))
print(f"  {'':10} {'daemon GB/s':>11} {'PyTorch GB/s':>12} {'diff':>7} {'daemon per call':>16} {'PyTorch per call':>17}")
for api, tk in [("alloc", "alloc"), ("register", "register")]:
    a = dp.get(api) or {}
    rate, per_call = fit(tp.get(tk) or [])
    d = a.get("bytesPerSecond", 0)
    note = a.get("error", "") or (tp.get("registerError", "") if api == "register" else "")
    print(f"  {api:10} {f(d):>11} {f(rate):>12} {diff(d, rate)} {a.get('perCall', 0) / 1e6:13.2f} ms {per_call * 1e3:14.2f} ms"
          + (f"  ({note})" if note else ""))
PY

cat "$WORK/table.txt"
echo
echo "--- probe --bench -o table ---"
cat "$WORK/probe-table.txt"
if [[ -n $OUT ]]; then
	mkdir -p "$OUT"
	cp "$WORK"/{table.txt,probe-table.txt,bench.json,torch.json} "$OUT"/ 2>/dev/null || true
	cat "$WORK"/{probe,bench,torch}.stderr >"$OUT/stderr.txt" 2>/dev/null || true
fi
