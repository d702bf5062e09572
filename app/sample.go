package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// sampleCmd is `ddpm-studio sample`.
type sampleCmd struct {
	RunDir     string `name:"run" required:"" help:"Run directory to sample from (its newest checkpoint)."`
	deviceFlag `embed:""`
	EMA        bool    `default:"true" negatable:"" help:"Use the EMA weights (--no-ema: the raw weights)."`
	N          *int    `help:"Number of images (default: 16, or the N of --init-noise)."`
	Sampler    string  `default:"ddpm" enum:"ddpm,ddim" help:"ddpm (Algorithm 2, all T steps) or ddim."`
	Steps      int     `default:"50" help:"DDIM steps."`
	Eta        float64 `default:"0" help:"DDIM η: 0 deterministic, 1 like DDPM."`
	Variance   string  `default:"" enum:",fixedlarge,fixedsmall" help:"DDPM σ²: fixedlarge (β) or fixedsmall (β̃) (default: the run's)."`
	Seed       uint64  `default:"0" help:"Seed of the initial noise and of the sampler's noise."`
	Grid       string  `help:"Write a PNG grid of the samples here."`
	OutDir     string  `help:"Write each sample as its own PNG into this directory."`
	Strip      string  `help:"Write the progression (x_t and x̂0 over the steps, paper Fig. 6) of up to 8 samples here."`
	InitNoise  string  `help:"Start from this float32 N×C×H×W .npy instead of drawing x_T."`
	SaveNPY    string  `help:"Save the samples as float32 N×C×H×W .npy in model space [−1, 1]."`
}

type sampleResult struct {
	Run        string       `json:"run"`
	Checkpoint string       `json:"checkpoint"`
	Step       int64        `json:"step"`
	N          int          `json:"n"`
	Sampler    string       `json:"sampler"`
	Steps      int          `json:"steps"`
	Seconds    float64      `json:"seconds"`
	Files      []string     `json:"files"`
	BLAS       ops.BLASInfo `json:"blas"`
	Device     string       `json:"device"`
}

// stripImages is how many samples a progression strip shows.
const stripImages = 8

// Run samples.
func (c *sampleCmd) Run(e *env) error {
	ctx, stop := signalContext()
	defer stop()
	m, err := run.OpenModel(c.RunDir, c.EMA)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, w := range m.Warnings {
		e.warn("%s", w)
	}
	if err := e.useDevice(m, c.Device); err != nil {
		return err
	}
	o := run.SampleOptions{Sampler: c.Sampler, Steps: c.Steps, Eta: c.Eta, Variance: c.Variance, Seed: c.Seed, N: 16}
	if c.N != nil {
		o.N = *c.N
	}
	if c.InitNoise != "" {
		one := m.Shape(1)
		x, dims, err := imgio.ReadNPY(c.InitNoise)
		if err != nil {
			return err
		}
		if len(dims) != 4 || !slices.Equal(dims[1:], []int{one.C, one.H, one.W}) || (c.N != nil && dims[0] != *c.N) {
			want := fmt.Sprintf("N×%d×%d×%d", one.C, one.H, one.W)
			if c.N != nil {
				want = fmt.Sprintf("%d×%d×%d×%d", *c.N, one.C, one.H, one.W)
			}
			return fmt.Errorf("--init-noise %s has shape %v, need %s", c.InitNoise, dims, want)
		}
		o.N, o.Init = dims[0], x
	}
	steps := m.Steps(o)
	prog := imgio.NewProgression(stripImages)
	bar := newProgress(e.errOut, int64(steps), c.Sampler, "steps")
	start := time.Now()
	x, err := m.Sample(ctx, o, func(f run.Frame) {
		bar.set(int64(f.Step))
		if c.Strip != "" {
			prog.Add(f.Step, f.Steps, f.Xt.Data, f.X0.Data, f.Xt.N, f.Xt.C, f.Xt.H, f.Xt.W)
		}
	})
	bar.done()
	if err != nil {
		return interrupted(ctx, fmt.Errorf("sample: %w", err), "sampling; nothing was written")
	}
	secs := time.Since(start).Seconds()
	res := sampleResult{Run: c.RunDir, Checkpoint: m.Checkpoint, Step: m.Step, N: x.N, Sampler: c.Sampler, Steps: steps,
		Seconds: secs, BLAS: blas(), Device: m.Device.String()}
	if res.Files, err = writeSamples(x, c.Grid, c.OutDir, c.SaveNPY, prog, c.Strip); err != nil {
		return err
	}
	e.say("%d samples with %s (%d steps) from %s in %.1fs", x.N, c.Sampler, steps, m.Checkpoint, secs)
	for _, f := range res.Files {
		e.say("wrote %s", f)
	}
	return e.result(res)
}

// writeSamples writes what was asked for (empty names are skipped) and returns the files.
func writeSamples(x run.Images, grid, outDir, npy string, prog *imgio.Progression, strip string) ([]string, error) {
	var files []string
	if grid != "" {
		if err := imgio.SavePNG(grid, run.GridImage(x, 0)); err != nil {
			return files, err
		}
		files = append(files, grid)
	}
	if strip != "" {
		img, err := prog.Image()
		if err != nil {
			return files, err
		}
		if err := imgio.SavePNG(strip, img); err != nil {
			return files, err
		}
		files = append(files, strip)
	}
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return files, err
		}
		per := x.C * x.H * x.W
		for i := range x.N {
			p := filepath.Join(outDir, fmt.Sprintf("sample-%04d.png", i))
			one := run.Images{Data: x.Data[i*per : (i+1)*per], N: 1, C: x.C, H: x.H, W: x.W}
			if err := imgio.SavePNG(p, imgio.Single(one.Data, one.C, one.H, one.W)); err != nil {
				return files, err
			}
			files = append(files, p)
		}
	}
	if npy != "" {
		if err := imgio.WriteNPY(npy, x.Data, []int{x.N, x.C, x.H, x.W}); err != nil {
			return files, err
		}
		files = append(files, npy)
	}
	return files, nil
}
