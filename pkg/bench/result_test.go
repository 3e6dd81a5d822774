package bench

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/pkg/detector"
)

// TestPinTrials: the result only maps its GPUs to detector.PinTrial, one per GPU where pinning was tried; the
// verdict is detector.Decide's.
func TestPinTrials(t *testing.T) {
	t.Parallel()
	var none *Result
	require.Nil(t, none.PinTrials())
	require.Nil(t, (&Result{GPUs: []GPUResult{{State: StateSkipped}, {State: StateFailed}}}).PinTrials())
	res := &Result{GPUs: []GPUResult{
		{PinTried: true, HostAllocOK: true, HostRegisterOK: true},
		{State: StateSkipped, HostAllocOK: true}, // not tried: left out whatever it says
		{PinTried: true, HostRegisterOK: true},
		{PinTried: true},
	}}
	require.Equal(t, []detector.PinTrial{
		{HostAlloc: true, HostRegister: true}, {HostRegister: true}, {},
	}, res.PinTrials())
}
