package output

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/pinmemory/pin-feature-daemon/pkg/labeler"
)

func TestLabelEvents(t *testing.T) {
	t.Parallel()
	gpuOK := labeler.Labels{"pinmemory.available": "true", "pinmemory.platform": "cuda", "pinmemory.link-degraded": "false",
		"pinmemory.pcie.gen": "5", "pinmemory.pcie.width": "16"}
	with := func(base labeler.Labels, kv ...string) labeler.Labels {
		out := labeler.Labels{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	tests := []struct {
		name      string
		prev, cur labeler.Labels
		want      []string // "Type/Reason"
		wantMsg   []string // substrings of the messages, in order
	}{
		{name: "first pass, nothing published", prev: nil, cur: with(gpuOK, "pinmemory.available", "false")},
		{name: "no change", prev: gpuOK, cur: with(gpuOK, "pinmemory.h2d-gbytes-per-sec", "55")},
		{
			name: "became unavailable", prev: gpuOK,
			cur:     with(gpuOK, "pinmemory.available", "false", "pinmemory.reason", "pin-failed"),
			want:    []string{"Warning/PinnedMemoryUnavailable"},
			wantMsg: []string{"reason pin-failed, platform cuda"},
		},
		{
			name: "became available", prev: with(gpuOK, "pinmemory.available", "false", "pinmemory.reason", "pin-failed"), cur: gpuOK,
			want: []string{"Normal/PinnedMemoryAvailable"}, wantMsg: []string{"platform cuda"},
		},
		{
			name: "link degraded", prev: gpuOK, cur: with(gpuOK, "pinmemory.link-degraded", "true", "pinmemory.pcie.width", "8"),
			want: []string{"Warning/PCIeLinkDegraded"}, wantMsg: []string{"PCIe gen 5 x8)"},
		},
		{
			name: "link restored", prev: with(gpuOK, "pinmemory.link-degraded", "true"), cur: gpuOK,
			want: []string{"Normal/PCIeLinkRestored"}, wantMsg: []string{"PCIe gen 5 x16)"},
		},
		{
			name: "both at once", prev: gpuOK,
			cur:  with(gpuOK, "pinmemory.available", "false", "pinmemory.reason", "platform", "pinmemory.link-degraded", "true"),
			want: []string{"Warning/PinnedMemoryUnavailable", "Warning/PCIeLinkDegraded"},
		},
		{name: "key appears with its good value", prev: labeler.Labels{"pinmemory.bench": "ok"}, cur: gpuOK},
		{
			name: "key appears with its bad value", prev: labeler.Labels{"pinmemory.platform": "cpu"},
			cur:  labeler.Labels{"pinmemory.available": "false", "pinmemory.link-degraded": "true"},
			want: []string{"Warning/PinnedMemoryUnavailable", "Warning/PCIeLinkDegraded"}, wantMsg: []string{"reason unknown, platform unknown", "slot support"},
		},
		{name: "key disappears", prev: gpuOK, cur: labeler.Labels{"pinmemory.platform": "cuda"}},
		{name: "empty previous set is a previous set", prev: labeler.Labels{}, cur: labeler.Labels{"pinmemory.available": "false"},
			want: []string{"Warning/PinnedMemoryUnavailable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evs := labelEvents(tc.prev, tc.cur)
			var got []string
			for _, e := range evs {
				got = append(got, e.Type+"/"+e.Reason)
			}
			require.Equal(t, tc.want, got)
			for i, m := range tc.wantMsg {
				require.Contains(t, evs[i].Message, m)
			}
		})
	}
}

func eventsCreated(cs *fake.Clientset) []*corev1.Event {
	var out []*corev1.Event
	for _, a := range cs.Actions() {
		if c, ok := a.(k8stesting.CreateAction); ok && a.GetResource().Resource == "events" {
			out = append(out, c.GetObject().(*corev1.Event))
		}
	}
	return out
}

func TestNodeEventerEmit(t *testing.T) {
	t.Parallel()
	now := fileT0
	prev := labeler.Labels{"pinmemory.available": "true", "pinmemory.link-degraded": "false"}
	cur := labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed", "pinmemory.link-degraded": "true"}
	tests := []struct {
		name     string
		objs     []runtime.Object
		instance string
		wantUID  types.UID
		wantInst string
	}{
		{name: "uid from the node", objs: []runtime.Object{testNodeObj(nil)}, instance: "pfd-x7k2p", wantUID: "node-uid", wantInst: "pfd-x7k2p"},
		{name: "node unreadable: kubelet's name-as-uid", wantUID: types.UID(pubTestNode), wantInst: pubTestNode},
		{name: "long instance cut to the API's limit", objs: []runtime.Object{testNodeObj(nil)}, instance: strings.Repeat("i", 200),
			wantUID: "node-uid", wantInst: strings.Repeat("i", 128)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fake.NewClientset(tc.objs...)
			e := NewNodeEventer(fakeKube{cs}, pubTestNode, tc.instance, clocktesting.NewFakePassiveClock(now))
			require.NoError(t, e.Emit(context.Background(), prev, cur))

			evs := eventsCreated(cs)
			require.Len(t, evs, 2)
			names := map[string]bool{}
			for i, ev := range evs {
				require.Equal(t, metav1.NamespaceDefault, ev.Namespace)
				require.Equal(t, corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: pubTestNode, UID: tc.wantUID}, ev.InvolvedObject)
				require.Equal(t, corev1.EventTypeWarning, ev.Type)
				require.Equal(t, corev1.EventSource{Component: FieldManager, Host: pubTestNode}, ev.Source)
				require.Equal(t, FieldManager, ev.ReportingController)
				require.Equal(t, tc.wantInst, ev.ReportingInstance)
				require.Equal(t, int32(1), ev.Count)
				require.True(t, ev.FirstTimestamp.Time.Equal(now))
				require.True(t, ev.LastTimestamp.Time.Equal(now))
				require.True(t, strings.HasPrefix(ev.Name, pubTestNode+"."), ev.Name)
				require.False(t, names[ev.Name], "event %d: names are unique within a pass", i)
				names[ev.Name] = true
			}
			require.Equal(t, reasonPinnedMemoryUnavailable, evs[0].Reason)
			require.Equal(t, reasonPCIeLinkDegraded, evs[1].Reason)

			list, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			require.Len(t, list.Items, 2, "both stored")
		})
	}
}

