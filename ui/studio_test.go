package ui

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/shaders"
)

// loop is the UI goroutine of a test: every widget access, the test's and the
// background goroutines', runs on it one at a time, as under the real driver.
type loop struct {
	q    chan func()
	quit chan struct{}
}

func newLoop(t *testing.T) *loop {
	l := &loop{q: make(chan func(), 1<<16), quit: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case fn := <-l.q:
				fn()
			case <-l.quit:
				return
			}
		}
	}()
	t.Cleanup(func() { close(l.quit); <-done })
	return l
}

// do queues fn (Options.Do); after the test it drops it.
func (l *loop) do(fn func()) {
	select {
	case l.q <- fn:
	case <-l.quit:
	}
}

// run runs fn on the loop and waits for it.
func (l *loop) run(fn func()) {
	done := make(chan struct{})
	l.do(func() { defer close(done); fn() })
	select {
	case <-done:
	case <-l.quit:
	}
}

// ui runs fn on the test's UI goroutine and waits.
var ui func(func())

// until polls cond on the UI goroutine until it holds, or fails after 5 s.
func until(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	eventually(tb, what, func() bool {
		var ok bool
		ui(func() { ok = cond() })
		return ok
	})
}

// newStudio opens the studio on a test window with a fake backend and waits for the
// initial dataset.
func newStudio(t *testing.T, opts Options) (*Studio, *fakeBackend, fyne.Window) {
	t.Helper()
	test.NewTempApp(t)
	l := newLoop(t)
	ui = l.run
	fb := newFake(t)
	opts.Do = l.do
	var s *Studio
	var w fyne.Window
	ui(func() {
		w = test.NewWindow(nil)
		w.Resize(fyne.NewSize(1280, 820))
		s = New(w, fb, shaders.NewCPU(), opts)
	})
	until(t, "the initial dataset", func() bool { _, ok := s.data.current(); return ok })
	return s, fb, w
}

func TestStartsWithMNISTReadyToTrain(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	if len(fb.loads) != 1 || fb.loads[0].Folder != "mnist" {
		t.Fatalf("loads %v, want mnist", fb.loads)
	}
	until(t, "the summary", func() bool { return s.data.summary.Text == "60000 images · 28×28 · gray" })
	until(t, "Start enabled", func() bool { return !s.train.start.Disabled() })
	ui(func() {
		if got := s.data.skipHead.Text; got != "1 files skipped:" {
			t.Errorf("skipped header %q", got)
		}
		if s.train.preset.Selected != "mnist" || s.train.size.entry.Text != "28" {
			t.Errorf("preset %q size %q, want mnist 28", s.train.preset.Selected, s.train.size.entry.Text)
		}
		if !s.train.pause.Disabled() || !s.train.stop.Disabled() {
			t.Error("Pause and Stop are enabled before training")
		}
		if !strings.Contains(s.train.dataLabel.Text, "60000 images") {
			t.Errorf("data label %q", s.train.dataLabel.Text)
		}
	})
}

func TestFormSaysWhatIsWrong(t *testing.T) {
	s, _, _ := newStudio(t, Options{})
	tr := s.train
	until(t, "Start enabled", func() bool { return !tr.start.Disabled() })
	ui(func() {
		tr.batch.entry.SetText("")
		test.Type(tr.batch.entry, "sixty")
		tr.lr.entry.SetText("0")
		tr.ema.entry.SetText("1")
		if !tr.start.Disabled() {
			t.Error("Start enabled with a bad form")
		}
		for _, want := range []string{"Batch: must be a whole number", "Learning rate: must be in (0, 1]", "EMA decay: must be in [0, 1)"} {
			if !strings.Contains(tr.formErr.Text, want) {
				t.Errorf("form error %q lacks %q", tr.formErr.Text, want)
			}
		}
		tr.batch.entry.SetText("32")
		tr.lr.entry.SetText("1e-4")
		tr.ema.entry.SetText("0.999")
		if tr.start.Disabled() || tr.formErr.Text != "" {
			t.Errorf("good form: Start disabled %v, error %q", tr.start.Disabled(), tr.formErr.Text)
		}
		tr.preset.SetSelected("tiny")
		if tr.size.entry.Text != "16" {
			t.Errorf("tiny preset: size %q, want 16", tr.size.entry.Text)
		}
	})
}

