package bench

import (
	"reflect"
	"testing"
)

func TestSharedUplinks(t *testing.T) {
	tgt := func(idx int, up ...string) Target { return Target{Index: idx, UpstreamPCIAddresses: up} }
	for _, tc := range []struct {
		name    string
		targets []Target
		want    []SharedUplink
	}{
		{"none", nil, nil},
		{"one gpu", []Target{tgt(0, "0000:10:00.0", "0000:00:01.0")}, nil},
		{"no paths", []Target{tgt(0), tgt(1)}, nil},
		{"separate root ports", []Target{tgt(0, "0000:00:01.0"), tgt(1, "0000:00:02.0")}, nil},
		{"one switch, two gpus", []Target{
			tgt(0, "0000:11:00.0", "0000:10:00.0", "0000:00:01.0"),
			tgt(1, "0000:11:01.0", "0000:10:00.0", "0000:00:01.0"),
		}, []SharedUplink{{"0000:00:01.0", []int{0, 1}}, {"0000:10:00.0", []int{0, 1}}}},
		{"two switches under one root port, unsorted", []Target{
			tgt(3, "0000:21:00.0", "0000:20:00.0", "0000:00:01.0"),
			tgt(0, "0000:11:00.0", "0000:10:00.0", "0000:00:01.0"),
			tgt(2, "0000:21:01.0", "0000:20:00.0", "0000:00:01.0"),
			tgt(1, "0000:11:01.0", "0000:10:00.0", "0000:00:01.0"),
		}, []SharedUplink{
			{"0000:00:01.0", []int{0, 1, 2, 3}}, {"0000:10:00.0", []int{0, 1}}, {"0000:20:00.0", []int{2, 3}},
		}},
		{"duplicate port in one path counts once", []Target{
			tgt(0, "0000:10:00.0", "0000:10:00.0"), tgt(1, "0000:20:00.0"),
		}, nil},
		{"empty address ignored", []Target{tgt(0, ""), tgt(1, "")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sharedUplinks(tc.targets); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sharedUplinks = %+v, want %+v", got, tc.want)
			}
		})
	}
}
