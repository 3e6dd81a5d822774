// govulncheck (golang.org/x/vuln, pinned here) and mkvulndb (main.go: the vulndb module's OSV files into the
// database layout govulncheck reads), built by hack/build-vulncheck.sh for `make vet`; kept out of the root
// module on purpose.
module github.com/pinmemory/pin-feature-daemon/hack/tools/vuln

go 1.27.3

tool golang.org/x/vuln/cmd/govulncheck

require golang.org/x/mod v0.43.0

require (
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/telemetry v0.0.0-20261116191925-e77a43154acb // indirect
	golang.org/x/tools v0.53.0 // indirect
	golang.org/x/vuln v1.9.0 // indirect
)
