package detector

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIOMMUFacts(t *testing.T) {
	t.Parallel()
	gpus := func() *tree {
		return newTree().pci(
			gpuAt("pci0000:00/0000:00:01.0", link(gen5, 16, gen5, 16)),
			gpuAt("pci0000:80/0000:80:01.0", link(gen5, 16, gen5, 16)),
		)
	}
	tests := []struct {
		name string
		tree func() *tree
		want *IOMMUFacts
	}{
		{name: "no iommu_groups directory", tree: gpus, want: nil},
		{
			name: "IOMMU off: no groups",
			tree: func() *tree { return gpus().dir("sys/kernel/iommu_groups") },
			want: &IOMMUFacts{Groups: 0},
		},
		{
			name: "each GPU in its own group, one of them passed through",
			tree: func() *tree {
				return gpus().
					file("sys/kernel/iommu_groups/0/type", "DMA-FQ\n").
					file("sys/kernel/iommu_groups/17/type", "DMA-FQ\n").
					file("sys/kernel/iommu_groups/42/type", "identity\n").
					link("sys/devices/pci0000:00/0000:00:01.0/iommu_group", "../../../kernel/iommu_groups/17").
					link("sys/devices/pci0000:80/0000:80:01.0/iommu_group", "../../../kernel/iommu_groups/42")
			},
			want: &IOMMUFacts{Groups: 3, GroupsByMode: map[string]int{"DMA-FQ": 2, "identity": 1},
				Accelerators: []AcceleratorIOMMU{
					{PCIAddress: "0000:00:01.0", Group: "17", Mode: "DMA-FQ"},
					{PCIAddress: "0000:80:01.0", Group: "42", Mode: "identity"},
				}},
		},
		{
			name: "a kernel before 5.11 has groups without a type",
			tree: func() *tree {
				return gpus().dir("sys/kernel/iommu_groups/3").
					link("sys/devices/pci0000:00/0000:00:01.0/iommu_group", "../../../kernel/iommu_groups/3")
			},
			want: &IOMMUFacts{Groups: 1, Accelerators: []AcceleratorIOMMU{{PCIAddress: "0000:00:01.0", Group: "3"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := probeTree(t, tc.tree())
			require.Empty(t, r.Errors)
			require.Equal(t, tc.want, r.Memory.IOMMUGroups)
			if tc.want != nil && len(tc.want.Accelerators) > 0 {
				require.Equal(t, tc.want.Accelerators[0].Mode, r.Memory.IOMMUGroups.Mode("0000:00:01.0"))
			}
		})
	}
}
