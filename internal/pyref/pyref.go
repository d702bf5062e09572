// Package pyref finds the Python interpreter that the reference tests run (Debian's
// python3 with NumPy and, for the PyTorch references, torch; never used at run time).
package pyref

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	mu    sync.Mutex
	found = map[string]string{} // imports → interpreter, "" if none
	why   = map[string]string{}
)

// Python returns the first of $DDPM_TORCHREF_PYTHON, python3 (on PATH) and
// /usr/bin/python3 that can run "import <imports>" (for example "torch, numpy"). If none
// can, the test is skipped, or fails where CI is set: CI installs them, so there a
// missing reference is a broken setup, not a reason to pass.
func Python(t testing.TB, imports string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if _, ok := found[imports]; !ok {
		found[imports], why[imports] = look(imports)
	}
	if py := found[imports]; py != "" {
		return py
	}
	if os.Getenv("CI") != "" {
		t.Fatal(why[imports] + " (CI installs it: this must not be skipped there)")
	}
	t.Skip(why[imports])
	return ""
}

func look(imports string) (string, string) {
	var candidates []string
	if p := os.Getenv("DDPM_TORCHREF_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "python3", "/usr/bin/python3")
	var tried []string
	for _, c := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, c, "-c", "import "+imports).CombinedOutput()
		cancel()
		if err == nil {
			return c, ""
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		tried = append(tried, fmt.Sprintf("%s: %v %s", c, err, lines[len(lines)-1]))
	}
	return "", fmt.Sprintf("reference skipped: no python3 that can `import %s` (install Debian's python3-numpy and python3-torch, or set DDPM_TORCHREF_PYTHON); tried %q", imports, tried)
}
