//go:build !headless

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/run"
	"github.com/ddpm-studio/ddpm-studio/ui"
	"github.com/ddpm-studio/ddpm-studio/weights"
)

// thumbCount is how many images LoadDataset returns for the thumbnail strip.
const thumbCount = 32

// backend is the window's engine (ui.Backend): a thin adapter from the window's
// requests and types to package run's, with the dataset it loaded last kept for the
// training that follows.
type backend struct {
	runsDir string
	log     io.Writer // one line per notable event, for people reading the terminal

	mu     sync.Mutex
	cached *dataset.Dataset // the dataset loaded last, reused by a training on the same data
	key    string           // what cached was loaded from
	active map[*training]bool
}

func newBackend(runsDir string, log io.Writer) *backend {
	return &backend{runsDir: runsDir, log: log, active: map[*training]bool{}}
}

// Presets lists the model presets.
func (b *backend) Presets() []ui.Preset {
	var out []ui.Preset
	for _, name := range compute.PresetNames() {
		cfg, err := compute.PresetConfig(name)
		if err != nil {
			continue
		}
		out = append(out, ui.Preset{Name: name, Description: cfg.String(), Resolution: cfg.Resolution})
	}
	return out
}

// Defaults are run.DefaultOptions as the Train screen's fields.
func (b *backend) Defaults() ui.TrainRequest {
	d := run.DefaultOptions()
	cfg, _ := d.Model.Config(0)
	return ui.TrainRequest{Data: ui.DataSpec{Folder: d.Data}, Preset: d.Model.Preset, Size: cfg.Resolution, Batch: d.Batch,
		LR: d.LR, Steps: d.Steps, EMA: d.EMA, Schedule: d.Schedule, PreviewEvery: d.PreviewEvery}
}

// DefaultRunsDir is where new runs are made.
func (b *backend) DefaultRunsDir() string { return b.runsDir }

// dataKey names a dataset load, to know when a cached one can be reused.
func dataKey(spec ui.DataSpec, size, channels int) string {
	return fmt.Sprintf("%s|%s|%d|%d", spec.Folder, strings.Join(spec.Files, "\x00"), size, channels)
}

// LoadDataset loads a dataset at the given size and describes it.
func (b *backend) LoadDataset(ctx context.Context, spec ui.DataSpec, size int, progress func(done, total int)) (ui.DatasetInfo, error) {
	key := dataKey(spec, size, 0)
	b.mu.Lock()
	ds := b.cached
	if b.key != key {
		ds = nil
	}
	b.mu.Unlock()
	if ds == nil {
		var err error
		if ds, err = run.LoadData(ctx, spec.Folder, spec.Files, size, 0, progress); err != nil {
			return ui.DatasetInfo{}, err
		}
		b.mu.Lock()
		b.cached, b.key = ds, key
		b.mu.Unlock()
	}
	info := ui.DatasetInfo{Source: ds.Source, Spec: spec, Count: ds.N, Size: ds.H, Channels: ds.C}
	if spec.Folder == "mnist" {
		info.Source = "MNIST (built-in training set)"
	} else if len(spec.Files) > 0 {
		info.Source = fmt.Sprintf("%d dropped files in %s", len(spec.Files), ds.Source)
	}
	n := min(thumbCount, ds.N)
	per := ds.C * ds.H * ds.W
	info.Thumbs = ui.Images{Data: make([]float32, n*per), N: n, C: ds.C, H: ds.H, W: ds.W}
	for i, v := range ds.Pixels[:n*per] {
		info.Thumbs.Data[i] = imgio.ToModel(v)
	}
	for _, s := range ds.Skipped {
		info.Skipped = append(info.Skipped, ui.Skipped{Path: s.Path, Reason: s.Reason})
	}
	return info, nil
}

