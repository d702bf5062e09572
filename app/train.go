package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
)

// trainCmd is `ddpm-studio train`.
type trainCmd struct {
	Data   string `help:"Folder of images (searched recursively), or 'mnist' for the built-in MNIST training set. Default when resuming: the run's."`
	RunDir string `name:"run" required:"" help:"Run directory: checkpoints, metrics.jsonl and samples go here. Training resumes if it has a checkpoint."`

	modelFlags `embed:""`

	Steps             int64   `default:"2000" help:"Train until this many steps in all (a resumed run continues up to it)."`
	Batch             int     `default:"64" help:"Images per step."`
	LR                float64 `default:"2e-4" help:"Adam learning rate after warm-up."`
	Warmup            int     `default:"500" help:"Steps of linear learning-rate warm-up (the paper: 5000 of 800k)."`
	EMA               float64 `default:"0.9999" help:"EMA decay of the weights; early steps use min(decay, (1+s)/(10+s)), so short runs are fine. 0 disables."`
	Seed              uint64  `default:"0" help:"Seed of the initial weights, batches, timesteps, noise and dropout."`
	Schedule          string  `default:"linear" enum:"linear,cosine" help:"Noise schedule: linear (1e-4 → 0.02) or cosine."`
	T                 int     `name:"timesteps" default:"1000" help:"Diffusion steps T."`
	Hflip             bool    `help:"Random horizontal flips (not for digits or text)."`
	CheckpointEvery   int64   `default:"500" help:"Save a checkpoint every N steps."`
	CheckpointMinutes float64 `default:"10" help:"Also save one when this many minutes have passed since the last."`
	SampleEvery       int64   `default:"500" help:"Save a 4×4 DDIM-50 sample grid from the EMA weights to RUN/samples every N steps (0: never)."`
	LogEvery          int64   `default:"10" help:"Append a line to RUN/metrics.jsonl every N steps."`
}

// metric is one line of metrics.jsonl.
type metric struct {
	Step         int64   `json:"step"`
	Loss         float64 `json:"loss"`
	LR           float64 `json:"lr"`
	GradNorm     float64 `json:"grad_norm"`
	ImagesPerSec float64 `json:"images_per_sec"`
	Elapsed      float64 `json:"elapsed_s"`
}

// trainResult is the JSON result of train.
type trainResult struct {
	Run          string  `json:"run"`
	Step         int64   `json:"step"`
	Loss         float64 `json:"loss"`
	Checkpoint   string  `json:"checkpoint"`
	Seconds      float64 `json:"seconds"`
	SecPerStep   float64 `json:"sec_per_step"`
	ImagesPerSec float64 `json:"images_per_sec"`
	Params       int     `json:"params"`
	Interrupted  bool    `json:"interrupted"`
}

