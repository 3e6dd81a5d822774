package benchchild

import (
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

const (
	// maxPrefaultThreads bounds the threads that fault one region in.
	maxPrefaultThreads = 4
	// minPrefaultShare is the smallest share of a region worth a thread of its own.
	minPrefaultShare = 64 << 20
)

// prefault makes every page of b (page-aligned, as mmap returns it) resident and writable, so that the
// pageable copies time the copies and the registrations time the pinning, not page faults. Faulting in is
// the kernel's work a page at a time (allocate, zero, map): for the pin trial's 1 GiB region it is most of
// the trial's untimed time, and it scales with cores. So b is split into page-aligned shares of at least
// minPrefaultShare, one a thread, at most maxPrefaultThreads, and never more threads than the CPUs the
// calling thread may run on: each thread takes the calling thread's affinity (the GPU's local CPUs), so that
// first touch still puts every page on the GPU's NUMA node. Nothing is timed meanwhile.
func prefault(b []byte) {
	var cpus unix.CPUSet
	threads := 1
	if err := unix.SchedGetaffinity(0, &cpus); err == nil {
		threads = min(maxPrefaultThreads, cpus.Count(), len(b)/minPrefaultShare)
	}
	if threads <= 1 {
		populate(b)
		return
	}
	page := unix.Getpagesize()
	share := (len(b)/threads + page - 1) &^ (page - 1)
	var wg sync.WaitGroup
	for off := 0; off < len(b); off += share {
		part := b[off:min(off+share, len(b))]
		wg.Go(func() {
			runtime.LockOSThread() // never unlocked: the thread carries the affinity and exits with the goroutine
			if err := unix.SchedSetaffinity(0, &cpus); err != nil {
				klog.V(2).InfoS("Faulting in without CPU affinity", "bytes", len(part), "err", err)
			}
			populate(part)
		})
	}
	wg.Wait()
}

// populate faults b in on the calling thread: one madvise(MADV_POPULATE_WRITE) (Linux 5.14), else a write
// to each page.
func populate(b []byte) {
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err == nil {
		return
	}
	page := unix.Getpagesize()
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
}
