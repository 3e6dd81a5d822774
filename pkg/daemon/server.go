package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"k8s.io/klog/v2"
)

// Checker is one health condition; nil means good.
type Checker func() error

// The server's timeouts: a client that is slow to send its request, or idles on a kept-alive connection,
// loses the connection, so idle connections cannot pile up.
const (
	serverReadHeaderTimeout = 5 * time.Second
	serverReadTimeout       = 10 * time.Second
	serverWriteTimeout      = 30 * time.Second
	serverIdleTimeout       = 30 * time.Second
	// DefaultMaxConnections is ServerConfig.MaxConnections' default (--web.max-connections).
	DefaultMaxConnections = 64
)

// ServerConfig configures the metrics and health server.
type ServerConfig struct {
	// Address to listen on, e.g. ":9471".
	Address  string
	Registry *prometheus.Registry
	Healthz  Checker
	Readyz   Checker
	// WebConfigFile is exporter-toolkit's web configuration file (TLS, basic auth, as node_exporter's
	// --web.config.file); "" serves plain HTTP.
	WebConfigFile string
	// MaxConnections caps the connections open at once (default DefaultMaxConnections). At the cap a new
	// connection closes the oldest one that is not serving a request, so a flood of idle connections
	// neither grows memory nor locks out /healthz.
	MaxConnections int
}

// Server serves /metrics, /healthz (liveness) and /readyz (readiness).
type Server struct {
	srv     *http.Server
	ln      net.Listener
	webConf string
}

// NewServer checks the web configuration and binds the address now, so that both (a taken port, a bad file)
// are errors at start rather than later.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if err := web.Validate(cfg.WebConfigFile); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", cfg.WebConfigFile, err)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on metrics address %s: %w", cfg.Address, err)
	}
	capped := newCappedListener(ln, cfg.MaxConnections)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
		Registry: cfg.Registry, MaxRequestsInFlight: 4, Timeout: serverWriteTimeout - time.Second,
	}))
	mux.HandleFunc("/healthz", check(cfg.Healthz))
	mux.HandleFunc("/readyz", check(cfg.Readyz))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: serverReadHeaderTimeout,
		ReadTimeout:       serverReadTimeout,
		WriteTimeout:      serverWriteTimeout,
		IdleTimeout:       serverIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ConnState:         capped.track,
	}
	return &Server{ln: capped, srv: srv, webConf: cfg.WebConfigFile}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down within a few seconds.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	flags := &web.FlagConfig{WebListenAddresses: &[]string{}, WebSystemdSocket: new(bool), WebConfigFile: &s.webConf}
	logger := slog.New(logr.ToSlogHandler(klog.Background().WithName("web")))
	go func() { errc <- web.Serve(s.ln, s.srv, flags, logger) }()
	klog.InfoS("Serving metrics and health", "address", s.Addr(), "webConfigFile", s.webConf)
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down metrics server: %w", err)
	}
	return nil
}

func check(c Checker) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := c(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ok: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}
