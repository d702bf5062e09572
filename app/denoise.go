package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// denoiseCmd is `ddpm-studio denoise`.
type denoiseCmd struct {
	RunDir     string `name:"run" required:"" help:"Run directory (its newest checkpoint)."`
	deviceFlag `embed:""`
	EMA        bool   `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	Input      string `required:"" help:"x_t as float32 .npy (N×C×H×W or C×H×W, model space), or an image, which is noised to step t first."`
	T          int    `name:"t" required:"" help:"Timestep, the official index 0 ≤ t < T, fed to the time embedding as is."`
	Seed       uint64 `default:"0" help:"Seed of the noise added to an image input."`
	SaveEps    string `help:"Save ε̂ as float32 .npy."`
	SaveX0     string `name:"save-x0" help:"Save x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t (not clipped) as float32 .npy."`
	Out        string `help:"Save a PNG: x_t above x̂0 (clipped)."`
}

type denoiseResult struct {
	Run     string       `json:"run"`
	Step    int64        `json:"step"`
	T       int          `json:"t"`
	N       int          `json:"n"`
	EpsRMS  float64      `json:"eps_rms"`
	Files   []string     `json:"files"`
	Noised  bool         `json:"noised"`
	NoiseSE float64      `json:"eps_mse_vs_true,omitempty"`
	BLAS    ops.BLASInfo `json:"blas"`
	Device  string       `json:"device"`
}

// Run denoises.
func (c *denoiseCmd) Run(e *env) error {
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
	if c.T < 0 || c.T >= r.Sched.T {
		return fmt.Errorf("--t %d: must be in [0, %d)", c.T, r.Sched.T)
	}
	net := r.Net
	one := r.Shape(1)
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
		xt = r.Sched.QSample(x0, []int{c.T}, trueEps)
	}
	ts := make([]int, shape.N)
	for i := range ts {
		ts[i] = c.T
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run.CheckEval(net, shape.N); err != nil {
		return err
	}
	eps, err := net.PredictEps(ctx, xt, ts, shape)
	if err != nil {
		return interrupted(ctx, err, "the forward pass")
	}
	x0 := r.Sched.PredictStartFromNoise(xt, ts, eps)
	res := denoiseResult{Run: c.RunDir, Step: r.Step, T: c.T, N: shape.N, EpsRMS: rms(eps), Noised: trueEps != nil, BLAS: blas(), Device: r.Device.String()}
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
		if err := imgio.SavePNG(c.Out, imgio.Grid(both, 2*shape.N, shape.C, shape.H, shape.W, shape.N, imgio.Pad)); err != nil {
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