// Run trains.
func (c *trainCmd) Run(e *env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tr, app, ds, resumed, err := c.open(e)
	if err != nil {
		return err
	}
	defer tr.Close()
	cfg := tr.Net.Config
	if len(ds.Skipped) > 0 {
		fmt.Fprintf(e.errOut, "warning: %s\n", ds.SkippedSummary(5))
	}
	sched, err := diffusion.NewSchedule(app.Schedule, app.T)
	if err != nil {
		return err
	}
	pcg := rand.NewPCG(app.Seed, 1)
	if app.DataRNG != nil {
		if err := pcg.UnmarshalBinary(app.DataRNG); err != nil {
			return fmt.Errorf("run %s: data stream state: %w", c.RunDir, err)
		}
	}
	rng := rand.New(pcg)
	if err := trimMetrics(filepath.Join(c.RunDir, "metrics.jsonl"), tr.Step); err != nil {
		return err
	}
	mf, err := os.OpenFile(filepath.Join(c.RunDir, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer mf.Close()

	verb := "training"
	if resumed && tr.Step > 0 {
		verb = fmt.Sprintf("resuming at step %d;", tr.Step)
	}
	e.say("%s %s (%d parameters) on %d images of %s, batch %d, up to step %d", verb, cfg, tr.Net.NumParams(), ds.N, app.Data, app.Batch, app.Steps)

	save := func() (string, error) {
		state, err := pcg.MarshalBinary()
		if err != nil {
			return "", err
		}
		app.DataRNG = state
		extra, err := json.Marshal(app)
		if err != nil {
			return "", err
		}
		return compute.SaveCheckpoint(c.RunDir, tr, extra)
	}

	shape := diffusion.Shape{N: app.Batch, C: ds.C, H: ds.H, W: ds.W}
	x0 := make([]float32, shape.Size())
	idx := make([]int, app.Batch)
	flip := make([]bool, app.Batch)
	bar := newProgress(e.errOut, app.Steps, "train", "steps")
	bar.set(tr.Step)
	start, lastCkpt := time.Now(), time.Now()
	startStep := tr.Step
	var last diffusion.StepStats
	var ckpt string
	var stepTimes []float64
	for tr.Step < app.Steps {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		for i := range idx {
			idx[i] = rng.IntN(ds.N)
			flip[i] = app.Flip && rng.IntN(2) == 1
		}
		ds.Batch(idx, flip, x0)
		last, err = diffusion.TrainStep(sched, tr, x0, shape, rng)
		if err != nil {
			bar.done()
			return fmt.Errorf("%w (the last checkpoint is kept: %s)", err, compute.LatestCheckpoint(c.RunDir))
		}
		dt := time.Since(t0).Seconds()
		stepTimes = append(stepTimes, dt)
		bar.set(tr.Step)
		bar.describe(fmt.Sprintf("train loss %.4f", last.Loss))
		if tr.Step%c.LogEvery == 0 || tr.Step == app.Steps {
			m := metric{Step: tr.Step, Loss: last.Loss, LR: last.LR, GradNorm: last.GradNorm,
				ImagesPerSec: float64(app.Batch) / dt, Elapsed: time.Since(start).Seconds()}
			b, _ := json.Marshal(m)
			if _, err := mf.Write(append(b, '\n')); err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			if bar.bar == nil && !e.json {
				e.say("step %d/%d loss %.4f lr %.2e grad_norm %.3f %.1f img/s", tr.Step, app.Steps, last.Loss, last.LR, last.GradNorm, m.ImagesPerSec)
			}
		}
		if tr.Step%c.CheckpointEvery == 0 || time.Since(lastCkpt).Minutes() >= c.CheckpointMinutes {
			if ckpt, err = save(); err != nil {
				return err
			}
			lastCkpt = time.Now()
		}
		if c.SampleEvery > 0 && tr.Step%c.SampleEvery == 0 {
			if err := previewGrid(ctx, tr, sched, filepath.Join(c.RunDir, "samples", fmt.Sprintf("step-%08d.png", tr.Step))); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
	bar.done()
	interrupted := ctx.Err() != nil
	if latest := compute.LatestCheckpoint(c.RunDir); latest == "" || filepath.Base(latest) != fmt.Sprintf("step-%08d", tr.Step) {
		if ckpt, err = save(); err != nil {
			return err
		}
	} else {
		ckpt = latest
	}
	secs := time.Since(start).Seconds()
	res := trainResult{Run: c.RunDir, Step: tr.Step, Loss: last.Loss, Checkpoint: ckpt, Seconds: secs,
		Params: tr.Net.NumParams(), Interrupted: interrupted}
	if n := len(stepTimes); n > 0 {
		res.SecPerStep = median(stepTimes)
		res.ImagesPerSec = float64(app.Batch) / res.SecPerStep
	}
	e.say("step %d: loss %.4f, %d steps in %.1fs (median %.3fs/step, %.1f images/s); checkpoint %s",
		tr.Step, last.Loss, tr.Step-startStep, secs, res.SecPerStep, res.ImagesPerSec, ckpt)
	if err := e.result(res); err != nil {
		return err
	}
	if interrupted {
		return fmt.Errorf("%w at step %d; checkpoint saved to %s", errInterrupted, tr.Step, ckpt)
	}
	return nil
}

// open resumes the run's newest checkpoint, or starts a new run from the flags, and loads the data.
func (c *trainCmd) open(e *env) (*compute.Trainer, runState, *dataset.Dataset, bool, error) {
	tr, app, resumed, err := c.trainer()
	if err != nil {
		return nil, app, nil, false, err
	}
	cfg := tr.Net.Config
	channels := cfg.InChannels
	if !resumed && c.Channels == 0 {
		channels = 0 // gray or RGB, chosen from the data
	}
	ds, err := loadData(e, app.Data, cfg.Resolution, channels)
	if err != nil {
		return nil, app, nil, false, err
	}
	if !resumed && ds.C != cfg.InChannels {
		cfg.InChannels, cfg.OutCh = ds.C, ds.C
		net, err := compute.NewUNet(cfg, c.Seed)
		if err != nil {
			return nil, app, nil, false, err
		}
		tr = compute.NewTrainer(net, tr.Optim, c.Seed)
	}
	if ds.C != cfg.InChannels || ds.H != cfg.Resolution || ds.W != cfg.Resolution {
		return nil, app, nil, false, fmt.Errorf("data %s is %d×%d×%d but the model takes %d×%d×%d",
			app.Data, ds.H, ds.W, ds.C, cfg.Resolution, cfg.Resolution, cfg.InChannels)
	}
	return tr, app, ds, resumed, nil
}

// trainer resumes the run's newest checkpoint or makes a new model from the flags.
func (c *trainCmd) trainer() (*compute.Trainer, runState, bool, error) {
	if err := os.MkdirAll(c.RunDir, 0o755); err != nil {
		return nil, runState{}, false, fmt.Errorf("run directory: %w", err)
	}
	if c.Batch < 1 {
		return nil, runState{}, false, fmt.Errorf("--batch %d: must be at least 1", c.Batch)
	}
	if c.CheckpointEvery < 1 || c.LogEvery < 1 {
		return nil, runState{}, false, errors.New("--checkpoint-every and --log-every must be at least 1")
	}
	if compute.LatestCheckpoint(c.RunDir) != "" {
		r, err := loadRun(c.RunDir)
		if err != nil {
			return nil, runState{}, false, err
		}
		app := r.app
		if c.Data != "" {
			app.Data = c.Data
		}
		if app.Data == "" {
			return nil, app, false, fmt.Errorf("run %s has no dataset: give --data DIR or --data mnist", c.RunDir)
		}
		app.Steps = c.Steps
		if app.Batch == 0 { // an imported run
			app.Batch, app.Seed, app.Flip = c.Batch, c.Seed, c.Hflip
		}
		return r.trainer, app, true, nil
	}
	if c.Data == "" {
		return nil, runState{}, false, errors.New("--data is required for a new run (a folder, or mnist)")
	}
	cfg, err := c.config()
	if err != nil {
		return nil, runState{}, false, err
	}
	net, err := compute.NewUNet(cfg, c.Seed)
	if err != nil {
		return nil, runState{}, false, err
	}
	opt := compute.DefaultOptim()
	opt.LR, opt.Warmup, opt.EMADecay = c.LR, c.Warmup, c.EMA
	app := runState{Data: c.Data, Schedule: c.Schedule, T: c.T, Variance: "fixedlarge", Batch: c.Batch,
		Flip: c.Hflip, Seed: c.Seed, Steps: c.Steps}
	return compute.NewTrainer(net, opt, c.Seed), app, false, nil
}

// previewGrid saves a 4×4 DDIM-50 grid from the EMA weights with fixed noise.
func previewGrid(ctx context.Context, tr *compute.Trainer, sched *diffusion.Schedule, path string) error {
	cfg := tr.Net.Config
	shape := diffusion.Shape{N: 16, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
	rng := rand.New(rand.NewPCG(0, 2))
	noise := make([]float32, shape.Size())
	for i := range noise {
		noise[i] = float32(rng.NormFloat64())
	}
	net := tr.EMANet()
	defer net.Close()
	x, err := sched.SampleDDIM(ctx, net, noise, shape, min(50, sched.T), 0, rng, nil)
	if err != nil {
		return fmt.Errorf("preview samples: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return imgio.SavePNG(path, imgio.Grid(x, shape.N, shape.C, shape.H, shape.W, 4, 2))
}

// trimMetrics drops lines logged after step (work lost with a killed process), so a resumed
// run's metrics.jsonl has each step once.
func trimMetrics(path string, step int64) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var keep bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	dropped := false
	for sc.Scan() {
		var m metric
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.Step > step {
			dropped = true
			continue
		}
		keep.Write(sc.Bytes())
		keep.WriteByte('\n')
	}
	if !dropped {
		return nil
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(keep.Bytes())
		return err
	})
}

// loadData loads a dataset with a progress bar.
func loadData(e *env, spec string, size, channels int) (*dataset.Dataset, error) {
	var bar *progress
	ds, err := dataset.Load(spec, dataset.Options{Size: size, Channels: channels, Progress: func(done, total int) {
		if bar == nil {
			bar = newProgress(e.errOut, int64(total), "loading "+spec, "files")
		}
		bar.set(int64(done))
	}})
	if bar != nil {
		bar.done()
	}
	return ds, err
}
