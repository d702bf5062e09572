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
	"sync/atomic"
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

	dataFiles []string                // image files to train on instead of Data (the window's dropped files)
	preloaded *dataset.Dataset        // the data, already loaded by the window (used if size and channels fit)
	sess      atomic.Pointer[session] // the open session, for the interrupt handler
	// resumedFrom is the checkpoint the run resumed from ("" for a new run).
	resumedFrom string
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
	// Ctrl-C abandons the step in flight (its work is redone on resume) rather than
	// waiting for it, then saves.
	go func() {
		<-ctx.Done()
		if s := c.sess.Load(); s != nil {
			s.tr.Interrupt()
		}
	}()

	s, err := c.openSession(e)
	if err != nil {
		return err
	}
	c.sess.Store(s)
	defer s.close()
	cfg := s.tr.Net.Config
	if len(s.ds.Skipped) > 0 {
		fmt.Fprintf(e.errOut, "warning: %s\n", s.ds.SkippedSummary(5))
	}
	verb := "training"
	if s.resumed && s.tr.Step > 0 {
		verb = fmt.Sprintf("resuming at step %d;", s.tr.Step)
	}
	e.say("%s %s (%d parameters) on %d images of %s, batch %d, up to step %d", verb, cfg, s.tr.Net.NumParams(), s.ds.N, s.app.Data, s.app.Batch, s.app.Steps)

	bar := newProgress(e.errOut, s.app.Steps, "train", "steps")
	bar.set(s.tr.Step)
	start := time.Now()
	startStep := s.tr.Step
	var last diffusion.StepStats
	var ckpt string
	var stepTimes []float64
	for s.tr.Step < s.app.Steps && ctx.Err() == nil {
		t0 := time.Now()
		st, err := s.step()
		if errors.Is(err, compute.ErrInterrupted) {
			break
		}
		if err != nil {
			bar.done()
			return fmt.Errorf("%w (the last checkpoint is kept: %s)", err, compute.LatestCheckpoint(c.RunDir))
		}
		last = st
		dt := time.Since(t0).Seconds()
		stepTimes = append(stepTimes, dt)
		bar.set(s.tr.Step)
		bar.describe(fmt.Sprintf("train loss %.4f", last.Loss))
		logged, err := s.log(st, dt, time.Since(start))
		if err != nil {
			return err
		}
		if logged && bar.bar == nil && !e.json {
			e.say("step %d/%d loss %.4f lr %.2e grad_norm %.3f %.1f img/s", s.tr.Step, s.app.Steps, last.Loss, last.LR, last.GradNorm, float64(s.app.Batch)/dt)
		}
		if path, err := s.maybeCheckpoint(); err != nil {
			return err
		} else if path != "" {
			ckpt = path
		}
		if err := s.maybeSampleGrid(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	bar.done()
	interrupted := ctx.Err() != nil
	if ckpt, err = s.finish(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	res := trainResult{Run: c.RunDir, Step: s.tr.Step, Loss: last.Loss, Checkpoint: ckpt, Seconds: secs,
		Params: s.tr.Net.NumParams(), Interrupted: interrupted}
	if n := len(stepTimes); n > 0 {
		res.SecPerStep = median(stepTimes)
		res.ImagesPerSec = float64(s.app.Batch) / res.SecPerStep
	}
	e.say("step %d: loss %.4f, %d steps in %.1fs (median %.3fs/step, %.1f images/s); checkpoint %s",
		s.tr.Step, last.Loss, s.tr.Step-startStep, secs, res.SecPerStep, res.ImagesPerSec, ckpt)
	if err := e.result(res); err != nil {
		return err
	}
	if interrupted {
		return fmt.Errorf("%w at step %d; checkpoint saved to %s", errInterrupted, s.tr.Step, ckpt)
	}
	return nil
}

// open resumes the run's newest checkpoint, or starts a new run from the flags, and loads the data.
func (c *trainCmd) open(e *env) (*compute.Trainer, runState, *dataset.Dataset, bool, error) {
	tr, app, resumed, err := c.trainer(e)
	if err != nil {
		return nil, app, nil, false, err
	}
	cfg := tr.Net.Config
	channels := cfg.InChannels
	if !resumed && c.Channels == 0 {
		channels = 0 // gray or RGB, chosen from the data
	}
	ds := c.preloaded
	if ds == nil || ds.H != cfg.Resolution || (channels != 0 && ds.C != channels) {
		if ds, err = loadData(e, app.Data, app.DataFiles, cfg.Resolution, channels); err != nil {
			return nil, app, nil, false, err
		}
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
func (c *trainCmd) trainer(e *env) (*compute.Trainer, runState, bool, error) {
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
		warn(e.errOut, r.warnings)
		c.resumedFrom = r.ckpt
		app := r.app
		if c.Data != "" || len(c.dataFiles) > 0 {
			app.Data, app.DataFiles = c.Data, c.dataFiles
		}
		if app.Data == "" && len(app.DataFiles) == 0 {
			return nil, app, false, fmt.Errorf("run %s has no dataset: give --data DIR or --data mnist", c.RunDir)
		}
		app.Steps = c.Steps
		if app.Batch == 0 { // an imported run
			app.Batch, app.Seed, app.Flip = c.Batch, c.Seed, c.Hflip
		}
		return r.trainer, app, true, nil
	}
	if c.Data == "" && len(c.dataFiles) == 0 {
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
	app := runState{Data: c.Data, DataFiles: c.dataFiles, Preset: c.Preset, Schedule: c.Schedule, T: c.T, Variance: "fixedlarge", Batch: c.Batch,
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

// loadData loads a dataset (the image files if any are given, else spec) with a progress bar.
func loadData(e *env, spec string, files []string, size, channels int) (*dataset.Dataset, error) {
	var bar *progress
	opt := dataset.Options{Size: size, Channels: channels, Progress: func(done, total int) {
		if bar == nil {
			bar = newProgress(e.errOut, int64(total), "loading "+spec, "files")
		}
		bar.set(int64(done))
	}}
	var ds *dataset.Dataset
	var err error
	if len(files) > 0 {
		ds, err = dataset.LoadFiles(files, opt)
	} else {
		ds, err = dataset.Load(spec, opt)
	}
	if bar != nil {
		bar.done()
	}
	return ds, err
}
