# pin-feature-daemon. `make run` probes this machine; `make test` runs every test (unit, e2e, chart).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

# The Go toolchain (hack/toolchain.sh names it once): the go command takes it from the Go module proxy, since
# a machine starts on its own older Go. Its bin directory goes first on PATH (see hack/toolchain.sh).
GO_TOOLCHAIN := $(shell sed -n 's/^GO_TOOLCHAIN=//p' hack/toolchain.sh)
export GOTOOLCHAIN := $(GO_TOOLCHAIN)
export PATH := $(shell GOTOOLCHAIN=$(GO_TOOLCHAIN) go env GOROOT 2>/dev/null)/bin:$(PATH)

export CGO_ENABLED := 1
# go-nvml's header marks deprecated NVML calls; their warnings are noise in every build.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

BIN        := bin/pin-feature-daemon
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
TOOLS_DIR  ?= $(CURDIR)/.cache/tools
export PFD_TOOLS_DIR := $(TOOLS_DIR)
IMAGE      ?= ghcr.io/pinmemory/pin-feature-daemon:$(VERSION)
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
GO_TEST    ?= go test -count=1
RUN_ARGS   ?= -o table

.PHONY: all build run deps test unit helm promtool e2e fleet tools lint vet exports bench fuzz footprint manifests helm-lint image image-docker clean help

all: build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build bin/pin-feature-daemon (cgo; the Dockerfile runs this same recipe)
	go build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pin-feature-daemon

run: build ## Probe this machine once (no cluster needed) and print the report; RUN_ARGS="-o labels" etc.
	$(BIN) probe --state-dir= $(RUN_ARGS)

deps: ## Install the Debian packages the tests need and this machine lacks (hack/deps.sh; root, or it prints the command)
	hack/deps.sh

test: deps unit e2e ## Every test: unit, fuzz seeds, e2e on a real control plane, chart checks (runs deps first)

unit: deps helm promtool ## Unit tests (fixture nodes, fake libcuda, fake clientsets), the chart and alert checks and the image writer
	$(GO_TEST) ./...
	cd hack/tools/image && GOWORK=off $(GO_TEST) ./...

helm: ## Build helm and fetch the ServiceMonitor CRD into $(TOOLS_DIR) (the chart checks need them)
	hack/build-helm.sh

promtool: ## Build promtool into $(TOOLS_DIR) (the chart's alert rules are unit-tested with promtool test rules)
	hack/build-promtool.sh

tools: helm ## Build the test tools (kube-apiserver, etcd, nfd-master, kube-scheduler, helm) into $(TOOLS_DIR)
	hack/build-controlplane.sh

e2e: deps tools image ## End-to-end tests: a real control plane, and a kubelet with containerd running the built image
	$(GO_TEST) -tags e2e -timeout 30m ./test/...

# The fleet simulation at scale (docs/fleet.md), not part of `make test` (whose e2e run has it at 200 nodes): N
# daemons against one control plane on this machine, then LISTs of every NodeFeature and `report`. An interval
# of 60 s and starts spread over 60 s keep 10,000 daemons within what 2 cores serve; FLEET_ARGS replaces them.
FLEET_NODES ?= 10000
FLEET_ARGS  ?= -fleet.interval=60s -fleet.stagger=60s -fleet.steady-intervals=2 -fleet.rollout-timeout=40m

fleet: deps tools ## The fleet simulation at scale (FLEET_NODES, default 10000; FLEET_ARGS), with its table in the test log; not part of make test
	$(GO_TEST) -tags e2e -timeout 90m -run '^TestFleet$$' -v ./test/fleet/ -args -fleet.nodes=$(FLEET_NODES) -fleet.report $(FLEET_ARGS)

vet: ## go vet, exportcheck (no exported name that only its own package uses), importcheck (no cgo or child package under the daemon), govulncheck offline (hack/vulncheck.sh)
	@grep -qx 'ARG GOTOOLCHAIN=$(GO_TOOLCHAIN)' Dockerfile || { echo "Dockerfile: ARG GOTOOLCHAIN is not $(GO_TOOLCHAIN) (hack/toolchain.sh)" >&2; exit 1; }
	go vet ./...
	go vet -tags e2e ./test/...
	go run ./hack/exportcheck
	go run ./hack/importcheck
	cd hack/tools/image && GOWORK=off go vet ./...
	cd hack/tools/vuln && GOWORK=off go vet ./...
	hack/vulncheck.sh

exports: ## List exported names that only their own package uses (hack/exportcheck); fails when there is one
	go run ./hack/exportcheck

lint: vet exports helm-lint ## go vet, exportcheck, helm lint --strict and golangci-lint (built at a pinned version by hack/build-lint.sh)
	hack/build-lint.sh
	$(TOOLS_DIR)/bin/golangci-lint run ./...
	$(TOOLS_DIR)/bin/golangci-lint run --build-tags e2e ./test/...

bench: ## Benchmarks: probe of the 2-GPU fixture (NVML mocked, and in its real child beside a GPU-less node), DMA check against the fake libcuda and libamdhip64
	go test -run '^$$' -bench . -benchmem ./pkg/...

fuzz: ## Run each parser fuzzer for FUZZTIME (default 20s)
	hack/fuzz.sh $(or $(FUZZTIME),20s)

footprint: build tools ## Binary size, peak and idle RSS beside nfd-worker's, checked against the targets (docs/footprint.md)
	hack/footprint.sh

manifests: ## Render deploy/manifests (and the chart's dashboard copy) from the Helm chart
	hack/render-manifests.sh

helm-lint: helm ## helm lint --strict the chart with each test value set
	for f in test/deploy/testdata/values/*.yaml; do \
	  $(TOOLS_DIR)/bin/helm lint --strict deploy/helm/pin-feature-daemon --namespace pin-feature-daemon --values $$f; done

image: ## Build the linux/amd64+arm64 image without a container engine: _output/image/{oci,pin-feature-daemon.tar}
	IMAGE=$(IMAGE) VERSION=$(VERSION) REVISION=$(REVISION) hack/build-image.sh

image-docker: ## Build the image from the Dockerfile with docker or podman (the same binary on distroless)
	@test -n "$(CONTAINER_ENGINE)" || { echo "make image-docker: no docker or podman on this machine" >&2; exit 1; }
	$(CONTAINER_ENGINE) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

clean: ## Remove build outputs (keeps the tools cache)
	rm -rf bin _output
