# syntax=docker/dockerfile:1
#
# The pin-feature-daemon image for people with docker or podman: `make image-docker`.
#
# `make image` (hack/build-image.sh) builds the released image without a container engine: the same `make build`
# binary for linux/amd64 and linux/arm64 (cross-compiled with gcc-aarch64-linux-gnu), on a base assembled from
# Debian bookworm's libc6 package plus distroless' passwd/group (user nonroot, 65532), written reproducibly by
# hack/tools/image. Both run the binary as 65532 with the same entrypoint, command, port and labels; the labels'
# static values live here and hack/build-image.sh reads them from this file. The one difference: distroless/base
# also carries CA certificates and tzdata, which the daemon does not use.
#
# The binary is built with cgo (the DMA check
# dlopens libcuda.so.1 from a small C shim) by the same `make build` recipe as a local build, on the same
# Debian release (bookworm, glibc 2.36) as the runtime base, so every glibc symbol it needs is there.
#
# Nothing from CUDA or the NVIDIA driver is in the image: the NVIDIA container runtime (or CDI) injects
# libcuda.so.1, libnvidia-ml.so.1 and the /dev/nvidia* device files into the container when the pod sets
# NVIDIA_VISIBLE_DEVICES (the Helm chart does). Without them the daemon still probes the node and reports the
# DMA check as skipped.

# The base image's Go only starts the build: GOTOOLCHAIN makes the go command take the toolchain that every
# build of this repository uses (hack/toolchain.sh names it; `make vet` checks that this line agrees) from
# the Go module proxy, as on a development machine. go.mod's `go` line asks for it too, so nothing older
# can build the binary.
ARG GO_VERSION=1.26.8
ARG GOTOOLCHAIN=go1.27.3

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
ARG GOTOOLCHAIN
ENV GOTOOLCHAIN=${GOTOOLCHAIN}
WORKDIR /src
# Module downloads first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Stamped into pin_feature_daemon_build_info and `pin-feature-daemon version`; .git is not in the build context.
ARG VERSION=dev
ARG REVISION=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    make build VERSION="${VERSION}" REVISION="${REVISION}" \
    && ./bin/pin-feature-daemon version

# distroless/base: glibc (and so dlopen) and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/base-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="pin-feature-daemon" \
      org.opencontainers.image.description="Publishes whether pinned host memory works and the measured host-device DMA bandwidth as NFD labels and Prometheus metrics" \
      org.opencontainers.image.source="https://github.com/pinmemory/pin-feature-daemon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /src/bin/pin-feature-daemon /usr/bin/pin-feature-daemon
# The image runs as the distroless nonroot user. The Helm chart runs the DaemonSet as uid 0 with every
# capability dropped, because only the owner can write the root-owned hostPath state and features.d directories.
USER 65532:65532
EXPOSE 9471
ENTRYPOINT ["/usr/bin/pin-feature-daemon"]
CMD ["probe"]
