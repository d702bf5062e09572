package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// evalCmd is `ddpm-studio eval`.
type evalCmd struct {
	RunDir string `name:"run" required:"" help:"Run directory (its newest checkpoint)."`
	EMA    bool   `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	Data   string `help:"Images to evaluate on: a folder or mnist (default: the run's training data)."`
	N      int    `default:"16" help:"Number of images (drawn at random with --seed). The bound costs T network passes over them."`
	BPD    bool   `name:"bpd" required:"" help:"Compute the variational bound in bits/dim (official calc_bpd_loop)."`
	Seed   uint64 `default:"0" help:"Seed of the image choice and the noise."`
}

type evalResult struct {
	Run        string  `json:"run"`
	Step       int64   `json:"step"`
	N          int     `json:"n"`
	BPD        float64 `json:"bpd"`
	BPDStdErr  float64 `json:"bpd_stderr"`
	PriorBPD   float64 `json:"prior_bpd"`
	DecoderBPD float64 `json:"decoder_bpd"`
	Seconds    float64 `json:"seconds"`
}

// Run evaluates.
func (c *evalCmd) Run(e *env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := loadSampler(c.RunDir, c.EMA)
	if err != nil {
		return err
	}
	warn(e.errOut, r.warnings)
	data, files := c.Data, []string(nil)
	if data == "" {
		data, files = r.app.Data, r.app.DataFiles
	}
	if data == "" && len(files) == 0 {
		return fmt.Errorf("run %s names no dataset: give --data", c.RunDir)
	}
	cfg := r.state.Config
	ds, err := loadData(e, data, files, cfg.Resolution, cfg.InChannels)
	if err != nil {
		return err
	}
	if c.N < 1 {
		return fmt.Errorf("--n %d: must be at least 1", c.N)
	}
	n := min(c.N, ds.N)
	rng := rand.New(rand.NewPCG(c.Seed, 5))
	idx := rng.Perm(ds.N)[:n]
	shape := r.imageShape(n)
	x0 := make([]float32, shape.Size())
	ds.Batch(idx, nil, x0)
	net := r.net(c.EMA)
	defer net.Close()
	bar := newProgress(e.errOut, int64(r.sched.T), "bits/dim", "t")
	start := time.Now()
	b, err := r.sched.CalcBPDLoop(ctx, net, x0, shape, r.app.Variance, rng, func(done, total int) { bar.set(int64(done)) })
	bar.done()
	if err != nil {
		return fmt.Errorf("bits/dim: %w", err)
	}
	res := evalResult{Run: c.RunDir, Step: r.state.Step, N: n, BPD: b.MeanTotal, PriorBPD: b.MeanPrior,
		DecoderBPD: b.Terms[0], Seconds: time.Since(start).Seconds()}
	if n > 1 {
		v := 0.0
		for _, x := range b.Total {
			v += (x - b.MeanTotal) * (x - b.MeanTotal)
		}
		res.BPDStdErr = math.Sqrt(v / float64(n-1) / float64(n))
	}
	e.say("bits/dim ≤ %.4f ± %.4f on %d images of %s (prior %.2e, decoder %.4f), step %d, %.0fs",
		res.BPD, res.BPDStdErr, n, data, res.PriorBPD, res.DecoderBPD, r.state.Step, res.Seconds)
	return e.result(res)
}
