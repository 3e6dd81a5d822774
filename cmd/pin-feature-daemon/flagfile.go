package main

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/pinmemory/pin-feature-daemon/internal/smallfile"
)

// Size caps of the files that flags name. A file over its cap, a FIFO, a socket or a device (/dev/zero) is
// an error before anything parses it: read whole, such a file would exhaust memory (the Go runtime then
// exits 2, the usage code) or block start-up for ever.
const (
	maxKubeconfigBytes = 8 << 20 // many contexts with embedded certificates stay far below
	maxWebConfigBytes  = 1 << 20 // exporter-toolkit's web configuration, and each TLS file it names
)

// readFlagFile reads the file a flag names, with smallfile's care (regular files only, never blocking, capped).
func readFlagFile(flag, path string, limit int) ([]byte, error) {
	data, err := smallfile.ReadNamed(path, limit)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	return data, nil
}

// loadKubeconfig builds a client configuration from the kubeconfig file a flag names, read by readFlagFile;
// relative paths in it resolve against the file's directory, as kubectl resolves them.
func loadKubeconfig(flag, path, context string) (*rest.Config, error) {
	data, err := readFlagFile(flag, path, maxKubeconfigBytes)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	for _, c := range cfg.Clusters {
		c.LocationOfOrigin = path
	}
	for _, a := range cfg.AuthInfos {
		a.LocationOfOrigin = path
	}
	if err := clientcmd.ResolveLocalPaths(cfg); err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	return clientcmd.NewNonInteractiveClientConfig(*cfg, context, overrides, nil).ClientConfig()
}

// checkWebConfig reads the exporter-toolkit web configuration and the TLS files it names with readFlagFile's
// care before the toolkit reads them itself (with os.ReadFile, which would block on a FIFO or read /dev/zero
// until memory runs out).
func checkWebConfig(path string) error {
	const flag = "web.config.file"
	data, err := readFlagFile(flag, path, maxWebConfigBytes)
	if err != nil {
		return err
	}
	var cfg struct {
		TLS struct {
			CertFile     string `json:"cert_file"`
			KeyFile      string `json:"key_file"`
			ClientCAFile string `json:"client_ca_file"`
		} `json:"tls_server_config"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	for _, f := range []string{cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile} {
		if f == "" {
			continue
		}
		if !filepath.IsAbs(f) { // exporter-toolkit resolves them against the configuration's directory
			f = filepath.Join(filepath.Dir(path), f)
		}
		if _, err := readFlagFile(flag, f, maxWebConfigBytes); err != nil {
			return fmt.Errorf("a file the web configuration names: %w", err)
		}
	}
	return nil
}
