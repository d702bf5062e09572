package ui

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ddpm-studio/ddpm-studio/shaders"
)

// newRun is the first choice of the run selector.
const newRun = "New run"

// trainState is where the Train screen is.
type trainState int

const (
	idle trainState = iota
	starting
	running
	paused
	stopping
)

// Colours of the loss curve.
var (
	rawColor    = color.RGBA{R: 150, G: 190, B: 235, A: 255}
	smoothColor = color.RGBA{R: 20, G: 90, B: 200, A: 255}
)

// plotEvery is the least time between two redraws of the loss curve.
const plotEvery = 250 * time.Millisecond

// trainScreen is the form, the controls and the live view of a training.
type trainScreen struct {
	s       *Studio
	content fyne.CanvasObject

	run                                  *runPicker
	preset, schedule                     *widget.Select
	size, batch, lr, steps, ema, preview *field
	modelLabel, dataLabel, formErr       *widget.Label
	start, pause, stop                   *widget.Button
	stats, caption                       *widget.Label
	bar                                  *widget.ProgressBar
	plot, xt, x0                         *canvas.Image

	mu        sync.Mutex
	state     trainState
	training  Training
	xs        []float64 // steps of the loss curve
	losses    []float64
	startStep int64
	afterStop []func()
	lastPlot  time.Time

	plotDraws, previewDraws, lastStep atomic.Int64 // see Studio.Stats
	shown                             sync.Map     // the image last set on the loss plot and the previews, by region name
}

func newTrainScreen(s *Studio) *trainScreen {
	t := &trainScreen{s: s}
	var names []string
	for _, p := range s.backend.Presets() {
		names = append(names, p.Name)
	}
	t.modelLabel = widget.NewLabel("")
	t.modelLabel.Wrapping = fyne.TextWrapWord
	t.run = newRunPicker([]string{newRun}, func(string) { t.runChanged() })
	t.preset = widget.NewSelect(names, func(string) { t.presetChanged() })
	t.schedule = widget.NewSelect([]string{"linear", "cosine"}, nil)
	t.schedule.SetSelected(s.defaults.Schedule)
	t.size = newField("Image size", strconv.Itoa(s.defaults.Size), intIn(8, 512))
	t.batch = newField("Batch", strconv.Itoa(s.opts.Batch), intIn(1, 4096))
	t.lr = newField("Learning rate", strconv.FormatFloat(s.defaults.LR, 'g', -1, 64), floatIn(0, 1, true, false))
	t.steps = newField("Steps", strconv.FormatInt(s.opts.Steps, 10), intIn(1, 100_000_000))
	t.ema = newField("EMA decay", strconv.FormatFloat(s.defaults.EMA, 'g', -1, 64), floatIn(0, 1, false, true))
	t.preview = newField("Preview every", strconv.FormatInt(s.opts.PreviewEvery, 10), intIn(0, 100_000_000))
	for _, f := range t.fields() {
		f.entry.OnChanged = func(string) { t.validate() }
	}
	t.preset.SetSelected(s.opts.Preset)
	t.run.sel.SetSelected(newRun)

	t.dataLabel = widget.NewLabel("Data: loading…")
	t.dataLabel.Wrapping = fyne.TextWrapWord
	t.formErr = widget.NewLabel("")
	t.formErr.Importance = widget.DangerImportance
	t.formErr.Wrapping = fyne.TextWrapWord
	t.start = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), t.startTraining)
	t.start.Importance = widget.HighImportance
	t.pause = widget.NewButtonWithIcon("Pause", theme.MediaPauseIcon(), t.togglePause)
	t.stop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), func() { t.stopThen(nil) })

	form := widget.NewForm(
		widget.NewFormItem("Run", t.run.sel),
		widget.NewFormItem("Model", t.preset),
		widget.NewFormItem(t.size.label, t.size.entry),
		widget.NewFormItem(t.batch.label, t.batch.entry),
		widget.NewFormItem(t.lr.label, t.lr.entry),
		widget.NewFormItem(t.steps.label, t.steps.entry),
		widget.NewFormItem(t.ema.label, t.ema.entry),
		widget.NewFormItem("Schedule", t.schedule),
		widget.NewFormItem(t.preview.label, t.preview.entry),
	)
	left := container.NewVBox(form, t.modelLabel, t.dataLabel, container.NewGridWithColumns(3, t.start, t.pause, t.stop), t.formErr)

	t.stats = widget.NewLabel("Not started.")
	t.stats.Wrapping = fyne.TextWrapWord
	t.bar = widget.NewProgressBar()
	t.plot = newView(560, 230, true)
	t.xt = newView(220, 220, false)
	t.x0 = newView(220, 220, false)
	t.caption = widget.NewLabel("The preview appears after the first step: x_t (left) and the prediction x̂0 (right) as noise turns into images.")
	t.caption.Wrapping = fyne.TextWrapWord
	grids := container.NewGridWithColumns(2, t.xt, t.x0)
	right := container.NewBorder(container.NewVBox(t.stats, t.bar), nil, nil, nil,
		container.NewVSplit(t.plot, container.NewBorder(nil, t.caption, nil, nil, grids)))
	split := container.NewHSplit(container.NewVScroll(left), right)
	split.Offset = 0.3
	t.content = split
	t.setState(idle)
	return t
}

