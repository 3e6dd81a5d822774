package detector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/hostfs"
)

func TestMemoryFacts(t *testing.T) {
	t.Parallel()
	const scope = "/kubepods.slice/pod.slice/cri.scope"
	tests := []struct {
		name   string
		tree   func() *tree
		sys    fakeSystem
		check  func(t *testing.T, m MemoryFacts)
		errors map[string]string
	}{
		{
			name: "cgroup v2 limit is the smallest on the path",
			tree: func() *tree {
				return newTree().file("proc/self/cgroup", "0::"+scope+"\n").
					cgroup2(scope, "max", "4096", map[string]string{"/kubepods.slice/pod.slice": "1048576",
						"/kubepods.slice": "8388608"})
			},
			check: func(t *testing.T, m MemoryFacts) {
				// The pods' parent cgroup (kubepods.slice) has its own limit: the node's allocatable memory.
				require.Equal(t, &CgroupMemory{Version: 2, Path: scope, Limit: Limit{Bytes: 1048576}, UsageBytes: 4096,
					PodsLimit: &Limit{Bytes: 8388608}}, m.Cgroup)
			},
		},
		{
			name: "cgroup v2 namespace root without memory.max is unlimited",
			tree: func() *tree { return newTree().file("proc/self/cgroup", "0::/\n").cgroup2("/", "", "", nil) },
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, &CgroupMemory{Version: 2, Path: "/", Limit: Limit{Unlimited: true}}, m.Cgroup)
			},
		},
		{
			name: "cgroup v2 namespace root of a container",
			tree: func() *tree {
				return newTree().file("proc/self/cgroup", "0::/\n").cgroup2("/", "268435456", "1024", nil)
			},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, &CgroupMemory{Version: 2, Path: "/", Limit: Limit{Bytes: 268435456}, UsageBytes: 1024}, m.Cgroup)
			},
		},
		{
			name: "cgroup v1 wins over the v2 entry of a hybrid hierarchy",
			tree: func() *tree {
				return newTree().file("proc/self/cgroup", "4:memory:/a/b\n1:name=systemd:/a/b\n0::/a/b\n").
					file("sys/fs/cgroup/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n").
					file("sys/fs/cgroup/memory/a/memory.limit_in_bytes", "2147483648\n").
					file("sys/fs/cgroup/memory/a/b/memory.usage_in_bytes", "77\n").
					file("sys/fs/cgroup/unified/a/b/memory.max", "1\n")
			},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, &CgroupMemory{Version: 1, Path: "/a/b", Limit: Limit{Bytes: 2147483648}, UsageBytes: 77}, m.Cgroup)
			},
		},
		{
			name: "huge page pools of every size, smallest first; a malformed count is the fact's error",
			tree: func() *tree {
				return newTree().file("proc/self/cgroup", "0::/gone\n").
					file("sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "8\n").
					file("sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "6\n").
					file("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "512\n").
					file("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "many\n").
					file("sys/kernel/mm/hugepages/not-a-pool/nr_hugepages", "1\n")
			},
			errors: map[string]string{"hugepages": "free_hugepages"},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, []HugePages{{Total: 512, SizeBytes: 2 << 20}, {Total: 8, Free: 6, SizeBytes: 1 << 30}},
					m.HugePagePools)
			},
		},
		{
			name:  "cgroup directory absent: no cgroup facts, no error",
			tree:  func() *tree { return newTree().file("proc/self/cgroup", "0::/gone\n") },
			check: func(t *testing.T, m MemoryFacts) { require.Nil(t, m.Cgroup) },
		},
		{
			name: "malformed cgroup files",
			tree: func() *tree {
				return newTree().file("proc/self/cgroup", "0::/a\n").
					file("sys/fs/cgroup/a/memory.max", "lots\n").file("sys/fs/cgroup/a/memory.current", "-5\n")
			},
			errors: map[string]string{"cgroup": "malformed"},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, &CgroupMemory{Version: 2, Path: "/a", Limit: Limit{Unlimited: true}}, m.Cgroup)
			},
		},
		{
			name:   "malformed proc/self/cgroup",
			tree:   func() *tree { return newTree().file("proc/self/cgroup", "nonsense\n") },
			errors: map[string]string{"cgroup": "not id:controllers:path"},
			check:  func(t *testing.T, m MemoryFacts) { require.Nil(t, m.Cgroup) },
		},
		{
			name: "meminfo with a bad line keeps the good ones",
			tree: func() *tree {
				return newTree().file("proc/meminfo", "MemTotal: 1024 kB\nMemAvailable: ??? kB\nSwapTotal: 2 kB\n"+
					"SwapFree: 1 kB\nHugePages_Total: 4\nHugePages_Free: 3\nHugepagesize: 1048576 kB\n")
			},
			errors: map[string]string{"meminfo": "MemAvailable"},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, uint64(1<<20), m.MemTotalBytes)
				require.Zero(t, m.MemAvailableBytes)
				require.Equal(t, uint64(2048), m.SwapTotalBytes)
				require.Equal(t, uint64(1024), m.SwapFreeBytes)
				require.Equal(t, &HugePages{Total: 4, Free: 3, SizeBytes: 1 << 30}, m.HugePages)
			},
		},
		{
			name:   "malformed transparent hugepage mode",
			tree:   func() *tree { return newTree().file("sys/kernel/mm/transparent_hugepage/enabled", "always\n") },
			errors: map[string]string{"thp": "no [selected] word"},
			check:  func(t *testing.T, m MemoryFacts) { require.Empty(t, m.TransparentHugePages) },
		},
		{
			name: "iommu from sys/class/iommu",
			tree: func() *tree {
				return newTree().link("sys/class/iommu/dmar0", "../../devices/virtual/iommu/dmar0").
					file("sys/devices/virtual/iommu/dmar0/intel-iommu/version", "1:0\n")
			},
			check: func(t *testing.T, m MemoryFacts) { require.True(t, m.IOMMU) },
		},
		{
			name:  "empty iommu directories mean no iommu",
			tree:  func() *tree { return newTree().dir("sys/class/iommu").dir("sys/kernel/iommu_groups") },
			check: func(t *testing.T, m MemoryFacts) { require.False(t, m.IOMMU) },
		},
		{
			name:  "iommu from iommu groups",
			tree:  func() *tree { return newTree().dir("sys/class/iommu").file("sys/kernel/iommu_groups/3/type", "DMA\n") },
			check: func(t *testing.T, m MemoryFacts) { require.True(t, m.IOMMU) },
		},
		{
			name: "memlock, mlock and shm from the system",
			tree: newTree,
			sys:  fakeSystem{soft: 65536, hard: RlimInfinity, errno: syscall.EPERM, shm: 1 << 26},
			check: func(t *testing.T, m MemoryFacts) {
				require.Equal(t, &Limit{Bytes: 65536}, m.MemlockSoft)
				require.Equal(t, &Limit{Unlimited: true}, m.MemlockHard)
				require.Equal(t, &MlockTrial{Bytes: defaultMlockTrialBytes, OK: false, Errno: "EPERM"}, m.MlockTrial)
				require.Equal(t, uint64(1<<26), m.ShmBytes)
			},
		},
		{
			name: "failing system calls are fact errors",
			tree: newTree,
			sys: fakeSystem{rlimitErr: errors.New("getrlimit RLIMIT_MEMLOCK: EINVAL"),
				mlockErr: errors.New("mmap 1048576 bytes for mlock trial: ENOMEM"),
				shmErr:   fmt.Errorf("statfs /dev/shm: %w", syscall.EACCES)},
			errors: map[string]string{"memlock": "EINVAL", "mlock": "mmap", "shm": "statfs"},
			check: func(t *testing.T, m MemoryFacts) {
				require.Nil(t, m.MemlockSoft)
				require.Nil(t, m.MlockTrial)
				require.Zero(t, m.ShmBytes)
			},
		},
		{
			name: "absent /dev/shm is no error",
			tree: newTree,
			sys:  fakeSystem{soft: 1, hard: 1, shmErr: fmt.Errorf("statfs /dev/shm: %w", fs.ErrNotExist)},
			check: func(t *testing.T, m MemoryFacts) {
				require.Zero(t, m.ShmBytes)
				require.NotNil(t, m.MlockTrial)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := probeTree(t, tc.tree(), func(o *Options) { o.System = tc.sys })
			errs := factErrors(r)
			require.Len(t, errs, len(tc.errors), "errors: %v", r.Errors)
			for fact, substr := range tc.errors {
				require.Contains(t, errs[fact], substr, "fact %s", fact)
			}
			tc.check(t, r.Memory)
		})
	}
}

