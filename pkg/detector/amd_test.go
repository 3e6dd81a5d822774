package detector

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// Two MI300X on one root complex, gpu_ids 51166 and 2760, amdgpu bound and /dev/kfd present.
const (
	amdGPU0, amdGPU1   = "pci0000:00/0000:00:01.1/0000:05:00.0", "pci0000:00/0000:00:01.2/0000:06:00.0"
	amdAddr0, amdAddr1 = "0000:05:00.0", "0000:06:00.0"
	amdID0, amdID1     = uint32(51166), uint32(2760)
)

// amdNode is a node with the first MI300X (and the second with two), its KFD topology, amdgpu's attributes and
// an empty KFD process list.
func amdNode(two bool) *tree {
	t := newTree().
		pci(fn{path: amdGPU0, vendor: "0x1002", device: "0x74a1", class: "0x120000", driver: "amdgpu"}).
		amdgpu(amdGPU0, "3", "206141652992", "1073741824").
		kfdNode(0, kfdProps{cpuCores: 96}).
		kfdNode(1, kfdProps{simds: 1216, gfxTarget: 90402, vendor: 0x1002, device: 0x74a1, location: 0x05 << 8,
			renderMinor: 128, gpuID: amdID0}).
		dir("sys/class/kfd/kfd/proc").
		devNode("kfd", "dri/renderD128")
	if two {
		t.pci(fn{path: amdGPU1, vendor: "0x1002", device: "0x74a1", class: "0x120000", driver: "amdgpu"}).
			amdgpu(amdGPU1, "0", "206141652992", "299892736").
			kfdNode(2, kfdProps{simds: 1216, gfxTarget: 90402, vendor: 0x1002, device: 0x74a1, location: 0x06 << 8,
				renderMinor: 136, gpuID: amdID1}).
			devNode("dri/renderD136")
	}
	return t
}

// idleOn is a process that bound the GPUs with ids and uses none of them.
func idleOn(pid int, ids ...uint32) kfdProcFiles {
	pr := kfdProcFiles{pid: pid, pasid: 32768 + pid%1000, vram: map[uint32]string{}, queues: map[int]uint32{}}
	for _, id := range ids {
		pr.vram[id] = "0\n"
	}
	return pr
}

func (pr kfdProcFiles) withVRAM(id uint32, v string) kfdProcFiles { pr.vram[id] = v; return pr }
func (pr kfdProcFiles) withQueue(q int, id uint32) kfdProcFiles   { pr.queues[q] = id; return pr }

func intp(v int) *int { return &v }

// amdCase is one case of TestAMDDevice.
type amdCase struct {
	name   string
	two    bool
	edit   func(*tree)
	errors []string                         // fact errors expected
	gpu0   func(*testing.T, *AMDDevice)     // the first GPU's facts
	gpu1   func(*testing.T, *AMDDevice)     // the second's, with two
	check  func(*testing.T, *Report, *tree) // anything else
}