// startFake presses Start and returns the fake training once it reports it started.
func startFake(t *testing.T, s *Studio, fb *fakeBackend) *fakeTraining {
	t.Helper()
	until(t, "Start enabled", func() bool { return !s.train.start.Disabled() })
	ui(func() { test.Tap(s.train.start) })
	eventually(t, "StartTraining", func() bool { return fb.lastTraining() != nil })
	ft := fb.lastTraining()
	ft.events <- TrainEvent{Kind: EventStarted, Message: "training"}
	until(t, "running", func() bool { return !s.train.stop.Disabled() })
	return ft
}

func TestTrainingControls(t *testing.T) {
	s, fb, _ := newStudio(t, Options{Steps: 10, Batch: 8})
	tr := s.train
	ft := startFake(t, s, fb)
	req := ft.req
	if req.Data.Folder != "mnist" || req.Batch != 8 || req.Steps != 10 || req.Preset != "mnist" || req.Size != 28 ||
		req.LR != 2e-4 || req.EMA != 0.9999 || req.Schedule != "linear" || req.PreviewEvery != 100 {
		t.Errorf("request %+v", req)
	}
	if filepath.Dir(req.Run) != fb.runsDir || !strings.HasPrefix(filepath.Base(req.Run), "mnist-mnist-") {
		t.Errorf("run folder %q, want mnist-mnist-… in %s", req.Run, fb.runsDir)
	}
	ui(func() {
		if !tr.start.Disabled() || !tr.batch.entry.Disabled() || !tr.preset.Disabled() {
			t.Error("form or Start enabled while training")
		}
	})
	for i := int64(1); i <= 3; i++ {
		ft.events <- TrainEvent{Kind: EventStep, Step: i, Steps: 10, Loss: 1 / float64(i), StepsPerSec: 2, ImagesPerSec: 16, Elapsed: 1500 * time.Millisecond}
	}
	f := Frame{Step: 4, Steps: 20, T: 800, Xt: images(16, 1, 28), X0: images(16, 1, 28)}
	ft.events <- TrainEvent{Kind: EventPreview, Step: 3, Steps: 10, Frame: &f}
	until(t, "stats", func() bool { return strings.Contains(tr.stats.Text, "Step 3 / 10") })
	until(t, "preview caption", func() bool { return strings.Contains(tr.caption.Text, "denoising step 4/20 (t = 800)") })
	until(t, "plot and preview drawn", func() bool { st := s.Stats(); return st.PlotDraws >= 1 && st.PreviewDraws == 1 })
	until(t, "plot image", func() bool { return tr.plot.Image.Bounds().Dx() == 760 })
	ui(func() {
		if !strings.Contains(tr.stats.Text, "loss 0.3333") || !strings.Contains(tr.stats.Text, "16.0 images/s") || !strings.Contains(tr.stats.Text, "ETA") {
			t.Errorf("stats %q", tr.stats.Text)
		}
		if b := tr.xt.Image.Bounds(); b.Dx() < 100 {
			t.Errorf("preview image %v", b)
		}
		if b := tr.plot.Image.Bounds(); b.Dy() != 300 {
			t.Errorf("plot image %v, want 760×300", b)
		}
		test.Tap(tr.pause)
	})
	if c := ft.control(t); c != "pause" {
		t.Fatalf("control %q, want pause", c)
	}
	ft.events <- TrainEvent{Kind: EventPaused, Step: 3}
	until(t, "Resume button", func() bool { return tr.pause.Text == "Resume" })
	ui(func() { test.Tap(tr.pause) })
	if c := ft.control(t); c != "resume" {
		t.Fatalf("control %q, want resume", c)
	}
	ft.events <- TrainEvent{Kind: EventResumed, Step: 3}
	until(t, "Pause button", func() bool { return tr.pause.Text == "Pause" })

	ui(func() { test.Tap(tr.stop) })
	if c := ft.control(t); c != "stop" {
		t.Fatalf("control %q, want stop", c)
	}
	ui(func() {
		if !tr.stop.Disabled() || !tr.start.Disabled() {
			t.Error("Stop or Start enabled while stopping")
		}
	})
	ft.finish(3)
	until(t, "idle", func() bool { return !tr.running() && !tr.start.Disabled() })
	ui(func() {
		if !tr.stop.Disabled() || tr.batch.entry.Disabled() {
			t.Error("controls not back to idle")
		}
	})
	until(t, "status", func() bool { return s.status.Text == "stopped and saved" })
}

