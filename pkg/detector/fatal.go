package detector

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/klog/v2"
)

// Err says whether the pass that made r failed as a whole: nil when every fatal check passed, otherwise the
// joined Fatal entries. A failed pass is no fact about the node (an unreadable PCI bus is not "no
// accelerator"): callers must not publish it, and `probe` exits non-zero.
func (r *Report) Err() error {
	if r == nil {
		return errors.New("no report")
	}
	errs := make([]error, 0, len(r.Fatal))
	for _, f := range r.Fatal {
		errs = append(errs, fmt.Errorf("%s: %s", f.Fact, f.Error))
	}
	return errors.Join(errs...)
}

// failPass records a failure that invalidates the whole pass (Report.Fatal).
func (c *collector) failPass(fact string, err error) {
	klog.V(1).InfoS("Probe pass failed", "fact", fact, "err", err)
	c.fatal = append(c.fatal, FactError{Fact: fact, Error: err.Error()})
}

// checkRoots fails the pass when the proc or sys root is not a readable directory: a host root that does not
// exist (a typo in --host-root, a missing hostPath mount) would otherwise read as a node without anything.
// The other steps still run, so the report says what else could (not) be read.
func (p *probe) checkRoots() {
	for _, root := range []struct{ fact, path string }{{"hostfs/proc", p.host.Proc}, {"hostfs/sys", p.host.Sys}} {
		fi, err := os.Stat(root.path)
		switch {
		case err != nil:
			p.failPass(root.fact, fmt.Errorf("host root %s: %w", root.path, unwrapPathError(err)))
		case !fi.IsDir():
			p.failPass(root.fact, fmt.Errorf("host root %s is not a directory", root.path))
		}
	}
}