// fields are the form's entries.
func (t *trainScreen) fields() []*field {
	return []*field{t.size, t.batch, t.lr, t.steps, t.ema, t.preview}
}

// imageSize is the image size the form asks for, or the preset's if it is invalid.
func (t *trainScreen) imageSize() int {
	if t.size.check(t.size.entry.Text) == nil {
		return int(t.size.int())
	}
	return t.presetInfo().Resolution
}

func (t *trainScreen) presetInfo() Preset {
	for _, p := range t.s.backend.Presets() {
		if p.Name == t.preset.Selected {
			return p
		}
	}
	return Preset{Resolution: 28}
}

func (t *trainScreen) presetChanged() {
	if t.size == nil {
		return
	}
	p := t.presetInfo()
	t.size.entry.SetText(strconv.Itoa(p.Resolution))
	t.modelLabel.SetText("Model: " + p.Description)
}

// validate shows what is wrong with the form and enables Start only when nothing is.
func (t *trainScreen) validate() bool {
	if t.formErr == nil {
		return false
	}
	probs := problems(t.fields()...)
	if t.run.sel.Selected != newRun {
		if r, ok := t.selectedRun(); ok && t.steps.check(t.steps.entry.Text) == nil && t.steps.int() <= r.Step {
			probs = append(probs, fmt.Sprintf("Steps: the run is at step %d already; ask for more", r.Step))
		}
	} else if _, ok := t.s.data.current(); !ok {
		probs = append(probs, "Data: no dataset loaded yet")
	}
	t.formErr.SetText(strings.Join(probs, "\n"))
	t.mu.Lock()
	st := t.state
	t.mu.Unlock()
	if st == idle && len(probs) == 0 {
		t.start.Enable()
	} else {
		t.start.Disable()
	}
	return len(probs) == 0
}

// refreshRuns reloads the run list (unless training, when it must not change).
func (t *trainScreen) refreshRuns() {
	if !t.running() {
		t.run.reload(t.s, nil)
	}
}

// selectedRun returns the existing run chosen, if any (else a new run is made).
func (t *trainScreen) selectedRun() (RunInfo, bool) { return t.run.selected() }

// runChanged fills the form from an existing run, whose model settings are fixed.
func (t *trainScreen) runChanged() {
	if t.formErr == nil {
		return
	}
	r, ok := t.selectedRun()
	// A resumed run keeps its model, schedule, batch and optimizer: only Steps and the
	// preview interval can change.
	model := []fyne.Disableable{t.preset, t.size.entry, t.schedule, t.batch.entry, t.lr.entry, t.ema.entry}
	if !ok {
		for _, w := range model {
			w.Enable()
		}
		t.datasetChanged(DatasetInfo{})
		t.validate()
		return
	}
	st := r.Settings
	t.preset.SetSelected(st.Preset)
	t.size.entry.SetText(strconv.Itoa(r.Size))
	if st.Schedule != "" {
		t.schedule.SetSelected(st.Schedule)
	}
	if st.Batch > 0 {
		t.batch.entry.SetText(strconv.Itoa(st.Batch))
	}
	if st.LR > 0 {
		t.lr.entry.SetText(strconv.FormatFloat(st.LR, 'g', -1, 64))
	}
	if st.EMA > 0 {
		t.ema.entry.SetText(strconv.FormatFloat(st.EMA, 'g', -1, 64))
	}
	steps := st.Steps
	if steps <= r.Step {
		steps = r.Step + 1000
	}
	t.steps.entry.SetText(strconv.FormatInt(steps, 10))
	for _, w := range model {
		w.Disable()
	}
	t.dataLabel.SetText(fmt.Sprintf("Data: the run's own (%s). Resumes at step %d.", r.Data, r.Step))
	t.validate()
}

// datasetChanged shows the dataset a new run would train on.
func (t *trainScreen) datasetChanged(DatasetInfo) {
	if _, ok := t.selectedRun(); ok {
		return
	}
	if info, ok := t.s.data.current(); ok {
		t.dataLabel.SetText("Data: " + info.Source + " — " + info.summary() + ". Drop a folder on the window to change it.")
	}
	t.validate()
}

