//go:build !cgo

package bench

import "errors"

// openDriver needs cgo: a binary built without it cannot load the driver library.
func openDriver(path string) (gpuDriver, error) {
	return nil, errors.New("open " + path + ": this binary was built without cgo, which the DMA check needs")
}
