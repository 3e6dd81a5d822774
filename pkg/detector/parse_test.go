package detector

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMeminfo(t *testing.T) {
	t.Parallel()
	real := "MemTotal:       65843392 kB\nMemAvailable:   60000000 kB\nSwapTotal:             0 kB\n" +
		"HugePages_Total:      16\nHugePages_Free:        8\nHugepagesize:       2048 kB\n"
	tests := []struct {
		name    string
		in      string
		want    meminfo
		wantErr bool
	}{
		{name: "kernel layout", in: real, want: meminfo{"MemTotal": 65843392 * 1024, "MemAvailable": 60000000 * 1024,
			"SwapTotal": 0, "HugePages_Total": 16, "HugePages_Free": 8, "Hugepagesize": 2048 * 1024}},
		{name: "blank lines", in: "\n\nMemTotal: 1 kB\n\n", want: meminfo{"MemTotal": 1024}},
		{name: "bad line keeps the rest", in: "MemTotal: lots kB\nMemAvailable: 2 kB\n",
			want: meminfo{"MemAvailable": 2048}, wantErr: true},
		{name: "no colon", in: "MemTotal 1 kB\nSwapFree: 0 kB", want: meminfo{"SwapFree": 0}, wantErr: true},
		{name: "unknown unit", in: "MemTotal: 1 MB\n", want: meminfo{}, wantErr: true},
		{name: "overflow", in: "MemTotal: 18446744073709551615 kB\n", want: meminfo{}, wantErr: true},
		{name: "empty", in: "", want: meminfo{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseMeminfo([]byte(tc.in))
			if tc.wantErr {
				require.ErrorIs(t, err, errMalformed)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseProcCgroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []cgroupEntry
		wantErr bool
	}{
		{name: "v2", in: "0::/kubepods.slice/x.scope\n", want: []cgroupEntry{{ID: 0, Path: "/kubepods.slice/x.scope"}}},
		{name: "v2 namespace root", in: "0::/\n", want: []cgroupEntry{{ID: 0, Path: "/"}}},
		{name: "v1 hybrid", in: "12:memory:/a/b\n4:cpu,cpuacct:/a/b\n1:name=systemd:/a\n0::/a\n", want: []cgroupEntry{
			{ID: 12, Controllers: []string{"memory"}, Path: "/a/b"},
			{ID: 4, Controllers: []string{"cpu", "cpuacct"}, Path: "/a/b"},
			{ID: 1, Controllers: []string{"name=systemd"}, Path: "/a"},
			{ID: 0, Path: "/a"},
		}},
		{name: "colon in path", in: "0::/a:b\n", want: []cgroupEntry{{ID: 0, Path: "/a:b"}}},
		{name: "deleted cgroup", in: "0::/a/b (deleted)\n", want: []cgroupEntry{{ID: 0, Path: "/a/b"}}},
		{name: "cannot climb above the root", in: "0::/../../etc\n", want: []cgroupEntry{{ID: 0, Path: "/etc"}}},
		{name: "too few fields", in: "0:/a\n", wantErr: true},
		{name: "bad id", in: "x::/a\n", wantErr: true},
		{name: "relative path", in: "0::a\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseProcCgroup([]byte(tc.in))
			if tc.wantErr {
				require.ErrorIs(t, err, errMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseCgroupLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Limit
		wantErr bool
	}{
		{in: "max\n", want: Limit{Unlimited: true}},
		{in: "536870912\n", want: Limit{Bytes: 536870912}},
		{in: "0", want: Limit{Bytes: 0}},
		{in: "9223372036854771712", want: Limit{Unlimited: true}}, // v1, 4 KiB pages
		{in: "9223372036854710272", want: Limit{Unlimited: true}}, // v1, 64 KiB pages
		{in: "-1", want: Limit{Unlimited: true}},                  // v1 write syntax
		{in: "", wantErr: true}, {in: "lots", wantErr: true}, {in: "-2", wantErr: true}, {in: "+5", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseCgroupLimit(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, errMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseKernelIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		osrelease  string
		version    string
		release    string
		wsl        bool
		releaseErr bool
		versionErr bool
	}{
		{name: "ubuntu", osrelease: "6.8.0-60-generic\n",
			version: "Linux version 6.8.0-60-generic (buildd@lcy02) (gcc 13.3.0) #63-Ubuntu SMP\n",
			release: "6.8.0-60-generic"},
		{name: "wsl2", osrelease: "5.15.167.4-microsoft-standard-WSL2",
			version: "Linux version 5.15.167.4-microsoft-standard-WSL2 (root@f9c826d3017f) (gcc (GCC) 11.2.0) #1 SMP",
			release: "5.15.167.4-microsoft-standard-WSL2", wsl: true},
		{name: "wsl1", osrelease: "4.4.0-19041-Microsoft",
			version: "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) #3996-Microsoft",
			release: "4.4.0-19041-Microsoft", wsl: true},
		{name: "empty", osrelease: "\n", version: "", releaseErr: true, versionErr: true},
		{name: "two words", osrelease: "6.8 extra", version: "Linux 6.8", releaseErr: true, versionErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rel, err := parseOSRelease(tc.osrelease)
			if tc.releaseErr {
				require.ErrorIs(t, err, errMalformed)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.release, rel)
				require.Equal(t, tc.wsl, isWSLKernel(rel))
			}
			vrel, err := parseProcVersion(tc.version)
			if tc.versionErr {
				require.ErrorIs(t, err, errMalformed)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.release, vrel)
				require.Equal(t, tc.wsl, isWSLKernel(tc.version))
			}
		})
	}
}

func TestParseTHPMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "always [madvise] never\n", want: "madvise"},
		{in: "[always] madvise never", want: "always"},
		{in: "always madvise [never]", want: "never"},
		{in: "always within_size advise [never] deny force", want: "never"},
		{in: "always madvise never", wantErr: true},
		{in: "[always", wantErr: true},
		{in: "[] never", wantErr: true},
		{in: "[always] [never]", wantErr: true},
		{in: "[al ways]", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseTHPMode(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, errMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseHexIDAndNUMA(t *testing.T) {
	t.Parallel()
	v, err := parseHexID("0x10de\n", 16)
	require.NoError(t, err)
	require.Equal(t, uint32(0x10de), v)
	v, err = parseHexID("0x030200", 24)
	require.NoError(t, err)
	require.Equal(t, uint32(0x030200), v)
	for _, bad := range []string{"10de", "0x", "0x10de0", "0xzz", ""} {
		_, err := parseHexID(bad, 16)
		require.ErrorIs(t, err, errMalformed, bad)
	}
	for in, want := range map[string]int{"-1\n": -1, "0": 0, "7": 7} {
		n, err := parseNUMANode(in)
		require.NoError(t, err)
		require.Equal(t, want, n)
	}
	for _, bad := range []string{"-2", "", "node0", "+1"} {
		_, err := parseNUMANode(bad)
		require.ErrorIs(t, err, errMalformed, bad)
	}
}

// Fuzz tests: every parser must return a value or an errMalformed error for any input, never panic, and
// keep its output invariants.

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("MemTotal:       65843392 kB\nHugePages_Total:      16\nHugepagesize:       2048 kB\n"))
	f.Add([]byte("MemTotal: x kB\n:\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMeminfo(data)
		require.NotNil(t, m)
		if err != nil {
			require.True(t, errors.Is(err, errMalformed))
		}
		for k := range m {
			require.NotEmpty(t, k)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods.slice/x.scope\n"))
	f.Add([]byte("12:memory:/a\n0::/\n"))
	f.Add([]byte("0::/../..\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseProcCgroup(data)
		if err != nil {
			require.True(t, errors.Is(err, errMalformed))
			return
		}
		for _, e := range entries {
			require.True(t, strings.HasPrefix(e.Path, "/"), "path %q is absolute", e.Path)
			require.NotContains(t, strings.Split(e.Path, "/"), "..", "path %q cannot climb", e.Path)
		}
	})
}

func FuzzParseCgroupLimit(f *testing.F) {
	for _, s := range []string{"max", "536870912\n", "9223372036854771712", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseCgroupLimit(s)
		if err != nil {
			require.True(t, errors.Is(err, errMalformed))
			return
		}
		if l.Unlimited {
			require.Zero(t, l.Bytes)
		} else {
			require.Less(t, l.Bytes, uint64(cgroupUnlimitedThreshold))
		}
	})
}

func FuzzParseKernelIdentity(f *testing.F) {
	f.Add("5.15.167.4-microsoft-standard-WSL2")
	f.Add("Linux version 6.8.0-60-generic (buildd@lcy02) #63-Ubuntu SMP")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if rel, err := parseOSRelease(s); err != nil {
			require.True(t, errors.Is(err, errMalformed))
		} else {
			require.NotEmpty(t, rel)
			require.NotContains(t, rel, " ")
			require.Equal(t, isWSLKernel(s), isWSLKernel(rel))
		}
		if rel, err := parseProcVersion(s); err != nil {
			require.True(t, errors.Is(err, errMalformed))
		} else {
			require.NotEmpty(t, rel)
			require.Contains(t, s, rel)
		}
	})
}

func FuzzParseTHPMode(f *testing.F) {
	for _, s := range []string{"always [madvise] never", "[always] madvise never", "[", "[]", "[a] [b]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mode, err := parseTHPMode(s)
		if err != nil {
			require.True(t, errors.Is(err, errMalformed))
			return
		}
		require.NotEmpty(t, mode)
		require.Contains(t, s, "["+mode+"]")
	})
}
