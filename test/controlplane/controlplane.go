package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	nfdclientset "sigs.k8s.io/node-feature-discovery/api/generated/clientset/versioned"
)

// Defaults of Options.
const (
	DefaultNamespace        = "node-feature-discovery"
	DefaultControlPlaneNode = "control-plane"
	DefaultStartTimeout     = 3 * time.Minute
)

// stopGrace is how long a process may take to exit after SIGTERM.
const stopGrace = 15 * time.Second

// Options configure Start. The zero value is ready to use.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-scheduler and nfd-master;
	// BinDir() when empty.
	BinDir string
	// CRDPath is NFD's CRD manifest; CRDPath() when empty.
	CRDPath string
	// Namespace is created and given to nfd-master as its own namespace
	// (KUBERNETES_NAMESPACE). nfd-master reads NodeFeature objects of every
	// namespace; it prefers those in its own. DefaultNamespace when empty.
	Namespace string
	// ControlPlaneNode names the Node that nfd-master runs "on" (NODE_NAME):
	// nfd-master exits unless that Node exists, so Start creates it,
	// unschedulable and tainted so no Pod is ever bound to it.
	// DefaultControlPlaneNode when empty.
	ControlPlaneNode string
	// LogDir receives one log file per process (etcd.log, ...). Empty means a
	// directory inside the work directory, removed by Stop; set it (for
	// example to t.TempDir()) to keep the logs after Stop.
	LogDir string
	// Verbosity is the klog -v level of kube-apiserver, kube-scheduler and
	// nfd-master.
	Verbosity int
	// StartTimeout bounds Start; DefaultStartTimeout when zero.
	StartTimeout time.Duration
	// WithoutScheduler and WithoutNFDMaster leave those processes out.
	WithoutScheduler bool
	WithoutNFDMaster bool
	// WithControllerManager runs kube-controller-manager too (DaemonSet,
	// garbage collector, service accounts and their root CA), for tests that
	// add a kubelet; the API server then admits Pods through ServiceAccount
	// admission, as a real cluster does. BinDir must hold it.
	WithControllerManager      bool
	ExtraControllerManagerArgs []string
	// ExtraAPIServerArgs, ExtraSchedulerArgs and ExtraNFDMasterArgs are
	// appended to the generated command lines (a later flag wins).
	ExtraAPIServerArgs []string
	ExtraSchedulerArgs []string
	ExtraNFDMasterArgs []string
}

// ControlPlane is a running control plane. Its exported fields are set by
// Start and must not be changed.
type ControlPlane struct {
	// Kubeconfig is a kubeconfig file for Config, for binaries under test.
	Kubeconfig string
	// Config is a cluster-admin (system:masters) client configuration.
	Config *rest.Config
	// Clientset and NFDClientset are built from Config.
	Clientset    *kubernetes.Clientset
	NFDClientset *nfdclientset.Clientset
	// Namespace is nfd-master's namespace, which Start created.
	Namespace string
	// ControlPlaneNode is the unschedulable Node Start created for nfd-master.
	ControlPlaneNode string
	// BinDir holds the binaries that run.
	BinDir string
	// CAPath is the plane's CA certificate, which signed every serving and
	// client certificate (a kubelet's clientCAFile).
	CAPath string
	// APIServerPort is the port kube-apiserver serves on.
	APIServerPort int
	// LogDir holds etcd.log, kube-apiserver.log, kube-scheduler.log and
	// nfd-master.log.
	LogDir string
	// WorkDir holds certificates, kubeconfigs and etcd data; Stop removes it.
	WorkDir string
	// NFDMasterHealthURL and SchedulerHealthURL are the processes' health
	// endpoints (the scheduler's is HTTPS, served with a certificate of the
	// plane's CA).
	NFDMasterHealthURL string
	SchedulerHealthURL string

	crdPath   string
	pki       *pki
	apiserver *process
	procs     []*process // in start order
	stopOnce  sync.Once
	stopErr   error
}

// Start runs etcd and kube-apiserver, installs NFD's CRDs, creates the
// namespace and the control-plane Node, then runs nfd-master and
// kube-scheduler, and returns once every one of them reports healthy. On
// error everything it started is stopped again.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	startedAt := time.Now()
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cp, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	if err := cp.start(ctx, opts); err != nil {
		if opts.LogDir != "" {
			err = fmt.Errorf("start control plane (logs in %s): %w", opts.LogDir, err)
		} else {
			err = fmt.Errorf("start control plane: %w", err)
		}
		if stopErr := cp.Stop(); stopErr != nil {
			klog.ErrorS(stopErr, "failed to stop control plane after failed start")
		}
		return nil, err
	}
	klog.InfoS("control plane started", "apiserver", cp.Config.Host, "duration", time.Since(startedAt), "workDir", cp.WorkDir)
	return cp, nil
}