// trainOptions are a Train-screen request as run.Options: the defaults with the
// request's fields. A field left zero is not given (a request from the form has them
// all; on a resumed run its model fields are the run's own and locked); an EMA decay of
// 0, which disables the EMA, counts when the request has a batch size, as the form's do.
func trainOptions(req ui.TrainRequest) run.Options {
	o := run.DefaultOptions()
	o.Given = map[string]bool{}
	set := func(name string, ok bool) bool {
		o.Given[name] = ok
		return ok
	}
	if set(run.OptData, req.Data.Folder != "" || len(req.Data.Files) > 0) {
		o.Data, o.DataFiles = req.Data.Folder, req.Data.Files
	}
	if set(run.OptPreset, req.Preset != "") {
		o.Model.Preset = req.Preset
	}
	if set(run.OptImageSize, req.Size != 0) {
		size := req.Size
		o.Model.ImageSize = &size
	}
	if set(run.OptBatch, req.Batch != 0) {
		o.Batch = req.Batch
	}
	if set(run.OptLR, req.LR != 0) {
		o.LR = req.LR
	}
	if set(run.OptSteps, req.Steps != 0) {
		o.Steps = req.Steps
	}
	if set(run.OptEMA, req.EMA != 0 || req.Batch != 0) {
		o.EMA = req.EMA
	}
	if set(run.OptSchedule, req.Schedule != "") {
		o.Schedule = req.Schedule
	}
	o.PreviewEvery = req.PreviewEvery
	if req.Device != "" {
		o.Device = req.Device
	}
	return o
}

// StartTraining opens the run (resuming it if it has a checkpoint), loads its data and
// starts training on a goroutine of its own.
func (b *backend) StartTraining(req ui.TrainRequest) (ui.Training, error) {
	opts := trainOptions(req)
	// A run on the dataset the window loaded last reuses it instead of reading it again.
	b.mu.Lock()
	if b.cached != nil && b.key == dataKey(req.Data, req.Size, 0) {
		opts.Loaded = b.cached
	}
	b.mu.Unlock()
	s, err := run.Open(context.Background(), req.Run, opts)
	if err != nil {
		return nil, err
	}
	g := &training{s: s, req: req, log: b.log, events: make(chan ui.TrainEvent, 64), saved: make(chan struct{})}
	b.mu.Lock()
	b.active[g] = true
	b.mu.Unlock()
	go func() {
		g.run()
		b.mu.Lock()
		delete(b.active, g)
		b.mu.Unlock()
	}()
	return g, nil
}

// stopAll stops every training and waits (up to a minute) until each has written its
// checkpoint: the application calls it after the window is gone, however it went.
func (b *backend) stopAll() {
	b.mu.Lock()
	var all []*training
	for g := range b.active {
		all = append(all, g)
	}
	b.mu.Unlock()
	for _, g := range all {
		g.Stop()
		select {
		case <-g.saved:
		case <-time.After(time.Minute):
			fmt.Fprintf(b.log, "gave up waiting for %s to save\n", g.req.Run)
		}
	}
}

// training is a run.Session on its own goroutine, its events translated for the window.
type training struct {
	s         *run.Session
	req       ui.TrainRequest
	log       io.Writer
	events    chan ui.TrainEvent
	saved     chan struct{} // closed once the session has ended and saved (or failed)
	stopOnce  sync.Once
	stopAsked time.Time
}

// Events delivers the training's reports; it is closed after the last.
func (g *training) Events() <-chan ui.TrainEvent { return g.events }

// Pause pauses after the step in flight.
func (g *training) Pause() { g.s.Pause() }

// Resume resumes a paused training.
func (g *training) Resume() { g.s.Resume() }

// Stop abandons the step in flight (its work is redone on resume), saves and ends.
func (g *training) Stop() {
	g.stopOnce.Do(func() {
		g.stopAsked = time.Now()
		g.s.Stop()
	})
}

