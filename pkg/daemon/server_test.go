package daemon

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

func serve(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:0"
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	ok := func() error { return nil }
	cfg.Healthz, cfg.Readyz = ok, ok
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return srv
}

// TestServerSurvivesIdleConnectionFlood: hundreds of idle connections, silent ones and kept-alive ones,
// leave /healthz answering at once, and the server holds no more than its cap of them.
func TestServerSurvivesIdleConnectionFlood(t *testing.T) {
	const maxConns, silent, keptAlive = 16, 300, 100
	srv := serve(t, ServerConfig{MaxConnections: maxConns})
	capped := srv.ln.(*cappedListener)
	healthz := func() {
		t.Helper()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + srv.Addr() + "/healthz")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NoError(t, resp.Body.Close())
	}
	healthz()
	runtime.GC()
	goroutinesBefore := runtime.NumGoroutine()

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range silent {
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
	}
	for range keptAlive {
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			continue // closed by the cap already
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			_ = resp.Body.Close()
		}
	}

	start := time.Now()
	healthz()
	t.Logf("/healthz answered in %s with %d idle connections dialled", time.Since(start), silent+keptAlive)
	require.LessOrEqual(t, capped.open(), maxConns)
	// Each open connection costs the server a goroutine or two; the flood must not cost one per dial. The
	// goroutines of evicted connections end as their reads fail, which a busy machine may delay a little.
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-goroutinesBefore < 3*maxConns+silent/10 },
		10*time.Second, 10*time.Millisecond, "goroutines: %d before the flood, %d after", goroutinesBefore, runtime.NumGoroutine())
}

// TestServerTLSAndBasicAuth: a web config file with a certificate and a bcrypt'd password, as
// node_exporter's --web.config.file, serves TLS and refuses requests without the password.
func TestServerTLSAndBasicAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pool := writeSelfSignedCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	conf := filepath.Join(dir, "web-config.yml")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: %s\n", hash)), 0o600))
	srv := serve(t, ServerConfig{WebConfigFile: conf})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) int {
		req, err := http.NewRequest(http.MethodGet, "https://"+srv.Addr()+"/metrics", nil)
		require.NoError(t, err)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get("", ""))
	require.Equal(t, http.StatusUnauthorized, get("prometheus", "wrong"))
	require.Equal(t, http.StatusOK, get("prometheus", "s3cret"))

	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err == nil {
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP to the TLS port is refused")
	}
}

func TestServerRejectsABadWebConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "web-config.yml")
	require.NoError(t, os.WriteFile(conf, []byte("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n"), 0o600))
	_, err := NewServer(ServerConfig{Address: "127.0.0.1:0", Registry: prometheus.NewRegistry(), WebConfigFile: conf})
	require.ErrorContains(t, err, "web config file")
	_, err = NewServer(ServerConfig{Address: "127.0.0.1:0", Registry: prometheus.NewRegistry(),
		WebConfigFile: filepath.Join(dir, "missing.yml")})
	require.ErrorContains(t, err, "web config file")
}

// writeSelfSignedCert writes cert.pem and key.pem for 127.0.0.1 into dir and returns a pool trusting it.
func writeSelfSignedCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pin-feature-daemon test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// TestConnectionCapNeverClosesABusyConnection: at the cap with every connection serving a request, a new
// connection is refused and the requests in flight complete, over plain HTTP and over TLS (where the
// server reports its connections as *tls.Conn).
func TestConnectionCapNeverClosesABusyConnection(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			cfg := ServerConfig{Address: "127.0.0.1:0", Registry: prometheus.NewRegistry(), MaxConnections: 2,
				Healthz: func() error { <-release; return nil }, Readyz: func() error { return nil }}
			scheme, transport := "http", &http.Transport{DisableKeepAlives: true}
			if useTLS {
				dir := t.TempDir()
				pool := writeSelfSignedCert(t, dir)
				cfg.WebConfigFile = filepath.Join(dir, "web-config.yml")
				require.NoError(t, os.WriteFile(cfg.WebConfigFile, []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"), 0o600))
				scheme, transport.TLSClientConfig = "https", &tls.Config{RootCAs: pool}
			}
			srv, err := NewServer(cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() {
				cancel()
				require.NoError(t, <-done)
			}()
			client := &http.Client{Timeout: 20 * time.Second, Transport: transport}
			url := scheme + "://" + srv.Addr()

			codes := make(chan int, 2)
			for range 2 {
				go func() {
					resp, err := client.Get(url + "/healthz")
					if err != nil {
						codes <- 0
						return
					}
					_ = resp.Body.Close()
					codes <- resp.StatusCode
				}()
			}
			capped := srv.ln.(*cappedListener)
			require.Eventually(t, func() bool { return capped.busy() == 2 }, 10*time.Second, time.Millisecond)
			resp, err := client.Get(url + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
			}
			require.Error(t, err, "a third connection is refused while both are busy")
			close(release)
			require.Equal(t, http.StatusOK, <-codes)
			require.Equal(t, http.StatusOK, <-codes)
		})
	}
}