func TestMlockTrialBytesOption(t *testing.T) {
	t.Parallel()
	var calls []int
	sys := fakeSystem{soft: 1, hard: 1, mlockCalls: &calls}
	r := probeTree(t, newTree(), func(o *Options) { o.System = sys; o.MlockTrialBytes = 4096 })
	require.Equal(t, []int{4096}, calls)
	require.Equal(t, 4096, r.Memory.MlockTrial.Bytes)
}

// TestRealSystem exercises the real system calls on this machine.
func TestRealSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux system calls")
	}
	t.Parallel()
	sys := newSystem()
	soft, hard, err := sys.MemlockLimit()
	require.NoError(t, err)
	require.LessOrEqual(t, soft, hard)
	errno, err := sys.MlockTrial(4096)
	require.NoError(t, err)
	if errno != 0 {
		// Unprivileged with RLIMIT_MEMLOCK below a page: mlock must say why.
		require.Contains(t, []syscall.Errno{syscall.EPERM, syscall.ENOMEM, syscall.EAGAIN}, errno)
	}
	_, err = sys.MlockTrial(0)
	require.Error(t, err)
	size, err := sys.FilesystemSize(t.TempDir())
	require.NoError(t, err)
	require.NotZero(t, size)
	_, err = sys.FilesystemSize("/nonexistent/pin-feature-daemon")
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestProbeStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := t.TempDir()
	require.NoError(t, fixtures["dgx-2gpu-switch"]().write(root))
	d := New(Options{Host: hostfs.New(root), System: podSystem})
	r := d.Probe(ctx)
	require.NotNil(t, r)
	require.ErrorContains(t, r.Err(), "context canceled", "a pass stopped half-way is no fact about the node")
	require.Empty(t, r.Accelerators)
	require.Equal(t, PlatformCPU, r.Platform)
}