func TestAMDDevice(t *testing.T) {
	t.Parallel()
	known := func(n int) func(*testing.T, *AMDDevice) {
		return func(t *testing.T, a *AMDDevice) {
			require.NotNil(t, a)
			require.True(t, a.ProcessesKnown, "processes known")
			require.Equal(t, n, a.ComputeProcesses)
		}
	}
	unknown := func(t *testing.T, a *AMDDevice) {
		require.NotNil(t, a)
		require.False(t, a.ProcessesKnown, "processes known")
		require.Zero(t, a.ComputeProcesses)
	}
	tests := []amdCase{
		{
			name: "every fact read; no process",
			gpu0: func(t *testing.T, a *AMDDevice) {
				require.Equal(t, &AMDDevice{GPUID: amdID0, ProcessesKnown: true, BusyPercent: intp(3),
					MemoryTotalBytes: 206141652992, MemoryFreeBytes: 206141652992 - 1073741824}, a)
			},
		},
		{
			name: "a queue on the GPU counts, with no VRAM",
			edit: func(t *tree) { t.kfdProc(idleOn(100, amdID0).withQueue(0, amdID0).withQueue(1, amdID0)) },
			gpu0: known(1),
		},
		{
			name: "VRAM allocated on the GPU counts, with no queue",
			edit: func(t *tree) { t.kfdProc(idleOn(100, amdID0).withVRAM(amdID0, "2147483648\n")) },
			gpu0: known(1),
		},
		{
			name: "a process bound but idle, or using another GPU, does not count",
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0))
				t.kfdProc(idleOn(101, amdID0).withVRAM(4242, "4096\n").withQueue(0, 4242))
				t.kfdProc(idleOn(102))
			},
			gpu0: known(0),
		},
		{
			name: "two GPUs, each with its own processes; one process on both",
			two:  true,
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0, amdID1).withQueue(0, amdID0))
				t.kfdProc(idleOn(101, amdID0, amdID1).withVRAM(amdID0, "8192\n"))
				t.kfdProc(idleOn(102, amdID0, amdID1).withVRAM(amdID1, "8192\n").withQueue(3, amdID0))
				t.kfdProc(idleOn(103, amdID0, amdID1))
			},
			gpu0: known(3),
			gpu1: func(t *testing.T, a *AMDDevice) {
				known(1)(t, a)
				require.Equal(t, amdID1, a.GPUID)
				require.Equal(t, intp(0), a.BusyPercent)
			},
		},
		{
			name: "no kfd/proc: processes unknown, no error",
			edit: func(t *tree) { t.dirs = nil },
			gpu0: func(t *testing.T, a *AMDDevice) {
				unknown(t, a)
				require.Equal(t, amdID0, a.GPUID)
				require.Equal(t, intp(3), a.BusyPercent)
			},
		},
		{
			name: "no gpu_id: processes unknown, however busy kfd/proc is",
			edit: func(t *tree) {
				delete(t.files, "sys/class/kfd/kfd/topology/nodes/1/gpu_id")
				t.kfdProc(idleOn(100, amdID0).withQueue(0, amdID0))
			},
			gpu0: func(t *testing.T, a *AMDDevice) {
				unknown(t, a)
				require.Zero(t, a.GPUID)
				require.NotZero(t, a.MemoryFreeBytes)
			},
		},
		{
			name:   "malformed gpu_id: no id, an error",
			edit:   func(t *tree) { t.file("sys/class/kfd/kfd/topology/nodes/1/gpu_id", "0x1234\n") },
			errors: []string{"kfd/1/gpu_id"},
			gpu0:   func(t *testing.T, a *AMDDevice) { unknown(t, a); require.Zero(t, a.GPUID) },
		},
		{
			name: "no kfd topology and no amdgpu attributes: no AMD facts",
			edit: func(t *tree) {
				for p := range t.files {
					if p == "sys/class/kfd/kfd/topology/nodes/1/properties" || p == "sys/class/kfd/kfd/topology/nodes/1/gpu_id" ||
						p == "sys/devices/"+amdGPU0+"/gpu_busy_percent" ||
						p == "sys/devices/"+amdGPU0+"/mem_info_vram_total" ||
						p == "sys/devices/"+amdGPU0+"/mem_info_vram_used" {
						delete(t.files, p)
					}
				}
			},
			gpu0: func(t *testing.T, a *AMDDevice) { require.Nil(t, a) },
		},
		{
			name: "a process that exits while being read is no error",
			edit: func(t *tree) {
				t.link("sys/class/kfd/kfd/proc/100", "gone")
				t.kfdProc(idleOn(101, amdID0).withQueue(0, amdID0))
			},
			gpu0: known(1),
		},
		{
			name: "entries that are no process are skipped",
			edit: func(t *tree) {
				t.file("sys/class/kfd/kfd/proc/self/vram_51166", "4096\n")
			},
			gpu0: known(0),
		},
		{
			name: "a compute-partitioned GPU: processes on any partition count",
			edit: func(t *tree) {
				// CPX: partition 1's node id ORed into location_id's function bits, partition 2's into bits 28-31.
				t.kfdNode(3, kfdProps{simds: 152, gfxTarget: 90402, vendor: 0x1002, device: 0x74a1,
					location: 0x05<<8 | 1, renderMinor: 129, gpuID: 7001})
				t.kfdNode(4, kfdProps{simds: 152, gfxTarget: 90402, vendor: 0x1002, device: 0x74a1,
					location: 2<<28 | 0x05<<8, renderMinor: 130, gpuID: 7002})
				t.kfdProc(idleOn(100, amdID0, 7001, 7002).withQueue(0, 7001))
				t.kfdProc(idleOn(101, amdID0, 7001, 7002).withVRAM(7002, "4096\n"))
				t.kfdProc(idleOn(102, amdID0, 7001, 7002))
			},
			gpu0: func(t *testing.T, a *AMDDevice) { known(2)(t, a); require.Equal(t, amdID0, a.GPUID) },
		},
	}
	for _, bad := range []struct{ attr, value string }{
		{"gpu_busy_percent", "101"}, {"gpu_busy_percent", "-1"}, {"gpu_busy_percent", "busy"},
		{"gpu_busy_percent", ""}, {"mem_info_vram_total", "-206141652992"}, {"mem_info_vram_total", "192G"},
		{"mem_info_vram_used", "1.5e9"}, {"mem_info_vram_used", "-1"},
		{"mem_info_vram_used", "306141652992"}, // above the total
	} {
		tests = append(tests, amdCase{
			name:   fmt.Sprintf("malformed %s %q: no fact, an error", bad.attr, bad.value),
			edit:   func(t *tree) { t.file("sys/devices/"+amdGPU0+"/"+bad.attr, bad.value+"\n") },
			errors: []string{"pci/" + amdAddr0 + "/" + bad.attr},
			gpu0: func(t *testing.T, a *AMDDevice) {
				known(0)(t, a)
				if bad.attr == "gpu_busy_percent" {
					require.Nil(t, a.BusyPercent)
					require.NotZero(t, a.MemoryFreeBytes)
					return
				}
				require.Equal(t, intp(3), a.BusyPercent)
				require.Zero(t, a.MemoryFreeBytes, "free")
				if bad.attr == "mem_info_vram_used" && bad.value != "306141652992" {
					require.Equal(t, uint64(206141652992), a.MemoryTotalBytes, "the total stands")
				} else {
					require.Zero(t, a.MemoryTotalBytes, "total")
				}
			},
		})
	}
	for _, bad := range []string{"-4096\n", "lots\n", "\n", "0x1000\n"} {
		tests = append(tests, amdCase{
			name: fmt.Sprintf("malformed vram_<id> %q: processes unknown on that GPU only, an error", bad),
			two:  true,
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0, amdID1).withVRAM(amdID0, bad))
				t.kfdProc(idleOn(101, amdID0, amdID1).withVRAM(amdID1, "4096\n"))
			},
			errors: []string{fmt.Sprintf("kfd/proc/100/vram_%d", amdID0)},
			gpu0:   unknown,
			gpu1:   known(1),
		})
	}
	tests = append(tests, []amdCase{
		{
			name: "a malformed vram_<id> of a process that uses the GPU anyway still counts it",
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0).withVRAM(amdID0, "many\n").withQueue(0, amdID0))
			},
			errors: []string{fmt.Sprintf("kfd/proc/100/vram_%d", amdID0)},
			gpu0:   known(1),
		},
		{
			name:   "a malformed queue gpuid: processes unknown on every GPU the process does not use",
			two:    true,
			edit:   func(t *tree) { t.kfdProc(idleOn(100, amdID0, amdID1).withVRAM(amdID1, "4096\n").withQueue(0, 0)) },
			errors: []string{"kfd/proc/100/queues/0/gpuid"},
			gpu0:   unknown,
			gpu1:   known(1),
		},
		{
			name: "an unreadable queue gpuid (not a regular file): processes unknown, an error",
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0))
				t.dir("sys/class/kfd/kfd/proc/100/queues/0/gpuid")
			},
			errors: []string{"kfd/proc/100/queues/0/gpuid"},
			gpu0:   unknown,
		},
		{
			name: "an unreadable vram_<id> (not a regular file): processes unknown, an error",
			edit: func(t *tree) {
				t.kfdProc(idleOn(100))
				t.dir(fmt.Sprintf("sys/class/kfd/kfd/proc/100/vram_%d", amdID0))
			},
			errors: []string{fmt.Sprintf("kfd/proc/100/vram_%d", amdID0)},
			gpu0:   unknown,
		},
		{
			name: "a queue whose gpuid is gone (destroyed while read) is no error",
			edit: func(t *tree) {
				t.kfdProc(idleOn(100, amdID0))
				t.dir("sys/class/kfd/kfd/proc/100/queues/0")
			},
			gpu0: known(0),
		},
		{
			name: "more processes than the bound: processes unknown, an error",
			edit: func(t *tree) {
				for pid := 1; pid <= maxKFDProcs+1; pid++ {
					t.file(fmt.Sprintf("sys/class/kfd/kfd/proc/%d/vram_%d", pid, amdID0), "0\n")
				}
			},
			errors: []string{"kfd/proc"},
			gpu0:   unknown,
		},
		{
			name: "a rocm GPU without KFD still gets amdgpu's facts",
			edit: func(t *tree) {
				for p := range t.files {
					if len(p) > len("sys/class/kfd") && p[:len("sys/class/kfd")] == "sys/class/kfd" {
						delete(t.files, p)
					}
				}
				t.dirs = nil
				delete(t.files, "dev/kfd")
			},
			gpu0: func(t *testing.T, a *AMDDevice) {
				unknown(t, a)
				require.Equal(t, intp(3), a.BusyPercent)
				require.Zero(t, a.GPUID)
			},
			check: func(t *testing.T, r *Report, _ *tree) {
				require.Equal(t, "dev/kfd missing", r.Accelerators[0].DriverProblem)
			},
		},
	}...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := amdNode(tc.two)
			if tc.edit != nil {
				tc.edit(tr)
			}
			r := probeTree(t, tr)
			errs := factErrors(r)
			require.Len(t, errs, len(tc.errors), "errors: %v", r.Errors)
			for _, fact := range tc.errors {
				require.Contains(t, errs, fact, "errors: %v", r.Errors)
			}
			want := 1
			if tc.two {
				want = 2
			}
			require.Len(t, r.Accelerators, want)
			require.Equal(t, amdAddr0, r.Accelerators[0].PCIAddress)
			tc.gpu0(t, r.Accelerators[0].AMD)
			if tc.two {
				require.Equal(t, amdAddr1, r.Accelerators[1].PCIAddress)
				tc.gpu1(t, r.Accelerators[1].AMD)
			}
			if tc.check != nil {
				tc.check(t, r, tr)
			}
		})
	}
}