// request builds the training request from the form.
func (t *trainScreen) request() (TrainRequest, bool) {
	if !t.validate() {
		return TrainRequest{}, false
	}
	req := TrainRequest{
		Preset: t.preset.Selected, Size: int(t.size.int()), Batch: int(t.batch.int()), LR: t.lr.float(),
		Steps: t.steps.int(), EMA: t.ema.float(), Schedule: t.schedule.Selected, PreviewEvery: t.preview.int(),
		Device: t.s.Device(),
	}
	if r, ok := t.selectedRun(); ok {
		req.Run = r.Dir
		return req, true
	}
	info, _ := t.s.data.current()
	req.Data = info.Spec
	name := "files"
	if info.Spec.Folder == "mnist" {
		name = "mnist"
	} else if info.Spec.Folder != "" {
		name = filepath.Base(info.Spec.Folder)
	}
	req.Run = filepath.Join(t.s.opts.RunsDir, fmt.Sprintf("%s-%s-%s", name, req.Preset, time.Now().Format("20060102-150405")))
	return req, true
}

// startTraining starts (or resumes) a training in the background.
func (t *trainScreen) startTraining() {
	req, ok := t.request()
	if !ok {
		return
	}
	t.setState(starting)
	t.stats.SetText("Starting: building the model and loading the data…")
	go func() {
		tr, err := t.s.backend.StartTraining(req)
		if err != nil {
			t.s.do(func() {
				t.setState(idle)
				t.stats.SetText("Not started.")
			})
			t.s.fail("Starting training", err)
			return
		}
		t.mu.Lock()
		t.training = tr
		t.xs, t.losses = nil, nil
		stopNow := t.state == stopping // Stop was pressed while the model was being built
		t.mu.Unlock()
		if stopNow {
			tr.Stop()
		}
		t.pump(tr)
	}()
}

// pump turns the training's events into widget updates until it ends.
func (t *trainScreen) pump(tr Training) {
	var last TrainEvent
	for ev := range tr.Events() {
		switch ev.Kind {
		case EventStarted:
			t.mu.Lock()
			t.startStep = ev.Step
			for _, p := range ev.History {
				t.xs = append(t.xs, float64(p.Step))
				t.losses = append(t.losses, p.Loss)
			}
			t.mu.Unlock()
			if len(ev.History) > 0 {
				t.redrawPlot()
			}
			t.s.say("%s", ev.Message)
			t.s.do(func() { t.setState(running) })
		case EventStep:
			t.mu.Lock()
			t.xs = append(t.xs, float64(ev.Step))
			t.losses = append(t.losses, ev.Loss)
			replot := time.Since(t.lastPlot) >= plotEvery
			t.mu.Unlock()
			t.lastStep.Store(ev.Step)
			t.showStats(ev, "")
			if replot {
				t.redrawPlot()
			}
			last = ev
		case EventPreview:
			t.showPreview(ev)
		case EventCheckpoint:
			t.s.say("Checkpoint saved: %s", ev.Path)
		case EventPaused:
			t.s.do(func() { t.setState(paused) })
			t.s.say("Paused at step %d.", ev.Step)
		case EventResumed:
			t.s.do(func() { t.setState(running) })
			t.s.say("Training resumed.")
		case EventDone:
			t.redrawPlot()
			if last.Kind == EventStep {
				state := "stopped"
				if last.Step >= last.Steps {
					state = "finished"
				}
				t.showStats(last, state)
			}
			t.s.say("%s", ev.Message)
		case EventError:
			t.redrawPlot()
			t.s.fail("Training", ev.Err)
		}
	}
	t.mu.Lock()
	t.training = nil
	after := t.afterStop
	t.afterStop = nil
	t.mu.Unlock()
	t.s.do(func() {
		t.setState(idle)
		t.refreshRuns()
		t.s.gallery.refresh()
		for _, fn := range after {
			fn()
		}
	})
}

// showStats shows step, loss, speed, elapsed time and ETA (or, at the end, state
// instead of the ETA).
func (t *trainScreen) showStats(ev TrainEvent, state string) {
	t.mu.Lock()
	done := ev.Step - t.startStep
	t.mu.Unlock()
	eta := "ETA —"
	switch {
	case state != "":
		eta = state
	case done > 0 && ev.Elapsed > 0 && ev.Steps > ev.Step:
		rate := float64(done) / ev.Elapsed.Seconds()
		eta = "ETA " + (time.Duration(float64(ev.Steps-ev.Step)/rate) * time.Second).Round(time.Second).String()
	}
	text := fmt.Sprintf("Step %d / %d  ·  loss %.4f  ·  %.2f steps/s  ·  %.1f images/s  ·  elapsed %s  ·  %s",
		ev.Step, ev.Steps, ev.Loss, ev.StepsPerSec, ev.ImagesPerSec, ev.Elapsed.Round(time.Second), eta)
	frac := 0.0
	if ev.Steps > 0 {
		frac = float64(ev.Step) / float64(ev.Steps)
	}
	t.s.do(func() {
		t.stats.SetText(text)
		t.bar.SetValue(frac)
	})
}

