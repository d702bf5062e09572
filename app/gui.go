//go:build !headless

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"github.com/go-gl/glfw/v3.3/glfw"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
	"github.com/ddpm-studio/ddpm-studio/shaders"
	"github.com/ddpm-studio/ddpm-studio/ui"
)

// appID is the application's identity for Fyne (preferences, desktop entry).
const appID = "io.github.ddpmstudio.studio"

// guiReport is what --report writes.
type guiReport struct {
	Renderer string             `json:"renderer"`
	Scale    float32            `json:"scale"` // window pixels per Fyne unit
	Regions  map[string]ui.Rect `json:"regions"`
	Step     int64              `json:"step"`
	// The longest the UI goroutine took to run a queued function while training and
	// previews ran (probed every 20 ms from the first step on): how long a frame could
	// have been held up.
	MaxUILatencyMS float64 `json:"max_ui_latency_ms"`
	UIProbes       int     `json:"ui_probes"`
	// The images last put in the regions, as PNG files (the training is paused, so
	// they are what the screen shows).
	Images map[string]string `json:"images"`
}

// runsDir is the default folder for runs.
func runsDir() string {
	base := os.Getenv("XDG_DATA_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(os.TempDir(), "ddpm-studio", "runs")
		}
		base = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(base, "ddpm-studio", "runs")
}

// Run opens the window and returns when it is closed.
func (c *guiCmd) Run(e *env) error {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return fmt.Errorf("no display to open a window on (DISPLAY is not set); use a subcommand such as train or sample, or run under xvfb-run")
	}
	dir := c.Runs
	if dir == "" {
		dir = runsDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("runs folder: %w", err)
	}
	data := ui.DataSpec{Folder: c.Data}
	if c.Data != "mnist" {
		abs, err := filepath.Abs(c.Data)
		if err != nil {
			return err
		}
		data.Folder = abs
	}

	a := fyneapp.NewWithID(appID)
	a.SetIcon(fyne.NewStaticResource("icon.png", iconPNG))
	w := a.NewWindow("DDPM Studio")
	w.Resize(fyne.NewSize(1280, 820))
	w.CenterOnScreen()

	var glWin *glfw.Window
	var gl *shaders.GL
	var studio *ui.Studio
	// The GL renderer goes before the window: once the last window closes, Fyne
	// terminates GLFW and our context with it.
	closeGL := func() {
		if gl != nil {
			studio.Shutdown()
			gl.Close()
			glWin.Destroy()
			gl, glWin = nil, nil
		}
	}
	be := newBackend(dir, e.out)
	info := ops.RunningBLAS()
	fmt.Fprintf(e.out, "BLAS: %s\n", info)
	engine := info.Library
	if info.Core != "" {
		engine += ", core " + info.Core
	}
	studio = ui.New(w, be, shaders.NewCPU(), ui.Options{
		Data: data, RunsDir: dir, Preset: c.Preset, Steps: c.Steps, Batch: c.Batch,
		PreviewEvery: c.PreviewEvery, Autostart: c.Train, BeforeClose: closeGL, Engine: engine, Device: c.Device,
	})

	sig := make(chan os.Signal, 1)
	defer signal.Stop(sig)
	go func() {
		for range sig {
			fyne.Do(studio.Close)
		}
	}()
	a.Lifecycle().SetOnStarted(func() {
		// SIGTERM or Ctrl-C closes the window as its close button does, so that training
		// saves first. Fyne's driver quits at once on them, tearing down GLFW under our
		// renderer; it subscribes from a goroutine started as Run begins, so its
		// subscription is dropped now and again a second later, and ours takes over.
		takeSignals := func() {
			signal.Reset(os.Interrupt, syscall.SIGTERM)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		}
		takeSignals()
		time.AfterFunc(time.Second, takeSignals)

		// On the main thread, with GLFW initialised by Fyne: our renderer's own context.
		if c.Renderer == "cpu" {
			fmt.Fprintln(e.out, "rendering: CPU (--renderer cpu)")
			return
		}
		var err error
		if glWin, err = shaders.NewContextWindow(); err == nil {
			if gl, err = shaders.NewGL(glWin); err != nil {
				glWin.Destroy()
				glWin = nil
			}
		}
		if err != nil {
			fmt.Fprintf(e.out, "rendering: CPU (OpenGL unavailable: %v)\n", err)
			if c.Renderer == "gl" {
				studio.Fail("OpenGL", fmt.Errorf("--renderer gl, but OpenGL is unavailable (%v); drawing on the CPU instead", err))
			}
			return
		}
		studio.SetRenderer(gl)
		fmt.Fprintf(e.out, "rendering: %s\n", gl.Name())
	})

	if c.Report != "" {
		go c.report(studio)
	}
	fmt.Fprintf(e.out, "DDPM Studio: runs in %s\n", dir)
	w.ShowAndRun()
	// Normally the window saved the training before closing; if the application was made
	// to quit some other way, save now.
	be.stopAll()
	return nil
}

// report waits until the loss curve and a preview have been drawn a few times, pauses
// the training so that the screen stops changing, and then writes where the loss curve
// and the previews are in the window, and the images last put there (REPORT.loss.png,
// REPORT.xt.png, REPORT.x0.png), so that a test can compare them with a screenshot.
func (c *guiCmd) report(s *ui.Studio) {
	var worst time.Duration
	probes := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			t0 := time.Now()
			var step int64
			fyne.DoAndWait(func() { step = s.Stats().Step })
			if step > 0 { // from the first training step on; start-up is not measured
				worst = max(worst, time.Since(t0))
				probes++
			}
		}
	}()
	for {
		time.Sleep(500 * time.Millisecond)
		var ready bool
		fyne.DoAndWait(func() {
			st := s.Stats()
			ready = st.PlotDraws >= 2 && st.PreviewDraws >= 3
		})
		if ready {
			break
		}
	}
	close(stop)
	<-done
	fyne.DoAndWait(s.PauseTraining)
	for paused := false; !paused; {
		time.Sleep(100 * time.Millisecond)
		fyne.DoAndWait(func() { paused = s.Stats().Paused })
	}
	time.Sleep(500 * time.Millisecond) // let the last frame reach the screen
	var rep guiReport
	fyne.DoAndWait(func() {
		rep = guiReport{Renderer: s.Renderer().Name(), Scale: s.Scale(), Regions: s.Regions(), Step: s.Stats().Step, Images: map[string]string{}}
	})
	rep.MaxUILatencyMS, rep.UIProbes = float64(worst.Microseconds())/1000, probes
	for name, img := range s.Shown() {
		path := c.Report + "." + name + ".png"
		if err := imgio.SavePNG(path, img); err != nil {
			fmt.Fprintf(os.Stderr, "report: %v\n", err)
			return
		}
		rep.Images[name] = path
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := atomicfile.WriteFile(c.Report, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
	}
}
