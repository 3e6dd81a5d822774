package bench

import (
	"slices"
)

// SharedUplink is an upstream PCIe port (a switch or root port above the GPUs) that two or more of the
// checked GPUs reach the host through: their copies share its link when they run at the same time.
type SharedUplink struct {
	// Port is the port's PCI address ("0000:15:01.0").
	Port string `json:"port"`
	// GPUs are the inventory indices of the GPUs below it, ascending.
	GPUs []int `json:"gpus"`
}

// sharedUplinks groups targets by the upstream ports on their PCIe paths (Target.UpstreamPCIAddresses, as
// the detector walked them) and returns the ports two or more of them share, sorted by address. A port
// shared by exactly the same GPUs as a port below it says nothing more and is still listed: each is a link
// the GPUs share. Targets without a path (WSL, emulated bridges left out) share nothing.
func sharedUplinks(targets []Target) []SharedUplink {
	below := map[string][]int{}
	for i := range targets {
		t := &targets[i]
		seen := map[string]bool{}
		for _, p := range t.UpstreamPCIAddresses {
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			below[p] = append(below[p], t.Index)
		}
	}
	var out []SharedUplink
	for port, gpus := range below {
		if len(gpus) < 2 {
			continue
		}
		slices.Sort(gpus)
		out = append(out, SharedUplink{Port: port, GPUs: slices.Compact(gpus)})
	}
	slices.SortFunc(out, func(a, b SharedUplink) int {
		if a.Port < b.Port {
			return -1
		}
		if a.Port > b.Port {
			return 1
		}
		return 0
	})
	return out
}