// run drives the session and reports; nothing it does can crash the window.
func (g *training) run() {
	s := g.s
	defer close(g.events)
	defer close(g.saved)
	defer s.Close()
	send := func(ev ui.TrainEvent) {
		ev.Run = g.req.Run
		g.events <- ev
	}
	defer func() {
		if r := recover(); r != nil {
			send(ui.TrainEvent{Kind: ui.EventError, Err: fmt.Errorf("internal error (please report it): %v; the last checkpoint is kept: %s",
				r, orNone(compute.LatestCheckpoint(s.Dir)))})
		}
	}()
	msg := s.Describe() + "."
	msg = strings.ToUpper(msg[:1]) + msg[1:] // a sentence on the status line
	for _, w := range append(s.Warnings, s.Notes...) {
		msg += " " + w + "."
	}
	fmt.Fprintln(g.log, msg)
	history, err := run.LossHistory(s.Dir, s.Trainer.Step)
	if err != nil {
		fmt.Fprintf(g.log, "loss history: %v\n", err)
	}
	hist := make([]ui.LossPoint, len(history))
	for i, p := range history {
		hist[i] = ui.LossPoint{Step: p.Step, Loss: p.Loss}
	}
	send(ui.TrainEvent{Kind: ui.EventStarted, Step: s.Trainer.Step, Steps: s.Opts.Steps, Message: msg, History: hist})
	res, err := s.Run(context.Background(), func(ev run.Event) {
		out := ui.TrainEvent{Step: ev.Step, Steps: ev.Steps, Elapsed: ev.Elapsed}
		switch ev.Kind {
		case run.EventStep:
			out.Kind, out.Loss = ui.EventStep, ev.Stats.Loss
			out.StepsPerSec, out.ImagesPerSec = 1/ev.StepSeconds, float64(s.Opts.Batch)/ev.StepSeconds
		case run.EventPreview:
			f := uiFrame(*ev.Frame)
			out.Kind, out.Frame = ui.EventPreview, &f
		case run.EventCheckpoint:
			out.Kind, out.Path = ui.EventCheckpoint, ev.Path
		case run.EventPaused:
			out.Kind = ui.EventPaused
		case run.EventResumed:
			out.Kind = ui.EventResumed
		default: // gallery grids and warnings go to the terminal
			if ev.Message != "" {
				fmt.Fprintln(g.log, ev.Message)
			}
			return
		}
		send(out)
	})
	if err != nil {
		send(ui.TrainEvent{Kind: ui.EventError, Step: res.Step, Err: err})
		return
	}
	msg = fmt.Sprintf("Stopped at step %d; checkpoint saved: %s", res.Step, orNone(res.Checkpoint))
	if res.Finished {
		msg = fmt.Sprintf("Finished: step %d; checkpoint saved: %s", res.Step, orNone(res.Checkpoint))
	}
	if !g.stopAsked.IsZero() {
		fmt.Fprintf(g.log, "%s (%.2f s after Stop)\n", msg, time.Since(g.stopAsked).Seconds())
	} else {
		fmt.Fprintln(g.log, msg)
	}
	send(ui.TrainEvent{Kind: ui.EventDone, Step: res.Step, Steps: s.Opts.Steps, Message: msg, Elapsed: res.Elapsed})
}

// Runs lists the run folders with a checkpoint, newest first.
func (b *backend) Runs() ([]ui.RunInfo, error) {
	runs, err := run.List(b.runsDir)
	if err != nil {
		return nil, err
	}
	out := make([]ui.RunInfo, len(runs))
	for i, r := range runs {
		out[i] = runInfo(r)
	}
	return out, nil
}

// runInfo is a run as the window lists it. A run made by import has no training
// settings yet: the form then shows the defaults.
func runInfo(r run.Info) ui.RunInfo {
	d := run.DefaultOptions()
	if r.Meta.Batch == 0 {
		r.Meta.Batch = d.Batch
	}
	if r.Meta.Steps == 0 {
		r.Meta.Steps = d.Steps
	}
	return ui.RunInfo{Dir: r.Dir, Name: r.Name, Step: r.Step, Preset: r.Meta.Preset, Size: r.Config.Resolution,
		Channels: r.Config.InChannels, T: r.Meta.T, Data: r.Meta.Data, Updated: r.Updated,
		Settings: ui.TrainRequest{Run: r.Dir, Preset: r.Meta.Preset, Size: r.Config.Resolution, Batch: r.Meta.Batch,
			LR: r.Optim.LR, Steps: r.Meta.Steps, EMA: r.Optim.EMADecay, Schedule: r.Meta.Schedule}}
}

// Gallery lists the sample grids of a run, newest first.
func (b *backend) Gallery(dir string) ([]ui.GalleryItem, error) {
	items, err := run.Gallery(dir)
	out := make([]ui.GalleryItem, len(items))
	for i, it := range items {
		out[i] = ui.GalleryItem{Path: it.Path, Step: it.Step, Time: it.Time}
	}
	return out, err
}

func uiImages(im run.Images) ui.Images {
	return ui.Images{Data: im.Data, N: im.N, C: im.C, H: im.H, W: im.W}
}