// redrawPlot renders the loss curve, raw and smoothed, on a log scale.
func (t *trainScreen) redrawPlot() {
	t.mu.Lock()
	xs := append([]float64(nil), t.xs...)
	ys := append([]float64(nil), t.losses...)
	t.lastPlot = time.Now()
	t.mu.Unlock()
	m, err := t.s.Renderer().Plot(shaders.Plot{
		Width: 760, Height: 300, LogY: true, IntegerX: true, Title: "training loss (raw, and smoothed)",
		Series: []shaders.Series{
			{X: xs, Y: ys, Color: rawColor, Width: 1},
			{X: xs, Y: shaders.Smooth(ys, 0.95), Color: smoothColor, Width: 2},
		},
	})
	if err != nil {
		t.s.say("Drawing the loss curve: %v", err)
		return
	}
	t.s.setImage(t.plot, m)
	t.shown.Store("loss", m)
	t.plotDraws.Add(1)
}

// showPreview draws one denoising step of the preview sampling.
func (t *trainScreen) showPreview(ev TrainEvent) {
	f := ev.Frame
	a, err := t.s.renderGrid(gridSpec(f.Xt, 0, gridWidth))
	if err != nil {
		t.s.say("Drawing the preview: %v", err)
		return
	}
	b, err := t.s.renderGrid(gridSpec(f.X0, 0, gridWidth))
	if err != nil {
		t.s.say("Drawing the preview: %v", err)
		return
	}
	t.s.setImage(t.xt, a)
	t.s.setImage(t.x0, b)
	t.shown.Store("xt", a)
	t.shown.Store("x0", b)
	t.previewDraws.Add(1)
	caption := fmt.Sprintf("Preview with the EMA weights at training step %d: denoising step %d/%d (t = %d). Left x_t, right x̂0.", ev.Step, f.Step, f.Steps, f.T)
	t.s.do(func() { t.caption.SetText(caption) })
}

// setState enables the controls that make sense in st (UI goroutine).
func (t *trainScreen) setState(st trainState) {
	t.mu.Lock()
	t.state = st
	t.mu.Unlock()
	form := []fyne.Disableable{t.run.sel, t.batch.entry, t.lr.entry, t.steps.entry, t.ema.entry, t.preview.entry}
	model := []fyne.Disableable{t.preset, t.size.entry, t.schedule}
	switch st {
	case idle:
		for _, w := range form {
			w.Enable()
		}
		t.runChanged() // re-enables the model fields for a new run
		t.pause.Disable()
		t.stop.Disable()
		t.pause.SetText("Pause")
		t.pause.SetIcon(theme.MediaPauseIcon())
	default:
		for _, w := range append(form, model...) {
			w.Disable()
		}
		t.start.Disable()
		t.pause.Enable()
		t.stop.Enable()
		if st == starting || st == stopping {
			t.pause.Disable()
		}
		if st == stopping {
			t.stop.Disable()
		}
		if st == paused {
			t.pause.SetText("Resume")
			t.pause.SetIcon(theme.MediaPlayIcon())
		} else {
			t.pause.SetText("Pause")
			t.pause.SetIcon(theme.MediaPauseIcon())
		}
	}
}

// togglePause pauses or resumes.
func (t *trainScreen) togglePause() {
	t.mu.Lock()
	tr, st := t.training, t.state
	t.mu.Unlock()
	if tr == nil {
		return
	}
	if st == paused {
		tr.Resume()
	} else {
		tr.Pause()
	}
}

// running reports whether a training is in progress.
func (t *trainScreen) running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state != idle
}

// stopThen stops the training, if any, and calls fn (on the UI goroutine) once its
// checkpoint is saved; with no training it calls fn at once.
func (t *trainScreen) stopThen(fn func()) {
	t.mu.Lock()
	tr := t.training
	if tr == nil && t.state == idle {
		t.mu.Unlock()
		if fn != nil {
			fn()
		}
		return
	}
	if fn != nil {
		t.afterStop = append(t.afterStop, fn)
	}
	t.mu.Unlock()
	t.setState(stopping)
	t.s.say("Stopping: saving a checkpoint…")
	if tr != nil {
		tr.Stop()
	}
}