func TestTrainingErrorIsShown(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	ft := startFake(t, s, fb)
	ft.events <- TrainEvent{Kind: EventError, Err: errBoom}
	close(ft.events)
	until(t, "error on the status line", func() bool { return strings.Contains(s.status.Text, "permission denied") })
	until(t, "idle", func() bool { return !s.train.running() })
}

func TestResumeRunFillsForm(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	fb.mu.Lock()
	fb.runs = []RunInfo{{Dir: "/runs/old", Name: "old", Step: 1500, Preset: "tiny", Size: 16, Data: "mnist",
		Settings: TrainRequest{Preset: "tiny", Size: 16, Batch: 32, LR: 1e-3, Steps: 1500, EMA: 0.999, Schedule: "cosine"}}}
	fb.mu.Unlock()
	ui(func() { s.Show("Train") })
	until(t, "run list", func() bool { return len(s.train.run.sel.Options) == 2 })
	tr := s.train
	ui(func() {
		tr.run.sel.SetSelected("old")
		if tr.preset.Selected != "tiny" || tr.size.entry.Text != "16" || tr.schedule.Selected != "cosine" || tr.steps.entry.Text != "2500" {
			t.Errorf("form: preset %q size %q schedule %q steps %q", tr.preset.Selected, tr.size.entry.Text, tr.schedule.Selected, tr.steps.entry.Text)
		}
		if !tr.preset.Disabled() || !tr.size.entry.Disabled() {
			t.Error("model fields editable for an existing run")
		}
		tr.steps.entry.SetText("1000")
		if !strings.Contains(tr.formErr.Text, "at step 1500 already") || !tr.start.Disabled() {
			t.Errorf("steps below the run's: error %q", tr.formErr.Text)
		}
		tr.steps.entry.SetText("3000")
		test.Tap(tr.start)
	})
	eventually(t, "StartTraining", func() bool { return fb.lastTraining() != nil })
	if r := fb.lastTraining().req; r.Run != "/runs/old" || r.Steps != 3000 {
		t.Errorf("resume request %+v", r)
	}
}

func TestDropHandler(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.png"), filepath.Join(dir, "b.png")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	drop := func(paths ...string) {
		var uris []fyne.URI
		for _, p := range paths {
			uris = append(uris, storage.NewFileURI(p))
		}
		ui(func() { s.Dropped(fyne.NewPos(10, 10), uris) })
	}
	drop(dir)
	until(t, "folder loaded", func() bool { info, _ := s.data.current(); return info.Spec.Folder == dir })
	ui(func() {
		if s.tabs.Selected().Text != "Dataset" {
			t.Errorf("tab %q after a drop, want Dataset", s.tabs.Selected().Text)
		}
	})
	drop(a, b)
	until(t, "files loaded", func() bool { info, _ := s.data.current(); return len(info.Spec.Files) == 2 })

	fb.mu.Lock()
	n := len(fb.loads)
	fb.mu.Unlock()
	drop(dir, a)
	until(t, "mixed drop refused", func() bool { return strings.Contains(s.status.Text, "not both") })
	drop(filepath.Join(dir, "gone"))
	until(t, "missing file named", func() bool { return strings.Contains(s.status.Text, "gone") })
	fb.mu.Lock()
	if len(fb.loads) != n {
		t.Errorf("bad drops started %d loads", len(fb.loads)-n)
	}
	fb.loadErr = errBoom
	fb.mu.Unlock()
	drop(dir)
	until(t, "load error shown", func() bool { return strings.Contains(s.status.Text, "permission denied") })
	if info, _ := s.data.current(); len(info.Spec.Files) != 2 {
		t.Error("a failed load replaced the dataset")
	}
}

