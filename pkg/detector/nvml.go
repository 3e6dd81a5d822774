package detector

import (
	"errors"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

// NVML is how the detector learns what the NVIDIA Management Library says, one snapshot a pass (GFD's
// resource.Manager is the model of a narrow seam). The daemon's is childNVML (nvmlchild.go): the snapshot is
// taken in a child process by internal/nvmlchild, the only package that loads go-nvml. Tests pass
// internal/nvmlchild's Library over go-nvml's mock, which reads the same snapshot in-process.
type NVML interface {
	Init() error
	Shutdown() error
	// Read returns every NVML fact (after a successful Init): internal/nvmlsnap's Snapshot.
	Read() *nvmlsnap.Snapshot
}

// errNotSupported is matched by NVML errors that mean "this GPU or driver does not have that fact": the
// detector treats them as absence.
var errNotSupported = nvmlsnap.ErrNotSupported

// errNoSnapshot is the fact error of an NVML that answered Init but gave no snapshot.
var errNoSnapshot = errors.New("nvml gave no snapshot")
