// Command etcd is the etcd server built from go.etcd.io/etcd/server/v3 at the
// version pinned in this module's go.mod, for the test control plane that
// hack/build-controlplane.sh assembles.
//
// It only hands its arguments to etcdmain, exactly as upstream's etcd binary
// does; it must not add flags or behaviour of its own, so that tests run
// against etcd as released.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
