// Package ui is DDPM Studio's window: four screens (Dataset, Train, Sample, Gallery) in
// tabs, a status line, and the drop handler that turns folders or image files dropped
// anywhere on the window into a dataset.
//
// The package never computes with tensors. It talks to the engine through Backend
// (methods that block, called from goroutines of its own) and gets progress as events
// and frames of plain floats, which a shaders.Renderer turns into images. Every change
// to a widget from another goroutine goes through fyne.Do, so the UI goroutine only
// lays out and paints: training, sampling, loading and rendering never run on it.
//
// Decisions the issue left open, and why:
//   - New runs live in one folder (Options.RunsDir, by default under the user's data
//     folder) and are named after the dataset, preset and time, so nothing is ever
//     overwritten; choosing an existing run in the Train screen resumes it.
//   - The training preview is DDIM with 20 steps on 16 images from a fixed noise with
//     the EMA weights, right after the first step and then every K steps: short enough
//     to cost a few percent of training time, long enough to show noise turning into
//     images step by step.
//   - Closing the window while training stops it first (the step in flight is
//     abandoned, the last finished step is saved), then closes.
package ui

import (
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/ddpm-studio/ddpm-studio/shaders"
)

// Options configures a Studio.
type Options struct {
	Data         DataSpec // the dataset to load at start (Backend.Defaults' if empty)
	RunsDir      string   // where new runs are made; Backend.DefaultRunsDir() if empty
	Preset       string   // preset selected in the Train screen (Backend.Defaults' if empty)
	Steps        int64    // initial value of the Steps field (Backend.Defaults' if 0)
	Batch        int      // initial batch (Backend.Defaults' if 0)
	PreviewEvery int64    // initial preview interval (Backend.Defaults' if 0)
	Autostart    bool     // start training as soon as the dataset is loaded
	Engine       string   // what computes (the BLAS and its kernels), shown on the status line
	Device       string   // the device chosen at start (one of Backend.Devices; the first if empty)
	BeforeClose  func()   // called on the UI goroutine just before the window closes

	// Do runs a function on the UI goroutine without waiting; fyne.Do if nil. Tests give
	// a queue of their own, because Fyne's test driver runs fyne.Do at once on the
	// calling goroutine, which would let background updates race the test.
	Do func(func())
}

// Studio is the main window's content and behaviour.
type Studio struct {
	win      fyne.Window
	backend  Backend
	opts     Options
	defaults TrainRequest // the engine's defaults (Backend.Defaults)
	do       func(func()) // runs a function on the UI goroutine (fyne.Do)

	mu     sync.Mutex
	render shaders.Renderer

	tabs    *container.AppTabs
	status  *widget.Label
	rname   *widget.Label
	device  *widget.Select // where training and sampling run
	data    *datasetScreen
	train   *trainScreen
	sample  *sampleScreen
	gallery *galleryScreen
	closing bool
}

