//go:build !cgo

package benchchild

import "errors"

// openDriver and openHIP need cgo: a binary built without it cannot load a runtime library.
func openDriver(path string) (gpuDriver, error) { return nil, noCgo(path) }

func openHIP(path string) (gpuDriver, error) { return nil, noCgo(path) }

func noCgo(path string) error {
	return errors.New("open " + path + ": this binary was built without cgo, which the DMA check needs")
}