// prepare resolves binaries and creates the work directory and certificates.
func prepare(opts Options) (*ControlPlane, error) {
	binDir, crdPath := opts.BinDir, opts.CRDPath
	var err error
	if binDir == "" {
		if binDir, err = BinDir(); err != nil {
			return nil, err
		}
	} else if err := checkBinaries(binDir, Binaries()...); err != nil {
		return nil, err
	}
	if crdPath == "" {
		if crdPath, err = CRDPath(); err != nil {
			return nil, err
		}
	}
	workDir, err := os.MkdirTemp("", "pfd-controlplane-")
	if err != nil {
		return nil, fmt.Errorf("create control-plane work directory: %w", err)
	}
	cp := &ControlPlane{
		Namespace:        valueOr(opts.Namespace, DefaultNamespace),
		ControlPlaneNode: valueOr(opts.ControlPlaneNode, DefaultControlPlaneNode),
		BinDir:           binDir,
		LogDir:           valueOr(opts.LogDir, filepath.Join(workDir, "logs")),
		WorkDir:          workDir,
	}
	for _, d := range []string{cp.LogDir, filepath.Join(workDir, "pki")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			_ = os.RemoveAll(workDir)
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if cp.pki, err = newPKI(filepath.Join(workDir, "pki")); err != nil {
		_ = os.RemoveAll(workDir)
		return nil, err
	}
	cp.crdPath = crdPath
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context, opts Options) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort, schedPort, nfdPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	cp.APIServerPort, cp.CAPath = apiPort, cp.pki.caPath
	verbosity := "--v=" + strconv.Itoa(opts.Verbosity)

	// etcd
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	etcd := cp.newProcess(Etcd, nil,
		"--name=default",
		"--data-dir="+filepath.Join(cp.WorkDir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--initial-cluster-state=new",
		// Test data need not survive a power cut; fsync would dominate.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err := etcd.start(); err != nil {
		return err
	}
	if err := waitHealthy(ctx, etcd, httpGetOK(http.DefaultClient, etcdURL+"/health")); err != nil {
		return err
	}

	// kube-apiserver
	servingCert, servingKey, err := cp.pki.servingFiles("kube-apiserver")
	if err != nil {
		return err
	}
	saPub, saKey, err := cp.pki.serviceAccountKeys()
	if err != nil {
		return err
	}
	proxyCert, proxyKey, err := cp.pki.clientFiles("front-proxy-client")
	if err != nil {
		return err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + filepath.Join(cp.WorkDir, "apiserver"),
		"--tls-cert-file=" + servingCert,
		"--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + cp.pki.caPath,
		// The front-proxy settings kubeadm makes; without them the
		// scheduler's delegated authentication logs an error every few
		// seconds about a missing request-header CA.
		"--requestheader-client-ca-file=" + cp.pki.caPath,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + proxyCert,
		"--proxy-client-key-file=" + proxyKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		disabledAdmission(opts),
		// The chart's DaemonSet is privileged; dry-runs must be admitted.
		"--allow-privileged=true",
		// Endpoints may not hold a loopback address; nothing needs the
		// kubernetes Service's endpoints here.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		// Without it a stopping API server leaves the scheduler's and
		// nfd-master's watches open until its 60 s shutdown timeout; with
		// it they are ended at once and it exits in about a second.
		"--shutdown-watch-termination-grace-period=2s",
		verbosity,
	}
	cp.apiserver = cp.newProcess(KubeAPIServer, nil, append(apiArgs, opts.ExtraAPIServerArgs...)...)
	if cp.Config, err = cp.pki.clientConfig(host, "admin", "system:masters"); err != nil {
		return err
	}
	cp.Config.QPS, cp.Config.Burst = 50, 100
	cp.Kubeconfig = filepath.Join(cp.WorkDir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.Kubeconfig, "admin", cp.Config); err != nil {
		return err
	}
	if cp.Clientset, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("create clientset: %w", err)
	}
	if cp.NFDClientset, err = nfdclientset.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("create nfd clientset: %w", err)
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return err
	}

	// Objects the other processes need.
	if err := cp.installCRDs(ctx); err != nil {
		return err
	}
	if err := cp.createBaseObjects(ctx); err != nil {
		return err
	}

	var waits []func() error
	if opts.WithControllerManager {
		wait, err := cp.startControllerManager(ctx, opts, saKey, ports[5])
		if err != nil {
			return err
		}
		waits = append(waits, wait)
	}
	if !opts.WithoutNFDMaster {
		kubeconfig, _, err := cp.writeUserKubeconfig("nfd-master", "system:masters")
		if err != nil {
			return err
		}
		env := append(os.Environ(), "NODE_NAME="+cp.ControlPlaneNode, "KUBERNETES_NAMESPACE="+cp.Namespace)
		nfd := cp.newProcess(NFDMaster, env, append([]string{
			"-kubeconfig=" + kubeconfig,
			// No config file: the defaults, whatever the host has in /etc.
			"-config=",
			"-port=" + strconv.Itoa(nfdPort),
			"-enable-leader-election=false",
			"-v=" + strconv.Itoa(opts.Verbosity),
		}, opts.ExtraNFDMasterArgs...)...)
		if err := nfd.start(); err != nil {
			return err
		}
		cp.NFDMasterHealthURL = "http://127.0.0.1:" + strconv.Itoa(nfdPort) + "/healthz"
		waits = append(waits, func() error {
			return waitHealthy(ctx, nfd, httpGetOK(http.DefaultClient, cp.NFDMasterHealthURL))
		})
	}
	if !opts.WithoutScheduler {
		// The bootstrap RBAC policy grants this user what the scheduler needs,
		// including delegated authentication and authorization.
		kubeconfig, _, err := cp.writeUserKubeconfig("system:kube-scheduler")
		if err != nil {
			return err
		}
		cert, key, err := cp.pki.servingFiles("kube-scheduler")
		if err != nil {
			return err
		}
		sched := cp.newProcess(KubeScheduler, nil, append([]string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(schedPort),
			"--tls-cert-file=" + cert,
			"--tls-private-key-file=" + key,
			verbosity,
		}, opts.ExtraSchedulerArgs...)...)
		if err := sched.start(); err != nil {
			return err
		}
		cp.SchedulerHealthURL = "https://127.0.0.1:" + strconv.Itoa(schedPort) + "/healthz"
		client, err := cp.caHTTPClient()
		if err != nil {
			return err
		}
		waits = append(waits, func() error {
			return waitHealthy(ctx, sched, httpGetOK(client, cp.SchedulerHealthURL))
		})
	}
	for _, wait := range waits {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// disabledAdmission is the API server's --disable-admission-plugins flag.
// Without a controller-manager nothing creates the default ServiceAccounts
// that ServiceAccount admission requires of every Pod; and nothing removes
// the not-ready taint that TaintNodesByCondition puts on every new Node.
func disabledAdmission(opts Options) string {
	if opts.WithControllerManager {
		return "--disable-admission-plugins=TaintNodesByCondition"
	}
	return "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition"
}

// startControllerManager starts kube-controller-manager as the user the
// bootstrap RBAC policy is written for, signing service-account tokens with
// the API server's key, and returns a wait for its health endpoint.
func (cp *ControlPlane) startControllerManager(ctx context.Context, opts Options, saKey string, port int) (func() error, error) {
	kubeconfig, _, err := cp.writeUserKubeconfig("system:kube-controller-manager")
	if err != nil {
		return nil, err
	}
	cert, key, err := cp.pki.servingFiles("kube-controller-manager")
	if err != nil {
		return nil, err
	}
	kcm := cp.newProcess(KubeControllerManager, nil, append([]string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + cp.pki.caPath,
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + cert,
		"--tls-private-key-file=" + key,
		"--v=" + strconv.Itoa(opts.Verbosity),
	}, opts.ExtraControllerManagerArgs...)...)
	if err := kcm.start(); err != nil {
		return nil, err
	}
	client, err := cp.caHTTPClient()
	if err != nil {
		return nil, err
	}
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	return func() error { return waitHealthy(ctx, kcm, httpGetOK(client, url)) }, nil
}

