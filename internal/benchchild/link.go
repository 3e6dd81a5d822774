package benchchild

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// theoreticalBytesPerSecond is the per-direction rate of a PCIe link of the given capability, 0 when unknown.
func theoreticalBytesPerSecond(c *detector.LinkCapability) float64 {
	if c == nil {
		return 0
	}
	return pcie.BytesPerSecond(c.Gen, c.Width)
}

// sysfs reads PCIe link attributes under one sysfs root, confined to it (internal/hostfs). The child builds
// one per request.
type sysfs struct {
	root  string
	files hostfs.Confined
}

// newSysfs returns the reader of the sysfs tree at root ("" reads nothing).
func newSysfs(root string) sysfs {
	return sysfs{root: root, files: hostfs.Under(root, "/sys")}
}

// readLink reads the current generation and width of the PCI device at addr under sys's sysfs root; false
// when either is unreadable, malformed or unknown. Reads go through internal/hostfs: inside the
// root, regular files only, size-capped.
func readLink(host sysfs, addr string) (detector.LinkCapability, bool) {
	dir := filepath.Join(host.root, "bus", "pci", "devices", addr)
	speed, err := host.files.ReadFile(filepath.Join(dir, "current_link_speed"))
	if err != nil {
		return detector.LinkCapability{}, false
	}
	width, err := host.files.ReadFile(filepath.Join(dir, "current_link_width"))
	if err != nil {
		return detector.LinkCapability{}, false
	}
	_, g, errG := pcie.ParseSpeed(string(speed))
	w, errW := pcie.ParseWidth(string(width))
	if errG != nil || errW != nil || g == 0 || w == 0 {
		return detector.LinkCapability{}, false
	}
	return detector.LinkCapability{Gen: g, Width: w}, true
}

// linkSampler reads the current link of a GPU and of the ports above it while copies run. An idle NVIDIA
// GPU trains its link down (Gen1 at P8), so only the link under load says whether it is degraded. Each
// hop keeps the best generation and width it showed; the link under load is the weakest hop.
type linkSampler struct {
	sys      sysfs
	addrs    []string
	interval time.Duration

	mu      sync.Mutex
	best    []detector.LinkCapability
	seen    []bool
	samples int
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// startLinkSampler samples the links of addrs (the GPU first, then its upstream ports) under sys's sysfs root
// every interval until Stop. It reads nothing when addrs is empty or sys has no sysfs root.
func startLinkSampler(sys sysfs, addrs []string, interval time.Duration) *linkSampler {
	s := &linkSampler{
		sys:      sys,
		addrs:    addrs,
		interval: interval,
		best:     make([]detector.LinkCapability, len(addrs)),
		seen:     make([]bool, len(addrs)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.loop()
	return s
}

func (s *linkSampler) loop() {
	defer close(s.done)
	if len(s.addrs) == 0 || s.sys.root == "" {
		return
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *linkSampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.addrs {
		l, ok := readLink(s.sys, a)
		if !ok {
			continue
		}
		s.seen[i] = true
		s.best[i].Gen = max(s.best[i].Gen, l.Gen)
		s.best[i].Width = max(s.best[i].Width, l.Width)
	}
	s.samples++
}

// Stop ends sampling (after one last sample) and returns the link under load: the best generation and width
// of the hop whose best carried the least per-direction bandwidth (both from that one hop), nil when no hop
// could be read. Calling it again returns the same.
func (s *linkSampler) Stop() (*detector.LinkCapability, int) {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		if len(s.addrs) > 0 && s.sys.root != "" {
			s.sample()
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	var out *detector.LinkCapability
	for i := range s.addrs {
		if !s.seen[i] {
			continue
		}
		if c := s.best[i]; out == nil || pcie.BytesPerSecond(c.Gen, c.Width) < pcie.BytesPerSecond(out.Gen, out.Width) {
			out = &c
		}
	}
	return out, s.samples
}

// belowCapability reports whether the weakest link under load carried less than the capability's link: both
// are one real link each, compared by per-direction bandwidth (a Gen5 x8 port under a Gen3 x16 uplink is the
// uplink's 15.75 GB/s, not a "Gen3 x8" that exists nowhere).
func belowCapability(under, capability *detector.LinkCapability) bool {
	if under == nil || capability == nil {
		return false
	}
	return pcie.BytesPerSecond(under.Gen, under.Width) < pcie.BytesPerSecond(capability.Gen, capability.Width)
}