func TestCloseDuringTrainingSavesFirst(t *testing.T) {
	s, fb, w := newStudio(t, Options{})
	var closed atomic.Bool
	ui(func() { w.SetOnClosed(func() { closed.Store(true) }) })
	ft := startFake(t, s, fb)
	ui(s.Close)
	if c := ft.control(t); c != "stop" {
		t.Fatalf("control %q, want stop", c)
	}
	time.Sleep(50 * time.Millisecond)
	if closed.Load() {
		t.Fatal("window closed before the checkpoint was saved")
	}
	ft.finish(7)
	eventually(t, "window closed", closed.Load)
}

func TestSampleAndExport(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	fb.mu.Lock()
	fb.runs = []RunInfo{{Dir: "/runs/a", Name: "a", Step: 100, Size: 8, Channels: 1}}
	fb.mu.Unlock()
	ui(func() { s.Show("Sample") })
	p := s.sample
	until(t, "run selected", func() bool { return p.run.sel.Selected == "a" })
	ui(func() {
		p.count.entry.SetText("0")
		if !p.sample.Disabled() || !strings.Contains(p.formErr.Text, "Images: must be between 1 and 256") {
			t.Errorf("count 0: error %q", p.formErr.Text)
		}
		p.count.entry.SetText("6")
		p.seed.entry.SetText("42")
		test.Tap(p.sample)
	})
	until(t, "export enabled", func() bool { return !p.saveGrid.Disabled() })
	fb.mu.Lock()
	if r := fb.samples[0]; r.Run != "/runs/a" || r.Sampler != "ddim" || r.Steps != 50 || r.Seed != 42 || r.Count != 6 || !r.EMA || r.Device != "auto" {
		t.Errorf("sample request %+v", r)
	}
	fb.mu.Unlock()
	ui(func() {
		if !strings.Contains(p.caption.Text, "step 5/5") {
			t.Errorf("caption %q", p.caption.Text)
		}
	})
	p.mu.Lock()
	res := p.result
	p.mu.Unlock()
	dir := t.TempDir()
	n, err := p.writeEach(storage.NewFileURI(dir), res)
	if err != nil || n != 6 {
		t.Fatalf("writeEach: %d, %v", n, err)
	}
	f, err := os.Open(filepath.Join(dir, "sample-0005.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil || m.Bounds().Dx() != 8 || m.Bounds().Dy() != 8 {
		t.Fatalf("exported image %v, %v", m.Bounds(), err)
	}
	strip, err := p.stripImage()
	if err != nil {
		t.Fatal(err)
	}
	// 5 frames kept (steps 1–5), 6 images: 12 rows of 5 tiles of 8 px with 2 px padding.
	if b := strip.Bounds(); b.Dx() != 5*10+2 || b.Dy() != 12*10+2 {
		t.Errorf("strip %v, want 52×122", b)
	}

	// The same bytes as the command line writes for the same samples (app/sample.go:
	// imgio.Grid with imgio.Pad, imgio.Single, an imgio.Progression fed every frame),
	// not the window's renderer's pictures.
	grid, err := p.gridImage()
	if err != nil {
		t.Fatal(err)
	}
	prog := imgio.NewProgression(8)
	for i := 1; i <= 5; i++ {
		xt := images(6, 1, 8)
		prog.Add(i, 5, xt.Data, xt.Data, 6, 1, 8, 8)
	}
	cliStrip, _ := prog.Image()
	for _, c := range []struct {
		name      string
		got, want image.Image
	}{
		{"grid", grid, imgio.Grid(res.Data, res.N, res.C, res.H, res.W, 0, imgio.Pad)},
		{"strip", strip, cliStrip},
		{"sample-0005.png", m, imgio.Single(res.Tile(5).Data, 1, 8, 8)},
	} {
		var a, b bytes.Buffer
		imgio.EncodePNG(&a, c.got)
		imgio.EncodePNG(&b, c.want)
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: the window's PNG differs from the command line's", c.name)
		}
	}
}