func TestNodeEventerNothingToSay(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	e := NewNodeEventer(fakeKube{cs}, pubTestNode, "", nil)
	l := labeler.Labels{"pinmemory.available": "true"}
	require.NoError(t, e.Emit(context.Background(), nil, l))
	require.NoError(t, e.Emit(context.Background(), l, l))
	require.Empty(t, cs.Actions(), "no event, not even a node read")
}

func TestNodeEventerCreateError(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	calls := 0
	cs.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls == 1 {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", nil)
		}
		return false, nil, nil
	})
	e := NewNodeEventer(fakeKube{cs}, pubTestNode, "", clocktesting.NewFakePassiveClock(fileT0))
	err := e.Emit(context.Background(),
		labeler.Labels{"pinmemory.available": "true", "pinmemory.link-degraded": "false"},
		labeler.Labels{"pinmemory.available": "false", "pinmemory.link-degraded": "true"})
	require.ErrorContains(t, err, "create event PinnedMemoryUnavailable on node "+pubTestNode)
	require.True(t, apierrors.IsForbidden(err))
	require.Len(t, eventsCreated(cs), 2, "the second event is still tried")
	list, lerr := cs.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, lerr)
	require.Len(t, list.Items, 1)
	require.Equal(t, reasonPCIeLinkDegraded, list.Items[0].Reason)
}

// TestNodeEventerRateLimit: a node whose facts flap every pass files eventBurst Events, then one per
// eventRefill; the dropped ones are no error. Time comes from a fake clock, so the test is exact under load.
func TestNodeEventerRateLimit(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(testNodeObj(nil))
	clk := clocktesting.NewFakePassiveClock(fileT0)
	e := NewNodeEventer(fakeKube{cs}, pubTestNode, "", clk)
	up := labeler.Labels{"pinmemory.available": "true"}
	down := labeler.Labels{"pinmemory.available": "false", "pinmemory.reason": "pin-failed"}
	flap := func(passes int) {
		for i := 0; i < passes; i++ {
			clk.SetTime(clk.Now().Add(time.Second)) // one pass a second: far faster than the refill
			prev, cur := up, down
			if i%2 == 1 {
				prev, cur = down, up
			}
			require.NoError(t, e.Emit(context.Background(), prev, cur), "a dropped event is not an error")
		}
	}
	flap(3 * eventBurst)
	require.Len(t, eventsCreated(cs), eventBurst, "the burst, then nothing within the first refill period")

	clk.SetTime(clk.Now().Add(eventRefill))
	flap(3)
	require.Len(t, eventsCreated(cs), eventBurst+1, "one more after a refill period")

	clk.SetTime(clk.Now().Add(3 * eventRefill))
	flap(10)
	require.Len(t, eventsCreated(cs), eventBurst+4, "tokens accrue while idle, one per refill period")
}
