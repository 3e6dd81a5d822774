package bench

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

func TestOptionsWithReport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cgroup *detector.CgroupMemory
		want   uint64
	}{
		{name: "no cgroup", want: 0},
		{name: "unlimited", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Unlimited: true}, UsageBytes: 5}, want: 0},
		{name: "limited", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Bytes: 1000}, UsageBytes: 400}, want: 600},
		{name: "full", cgroup: &detector.CgroupMemory{Limit: detector.Limit{Bytes: 1000}, UsageBytes: 1200}, want: 1},
	}
	for _, tc := range tests {
		rep := &detector.Report{BootID: "b", Driver: detector.DriverInfo{Version: "570"},
			Memory: detector.MemoryFacts{MemAvailableBytes: 42, Cgroup: tc.cgroup}}
		o := Options{CgroupHeadroom: 99}.WithReport(rep)
		require.Equal(t, "b", o.BootID, tc.name)
		require.Equal(t, "570", o.DriverVersion, tc.name)
		require.Equal(t, uint64(42), o.HostMemAvailable, tc.name)
		require.Equal(t, tc.want, o.CgroupHeadroom, tc.name)
	}
}
