package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/ui"
)

// Preview sampling during training: DDIM with previewSteps steps on previewImages images
// from a fixed noise, with the EMA weights.
const (
	previewSteps  = 20
	previewImages = 16
)

// guiTraining is a training session on its own goroutine, driven by the window.
type guiTraining struct {
	sess   *session
	req    ui.TrainRequest
	log    io.Writer
	events chan ui.TrainEvent
	ctl    chan bool       // true: pause, false: resume
	stop   context.Context // cancelled by Stop: ends previews and sample grids too
	cancel context.CancelFunc
	once   sync.Once

	preview      *compute.UNet // the EMA weights (shared, so always current)
	previewNoise []float32
	saved        chan struct{} // closed once the final checkpoint is written (or failed)
	stopAsked    time.Time     // when Stop was called (set once, before stop is closed)
}

// StartTraining opens the run (resuming it if it has a checkpoint), loads its data and
// starts training on a goroutine of its own.
func (b *backend) StartTraining(req ui.TrainRequest) (ui.Training, error) {
	if req.Run == "" {
		return nil, errors.New("no run folder given")
	}
	c := &trainCmd{
		Data: req.Data.Folder, RunDir: req.Run, dataFiles: req.Data.Files,
		modelFlags: modelFlags{Preset: req.Preset, ImageSize: req.Size},
		Steps:      req.Steps, Batch: req.Batch, LR: req.LR, Warmup: 500, EMA: req.EMA, Schedule: req.Schedule, T: 1000,
		CheckpointEvery: 500, CheckpointMinutes: 10, LogEvery: 1, // every step, for the loss curve on resume
	}
	if c.Schedule == "" {
		c.Schedule = "linear"
	}
	if c.Batch == 0 { // resuming: the run's own batch size is used anyway
		c.Batch = 64
	}
	if c.Preset == "" {
		c.Preset = "mnist"
	}
	// A new run on the dataset the window loaded last reuses it instead of reading it again.
	b.mu.Lock()
	if b.cached != nil && compute.LatestCheckpoint(req.Run) == "" && b.key == dataKey(req.Data, req.Size, 0) {
		c.preloaded = b.cached
	}
	b.mu.Unlock()
	fresh := compute.LatestCheckpoint(req.Run) == ""
	s, err := c.openSession(&env{out: b.log, errOut: io.Discard})
	if err != nil {
		if fresh {
			os.Remove(req.Run) // the folder made for a run that never started, if still empty
		}
		return nil, err
	}
	g := &guiTraining{sess: s, req: req, log: b.log, events: make(chan ui.TrainEvent, 64), ctl: make(chan bool, 4),
		saved: make(chan struct{})}
	g.stop, g.cancel = context.WithCancel(context.Background())
	b.mu.Lock()
	b.active[g] = true
	b.mu.Unlock()
	g.preview = s.tr.EMANet()
	shape := g.previewShape()
	g.previewNoise, _ = gaussian(0, shape.Size())
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
	var all []*guiTraining
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

// Events delivers the training's reports; it is closed after the last.
func (g *guiTraining) Events() <-chan ui.TrainEvent { return g.events }

// Pause pauses after the step in flight.
func (g *guiTraining) Pause() { g.send(true) }

// Resume resumes a paused training.
func (g *guiTraining) Resume() { g.send(false) }

func (g *guiTraining) send(pause bool) {
	select {
	case g.ctl <- pause:
	default:
	}
}

// Stop abandons the step in flight (its work is redone on resume), saves and ends.
func (g *guiTraining) Stop() {
	g.once.Do(func() {
		g.stopAsked = time.Now()
		g.cancel()
		g.sess.tr.Interrupt()
	})
}

func (g *guiTraining) stopped() bool { return g.stop.Err() != nil }

func (g *guiTraining) previewShape() diffusion.Shape {
	cfg := g.sess.tr.Net.Config
	return diffusion.Shape{N: previewImages, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
}

// event sends ev with the run, step and target filled in.
func (g *guiTraining) event(ev ui.TrainEvent) {
	ev.Run = g.req.Run
	if ev.Step == 0 {
		ev.Step = g.sess.tr.Step
	}
	ev.Steps = g.sess.app.Steps
	g.events <- ev
}

// run is the training goroutine: steps until the target or Stop, with pauses, previews,
// checkpoints and a sample grid per checkpoint; nothing it does can crash the window.
func (g *guiTraining) run() {
	s := g.sess
	savedOnce := sync.OnceFunc(func() { close(g.saved) })
	defer savedOnce()
	defer close(g.events)
	defer s.close()
	defer g.preview.Close()
	defer func() {
		if r := recover(); r != nil {
			g.event(ui.TrainEvent{Kind: ui.EventError, Err: fmt.Errorf("internal error (please report it): %v; the last checkpoint is kept: %s", r, compute.LatestCheckpoint(s.cmd.RunDir))})
		}
	}()
	cfg := s.tr.Net.Config
	verb := "Training a new"
	if s.resumed && s.tr.Step > 0 {
		verb = fmt.Sprintf("Resuming at step %d a", s.tr.Step)
	}
	msg := fmt.Sprintf("%s %s model (%d parameters, %s) on %d images, batch %d, up to step %d.", verb, orDefault(orDefault(s.app.Preset, presetOf(cfg)), "custom"),
		s.tr.Net.NumParams(), cfg, s.ds.N, s.app.Batch, s.app.Steps)
	fmt.Fprintln(g.log, msg)
	g.event(ui.TrainEvent{Kind: ui.EventStarted, Message: msg, History: lossHistory(s.cmd.RunDir, s.tr.Step)})

	var elapsed time.Duration
	first := s.tr.Step
	for s.tr.Step < s.app.Steps && !g.stopped() {
		if !g.waitIfPaused() {
			break
		}
		t0 := time.Now()
		st, err := s.step()
		if errors.Is(err, compute.ErrInterrupted) {
			break
		}
		if err != nil {
			g.event(ui.TrainEvent{Kind: ui.EventError, Err: fmt.Errorf("%w (the last checkpoint is kept: %s)", err, orDefault(compute.LatestCheckpoint(s.cmd.RunDir), "none yet"))})
			return
		}
		dt := time.Since(t0)
		elapsed += dt
		if _, err := s.log(st, dt.Seconds(), elapsed); err != nil {
			g.event(ui.TrainEvent{Kind: ui.EventError, Err: err})
			return
		}
		g.event(ui.TrainEvent{Kind: ui.EventStep, Loss: st.Loss, Elapsed: elapsed,
			StepsPerSec: 1 / dt.Seconds(), ImagesPerSec: float64(s.app.Batch) / dt.Seconds()})
		path, err := s.maybeCheckpoint()
		if err != nil {
			g.event(ui.TrainEvent{Kind: ui.EventError, Err: err})
			return
		}
		if path != "" {
			g.event(ui.TrainEvent{Kind: ui.EventCheckpoint, Path: path})
			g.sampleGrid()
		}
		if k := g.req.PreviewEvery; k > 0 && (s.tr.Step == first+1 || s.tr.Step%k == 0) {
			t1 := time.Now()
			g.runPreview()
			elapsed += time.Since(t1)
		}
	}
	finished := s.tr.Step >= s.app.Steps
	path, err := s.finish()
	savedOnce()
	if err != nil {
		g.event(ui.TrainEvent{Kind: ui.EventError, Err: fmt.Errorf("saving the checkpoint: %w", err)})
		return
	}
	g.event(ui.TrainEvent{Kind: ui.EventCheckpoint, Path: path})
	msg = fmt.Sprintf("Stopped at step %d; checkpoint saved: %s", s.tr.Step, path)
	if finished {
		g.sampleGrid()
		msg = fmt.Sprintf("Finished: step %d; checkpoint saved: %s", s.tr.Step, path)
	}
	if g.stopped() {
		fmt.Fprintf(g.log, "%s (%.2f s after Stop)\n", msg, time.Since(g.stopAsked).Seconds())
	} else {
		fmt.Fprintln(g.log, msg)
	}
	g.event(ui.TrainEvent{Kind: ui.EventDone, Message: msg, Elapsed: elapsed})
}

// waitIfPaused handles Pause/Resume requests; it returns false if Stop came while paused.
func (g *guiTraining) waitIfPaused() bool {
	select {
	case pause := <-g.ctl:
		if !pause {
			return true
		}
	default:
		return true
	}
	g.event(ui.TrainEvent{Kind: ui.EventPaused})
	for {
		select {
		case pause := <-g.ctl:
			if !pause {
				g.event(ui.TrainEvent{Kind: ui.EventResumed})
				return true
			}
		case <-g.stop.Done():
			return false
		}
	}
}

// runPreview samples the preview grid with the EMA weights, reporting every step.
func (g *guiTraining) runPreview() {
	shape := g.previewShape()
	rng := rand.New(rand.NewPCG(0, 2))
	sched := g.sess.sched
	_, err := sched.SampleDDIM(g.stop, g.preview, g.previewNoise, shape, min(previewSteps, sched.T), 0, rng, func(p diffusion.Progress) {
		f := frame(p, shape)
		f.Xt.Data = append([]float32(nil), f.Xt.Data...) // the sampler reuses its buffers
		f.X0.Data = append([]float32(nil), f.X0.Data...)
		g.event(ui.TrainEvent{Kind: ui.EventPreview, Frame: &f})
	})
	if err != nil && !g.stopped() {
		fmt.Fprintf(g.log, "preview: %v\n", err)
	}
}

// sampleGrid saves the gallery's 4×4 grid for the current step (unless stopping).
func (g *guiTraining) sampleGrid() {
	if g.stopped() {
		return
	}
	s := g.sess
	path := filepath.Join(s.cmd.RunDir, "samples", fmt.Sprintf("step-%08d.png", s.tr.Step))
	if err := previewGrid(g.stop, s.tr, s.sched, path); err != nil && !g.stopped() {
		fmt.Fprintf(g.log, "sample grid: %v\n", err)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