// TestCgroupNamespaceRoot: in a private cgroup namespace proc/self/cgroup says "0::/" (or "N:memory:/"), a
// path relative to the container's cgroup. With OwnCgroup set it is read in the container's own cgroup mount,
// whose root is the container's cgroup with its limit; the host's sysfs root (no memory.max: the host's root
// cgroup) must not make the container look unlimited.
func TestCgroupNamespaceRoot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tree *tree
		own  string // OwnCgroup below the tree's root; "" leaves it unset
		want *CgroupMemory
	}{
		{
			name: "cgroup v2, own mount",
			tree: newTree().file("proc/self/cgroup", "0::/\n").file("sys/fs/cgroup/cgroup.controllers", "memory\n").
				file("own/memory.max", "1073741824\n").file("own/memory.current", "52428800\n"),
			own:  "own",
			want: &CgroupMemory{Version: 2, Path: "/", Limit: Limit{Bytes: 1 << 30}, UsageBytes: 50 << 20},
		},
		{
			name: "cgroup v1, own mount",
			tree: newTree().file("proc/self/cgroup", "5:memory:/\n0::/\n").
				file("own/memory/memory.limit_in_bytes", "536870912\n").file("own/memory/memory.usage_in_bytes", "1024\n"),
			own:  "own",
			want: &CgroupMemory{Version: 1, Path: "/", Limit: Limit{Bytes: 512 << 20}, UsageBytes: 1024},
		},
		{
			name: "a full path is the host's, even with an own mount",
			tree: newTree().file("proc/self/cgroup", "0::/kubepods.slice/pod.slice/cri.scope\n").
				file("sys/fs/cgroup/kubepods.slice/memory.max", "2147483648\n").
				file("sys/fs/cgroup/kubepods.slice/pod.slice/cri.scope/memory.current", "7\n").
				file("own/memory.max", "1\n"),
			own: "own",
			want: &CgroupMemory{Version: 2, Path: "/kubepods.slice/pod.slice/cri.scope",
				Limit: Limit{Bytes: 2 << 30}, UsageBytes: 7, PodsLimit: &Limit{Bytes: 2 << 30}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			require.NoError(t, tc.tree.write(root))
			h := hostfs.New(root)
			if tc.own != "" {
				h.OwnCgroup = filepath.Join(root, tc.own)
			}
			d := New(Options{Host: h, System: podSystem})
			t.Cleanup(func() { require.NoError(t, d.Close()) })
			r := d.Probe(context.Background())
			require.Equal(t, tc.want, r.Memory.Cgroup, "errors: %v", r.Errors)
		})
	}
}
