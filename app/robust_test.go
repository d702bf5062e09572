package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// oneLine checks that a failed command said why in one line of its own words, without
// a panic, a stack trace or Go's "fatal error".
func oneLine(t *testing.T, what string, code int, errOut, want string) {
	t.Helper()
	if code == 0 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
		strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") || strings.Contains(errOut, "fatal error") {
		t.Errorf("%s: exit %d, stderr %q: want one line containing %q", what, code, errOut, want)
	}
}

// TestFlagsChecked: every value is checked, and a wrong one is refused naming its flag
// (issue 9: each of these was accepted, dropped or crashed before).
func TestFlagsChecked(t *testing.T) {
	data := imageFolder(t, 3)
	runDir := filepath.Join(t.TempDir(), "run")
	// A weights file of 1 TB (sparse: no disk is used) is refused before it is read.
	huge := filepath.Join(t.TempDir(), "huge.safetensors")
	if err := os.WriteFile(huge, nil, 0o644); err != nil || os.Truncate(huge, 1e12) != nil {
		t.Fatalf("sparse file: %v", err)
	}
	train := func(extra ...string) []string {
		return append([]string{"train", "--data", data, "--run", runDir, "--preset", "tiny", "--steps", "1"}, extra...)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{train("--lr=-1"), "--lr -1"},
		{train("--lr", "NaN"), "--lr NaN: must be a finite number"},
		{train("--ema", "2"), "--ema 2"},
		{train("--steps=-5"), "--steps -5"},
		{train("--image-size", "0"), "--image-size 0"},
		{train("--image-size", "100000"), "--image-size 100000"},
		{train("--res-blocks", "0"), "--res-blocks 0"},
		{train("--ch", "0"), "--ch 0"},
		{train("--attn", "5"), "attention at 5: the model has no level of that resolution (its levels are 16, 8)"},
		{train("--batch", "1000000000"), "--batch 1000000000"},
		{train("--dropout", "Inf"), "--dropout +Inf"},
		{[]string{"model", "--preset", "tiny", "--ch-mult", "1,0"}, "--ch-mult 1,0"},
		{[]string{"bench", "--preset", "mnist", "--ch-mult", "1,2,1000"}, "parameters and training it needs"},
		{[]string{"bench", "--preset", "tiny", "--batch", "1000000000", "--steps", "1"}, "use --batch"},
		{[]string{"import", "--weights", huge, "--run", filepath.Join(t.TempDir(), "i")}, "reading them needs about twice that"},
	} {
		code, _, errOut := cmd(t, c.args...)
		oneLine(t, strings.Join(c.args, " "), code, errOut, c.want)
	}
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused runs left a folder: %v", err)
	}
	// A model of billions of parameters is described, not built.
	var m modelResult
	mustRun(t, &m, "model", "--preset", "mnist", "--ch-mult", "1,2,1000")
	if m.Params < 1e9 {
		t.Errorf("model --ch-mult 1,2,1000: %d parameters", m.Params)
	}
	// A sampling that needs more memory than any machine has is refused before it starts.
	mustRun(t, new(trainResult), tinyTrain(data, runDir, "1")...)
	code, _, errOut := cmd(t, "sample", "--run", runDir, "--n", "100000000", "--sampler", "ddim", "--steps", "2")
	oneLine(t, "sample --n 100000000", code, errOut, "ask for at most")
	code, _, errOut = cmd(t, "sample", "--run", runDir, "--n", "0")
	oneLine(t, "sample --n 0", code, errOut, "--n 0")
}

// TestQuietLocale: with a C.UTF-8 locale (the default of many shells and containers)
// no command prints Fyne's "Error parsing user locale" lines.
func TestQuietLocale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	for _, env := range [][]string{{"LANG=C.UTF-8"}, {"LC_ALL=C.UTF-8", "LANG=de_DE.UTF-8"}, {"LANG=POSIX.UTF-8"}, {"LANG=C"}} {
		c := exec.Command(bin, "model", "--preset", "tiny")
		c.Env = append(cleanLocale(os.Environ()), env...)
		out, err := c.CombinedOutput()
		if err != nil || strings.Contains(string(out), "Fyne error") || strings.Contains(string(out), "locale") {
			t.Errorf("%v: %v\n%s", env, err, out)
		}
	}
}

// cleanLocale drops the locale variables from env.
func cleanLocale(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name != "LANG" && name != "LANGUAGE" && !strings.HasPrefix(name, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}

// TestSampleInterrupt: Ctrl-C during sampling ends the program at once with status 130
// and a plain message (it used to say "context canceled" with status 1).
func TestSampleInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	data := imageFolder(t, 3)
	runDir := filepath.Join(t.TempDir(), "run")
	// T = 1000 (the last --timesteps wins): a DDPM sampling of 1000 steps lasts long enough.
	mustRun(t, new(trainResult), append(tinyTrain(data, runDir, "1"), "--timesteps", "1000")...)
	p := exec.Command(bin, "sample", "--run", runDir, "--n", "64")
	var out strings.Builder
	p.Stdout, p.Stderr = &out, &out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	sent := time.Now()
	p.Process.Signal(os.Interrupt)
	err := p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).ExitStatus() != 130 {
		t.Fatalf("after Ctrl-C: %v, want exit status 130\n%s", err, out.String())
	}
	if d := time.Since(sent); d > 5*time.Second {
		t.Errorf("exited %v after Ctrl-C", d)
	}
	if !strings.Contains(out.String(), "interrupted during sampling") || strings.Contains(out.String(), "context canceled") {
		t.Errorf("output %q", out.String())
	}
}

// TestLoadInterrupt: Ctrl-C while the data loads (the MNIST set resized to 112×112 takes
// seconds) ends the program at once with status 130, saves nothing and leaves no run
// folder (signals used to wait for the whole load, and a step-0 checkpoint followed).
func TestLoadInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	runDir := filepath.Join(t.TempDir(), "run")
	p := exec.Command(bin, "train", "--data", "mnist", "--run", runDir, "--preset", "mnist", "--image-size", "112", "--attn", "28", "--steps", "1")
	var out strings.Builder
	p.Stdout, p.Stderr = &out, &out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	sent := time.Now()
	p.Process.Signal(syscall.SIGTERM)
	err := p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).ExitStatus() != 130 {
		t.Fatalf("after SIGTERM while loading: %v, want exit status 130\n%s", err, out.String())
	}
	if d := time.Since(sent); d > 3*time.Second {
		t.Errorf("exited %v after SIGTERM", d)
	}
	if !strings.Contains(out.String(), "nothing was saved") {
		t.Errorf("output %q", out.String())
	}
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder left behind: %v", err)
	}
}
