package benchchild

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/pcie"
	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// TestReadLink: the sampler reads every generation internal/pcie knows, and each gets a theoretical rate, so
// no generation is left without an efficiency.
func TestReadLink(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, g := range pcie.Generations() {
		addr := fmt.Sprintf("0000:%02x:00.0", g.Gen)
		writeLink(t, root, addr, strconv.FormatFloat(g.GTs, 'f', 1, 64)+" GT/s PCIe", 16)
		got, ok := readLink(newSysfs(root), addr)
		require.True(t, ok, "gen %d", g.Gen)
		require.Equal(t, detector.LinkCapability{Gen: g.Gen, Width: 16}, got)
		require.Positive(t, theoreticalBytesPerSecond(&got), "gen %d", g.Gen)
		require.Equal(t, pcie.BytesPerSecond(g.Gen, 16), theoreticalBytesPerSecond(&got))
	}
	for _, bad := range []struct {
		speed string
		width int
	}{
		{"Unknown", 16}, {"20.0 GT/s PCIe", 16}, {"fast GT/s", 16}, {"32.0 GT/s PCIe", 255}, {"32.0 GT/s PCIe", 0},
	} {
		writeLink(t, root, "0000:ff:00.0", bad.speed, bad.width)
		_, ok := readLink(newSysfs(root), "0000:ff:00.0")
		require.False(t, ok, "%s x%d", bad.speed, bad.width)
	}
	_, ok := readLink(newSysfs(root), "0000:fe:00.0")
	require.False(t, ok, "no such device")
	require.Zero(t, theoreticalBytesPerSecond(nil))
}

func TestLinkSampler(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	writeLink(t, root, "0000:1b:00.0", "2.5 GT/s PCIe", 16) // idle GPU: trained down
	writeLink(t, root, "0000:1a:00.0", "32.0 GT/s PCIe", 16)
	s := startLinkSampler(newSysfs(root), []string{"0000:1b:00.0", "0000:1a:00.0", "0000:ff:00.0"}, time.Millisecond)
	waitSamples(t, s, 1)
	writeLink(t, root, "0000:1b:00.0", "32.0 GT/s PCIe", 16) // under load
	waitSamples(t, s, 2)                                     // a whole sample after the write, however busy the machine
	writeLink(t, root, "0000:1b:00.0", "2.5 GT/s PCIe", 16)  // idle again before the last sample
	got, n := s.Stop()
	require.Equal(t, &detector.LinkCapability{Gen: 5, Width: 16}, got, "each hop keeps its best; the unreadable one is left out")
	require.Greater(t, n, 2)
	again, _ := s.Stop()
	require.Equal(t, got, again, "Stop is idempotent")

	// The weakest hop is one hop: an x16 GPU in an x8 port of a Gen5 switch whose uplink trains Gen3 x16 runs at
	// the uplink's Gen3 x16 (15.75 GB/s), not at a "Gen3 x8" no hop has, and matches that capability.
	writeLink(t, root, "0000:2b:00.0", "32.0 GT/s PCIe", 16)
	writeLink(t, root, "0000:2a:00.0", "32.0 GT/s PCIe", 8)
	writeLink(t, root, "0000:20:01.0", "8.0 GT/s PCIe", 16)
	got, _ = startLinkSampler(newSysfs(root), []string{"0000:2b:00.0", "0000:2a:00.0", "0000:20:01.0"}, time.Millisecond).Stop()
	require.Equal(t, &detector.LinkCapability{Gen: 3, Width: 16}, got)
	require.False(t, belowCapability(got, &detector.LinkCapability{Gen: 3, Width: 16}))
	require.True(t, belowCapability(&detector.LinkCapability{Gen: 3, Width: 8}, &detector.LinkCapability{Gen: 3, Width: 16}))
	require.True(t, belowCapability(&detector.LinkCapability{Gen: 4, Width: 16}, &detector.LinkCapability{Gen: 5, Width: 16}))

	got, _ = startLinkSampler(newSysfs(root), nil, time.Millisecond).Stop()
	require.Nil(t, got)
	got, _ = startLinkSampler(newSysfs(filepath.Join(root, "missing")), []string{"0000:1b:00.0"}, time.Millisecond).Stop()
	require.Nil(t, got)
}

// writeLink writes a fixture PCIe link for addr under sysRoot.
func writeLink(t *testing.T, sysRoot, addr, speed string, width int) {
	t.Helper()
	dir := filepath.Join(sysRoot, "bus", "pci", "devices", addr)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current_link_speed"), []byte(speed+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "current_link_width"), []byte(fmt.Sprintf("%d\n", width)), 0o644))
}

// waitSamples waits until s has taken n more samples than when called: the sampler's own count, not a sleep,
// so a loaded machine only makes the test slower.
func waitSamples(t *testing.T, s *linkSampler, n int) {
	t.Helper()
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.samples
	}
	want := count() + n
	require.Eventually(t, func() bool { return count() >= want }, time.Minute, time.Millisecond,
		"the sampler took no sample")
}
