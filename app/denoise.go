package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// denoiseCmd is `ddpm-studio denoise`.
type denoiseCmd struct {
	RunDir  string `name:"run" required:"" help:"Run directory (its newest checkpoint)."`
	EMA     bool   `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	Input   string `required:"" help:"x_t as float32 .npy (N×C×H×W or C×H×W, model space), or an image, which is noised to step t first."`
	T       int    `name:"t" required:"" help:"Timestep, the official index 0 ≤ t < T, fed to the time embedding as is."`
	Seed    uint64 `default:"0" help:"Seed of the noise added to an image input."`
	SaveEps string `help:"Save ε̂ as float32 .npy."`
	SaveX0  string `name:"save-x0" help:"Save x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (not clipped) as float32 .npy."`
	Out     string `help:"Save a PNG: x_t above x̂0 (clipped)."`
}

type denoiseResult struct {
	Run     string   `json:"run"`
	Step    int64    `json:"step"`
	T       int      `json:"t"`
	N       int      `json:"n"`
	EpsRMS  float64  `json:"eps_rms"`
	Files   []string `json:"files"`
	Noised  bool     `json:"noised"`
	NoiseSE float64  `json:"eps_mse_vs_true,omitempty"`
}

// Run denoises.
func (c *denoiseCmd) Run(e *env) error {
	r, err := loadSampler(c.RunDir, c.EMA)
	if err != nil {
		return err
	}
	warn(e.errOut, r.warnings)
	if c.T < 0 || c.T >= r.sched.T {
		return fmt.Errorf("--t %d: must be in [0, %d)", c.T, r.sched.T)
	}
	net := r.net(c.EMA)
	defer net.Close()
	one := r.imageShape(1)
	per := one.C * one.H * one.W
	var xt, trueEps []float32
	shape := one
	if strings.EqualFold(filepath.Ext(c.Input), ".npy") {
		x, dims, err := imgio.ReadNPY(c.Input)
		if err != nil {
			return err
		}
		switch {
		case len(dims) == 3 && slices.Equal(dims, []int{one.C, one.H, one.W}):
		case len(dims) == 4 && slices.Equal(dims[1:], []int{one.C, one.H, one.W}):
			shape.N = dims[0]
		default:
			return fmt.Errorf("--input %s has shape %v, the model takes N×%d×%d×%d", c.Input, dims, one.C, one.H, one.W)
		}
		xt = x
	} else {
		x0, err := imgio.LoadImage(c.Input, one.H, one.C)
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(c.Seed, 4))
		trueEps = make([]float32, per)
		for i := range trueEps {
			trueEps[i] = float32(rng.NormFloat64())
		}
		xt = r.sched.QSample(x0, []int{c.T}, trueEps)
	}
	ts := make([]int, shape.N)
	for i := range ts {
		ts[i] = c.T
	}
	eps, err := net.PredictEps(context.Background(), xt, ts, shape)
	if err != nil {
		return err
	}
	x0 := r.sched.PredictStartFromNoise(xt, ts, eps)
	res := denoiseResult{Run: c.RunDir, Step: r.state.Step, T: c.T, N: shape.N, EpsRMS: rms(eps), Noised: trueEps != nil}
	if trueEps != nil {
		res.NoiseSE = mse(eps, trueEps)
	}
	dims := []int{shape.N, shape.C, shape.H, shape.W}
	if c.SaveEps != "" {
		if err := imgio.WriteNPY(c.SaveEps, eps, dims); err != nil {
			return err
		}
		res.Files = append(res.Files, c.SaveEps)
	}
	if c.SaveX0 != "" {
		if err := imgio.WriteNPY(c.SaveX0, x0, dims); err != nil {
			return err
		}
		res.Files = append(res.Files, c.SaveX0)
	}
	if c.Out != "" {
		both := append(slices.Clone(xt), x0...)
		if err := imgio.SavePNG(c.Out, imgio.Grid(both, 2*shape.N, shape.C, shape.H, shape.W, shape.N, 2)); err != nil {
			return err
		}
		res.Files = append(res.Files, c.Out)
	}
	e.say("t=%d: ε̂ rms %.4f over %d image(s)", c.T, res.EpsRMS, shape.N)
	if trueEps != nil {
		e.say("mean squared error of ε̂ against the noise added: %.5f", res.NoiseSE)
	}
	for _, f := range res.Files {
		e.say("wrote %s", f)
	}
	return e.result(res)
}

func rms(x []float32) float64 { return math.Sqrt(mse(x, make([]float32, len(x)))) }

func mse(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return s / float64(len(a))
}
