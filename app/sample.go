package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// sampleCmd is `ddpm-studio sample`.
type sampleCmd struct {
	RunDir    string  `name:"run" required:"" help:"Run directory to sample from (its newest checkpoint)."`
	EMA       bool    `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	N         int     `help:"Number of images (default: 16, or the N of --init-noise)."`
	Sampler   string  `default:"ddpm" enum:"ddpm,ddim" help:"ddpm (Algorithm 2, all T steps) or ddim."`
	Steps     int     `default:"50" help:"DDIM steps."`
	Eta       float64 `default:"0" help:"DDIM η: 0 deterministic, 1 like DDPM."`
	Variance  string  `default:"" enum:",fixedlarge,fixedsmall" help:"DDPM σ²: fixedlarge (β) or fixedsmall (β̃) (default: the run's)."`
	Seed      uint64  `default:"0" help:"Seed of the initial noise and of the sampler's noise."`
	Grid      string  `help:"Write a PNG grid of the samples here."`
	OutDir    string  `help:"Write each sample as its own PNG into this directory."`
	Strip     string  `help:"Write the progression (x_t and x̂0 over the steps, paper Fig. 6) of up to 8 samples here."`
	InitNoise string  `help:"Start from this float32 N×C×H×W .npy instead of drawing x_T."`
	SaveNPY   string  `help:"Save the samples as float32 N×C×H×W .npy in model space [−1, 1]."`
}

type sampleResult struct {
	Run        string   `json:"run"`
	Checkpoint string   `json:"checkpoint"`
	Step       int64    `json:"step"`
	N          int      `json:"n"`
	Sampler    string   `json:"sampler"`
	Steps      int      `json:"steps"`
	Seconds    float64  `json:"seconds"`
	Files      []string `json:"files"`
}

// Run samples.
func (c *sampleCmd) Run(e *env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := loadSampler(c.RunDir, c.EMA)
	if err != nil {
		return err
	}
	warn(e.errOut, r.warnings)
	net := r.net(c.EMA)
	defer net.Close()
	n := c.N
	if n == 0 && c.InitNoise == "" {
		n = 16
	}
	shape := r.imageShape(n)
	rng := rand.New(rand.NewPCG(c.Seed, 3))
	var xT []float32
	if c.InitNoise != "" {
		var dims []int
		if xT, dims, err = imgio.ReadNPY(c.InitNoise); err != nil {
			return err
		}
		want := []int{shape.N, shape.C, shape.H, shape.W}
		if len(dims) == 4 && c.N == 0 {
			shape.N = dims[0]
		}
		if want[0] = shape.N; !slices.Equal(dims, want) {
			return fmt.Errorf("--init-noise %s has shape %v, need %v", c.InitNoise, dims, want)
		}
	} else {
		if n < 1 {
			return fmt.Errorf("--n %d: must be at least 1", n)
		}
		xT = make([]float32, shape.Size())
		for i := range xT {
			xT[i] = float32(rng.NormFloat64())
		}
	}
	variance := c.Variance
	if variance == "" {
		variance = r.app.Variance
	}
	steps := r.sched.T
	if c.Sampler == "ddim" {
		steps = c.Steps
	}
	var frames [][]float32
	keep := min(shape.N, 8)
	per := shape.C * shape.H * shape.W
	every := max(1, steps/10)
	bar := newProgress(e.errOut, int64(steps), c.Sampler, "steps")
	progress := func(p diffusion.Progress) {
		bar.set(int64(p.Step))
		if c.Strip != "" && (p.Step == 1 || p.Step%every == 0 || p.Step == p.Steps) {
			frames = append(frames, interleave(p.Xt[:keep*per], p.X0[:keep*per], keep, per))
		}
	}
	start := time.Now()
	var x []float32
	if c.Sampler == "ddim" {
		x, err = r.sched.SampleDDIM(ctx, net, xT, shape, c.Steps, c.Eta, rng, progress)
	} else {
		x, err = r.sched.SampleDDPM(ctx, net, xT, shape, variance, rng, progress)
	}
	bar.done()
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	secs := time.Since(start).Seconds()
	res := sampleResult{Run: c.RunDir, Checkpoint: r.ckpt, Step: r.state.Step, N: shape.N, Sampler: c.Sampler, Steps: steps, Seconds: secs}
	if c.Grid != "" {
		if err := imgio.SavePNG(c.Grid, imgio.Grid(x, shape.N, shape.C, shape.H, shape.W, 0, 2)); err != nil {
			return err
		}
		res.Files = append(res.Files, c.Grid)
	}
	if c.Strip != "" {
		if err := imgio.SavePNG(c.Strip, imgio.Strip(frames, 2*keep, shape.C, shape.H, shape.W, 2)); err != nil {
			return err
		}
		res.Files = append(res.Files, c.Strip)
	}
	if c.OutDir != "" {
		if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
			return err
		}
		for i := 0; i < shape.N; i++ {
			p := filepath.Join(c.OutDir, fmt.Sprintf("sample-%04d.png", i))
			if err := imgio.SavePNG(p, imgio.Grid(x[i*per:(i+1)*per], 1, shape.C, shape.H, shape.W, 1, 0)); err != nil {
				return err
			}
			res.Files = append(res.Files, p)
		}
	}
	if c.SaveNPY != "" {
		if err := imgio.WriteNPY(c.SaveNPY, x, []int{shape.N, shape.C, shape.H, shape.W}); err != nil {
			return err
		}
		res.Files = append(res.Files, c.SaveNPY)
	}
	e.say("%d samples with %s (%d steps) from %s in %.1fs", shape.N, c.Sampler, steps, r.ckpt, secs)
	for _, f := range res.Files {
		e.say("wrote %s", f)
	}
	return e.result(res)
}

// interleave returns x_t and x̂0 of n images as 2n images: x_t of image i, then its x̂0.
func interleave(xt, x0 []float32, n, per int) []float32 {
	out := make([]float32, 0, 2*n*per)
	for i := 0; i < n; i++ {
		out = append(out, xt[i*per:(i+1)*per]...)
		out = append(out, x0[i*per:(i+1)*per]...)
	}
	return out
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
