package main

import (
	"fmt"
	"slices"

	"github.com/alecthomas/kong"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// trainCmd is `ddpm-studio train`. Its defaults are run.DefaultOptions (see defaultVars).
type trainCmd struct {
	Data   string `help:"Folder of images (searched recursively), or 'mnist' for the built-in MNIST training set. Default when resuming: the run's."`
	RunDir string `name:"run" required:"" help:"Run directory: checkpoints, metrics.jsonl and samples go here. Training resumes if it has a checkpoint."`

	modelFlags `embed:""`
	deviceFlag `embed:""`

	Steps             int64   `default:"${steps}" help:"Train until this many steps in all (default when resuming: the run's target)."`
	Batch             int     `default:"${batch}" help:"Images per step."`
	LR                float64 `default:"${lr}" help:"Adam learning rate after warm-up."`
	Warmup            int     `default:"${warmup}" help:"Steps of linear learning-rate warm-up (the paper: 5000 of 800k)."`
	EMA               float64 `default:"${ema}" help:"EMA decay of the weights; early steps use min(decay, (1+s)/(10+s)), so short runs are fine. 0 disables."`
	Seed              uint64  `default:"0" help:"Seed of the initial weights, batches, timesteps, noise and dropout."`
	Schedule          string  `default:"${schedule}" enum:"linear,cosine" help:"Noise schedule: linear (1e-4 → 0.02) or cosine."`
	T                 int     `name:"timesteps" default:"${timesteps}" help:"Diffusion steps T."`
	Hflip             bool    `help:"Random horizontal flips (not for digits or text)."`
	CheckpointEvery   int64   `default:"${checkpoint_every}" help:"Save a checkpoint every N steps."`
	CheckpointMinutes float64 `default:"${checkpoint_minutes}" help:"Also save one when this many minutes have passed since the last (0: by steps only)."`
	SampleEvery       int64   `default:"${sample_every}" help:"Save a 4×4 DDIM-50 sample grid from the EMA weights to RUN/samples every N steps (0: never)."`
	LogEvery          int64   `default:"${log_every}" help:"Append a line to RUN/metrics.jsonl every N steps."`
}

// trainResult is the JSON result of train.
type trainResult struct {
	Run          string       `json:"run"`
	Step         int64        `json:"step"`
	Loss         *float64     `json:"loss"` // null when no step was taken
	Checkpoint   string       `json:"checkpoint"`
	Seconds      float64      `json:"seconds"`
	SecPerStep   float64      `json:"sec_per_step"`
	ImagesPerSec float64      `json:"images_per_sec"`
	Params       int          `json:"params"`
	Interrupted  bool         `json:"interrupted"`
	BLAS         ops.BLASInfo `json:"blas"`
	Device       string       `json:"device"`
}

// options are the flags as run.Options; given names the flags set on the command line.
func (c *trainCmd) options(given map[string]bool) run.Options {
	return run.Options{
		Data: c.Data, Model: c.modelFlags.options(), Steps: c.Steps, Batch: c.Batch, LR: c.LR, Warmup: c.Warmup,
		EMA: c.EMA, Seed: c.Seed, Schedule: c.Schedule, T: c.T, Hflip: c.Hflip,
		CheckpointEvery: c.CheckpointEvery, CheckpointMinutes: c.CheckpointMinutes, SampleEvery: c.SampleEvery,
		LogEvery: c.LogEvery, Device: c.Device, Given: given,
	}
}

// givenFlags names the flags set on the command line (not their defaults).
func givenFlags(kctx *kong.Context) map[string]bool {
	given := map[string]bool{}
	for _, p := range kctx.Path {
		if p.Flag != nil {
			given[p.Flag.Name] = true
		}
	}
	return given
}

// Run trains. Ctrl-C or SIGTERM abandons the step in flight (its work is redone on
// resume), saves and exits with status 130.
func (c *trainCmd) Run(e *env, kctx *kong.Context) error {
	ctx, stop := signalContext()
	defer stop()
	opts := c.options(givenFlags(kctx))
	var load *progress
	opts.LoadProgress = func(done, total int) {
		if load == nil {
			load = newProgress(e.errOut, int64(total), "loading", "files")
		}
		load.set(int64(done))
	}
	s, err := run.Open(ctx, c.RunDir, opts)
	if load != nil {
		load.done()
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w while opening the run; nothing was saved", errInterrupted)
		}
		return err
	}
	defer s.Close()
	for _, w := range s.Warnings {
		e.warn("%s", w)
	}
	for _, n := range s.Notes {
		e.warn("%s", n)
	}
	e.say("%s", s.Describe())

	bar := newProgress(e.errOut, s.Opts.Steps, "train", "steps")
	bar.set(s.Trainer.Step)
	res, err := s.Run(ctx, func(ev run.Event) {
		switch ev.Kind {
		case run.EventStep:
			bar.set(ev.Step)
			bar.describe(fmt.Sprintf("train loss %.4f", ev.Stats.Loss))
			if bar.bar == nil && !e.json && (ev.Step%printEvery == 0 || ev.Step == ev.Steps) {
				e.say("step %d/%d loss %.4f lr %.2e grad_norm %.3f %.1f img/s", ev.Step, ev.Steps, ev.Stats.Loss, ev.Stats.LR,
					ev.Stats.GradNorm, float64(s.Opts.Batch)/ev.StepSeconds)
			}
		case run.EventWarning:
			e.warn("%s", ev.Message)
		}
	})
	bar.done()
	if err != nil {
		return err
	}
	out := trainResult{Run: c.RunDir, Step: res.Step, Checkpoint: res.Checkpoint, Seconds: res.Elapsed.Seconds(),
		Params: s.Trainer.Net.NumParams(), Interrupted: res.Stopped, BLAS: blas(), Device: s.Device.String()}
	if len(res.StepTimes) > 0 {
		out.Loss = &res.Loss
		out.SecPerStep = median(slices.Clone(res.StepTimes))
		out.ImagesPerSec = float64(s.Opts.Batch) / out.SecPerStep
		e.say("step %d: loss %.4f, %d steps in %.1fs (median %.3fs/step, %.1f images/s); checkpoint %s",
			res.Step, res.Loss, len(res.StepTimes), out.Seconds, out.SecPerStep, out.ImagesPerSec, orNone(res.Checkpoint))
	} else {
		e.say("step %d: no step taken; checkpoint %s", res.Step, orNone(res.Checkpoint))
	}
	if err := e.result(out); err != nil {
		return err
	}
	if res.Stopped {
		if res.Checkpoint == "" {
			return fmt.Errorf("%w at step %d; nothing was saved", errInterrupted, res.Step)
		}
		return fmt.Errorf("%w at step %d; checkpoint saved to %s", errInterrupted, res.Step, res.Checkpoint)
	}
	return nil
}

// printEvery is how often train prints a line when there is no progress bar.
const printEvery = 10

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// median of a non-empty slice (which it sorts).
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
