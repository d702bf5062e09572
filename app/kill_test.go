package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// The binary the tests run as a user would, built once per test process.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// TestMain runs the tests on the BLAS kernels the program would run (see
// ops.UseBestBLASCore), and removes the binary's folder after them.
func TestMain(m *testing.M) {
	if err := ops.UseBestBLASCore(); err != nil {
		fmt.Fprintln(os.Stderr, "app tests:", err)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds ddpm-studio (once) and returns its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if binDir, binErr = os.MkdirTemp("", "ddpm-studio-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "ddpm-studio")
		if out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// waitForCheckpoint waits until the run has a checkpoint past step and returns its step.
func waitForCheckpoint(t *testing.T, runDir string, after int64) int64 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if ck := compute.LatestCheckpoint(runDir); ck != "" {
			if st, err := compute.ReadState(ck); err == nil && st.Step > after {
				return st.Step
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no checkpoint past step %d in %s", after, runDir)
	return 0
}

// TestKillAndInterrupt: kill -9 loses at most the steps since the last checkpoint and the
// run resumes; Ctrl-C saves a checkpoint at the step reached and exits with status 130.
func TestKillAndInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	data := imageFolder(t, 4)
	runDir := filepath.Join(t.TempDir(), "run")
	args := func(steps string) []string {
		a := tinyTrain(data, runDir, steps)
		return append(a, "--sample-every", "0")
	}

	p := exec.Command(bin, args("100000")...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	seen := waitForCheckpoint(t, runDir, 3)
	if err := p.Process.Kill(); err != nil { // SIGKILL: no chance to save
		t.Fatal(err)
	}
	p.Wait()
	ck := compute.LatestCheckpoint(runDir)
	st, err := compute.ReadState(ck)
	if err != nil || st.Step < seen {
		t.Fatalf("after kill -9: newest checkpoint %s step %d (saw %d): %v", ck, st.Step, seen, err)
	}
	if _, _, err := compute.LoadCheckpoint(ck); err != nil {
		t.Fatalf("checkpoint after kill -9 does not load: %v", err)
	}

	// Resume in-process for two more steps.
	var res trainResult
	mustRun(t, &res, args(itoa(st.Step+2))...)
	if res.Step != st.Step+2 {
		t.Fatalf("resumed to step %d, want %d", res.Step, st.Step+2)
	}
	metricSteps(t, runDir)

	// Ctrl-C.
	p = exec.Command(bin, args("100000")...)
	stdout, _ := p.StdoutPipe()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitForCheckpoint(t, runDir, res.Step)
	p.Process.Signal(os.Interrupt)
	var last string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		last = sc.Text()
	}
	err = p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).ExitStatus() != 130 {
		t.Fatalf("after Ctrl-C: %v, want exit status 130", err)
	}
	ck = compute.LatestCheckpoint(runDir)
	st, _ = compute.ReadState(ck)
	if !strings.Contains(last, filepath.Base(ck)) {
		t.Errorf("last line %q does not name the newest checkpoint %s", last, ck)
	}
	metricSteps(t, runDir)
}

// metricSteps checks that metrics.jsonl has each step at most once, in order.
func metricSteps(t *testing.T, runDir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	prev := int64(0)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m run.Metric
		if err := jsonUnmarshal(line, &m); err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		if m.Step <= prev {
			t.Fatalf("metrics.jsonl: step %d after %d", m.Step, prev)
		}
		prev = m.Step
	}
}