// TestGalleryShowsBackendOrder: the gallery shows the backend's grids in the order it
// gives (newest first is the backend's job: run.TestGalleryNewestFirst), whatever it is;
// the fake gives an order no sort would (100, 300, 200), so a screen that sorted, or
// reversed, the list fails.
func TestGalleryShowsBackendOrder(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	dir := t.TempDir()
	var items []GalleryItem
	for _, step := range []int64{100, 300, 200} {
		path := filepath.Join(dir, fmt.Sprintf("step-%08d.png", step))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
			t.Fatal(err)
		}
		f.Close()
		items = append(items, GalleryItem{Path: path, Step: step})
	}
	fb.mu.Lock()
	fb.runs = []RunInfo{{Dir: dir, Name: "a", Step: 300}}
	fb.gallery = items
	fb.mu.Unlock()
	ui(func() { s.Show("Gallery") })
	until(t, "cards", func() bool { return len(s.gallery.grid.Objects) == 3 })
	ui(func() {
		for i, want := range []string{"step 100", "step 300", "step 200"} {
			card := s.gallery.grid.Objects[i].(*fyne.Container)
			var label string
			for _, o := range card.Objects {
				if b, ok := o.(*widget.Button); ok {
					label = b.Text
				}
			}
			if label != want {
				t.Errorf("card %d %q, want %q", i, label, want)
			}
		}
	})
}

// TestStatusNamesEngine: the status line says what computes and what draws.
func TestStatusNamesEngine(t *testing.T) {
	s, _, _ := newStudio(t, Options{Engine: "OpenBLAS 0.3.21, core Haswell"})
	until(t, "engine named", func() bool {
		return strings.Contains(s.rname.Text, "Compute: OpenBLAS 0.3.21, core Haswell · Rendering: ")
	})
}

// TestDropModel: a model file dropped on the window becomes a run on the Sample screen;
// a 256×256 model is offered DDIM with few steps, and the expected time comes from the
// measured network pass (7 s a pass in the fake: 20 steps × 16 images ≈ 37 min).
func TestDropModel(t *testing.T) {
	s, fb, _ := newStudio(t, Options{})
	ui(func() { s.Dropped(fyne.Position{}, []fyne.URI{storage.NewFileURI(writeTemp(t, "model-790000.ckpt"))}) })
	until(t, "imported run selected", func() bool { return s.sample.run.sel.Selected == "imported" })
	fb.mu.Lock()
	if len(fb.imports) != 1 || !strings.HasSuffix(fb.imports[0], "model-790000.ckpt") {
		t.Errorf("imports %v", fb.imports)
	}
	fb.mu.Unlock()
	until(t, "expected time shown", func() bool { return strings.Contains(s.sample.estimate.Text, "about 37 min") })
	ui(func() {
		if s.sample.sampler.Selected != samplerDDIM || s.sample.steps.entry.Text != fewSteps {
			t.Errorf("sampler %q, steps %q: want DDIM with %s steps for a 256×256 model", s.sample.sampler.Selected, s.sample.steps.entry.Text, fewSteps)
		}
		s.sample.sampler.SetSelected(samplerDDPM)
		if !strings.Contains(s.sample.estimate.Text, "DDIM with few steps is much faster") {
			t.Errorf("DDPM on a large model: %q", s.sample.estimate.Text)
		}
	})
}

// writeTemp writes an empty file of that name in a temporary folder.
func writeTemp(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRoundDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{7 * time.Millisecond: "7 ms", 400 * time.Millisecond: "0.4 s",
		12 * time.Second: "12 s", 3 * time.Minute: "3 min", 80 * time.Minute: "80 min", 3 * time.Hour: "3 h",
		200 * time.Minute: "3 h 20 min"} {
		if got := roundDuration(d); got != want {
			t.Errorf("roundDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestDeviceChoice: the device chosen on the status bar (the --device flag's at start)
// goes with every request.
func TestDeviceChoice(t *testing.T) {
	s, fb, _ := newStudio(t, Options{Device: "cpu"})
	fb.mu.Lock()
	fb.runs = []RunInfo{{Dir: "/runs/a", Name: "a", Step: 100, Size: 8, Channels: 1}}
	fb.mu.Unlock()
	ui(func() {
		if s.Device() != "cpu" || len(s.device.Options) != 3 {
			t.Errorf("device %q of %v", s.Device(), s.device.Options)
		}
		s.device.SetSelected("cuda")
		s.Show("Sample")
	})
	until(t, "run selected", func() bool { return s.sample.run.sel.Selected == "a" })
	ui(func() { test.Tap(s.sample.sample) })
	until(t, "sampled", func() bool { return !s.sample.saveGrid.Disabled() })
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if d := fb.samples[0].Device; d != "cuda" {
		t.Errorf("sample request on %q, want cuda", d)
	}
}
