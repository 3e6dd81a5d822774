// Command writeprobe runs inside a pod built from the chart's rendered DaemonSet (its user, capabilities,
// seccomp profile and mounts) and tries to write every host mount and every mount below each: create a file
// and a directory at each mount point, open each regular file at the mount point (and in the pod's own cgroup
// of each cgroup v1 controller) for writing. It never writes data: an open for writing that succeeds is
// reported and closed, a file or directory it created is removed. Device files are never opened.
//
// Output, one line each: "mount <mount point> <options>", "denied <path> <errno>" for a refused write,
// "WRITABLE <path> <how>" for one that worked, and for each --owned directory "owned <dir> ok|<error>".
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var hosts, owned list
	flag.Var(&hosts, "host", "a host mount that must not be writable, with every mount below it")
	flag.Var(&owned, "owned", "a directory the pod owns, which must be writable")
	flag.Parse()

	mounts := mountsUnder(hosts)
	ownCgroups := ownCgroupPaths()
	for _, m := range mounts {
		fmt.Printf("mount %s %s\n", m.point, m.options)
		probeCreate(m.point)
		probeFiles(m.point)
		if m.fstype == "cgroup" {
			for _, rel := range ownCgroups {
				if dir := filepath.Join(m.point, rel); rel != "/" && isDir(dir) {
					probeCreate(dir)
					probeFiles(dir)
				}
			}
		}
	}
	for _, dir := range owned {
		f := filepath.Join(dir, ".writeprobe")
		err := os.WriteFile(f, []byte("x"), 0o600)
		if err == nil {
			err = os.Remove(f)
		}
		if err != nil {
			fmt.Printf("owned %s %v\n", dir, err)
		} else {
			fmt.Printf("owned %s ok\n", dir)
		}
	}
}

type mount struct{ point, fstype, options string }

// mountsUnder lists the mount points at or below each root, from /proc/self/mountinfo.
func mountsUnder(roots []string) []mount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 6 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		point := unescape(fields[4])
		for _, r := range roots {
			if point == r || strings.HasPrefix(point, r+"/") {
				out = append(out, mount{point: point, fstype: fields[sep+1], options: fields[5]})
				break
			}
		}
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownCgroupPaths are the pod's own cgroup paths of the cgroup v1 controllers, as /proc/self/cgroup names
// them relative to each hierarchy's root.
func ownCgroupPaths() []string {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && !seen[parts[2]] {
			seen[parts[2]] = true
			out = append(out, parts[2])
		}
	}
	return out
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func probeCreate(dir string) {
	f := filepath.Join(dir, ".pfd-writeprobe")
	fd, err := syscall.Open(f, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o600)
	if err == nil {
		syscall.Close(fd)
		os.Remove(f)
		fmt.Printf("WRITABLE %s create\n", f)
	} else {
		fmt.Printf("denied %s %s\n", f, errName(err))
	}
	d := filepath.Join(dir, ".pfd-writeprobe.d")
	if err := syscall.Mkdir(d, 0o700); err == nil {
		os.Remove(d)
		fmt.Printf("WRITABLE %s mkdir\n", d)
	} else {
		fmt.Printf("denied %s %s\n", d, errName(err))
	}
}

// probeFiles opens the regular files directly in dir for writing, without writing.
func probeFiles(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Printf("denied %s/* %s\n", dir, errName(err))
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err == nil {
			syscall.Close(fd)
			fmt.Printf("WRITABLE %s open\n", p)
			continue
		}
		fmt.Printf("denied %s %s\n", p, errName(err))
	}
}

func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EROFS:
			return "EROFS"
		case syscall.EACCES:
			return "EACCES"
		case syscall.EPERM:
			return "EPERM"
		}
	}
	return err.Error()
}
