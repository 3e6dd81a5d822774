package pcie

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseCPUList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{name: "empty", in: "\n", want: []int{}},
		{name: "single", in: "3", want: []int{3}},
		{name: "range", in: "0-3\n", want: []int{0, 1, 2, 3}},
		{name: "two ranges", in: "0-1,4-5", want: []int{0, 1, 4, 5}},
		{name: "unsorted overlapping", in: "6-7,0-2,1-3,7", want: []int{0, 1, 2, 3, 6, 7}},
		{name: "largest", in: "65535", want: []int{65535}},
		{name: "reversed", in: "5-3", wantErr: true},
		{name: "too large", in: "65536", wantErr: true},
		{name: "open range", in: "3-", wantErr: true},
		{name: "empty item", in: "1,,2", wantErr: true},
		{name: "trailing comma", in: "1,", wantErr: true},
		{name: "negative", in: "-1", wantErr: true},
		{name: "two dashes", in: "1-2-3", wantErr: true},
		{name: "plus sign", in: "+3", wantErr: true},
		{name: "inner space", in: "0-3, 8", wantErr: true},
		{name: "hex", in: "0x3", wantErr: true},
		{name: "stride syntax is not printed by sysfs", in: "0-7:2", wantErr: true},
		{name: "more cpus than can exist", in: "0-65535,0-65535", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCPUList(tc.in)
			if tc.wantErr {
				require.ErrorIs(t, err, ErrMalformed)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got.List())
		})
	}
	all, err := ParseCPUList("0-65535")
	require.NoError(t, err)
	require.Equal(t, maxCPUID, all.Size(), "every possible cpu, once")
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0-31,64-95", "3", "", "0-3,2-5", "65535", "5-3", "+3", "0-65535,0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseCPUList(s)
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformed))
			return
		}
		for _, c := range set.UnsortedList() {
			require.True(t, c >= 0 && c < maxCPUID)
		}
		again, err := ParseCPUList(set.String())
		require.NoError(t, err, "the canonical form %q parses", set.String())
		require.True(t, set.Equals(again), "round trip through %q", set.String())
	})
}