func uiFrame(f run.Frame) ui.Frame {
	return ui.Frame{Step: f.Step, Steps: f.Steps, T: f.T, Xt: uiImages(f.Xt), X0: uiImages(f.X0)}
}

// sample opens a run's model on device and runs fn on it, passing frames on as the window's.
func (b *backend) sample(dir string, ema bool, device string, onFrame func(ui.Frame), fn func(m *run.Model, onFrame func(run.Frame)) (run.Images, error)) (ui.Images, error) {
	m, err := run.OpenModel(dir, ema)
	if err != nil {
		return ui.Images{}, err
	}
	defer m.Close()
	note, err := m.Use(device)
	if err != nil {
		return ui.Images{}, err
	}
	if note != "" {
		fmt.Fprintln(b.log, "warning:", note)
	}
	fmt.Fprintf(b.log, "sampling %s on %s\n", dir, m.Device)
	x, err := fn(m, func(f run.Frame) { onFrame(uiFrame(f)) })
	if err != nil {
		return ui.Images{}, err
	}
	return uiImages(x), nil
}

// Sample generates images with a run's newest checkpoint.
func (b *backend) Sample(ctx context.Context, req ui.SampleRequest, onFrame func(ui.Frame)) (ui.Images, error) {
	return b.sample(req.Run, req.EMA, req.Device, onFrame, func(m *run.Model, on func(run.Frame)) (run.Images, error) {
		return m.Sample(ctx, run.SampleOptions{Sampler: req.Sampler, Steps: req.Steps, Eta: req.Eta, Seed: req.Seed, N: req.Count}, on)
	})
}

// Interpolate decodes noises on the great circle between two seeds' x_T.
func (b *backend) Interpolate(ctx context.Context, req ui.InterpRequest, onFrame func(ui.Frame)) (ui.Images, error) {
	if req.Count < 2 {
		return ui.Images{}, errors.New("interpolation needs at least 2 images")
	}
	return b.sample(req.Run, req.EMA, req.Device, onFrame, func(m *run.Model, on func(run.Frame)) (run.Images, error) {
		return m.Interpolate(ctx, req.SeedA, req.SeedB, req.Count, req.Steps, on)
	})
}

// IsModel reports whether path holds model weights rather than images.
func (b *backend) IsModel(path string) bool { return weights.Looks(path) }

// ImportModel makes a new run in the runs folder from the model weights at path.
func (b *backend) ImportModel(ctx context.Context, path string) (ui.RunInfo, string, error) {
	name := strings.TrimSuffix(filepath.Base(filepath.Clean(path)), filepath.Ext(path))
	dir := filepath.Join(b.runsDir, fmt.Sprintf("%s-%s", name, time.Now().Format("20060102-150405")))
	im, err := run.Import(path, dir, run.ImportOptions{})
	if err != nil {
		return ui.RunInfo{}, "", err
	}
	for _, w := range im.Warnings {
		fmt.Fprintln(b.log, "warning:", w)
	}
	fmt.Fprintf(b.log, "imported %s from %s into %s\n", im.Description, path, im.Checkpoint)
	in, ok := run.Describe(dir)
	if !ok {
		return ui.RunInfo{}, "", fmt.Errorf("the imported run %s cannot be read back", dir)
	}
	desc := im.Description
	if len(im.Warnings) > 0 {
		desc += " (" + strings.Join(im.Warnings, "; ") + ")"
	}
	return runInfo(in), desc, nil
}

// ExportModel writes a run's weights as a diffusers folder or a PyTorch checkpoint.
func (b *backend) ExportModel(dir, format, out string, ema bool) error {
	_, err := run.Export(dir, format, out, ema)
	return err
}

// PassTime measures one network pass over one image of a run's model on device.
func (b *backend) PassTime(ctx context.Context, dir, device string) (time.Duration, error) {
	m, err := run.OpenModel(dir, true)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	if _, err := m.Use(device); err != nil {
		return 0, err
	}
	return m.PassTime(ctx)
}

// Devices names where the network can run: auto, cpu and cuda in a build with CUDA,
// else the CPU alone.
func (b *backend) Devices() []string {
	if compute.CUDABuilt() {
		return compute.DeviceNames()
	}
	return []string{compute.DeviceCPU}
}