// TestNoAMDFactsOffROCm: amdgpu-named files on an NVIDIA GPU's function are not read.
func TestNoAMDFactsOffROCm(t *testing.T) {
	t.Parallel()
	tr := newTree().pci(fn{path: "pci0000:00/0000:00:02.0", vendor: "0x10de", device: "0x2330", class: "0x030200",
		driver: "nvidia"}).amdgpu("pci0000:00/0000:00:02.0", "50", "1000", "10").devNode("nvidiactl", "nvidia0")
	r := probeTree(t, tr)
	require.Len(t, r.Accelerators, 1)
	require.Nil(t, r.Accelerators[0].AMD)
}

func TestParseGPUID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]uint32{"51166\n": 51166, "0": 0, "4294967295": 4294967295} {
		got, err := parseGPUID(s)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
	for _, s := range []string{"4294967296", "-1", "+5", "0x10", "", "gpu"} {
		_, err := parseGPUID(s)
		require.ErrorIs(t, err, errMalformed, s)
	}
}

// TestAMDGPUModuleVersion: the amdgpu module's version keys the stored measurements of an AMD node; its
// srcversion stands in where the module declares none; garbage is an error, not a key.
func TestAMDGPUModuleVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, version, srcversion, want, wantErr string
	}{
		{name: "dkms version", version: "6.12.12\n", srcversion: "4E8C6E1B7A0D2F3C5B9A817\n", want: "6.12.12"},
		{name: "only srcversion", srcversion: "4E8C6E1B7A0D2F3C5B9A817\n", want: "srcversion 4E8C6E1B7A0D2F3C5B9A817"},
		{name: "built in", want: ""},
		{name: "garbage version", version: "6.12 \x00evil\n", srcversion: "ABC\n", want: "srcversion ABC",
			wantErr: "amdgpu/version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := amdNode(false)
			if tc.version != "" {
				tr.file("sys/module/amdgpu/version", tc.version)
			}
			if tc.srcversion != "" {
				tr.file("sys/module/amdgpu/srcversion", tc.srcversion)
			}
			r := probeTree(t, tr)
			require.Equal(t, tc.want, r.Driver.AMDGPUVersion)
			var facts []string
			for _, e := range r.Errors {
				facts = append(facts, e.Fact)
			}
			if tc.wantErr != "" {
				require.Contains(t, facts, tc.wantErr)
			} else {
				require.NotContains(t, facts, "amdgpu/version")
			}
		})
	}
	require.Empty(t, probeTree(t, newTree().file("sys/module/amdgpu/version", "6.12.12\n")).Driver.AMDGPUVersion,
		"no AMD GPU, no amdgpu key")
}