// New builds the window's content, installs the drop handler and close intercept on
// win, and starts loading the initial dataset.
func New(win fyne.Window, b Backend, r shaders.Renderer, opts Options) *Studio {
	d := b.Defaults()
	if opts.Data.Folder == "" && len(opts.Data.Files) == 0 {
		opts.Data = d.Data
	}
	if opts.RunsDir == "" {
		opts.RunsDir = b.DefaultRunsDir()
	}
	if opts.Preset == "" {
		opts.Preset = d.Preset
	}
	if opts.Steps == 0 {
		opts.Steps = d.Steps
	}
	if opts.Batch == 0 {
		opts.Batch = d.Batch
	}
	if opts.PreviewEvery == 0 {
		opts.PreviewEvery = d.PreviewEvery
	}
	s := &Studio{win: win, backend: b, opts: opts, defaults: d, render: r, do: opts.Do}
	if s.do == nil {
		s.do = fyne.Do
	}
	s.status = widget.NewLabel("Ready.")
	s.status.Truncation = fyne.TextTruncateEllipsis
	s.rname = widget.NewLabel("")
	devices := b.Devices()
	s.device = widget.NewSelect(devices, nil)
	if slices.Contains(devices, opts.Device) {
		s.device.SetSelected(opts.Device)
	} else if len(devices) > 0 {
		s.device.SetSelected(devices[0])
	}
	s.data = newDatasetScreen(s)
	s.train = newTrainScreen(s)
	s.sample = newSampleScreen(s)
	s.gallery = newGalleryScreen(s)
	s.tabs = container.NewAppTabs(
		container.NewTabItem("Dataset", s.data.content),
		container.NewTabItem("Train", s.train.content),
		container.NewTabItem("Sample", s.sample.content),
		container.NewTabItem("Gallery", s.gallery.content),
	)
	s.tabs.OnSelected = func(t *container.TabItem) {
		switch t.Text {
		case "Train":
			s.train.refreshRuns()
		case "Sample":
			s.sample.refreshRuns()
		case "Gallery":
			s.gallery.refresh()
		}
	}
	s.device.OnChanged = func(string) { s.sample.runChanged() } // the expected time is per device
	s.setRendererLabel()
	right := container.NewHBox(widget.NewLabel("Device:"), s.device, s.rname)
	win.SetContent(container.NewBorder(nil, container.NewBorder(nil, nil, nil, right, s.status), nil, nil, s.tabs))
	win.SetOnDropped(s.Dropped)
	win.SetCloseIntercept(s.closeWindow)
	if opts.Autostart {
		s.data.whenLoaded(func(DatasetInfo) {
			s.Show("Train")
			s.train.startTraining()
		})
	}
	s.data.load(opts.Data)
	return s
}

// Renderer returns the renderer in use.
func (s *Studio) Renderer() shaders.Renderer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.render
}

// SetRenderer switches to r (the application starts with the CPU renderer and switches
// to OpenGL once the window's driver is running).
func (s *Studio) SetRenderer(r shaders.Renderer) {
	s.mu.Lock()
	s.render = r
	s.mu.Unlock()
	s.setRendererLabel()
}

// Shutdown switches back to the CPU renderer without touching any widget, for when the
// application is stopping and is about to close the GL renderer.
func (s *Studio) Shutdown() {
	s.mu.Lock()
	s.render = shaders.NewCPU()
	s.mu.Unlock()
}

func (s *Studio) setRendererLabel() {
	text := "Rendering: " + s.Renderer().Name()
	if s.opts.Engine != "" {
		text = "Compute: " + s.opts.Engine + " · " + text
	}
	s.do(func() { s.rname.SetText(text) })
}

// Device is where training and sampling run, as chosen on the status bar.
func (s *Studio) Device() string { return s.device.Selected }

// Show selects the screen with the given tab title.
func (s *Studio) Show(title string) {
	for _, t := range s.tabs.Items {
		if t.Text == title {
			s.tabs.Select(t)
		}
	}
}

// say puts a message on the status line; safe from any goroutine.
func (s *Studio) say(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.do(func() { s.status.SetText(msg) })
}

// fail reports err in plain words: on the status line and in a dialog. Safe from any
// goroutine.
func (s *Studio) fail(what string, err error) {
	msg := plainError(err)
	s.do(func() {
		s.status.SetText(what + ": " + msg)
		dialog.ShowError(fmt.Errorf("%s: %s", what, msg), s.win)
	})
}

// plainError turns an error into one sentence for a person, without Go's wrapping noise
// where a plainer phrase exists.
func plainError(err error) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return strings.TrimSpace(err.Error()) + " (the file or folder does not exist)"
	case errors.Is(err, os.ErrPermission):
		return strings.TrimSpace(err.Error()) + " (permission denied: check that you may read it)"
	}
	return err.Error()
}

