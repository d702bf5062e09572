package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// evalCmd is `ddpm-studio eval`.
type evalCmd struct {
	RunDir     string `name:"run" required:"" help:"Run directory (its newest checkpoint)."`
	deviceFlag `embed:""`
	EMA        bool   `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	Data       string `help:"Images to evaluate on: a folder or mnist (default: the run's training data)."`
	N          int    `default:"16" help:"Number of images (drawn at random with --seed). The bound costs T network passes over them."`
	BPD        bool   `name:"bpd" required:"" help:"Compute the variational bound in bits/dim (official calc_bpd_loop)."`
	Seed       uint64 `default:"0" help:"Seed of the image choice and the noise."`
}

type evalResult struct {
	Run        string       `json:"run"`
	Step       int64        `json:"step"`
	N          int          `json:"n"`
	BPD        float64      `json:"bpd"`
	BPDStdErr  float64      `json:"bpd_stderr"`
	PriorBPD   float64      `json:"prior_bpd"`
	DecoderBPD float64      `json:"decoder_bpd"`
	Seconds    float64      `json:"seconds"`
	BLAS       ops.BLASInfo `json:"blas"`
	Device     string       `json:"device"`
}

// Run evaluates.
func (c *evalCmd) Run(e *env) error {
	ctx, stop := signalContext()
	defer stop()
	if c.N < 1 {
		return fmt.Errorf("--n %d: must be at least 1", c.N)
	}
	r, err := run.OpenModel(c.RunDir, c.EMA)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, w := range r.Warnings {
		e.warn("%s", w)
	}
	if err := e.useDevice(r, c.Device); err != nil {
		return err
	}
	data, files := c.Data, []string(nil)
	if data == "" {
		data, files = r.Meta.Data, r.Meta.DataFiles
	}
	if data == "" && len(files) == 0 {
		return fmt.Errorf("run %s names no dataset: give --data", c.RunDir)
	}
	cfg := r.Net.Config
	var load *progress
	ds, err := run.LoadData(ctx, data, files, cfg.Resolution, cfg.InChannels, func(done, total int) {
		if load == nil {
			load = newProgress(e.errOut, int64(total), "loading", "files")
		}
		load.set(int64(done))
	})
	if load != nil {
		load.done()
	}
	if err != nil {
		return interrupted(ctx, err, "loading the data")
	}
	n := min(c.N, ds.N)
	rng := rand.New(rand.NewPCG(c.Seed, 5))
	idx := rng.Perm(ds.N)[:n]
	shape := r.Shape(n)
	x0 := make([]float32, shape.Size())
	ds.Batch(idx, nil, x0)
	bar := newProgress(e.errOut, int64(r.Sched.T), "bits/dim", "t")
	start := time.Now()
	b, err := r.Sched.CalcBPDLoop(ctx, r.Net, x0, shape, r.Meta.Variance, rng, func(done, total int) { bar.set(int64(done)) })
	bar.done()
	if err != nil {
		return interrupted(ctx, fmt.Errorf("bits/dim: %w", err), "the evaluation")
	}
	res := evalResult{Run: c.RunDir, Step: r.Step, N: n, BLAS: blas(), Device: r.Device.String(), BPD: b.MeanTotal, PriorBPD: b.MeanPrior,
		DecoderBPD: b.Terms[0], Seconds: time.Since(start).Seconds()}
	if n > 1 {
		v := 0.0
		for _, x := range b.Total {
			v += (x - b.MeanTotal) * (x - b.MeanTotal)
		}
		res.BPDStdErr = math.Sqrt(v / float64(n-1) / float64(n))
	}
	e.say("bits/dim ≤ %.4f ± %.4f on %d images of %s (prior %.2e, decoder %.4f), step %d, %.0fs",
		res.BPD, res.BPDStdErr, n, data, res.PriorBPD, res.DecoderBPD, r.Step, res.Seconds)
	return e.result(res)
}