// newProcess registers a process whose binary is in BinDir and whose log is
// LogDir/<name>.log. A nil env inherits the test's environment.
func (cp *ControlPlane) newProcess(name string, env []string, args ...string) *process {
	if env == nil {
		env = os.Environ()
	}
	p := &process{
		name:    name,
		path:    filepath.Join(cp.BinDir, name),
		args:    args,
		env:     env,
		logPath: filepath.Join(cp.LogDir, name+".log"),
	}
	cp.procs = append(cp.procs, p)
	return p
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after a grace
// period) and returns once it has exited. etcd and the other processes keep
// running; clients get connection errors until StartAPIServer.
func (cp *ControlPlane) StopAPIServer() error {
	if err := cp.apiserver.stop(stopGrace); err != nil {
		return err
	}
	klog.InfoS("stopped kube-apiserver")
	return nil
}

// StartAPIServer starts kube-apiserver again with the same etcd, port and
// certificates, so every client and kubeconfig stays valid, and waits until
// /readyz answers ok.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	if err := cp.apiserver.start(); err != nil {
		return err
	}
	client, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		return fmt.Errorf("create http client for %s: %w", cp.Config.Host, err)
	}
	if err := waitHealthy(ctx, cp.apiserver, httpGetOK(client, cp.Config.Host+"/readyz")); err != nil {
		return err
	}
	klog.InfoS("kube-apiserver ready", "host", cp.Config.Host)
	return nil
}