// Dropped is the window's drop handler: a folder becomes the dataset; image files
// dropped together become a dataset of those files. Anything else is explained.
func (s *Studio) Dropped(_ fyne.Position, uris []fyne.URI) {
	var folders, files []string
	for _, u := range uris {
		if u == nil || u.Scheme() != "file" {
			continue
		}
		p := u.Path()
		info, err := os.Stat(p)
		switch {
		case err != nil:
			s.fail("Dropped item", fmt.Errorf("%s: %w", p, err))
			return
		case info.IsDir():
			folders = append(folders, p)
		default:
			files = append(files, p)
		}
	}
	if all := slices.Concat(folders, files); len(all) == 1 && s.backend.IsModel(all[0]) {
		s.openModel(all[0])
		return
	}
	switch {
	case len(folders) == 1 && len(files) == 0:
		s.Show("Dataset")
		s.data.load(DataSpec{Folder: folders[0]})
	case len(folders) > 1:
		s.fail("Dropped folders", fmt.Errorf("%d folders were dropped; drop one folder (its sub-folders are searched too)", len(folders)))
	case len(folders) == 1:
		s.fail("Dropped items", errors.New("drop either one folder or image files, not both"))
	case len(files) > 0:
		s.Show("Dataset")
		s.data.load(DataSpec{Files: files})
	default:
		s.fail("Dropped items", errors.New("nothing usable was dropped: drop a folder of images or image files"))
	}
}

// describe names a data spec for people.
func (d DataSpec) describe() string {
	switch {
	case d.Folder == "mnist":
		return "MNIST (built-in, 60,000 digits)"
	case d.Folder != "":
		return d.Folder
	case len(d.Files) == 1:
		return d.Files[0]
	default:
		return fmt.Sprintf("%d dropped files in %s", len(d.Files), filepath.Dir(d.Files[0]))
	}
}

// closeWindow stops a running training (saving a checkpoint) before the window closes.
func (s *Studio) closeWindow() {
	if s.closing {
		return
	}
	if !s.train.running() {
		s.finalClose()
		return
	}
	s.closing = true
	s.say("Saving a checkpoint before closing…")
	s.train.stopThen(s.finalClose)
}

// finalClose closes the window for good.
func (s *Studio) finalClose() {
	s.sample.cancelRun()
	if s.opts.BeforeClose != nil {
		s.opts.BeforeClose()
	}
	s.win.Close()
}

// Fail reports err in the window (status line and a dialog); safe from any goroutine.
func (s *Studio) Fail(what string, err error) { s.fail(what, err) }

// Close closes the window as its close button does: a running training is stopped and
// saved first. Call on the UI goroutine.
func (s *Studio) Close() { s.closeWindow() }

// Stats counts what has been drawn, for tests and the application's --report.
type Stats struct {
	PlotDraws    int64 // loss curve renders
	PreviewDraws int64 // preview frames shown
	Step         int64 // last training step reported
	Paused       bool  // the training is paused
}

// Stats returns the drawing counters.
func (s *Studio) Stats() Stats {
	s.train.mu.Lock()
	paused := s.train.state == paused
	s.train.mu.Unlock()
	return Stats{PlotDraws: s.train.plotDraws.Load(), PreviewDraws: s.train.previewDraws.Load(), Step: s.train.lastStep.Load(), Paused: paused}
}

// Shown returns the images last put on the screen for the regions of Regions ("loss",
// "xt", "x0"), as rendered, before the window scales them to their areas.
func (s *Studio) Shown() map[string]image.Image {
	out := map[string]image.Image{}
	s.train.shown.Range(func(k, v any) bool {
		out[k.(string)] = v.(image.Image)
		return true
	})
	return out
}

// PauseTraining pauses a running training, as the Pause button does (UI goroutine).
func (s *Studio) PauseTraining() {
	s.train.mu.Lock()
	st := s.train.state
	s.train.mu.Unlock()
	if st == running {
		s.train.togglePause()
	}
}

// Rect is a region of the window in Fyne units (multiply by Scale for pixels).
type Rect struct {
	X, Y, W, H float32
}

// Scale is the number of window pixels per Fyne unit.
func (s *Studio) Scale() float32 { return s.win.Canvas().Scale() }

// Regions returns where the loss curve ("loss") and the preview grids ("xt", "x0") are
// in the window, as laid out now (call on the UI goroutine).
func (s *Studio) Regions() map[string]Rect {
	d := fyne.CurrentApp().Driver()
	out := map[string]Rect{}
	for name, o := range map[string]fyne.CanvasObject{"loss": s.train.plot, "xt": s.train.xt, "x0": s.train.x0} {
		p := d.AbsolutePositionForObject(o)
		sz := o.Size()
		out[name] = Rect{X: p.X, Y: p.Y, W: sz.Width, H: sz.Height}
	}
	return out
}
