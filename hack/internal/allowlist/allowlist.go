// Package allowlist reads the allow lists of the hack/ checkers (exportcheck, importcheck): one entry a line,
// its first field the name allowed and the rest the reason; blank lines and # comments are skipped.
package allowlist

import (
	"bufio"
	"errors"
	"os"
	"strings"
)

// Load returns the names path allows, each mapped to false (a checker marks the ones it used). A missing
// file allows nothing.
func Load(path string) (map[string]bool, error) {
	allowed := map[string]bool{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return allowed, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		allowed[strings.Fields(line)[0]] = false
	}
	return allowed, sc.Err()
}
