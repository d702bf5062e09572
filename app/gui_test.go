package main

import (
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/ui"
)

// needDisplay skips a test that needs an X display, or fails it under CI (where
// `make test` runs the tests under xvfb-run, so a missing display is a broken setup).
func needDisplay(t *testing.T, tools ...string) {
	t.Helper()
	missing := ""
	if os.Getenv("DISPLAY") == "" {
		missing = "no X display (DISPLAY unset; run under xvfb-run)"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool + " not installed"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, but CI is set: the CI machine must run this test", missing)
	}
	t.Skip(missing)
}

// TestWindowTrains launches the application in a real window (under Xvfb in CI), starts
// a short tiny training from the command line, screenshots the window once the loss curve
// and the preview have been drawn, and checks that those regions hold a curve and
// images. Then it sends SIGTERM, as closing the window does, and checks that the
// application saved a checkpoint and exited cleanly.
func TestWindowTrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and opens a window")
	}
	needDisplay(t, "import")
	bin := buildBinary(t)
	dir := t.TempDir()
	runs, report := filepath.Join(dir, "runs"), filepath.Join(dir, "report.json")
	cmd := exec.Command(bin, "gui", "--runs", runs, "--preset", "tiny", "--steps", "100000", "--batch", "8",
		"--preview-every", "5", "--train", "--report", report)
	cmd.Env = append(os.Environ(), "LANG=en_US.UTF-8")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()

	var rep guiReport
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, err := os.ReadFile(report); err == nil && json.Unmarshal(b, &rep) == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the application exited (%v) before drawing:\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report after 3 minutes:\n%s", out.String())
		}
	}
	t.Logf("renderer %s, scale %g, at step %d; UI goroutine: longest wait %.1f ms in %d probes", rep.Renderer, rep.Scale, rep.Step, rep.MaxUILatencyMS, rep.UIProbes)

	shot := filepath.Join(dir, "window.png")
	if b, err := exec.Command("import", "-window", "DDPM Studio", shot).CombinedOutput(); err != nil {
		t.Fatalf("screenshot: %v\n%s", err, b)
	}
	img := readPNG(t, shot)
	if dst := os.Getenv("DDPM_SCREENSHOT"); dst != "" {
		copyFileTo(t, shot, dst)
	}
	px := func(r ui.Rect) image.Rectangle {
		s := rep.Scale
		return image.Rect(int(r.X*s), int(r.Y*s), int((r.X+r.W)*s), int((r.Y+r.H)*s))
	}

	// The loss curve: a white chart with the smoothed line's blue in it.
	loss := px(rep.Regions["loss"])
	white, blue := 0, 0
	for y := loss.Min.Y; y < loss.Max.Y; y++ {
		for x := loss.Min.X; x < loss.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			switch {
			case r > 245 && g > 245 && b > 245:
				white++
			case b > 150 && r < 90 && g < 140:
				blue++
			}
		}
	}
	area := loss.Dx() * loss.Dy()
	t.Logf("loss region %v: %d white, %d blue pixels", loss, white, blue)
	if white < area/3 || blue < 50 {
		t.Errorf("loss region %v: %d white and %d curve-blue pixels of %d; no loss curve drawn", loss, white, blue, area)
	}

	// The preview grids: many grey levels (noise turning into images), not a blank area.
	for _, name := range []string{"xt", "x0"} {
		r := px(rep.Regions[name])
		levels := map[uint32]bool{}
		var sum, sq float64
		n := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				v, _, _, _ := img.At(x, y).RGBA()
				levels[v>>8] = true
				sum += float64(v >> 8)
				sq += float64(v>>8) * float64(v>>8)
				n++
			}
		}
		std := math.Sqrt(sq/float64(n) - (sum/float64(n))*(sum/float64(n)))
		t.Logf("%s region %v: %d grey levels, std %.1f", name, r, len(levels), std)
		if len(levels) < 16 || std < 10 {
			t.Errorf("%s region %v: %d grey levels, std %.1f; no image grid drawn", name, r, len(levels), std)
		}
	}

	// SIGTERM closes the window as its close button does: the training saves first.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM:\n%s", out.String())
	}
	entries, err := os.ReadDir(runs)
	if err != nil || len(entries) != 1 {
		t.Fatalf("runs folder: %v, %v", entries, err)
	}
	ckpt := compute.LatestCheckpoint(filepath.Join(runs, entries[0].Name()))
	st, err := compute.ReadState(ckpt)
	if err != nil || st.Step < rep.Step {
		t.Fatalf("checkpoint after closing: %q at step %d (%v); the window had reached step %d\n%s", ckpt, st.Step, err, rep.Step, out.String())
	}
	if !strings.Contains(out.String(), "Stopped at step") {
		t.Errorf("no 'Stopped at step' line in the output:\n%s", out.String())
	}
}

func readPNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func copyFileTo(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
