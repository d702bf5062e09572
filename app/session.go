package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// session is an open training run: the trainer, its data, the schedule, the stream that
// draws batches, timesteps and noise, and the metrics log. The train command and the
// window's background trainer both drive one, a step at a time.
type session struct {
	cmd     *trainCmd
	tr      *compute.Trainer
	app     runState
	ds      *dataset.Dataset
	sched   *diffusion.Schedule
	pcg     *rand.PCG
	rng     *rand.Rand
	metrics *os.File
	resumed bool
	errOut  io.Writer // warnings

	saved     string // the checkpoint of the weights at step savedStep: resumed from or written
	savedStep int64

	shape    diffusion.Shape
	x0       []float32
	idx      []int
	flip     []bool
	lastCkpt time.Time
}

// openSession resumes the run's newest checkpoint or starts a new run, loads the data
// and opens the metrics log (dropping lines a killed process logged past the checkpoint).
func (c *trainCmd) openSession(e *env) (*session, error) {
	tr, app, ds, resumed, err := c.open(e)
	if err != nil {
		return nil, err
	}
	s := &session{cmd: c, tr: tr, app: app, ds: ds, resumed: resumed, lastCkpt: time.Now(), errOut: e.errOut}
	if resumed {
		s.saved, s.savedStep = c.resumedFrom, tr.Step
	}
	fail := func(err error) (*session, error) {
		tr.Close()
		return nil, err
	}
	if s.sched, err = diffusion.NewSchedule(app.Schedule, app.T); err != nil {
		return fail(err)
	}
	s.pcg = rand.NewPCG(app.Seed, 1)
	if app.DataRNG != nil {
		if err := s.pcg.UnmarshalBinary(app.DataRNG); err != nil {
			return fail(fmt.Errorf("run %s: data stream state: %w", c.RunDir, err))
		}
	}
	s.rng = rand.New(s.pcg)
	need, err := tr.Prepare(app.Batch)
	if err != nil {
		return fail(err)
	}
	if err := checkMemory(need, memAvailable(), s.tr.Net.Config.String(), app.Batch); err != nil {
		return fail(err)
	}
	if err := trimMetrics(filepath.Join(c.RunDir, "metrics.jsonl"), tr.Step); err != nil {
		return fail(err)
	}
	if s.metrics, err = os.OpenFile(filepath.Join(c.RunDir, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		return fail(fmt.Errorf("metrics: %w", err))
	}
	s.shape = diffusion.Shape{N: app.Batch, C: ds.C, H: ds.H, W: ds.W}
	s.x0 = make([]float32, s.shape.Size())
	s.idx = make([]int, app.Batch)
	s.flip = make([]bool, app.Batch)
	return s, nil
}

// close releases the trainer and the log.
func (s *session) close() {
	s.metrics.Close()
	s.tr.Close()
}

// step takes one training step (Algorithm 1). If the trainer is interrupted it returns
// compute.ErrInterrupted with everything, the data stream included, as before the step.
func (s *session) step() (diffusion.StepStats, error) {
	before := *s.pcg
	for i := range s.idx {
		s.idx[i] = s.rng.IntN(s.ds.N)
		s.flip[i] = s.app.Flip && s.rng.IntN(2) == 1
	}
	s.ds.Batch(s.idx, s.flip, s.x0)
	st, err := diffusion.TrainStep(s.sched, s.tr, s.x0, s.shape, s.rng)
	if errors.Is(err, compute.ErrInterrupted) {
		*s.pcg = before
		return st, compute.ErrInterrupted
	}
	return st, err
}

// log appends the step to metrics.jsonl every LogEvery steps and at the last; it
// reports whether it did.
func (s *session) log(st diffusion.StepStats, stepSecs float64, elapsed time.Duration) (bool, error) {
	if s.tr.Step%s.cmd.LogEvery != 0 && s.tr.Step != s.app.Steps {
		return false, nil
	}
	m := metric{Step: s.tr.Step, Loss: st.Loss, LR: st.LR, GradNorm: st.GradNorm,
		ImagesPerSec: float64(s.app.Batch) / stepSecs, Elapsed: elapsed.Seconds()}
	b, _ := json.Marshal(m)
	if _, err := s.metrics.Write(append(b, '\n')); err != nil {
		return false, fmt.Errorf("metrics: %w", err)
	}
	return true, nil
}

// save writes a checkpoint of the current step.
func (s *session) save() (string, error) {
	state, err := s.pcg.MarshalBinary()
	if err != nil {
		return "", err
	}
	s.app.DataRNG = state
	extra, err := json.Marshal(s.app)
	if err != nil {
		return "", err
	}
	path, warnings, err := compute.SaveCheckpoint(s.cmd.RunDir, s.tr, extra)
	warn(s.errOut, warnings)
	if err == nil {
		s.lastCkpt = time.Now()
		s.saved, s.savedStep = path, s.tr.Step
	}
	return path, err
}

// maybeCheckpoint saves every CheckpointEvery steps or CheckpointMinutes; it returns the
// checkpoint written, if any.
func (s *session) maybeCheckpoint() (string, error) {
	if s.tr.Step%s.cmd.CheckpointEvery != 0 && time.Since(s.lastCkpt).Minutes() < s.cmd.CheckpointMinutes {
		return "", nil
	}
	return s.save()
}

// maybeSampleGrid saves the 4×4 sample grid every SampleEvery steps.
func (s *session) maybeSampleGrid(ctx context.Context) error {
	if s.cmd.SampleEvery <= 0 || s.tr.Step%s.cmd.SampleEvery != 0 {
		return nil
	}
	return previewGrid(ctx, s.tr, s.sched, filepath.Join(s.cmd.RunDir, "samples", fmt.Sprintf("step-%08d.png", s.tr.Step)))
}

// finish saves a checkpoint unless the session resumed from or wrote one of the current
// step, and returns it. (The newest checkpoint on disk may be a damaged one of this step
// that loading passed over.)
func (s *session) finish() (string, error) {
	if s.saved != "" && s.savedStep == s.tr.Step {
		return s.saved, nil
	}
	return s.save()
}

// checkMemory refuses to train when a step needs more memory than is available (running
// out of memory would end the process with no checkpoint and no explanation).
func checkMemory(need, avail int64, model string, batch int) error {
	if avail <= 0 || need <= avail*9/10 {
		return nil
	}
	return fmt.Errorf("training %s at batch %d needs about %.1f GB of memory, and %.1f GB is available: lower the batch size or choose a smaller model",
		model, batch, float64(need)/1e9, float64(avail)/1e9)
}

// memAvailable is the memory the kernel says can be used without swapping (MemAvailable
// in /proc/meminfo), or 0 where that is unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
