# shellcheck shell=bash
# The one place that names the Go toolchain this repository builds with. Sourced by .ci/run and every
# hack/ script that runs go; the Makefile reads GO_TOOLCHAIN from this file and exports GOTOOLCHAIN for
# its recipes; the Dockerfile's ARG GOTOOLCHAIN must say the same (make vet checks).
#
# A machine starts on its own Go (1.26.8 on the CI kind, where `go env GOTOOLCHAIN` is `local`), so
# GOTOOLCHAIN must be set in the environment: the go command then takes this toolchain from the Go module
# proxy once (about 76 MB) and runs it. go.mod's `go` line names the same version, so a build that forgot
# GOTOOLCHAIN stops with "go.mod requires go >= ..." instead of building with an older standard library.
# Bump: change the version here, in the Dockerfile's ARG GOTOOLCHAIN and in go.mod's `go` line.
GO_TOOLCHAIN=go1.27.3
# A GOTOOLCHAIN already set in the environment (e.g. go1.27.3+auto, or a newer release to try) wins.
export GOTOOLCHAIN=${GOTOOLCHAIN:-${GO_TOOLCHAIN}}
# The go command switches toolchains only in module mode: a tool that runs `go` with GO111MODULE=off (as
# golang.org/x/tools' go/packages does, in govulncheck and golangci-lint, to learn the Go version) would get
# the machine's own Go and type-check the standard library as that older version. So the chosen toolchain's
# own bin directory goes first on PATH.
if _pfd_goroot=$(go env GOROOT 2>/dev/null) && [[ -x ${_pfd_goroot}/bin/go ]]; then
  export PATH=${_pfd_goroot}/bin:${PATH}
fi
unset _pfd_goroot
