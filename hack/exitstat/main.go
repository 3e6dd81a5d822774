//go:build linux

// Command exitstat runs a command and writes the memory lines of its /proc/<pid>/status (VmHWM, VmRSS,
// RssAnon, RssFile) as they stand at the moment it exits, for hack/footprint.sh: a one-shot command is gone
// before a sampler could read them, and its exit status carries only the peak (ru_maxrss), not the split into
// anonymous and file-backed pages.
//
// It traces the command's main thread with ptrace, asking for a stop at exit (PTRACE_O_TRACEEXIT): at that
// stop the process has finished its work but still holds its memory. Signals the command receives are passed
// on unchanged. It is a development tool: nothing in the daemon imports it, and it must not change what it
// measures (no environment, no limits of its own).
//
// Usage: exitstat -o FILE -- COMMAND [ARG...]; it exits with the command's status.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	out := flag.String("o", "", "file to write the status lines to (default stderr)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: exitstat [-o FILE] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	code, stats, err := run(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "exitstat:", err)
		os.Exit(125)
	}
	w := os.Stderr
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "exitstat:", err)
			os.Exit(125)
		}
		w = f
	}
	fmt.Fprint(w, stats)
	if err := w.Close(); err != nil && *out != "" {
		fmt.Fprintln(os.Stderr, "exitstat:", err)
		os.Exit(125)
	}
	os.Exit(code)
}

// run starts args under ptrace, reads its status at the exit stop and returns its exit code.
func run(args []string) (code int, stats string, err error) {
	// Every ptrace request must come from the thread that started the tracee.
	runtime.LockOSThread()
	cmd := exec.CommandContext(context.Background(), args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid := cmd.Process.Pid
	var ws syscall.WaitStatus
	// The tracee stops with SIGTRAP after its execve.
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		return 0, "", fmt.Errorf("wait for exec stop: %w", err)
	}
	if err := syscall.PtraceSetOptions(pid, syscall.PTRACE_O_TRACEEXIT|syscall.PTRACE_O_TRACEEXEC|unix.PTRACE_O_EXITKILL); err != nil {
		return 0, "", fmt.Errorf("ptrace set options: %w", err)
	}
	sig := 0
	for {
		if err := syscall.PtraceCont(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return 0, "", fmt.Errorf("ptrace cont: %w", err)
		}
		sig = 0
		if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
			return 0, "", fmt.Errorf("wait: %w", err)
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), stats, nil
		case ws.Signaled():
			return 128 + int(ws.Signal()), stats, nil
		case ws.Stopped() && ws.TrapCause() == syscall.PTRACE_EVENT_EXIT:
			if stats, err = memoryLines(pid); err != nil {
				return 0, "", err
			}
		case ws.Stopped() && ws.TrapCause() > 0:
			// Another ptrace event (an execve, e.g. by env): nothing to deliver.
		case ws.Stopped():
			sig = int(ws.StopSignal()) // a signal for the tracee: deliver it
		}
	}
}

// memoryLines returns the Vm*/Rss* lines of /proc/pid/status that footprint.sh reports, as "Key: N kB" lines.
func memoryLines(pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"VmHWM:", "VmRSS:", "RssAnon:", "RssFile:", "RssShmem:"} {
			if strings.HasPrefix(line, k) {
				b.WriteString(line)
				b.WriteByte('\n')
			}
		}
	}
	return b.String(), sc.Err()
}
