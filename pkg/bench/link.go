package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// laneBytesPerSecond is the per-direction payload rate of one PCIe lane by generation: the transfer rate
// times the line-code efficiency (8b/10b for Gen1-2, 128b/130b for Gen3-5, 242/256 FLIT for Gen6), in
// bytes per second. x16: Gen3 15.75 GB/s, Gen4 31.5, Gen5 63.0.
var laneBytesPerSecond = map[int]float64{
	1: 2.5e9 * 8 / 10 / 8,
	2: 5e9 * 8 / 10 / 8,
	3: 8e9 * 128 / 130 / 8,
	4: 16e9 * 128 / 130 / 8,
	5: 32e9 * 128 / 130 / 8,
	6: 64e9 * 242 / 256 / 8,
}

// TheoreticalBytesPerSecond is the per-direction rate of a PCIe link of the given capability, 0 when unknown.
func TheoreticalBytesPerSecond(c *detector.LinkCapability) float64 {
	if c == nil || c.Width <= 0 {
		return 0
	}
	return laneBytesPerSecond[c.Gen] * float64(c.Width)
}

// genFromSpeed maps a sysfs link speed ("16.0 GT/s PCIe", "2.5 GT/s") to a PCIe generation, 0 if unknown.
func genFromSpeed(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	gts, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	switch {
	case gts >= 64:
		return 6
	case gts >= 32:
		return 5
	case gts >= 16:
		return 4
	case gts >= 8:
		return 3
	case gts >= 5:
		return 2
	case gts >= 2.5:
		return 1
	}
	return 0
}

// readLink reads the current generation and width of the PCI device at addr under sysRoot.
func readLink(sysRoot, addr string) (detector.LinkCapability, bool) {
	dir := filepath.Join(sysRoot, "bus", "pci", "devices", addr)
	speed, err := os.ReadFile(filepath.Join(dir, "current_link_speed"))
	if err != nil {
		return detector.LinkCapability{}, false
	}
	width, err := os.ReadFile(filepath.Join(dir, "current_link_width"))
	if err != nil {
		return detector.LinkCapability{}, false
	}
	w, err := strconv.Atoi(strings.TrimSpace(string(width)))
	g := genFromSpeed(string(speed))
	if err != nil || w <= 0 || g == 0 {
		return detector.LinkCapability{}, false
	}
	return detector.LinkCapability{Gen: g, Width: w}, true
}

// linkSampler reads the current link of a GPU and of the ports above it while copies run. An idle NVIDIA
// GPU trains its link down (Gen1 at P8), so only the link under load says whether it is degraded. Each
// hop keeps the best generation and width it showed; the link under load is the weakest hop.
type linkSampler struct {
	sysRoot  string
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

// startLinkSampler samples the links of addrs (the GPU first, then its upstream ports) every interval until
// Stop. It reads nothing when addrs is empty.
func startLinkSampler(sysRoot string, addrs []string, interval time.Duration) *linkSampler {
	s := &linkSampler{
		sysRoot:  sysRoot,
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
	if len(s.addrs) == 0 || s.sysRoot == "" {
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
		l, ok := readLink(s.sysRoot, a)
		if !ok {
			continue
		}
		s.seen[i] = true
		s.best[i].Gen = max(s.best[i].Gen, l.Gen)
		s.best[i].Width = max(s.best[i].Width, l.Width)
	}
	s.samples++
}

// Stop ends sampling (after one last sample) and returns the link under load: the weakest hop's best
// generation and width, nil when no hop could be read. Calling it again returns the same.
func (s *linkSampler) Stop() (*detector.LinkCapability, int) {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		if len(s.addrs) > 0 && s.sysRoot != "" {
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
		if out == nil {
			c := s.best[i]
			out = &c
			continue
		}
		out.Gen = min(out.Gen, s.best[i].Gen)
		out.Width = min(out.Width, s.best[i].Width)
	}
	return out, s.samples
}

// belowCapability reports whether a link under load ran slower or narrower than the capability.
func belowCapability(under, capability *detector.LinkCapability) bool {
	if under == nil || capability == nil {
		return false
	}
	return under.Gen < capability.Gen || under.Width < capability.Width
}
