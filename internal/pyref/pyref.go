// Package pyref finds the Python interpreter that the reference tests run (Debian's
// python3 with NumPy and, for the PyTorch references, torch; never used at run time).
package pyref

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/sbinet/npyio"
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

// WriteNPY writes v (a slice, or nested slices for more dimensions, as npyio takes them)
// to path as a .npy file for a reference script, failing the test on error.
func WriteNPY(t testing.TB, path string, v any) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f) // npyio writes value by value
	if err := npyio.Write(w, v); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// ReadNPY reads the values of a .npy file a reference script wrote.
func ReadNPY[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v []T
	if err := npyio.Read(bufio.NewReader(f), &v); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return v
}

// NCHW views flat n×c×h×w data as nested slices, so that WriteNPY writes a 4-D array.
func NCHW(x []float32, n, c, h, w int) [][][][]float32 {
	out := make([][][][]float32, n)
	i := 0
	for a := range out {
		out[a] = make([][][]float32, c)
		for b := range out[a] {
			out[a][b] = make([][]float32, h)
			for y := range out[a][b] {
				out[a][b][y] = x[i : i+w : i+w]
				i += w
			}
		}
	}
	return out
}
