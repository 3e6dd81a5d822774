package bench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChildEnv(t *testing.T) {
	t.Parallel()
	// What a daemon pod's environment holds: the chart's variables, the kubelet's service variables, the
	// image's, and what an operator may add through extraEnv.
	daemon := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME=pin-feature-daemon-x7k2p",
		"HOME=/root",
		"NODE_NAME=gpu-node-1",
		"POD_NAME=pin-feature-daemon-x7k2p",
		"POD_NAMESPACE=pin-feature-daemon",
		"NVIDIA_VISIBLE_DEVICES=all",
		"NVIDIA_DRIVER_CAPABILITIES=compute,utility",
		"KUBERNETES_SERVICE_HOST=10.96.0.1",
		"KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
		"HTTPS_PROXY=http://user:secret@proxy:3128",
		"LD_LIBRARY_PATH=/usr/local/nvidia/lib64",
		"LD_PRELOAD=/tmp/evil.so",
		"CUDA_VISIBLE_DEVICES=0,1",
		"CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps",
		"GODEBUG=madvdontneed=1",
		"TMPDIR=/tmp",
		"FAKECUDA_DEVICES=2",
		"ROCR_VISIBLE_DEVICES=0",
		"HIP_VISIBLE_DEVICES=0",
		"HSA_ENABLE_SDMA=0",
		"AMD_LOG_LEVEL=1",
		"FAKEHIP_DEVICES=1",
		"HIPPO=not a prefix match",
		"NOT_AN_ASSIGNMENT",
		"CUDA=not a prefix match",
		"MY_CUDA_HOME=/opt/cuda",
	}
	tests := []struct {
		name   string
		parent []string
		extra  []string
		want   []string
	}{
		{
			name:   "keeps what the runtimes read, in order",
			parent: daemon,
			want: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME=/root",
				"NVIDIA_VISIBLE_DEVICES=all",
				"NVIDIA_DRIVER_CAPABILITIES=compute,utility",
				"LD_LIBRARY_PATH=/usr/local/nvidia/lib64",
				"CUDA_VISIBLE_DEVICES=0,1",
				"CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps",
				"TMPDIR=/tmp",
				"FAKECUDA_DEVICES=2",
				"ROCR_VISIBLE_DEVICES=0",
				"HIP_VISIBLE_DEVICES=0",
				"HSA_ENABLE_SDMA=0",
				"AMD_LOG_LEVEL=1",
				"FAKEHIP_DEVICES=1",
			},
		},
		{
			name:   "extra is appended unfiltered, after the parent's, so it wins",
			parent: []string{"CUDA_VISIBLE_DEVICES=0", "POD_NAME=p"},
			extra:  []string{"CUDA_VISIBLE_DEVICES=1", "SOMETHING_ELSE=x"},
			want:   []string{"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1", "SOMETHING_ELSE=x"},
		},
		{
			name: "empty",
			want: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, childEnv(tc.parent, tc.extra))
		})
	}
}
