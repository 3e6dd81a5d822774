package hostfs

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNew(t *testing.T) {
	t.Parallel()
	require.Equal(t, FS{Root: "/host", Proc: "/host/proc", Sys: "/host/sys", Dev: "/host/dev", Etc: "/host/etc", Usr: "/host/usr"}, New("/host"))
	require.Equal(t, FS{Root: "/", Proc: "/proc", Sys: "/sys", Dev: "/dev", Etc: "/etc", Usr: "/usr"}, New(""))
	require.Equal(t, FS{Proc: "/proc", Sys: "/x/sys", Dev: "/dev", Etc: "/etc", Usr: "/usr"}, FS{Sys: "/x/sys"}.WithDefaults())
}
