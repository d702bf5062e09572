package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"syscall"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// benchCmd is `ddpm-studio bench`.
type benchCmd struct {
	modelFlags `embed:""`
	deviceFlag `embed:""`
	Batch      int `default:"64" help:"Images per step."`
	Steps      int `default:"5" help:"Timed steps (the median is reported)."`
	Warmup     int `default:"2" help:"Untimed steps first."`
}

type benchResult struct {
	Impl              string       `json:"impl"`
	Preset            string       `json:"preset"`
	Batch             int          `json:"batch"`
	Threads           int          `json:"threads"`
	TrainStepS        float64      `json:"train_step_s"`
	TrainImagesPerS   float64      `json:"train_images_per_s"`
	TrainGFLOPS       float64      `json:"train_gflops"`
	ForwardS          float64      `json:"forward_s"`
	ForwardImagesPerS float64      `json:"forward_images_per_s"`
	ForwardGFLOPS     float64      `json:"forward_gflops"`
	PeakRSSTrainMB    float64      `json:"peak_rss_train_mb"`
	BLAS              ops.BLASInfo `json:"blas"`
	Device            string       `json:"device"`
}

// Run times training steps (forward, backward, clip, Adam, EMA) and forward passes on random data.
func (c *benchCmd) Run(e *env) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.Batch < 1 || c.Steps < 1 || c.Warmup < 0 {
		return fmt.Errorf("--batch and --steps must be positive, --warmup not negative")
	}
	dev, note, err := run.OpenDevice(c.Device)
	if err != nil {
		return err
	}
	defer dev.Close() // after the trainer (deferred below) is closed
	if note != "" {
		e.warn("%s", note)
	}
	net, err := run.NewNet(cfg, 0, c.Batch)
	if err != nil {
		return err
	}
	tr := compute.NewTrainer(net, compute.DefaultOptim(), 0)
	defer tr.Close()
	if err := tr.SetDevice(dev); err != nil {
		return fmt.Errorf("moving the model to %s: %w", dev, err)
	}
	e.say("device: %s", dev)
	shape := diffusion.Shape{N: c.Batch, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
	rng := rand.New(rand.NewPCG(0, 0))
	x, eps := make([]float32, shape.Size()), make([]float32, shape.Size())
	for i := range x {
		x[i], eps[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	ts := make([]int, c.Batch)
	for i := range ts {
		ts[i] = rng.IntN(1000)
	}
	flops, err := net.ForwardFLOPs(c.Batch)
	if err != nil {
		return err
	}
	total := int64(2 * (c.Warmup + c.Steps))
	bar := newProgress(e.errOut, total, "bench", "steps")
	done := int64(0)
	timed := func(step func() error) (float64, error) {
		var times []float64
		for i := 0; i < c.Warmup+c.Steps; i++ {
			start := time.Now()
			if err := step(); err != nil {
				return 0, err
			}
			if i >= c.Warmup {
				times = append(times, time.Since(start).Seconds())
			}
			done++
			bar.set(done)
		}
		return median(times), nil
	}
	train, err := timed(func() error { _, err := tr.TrainStep(x, ts, eps, shape); return err })
	if err != nil {
		return err
	}
	peak := peakRSSMB()
	fwd, err := timed(func() error { _, err := net.PredictEps(context.Background(), x, ts, shape); return err })
	bar.done()
	if err != nil {
		return err
	}
	res := benchResult{Impl: "ddpm-studio", Preset: c.Preset, Batch: c.Batch, Threads: runtime.GOMAXPROCS(0),
		TrainStepS: train, TrainImagesPerS: float64(c.Batch) / train, TrainGFLOPS: 3 * flops / train / 1e9,
		ForwardS: fwd, ForwardImagesPerS: float64(c.Batch) / fwd, ForwardGFLOPS: flops / fwd / 1e9,
		PeakRSSTrainMB: peak, BLAS: ops.RunningBLAS(), Device: dev.String()}
	e.say("BLAS: %s", res.BLAS)
	e.say("%s batch %d, %d threads: training step %.3fs (%.1f images/s, %.1f GFLOP/s), forward %.3fs (%.1f images/s, %.1f GFLOP/s), peak memory %.0f MB",
		c.Preset, c.Batch, res.Threads, train, res.TrainImagesPerS, res.TrainGFLOPS, fwd, res.ForwardImagesPerS, res.ForwardGFLOPS, peak)
	return e.result(res)
}

// peakRSSMB is the process's peak resident memory so far, in MiB.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux reports KiB
}
