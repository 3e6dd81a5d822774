package smallfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	ok := file("ok", "0x10de\n")
	big := file("big", "0123456789")
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(ok, link))

	b, err := Read(ok, 16)
	require.NoError(t, err)
	require.Equal(t, "0x10de\n", string(b))

	b, err = Read(big, 10)
	require.NoError(t, err, "a file of exactly the limit is read")
	require.Len(t, b, 10)
	_, err = Read(big, 9)
	require.ErrorContains(t, err, "larger than 9 bytes")

	_, err = Read(fifo, 16) // would block forever without O_NONBLOCK and the regular-file check
	require.ErrorIs(t, err, errNotRegular)
	require.ErrorContains(t, err, "named pipe")

	_, err = Read(dir, 16)
	require.ErrorIs(t, err, syscall.EISDIR)

	_, err = Read(link, 16)
	require.True(t, errors.Is(err, syscall.ELOOP), "a final symlink is not followed: %v", err)

	_, err = Read(filepath.Join(dir, "missing"), 16)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestReadNamed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "..data", "web-config.yml")
	require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
	require.NoError(t, os.WriteFile(target, []byte("tls_server_config: {}\n"), 0o644))
	link := filepath.Join(dir, "web-config.yml") // a Secret key as the kubelet mounts it
	require.NoError(t, os.Symlink(filepath.Join("..data", "web-config.yml"), link))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))

	b, err := ReadNamed(link, 64)
	require.NoError(t, err, "a symlink an operator names is followed")
	require.Equal(t, "tls_server_config: {}\n", string(b))

	_, err = ReadNamed(fifo, 64)
	require.ErrorIs(t, err, errNotRegular)
	_, err = ReadNamed("/dev/zero", 64)
	require.ErrorIs(t, err, errNotRegular)
	require.ErrorContains(t, err, "character device")
	_, err = ReadNamed(link, 8)
	require.ErrorContains(t, err, "larger than 8 bytes")
}