// Stop ends every process group (the reverse of start order) and removes
// the work directory, and LogDir with it unless Options.LogDir was set. It
// is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		var errs []error
		for i := len(cp.procs) - 1; i >= 0; i-- {
			if err := cp.procs[i].stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(cp.WorkDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", cp.WorkDir, err))
		}
		cp.stopErr = errors.Join(errs...)
	})
	return cp.stopErr
}

// CheckProcesses returns an error naming every process that has exited
// (kube-apiserver too while StopAPIServer holds it down), with the tail of
// its log; nil while all of them run.
func (cp *ControlPlane) CheckProcesses() error {
	var errs []error
	for _, p := range cp.procs {
		if done, err := p.exited(); done {
			errs = append(errs, fmt.Errorf("%s exited: %w; log tail:\n%s", p.name, err, p.tail(20)))
		}
	}
	return errors.Join(errs...)
}

// PID returns the process id of the running process name (Etcd, KubeAPIServer, ...), 0 when it is not
// running, so that a test can read what it costs from /proc (peak memory, CPU time).
func (cp *ControlPlane) PID(name string) int {
	for _, p := range cp.procs {
		if p.name != name {
			continue
		}
		if done, _ := p.exited(); done {
			return 0
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cmd == nil || p.cmd.Process == nil {
			return 0
		}
		return p.cmd.Process.Pid
	}
	return 0
}

// Logs returns the last lines of every process log, each under a header, for
// printing when a test fails (before Stop removes them).
func (cp *ControlPlane) Logs(lines int) string {
	var b strings.Builder
	for _, p := range cp.procs {
		fmt.Fprintf(&b, "----- %s (%s), last %d lines -----\n%s\n", p.name, p.logPath, lines, p.tail(lines))
	}
	return b.String()
}

// UserConfig issues a client certificate for user in groups and returns a
// client configuration and a kubeconfig file that authenticate as that user,
// so that tests can check what RBAC lets a component do. Without groups the
// user has only what the bootstrap policy and the test grant it.
func (cp *ControlPlane) UserConfig(user string, groups ...string) (*rest.Config, string, error) {
	path, cfg, err := cp.writeUserKubeconfig(user, groups...)
	return cfg, path, err
}

// writeUserKubeconfig issues a certificate for user and writes a kubeconfig
// for it in the work directory.
func (cp *ControlPlane) writeUserKubeconfig(user string, groups ...string) (string, *rest.Config, error) {
	cfg, err := cp.pki.clientConfig(cp.Config.Host, user, groups...)
	if err != nil {
		return "", nil, err
	}
	name := strings.NewReplacer(":", "-", "/", "-").Replace(user)
	path := filepath.Join(cp.WorkDir, name+".kubeconfig")
	if err := writeKubeconfig(path, user, cfg); err != nil {
		return "", nil, err
	}
	return path, cfg, nil
}

// caHTTPClient is an HTTP client that trusts only the plane's CA.
func (cp *ControlPlane) caHTTPClient() (*http.Client, error) {
	return rest.HTTPClientFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: cp.pki.caPEM}})
}

// createBaseObjects creates nfd-master's namespace and the Node it runs on.
func (cp *ControlPlane) createBaseObjects(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cp.Namespace}}
	if _, err := cp.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", cp.Namespace, err)
	}
	node := KubeletNode(cp.ControlPlaneNode)
	node.Labels["node-role.kubernetes.io/control-plane"] = ""
	node.Spec.Unschedulable = true
	node.Spec.Taints = []corev1.Taint{{
		Key:    "node-role.kubernetes.io/control-plane",
		Effect: corev1.TaintEffectNoSchedule,
	}}
	if _, err := cp.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", cp.ControlPlaneNode, err)
	}
	return nil
}

// waitHealthy polls check until it succeeds, the process exits (an error
// with the tail of its log) or ctx ends.
func waitHealthy(ctx context.Context, p *process, check func(context.Context) error) error {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited before it was healthy: %w; log tail:\n%s", p.name, err, p.tail(30))
		}
		if last = check(ctx); last == nil {
			klog.V(1).InfoS("control-plane process healthy", "name", p.name, "after", time.Since(start))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be healthy: %w (last check: %w); log tail:\n%s", p.name, ctx.Err(), last, p.tail(30))
		case <-tick.C:
		}
	}
}

// httpGetOK returns a check that GETs url and wants status 200.
func httpGetOK(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("build request for %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("get %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("get %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago. All listeners stay open until all ports are chosen, so none repeats.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		var lc net.ListenConfig
		l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func valueOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
