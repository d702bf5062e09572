// Command ddpm-studio trains Denoising Diffusion Probabilistic Models (Ho, Jain &
// Abbeel 2020) on a folder of images and samples from them.
//
// With no subcommand it opens the window (see package ui). Every other subcommand
// takes --json to print one JSON object with its results as the last line of
// output, draws a progress bar when standard error is a terminal, and exits
// non-zero with a one-line reason on error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	_ "github.com/ddpm-studio/ddpm-studio/internal/quietlocale" // before Fyne reads the locale
	"github.com/ddpm-studio/ddpm-studio/run"
)

// cli is the command line.
type cli struct {
	JSON bool `help:"Print one JSON object with the results as the last line of output."`

	GUI     guiCmd     `cmd:"" name:"gui" default:"withargs" help:"Open the window (what running with no subcommand does)."`
	Train   trainCmd   `cmd:"" help:"Train a model on a folder of images (or mnist); resumes if RUN has a checkpoint."`
	Sample  sampleCmd  `cmd:"" help:"Generate images with a trained run."`
	Denoise denoiseCmd `cmd:"" help:"Show the network's ε̂ and x̂0 for x_t at step t."`
	Eval    evalCmd    `cmd:"" help:"Evaluate the variational bound in bits/dim."`
	Import  importCmd  `cmd:"" name:"import" help:"Make a run from the paper's weights or others: a PyTorch checkpoint, a safetensors file or a diffusers folder."`
	Export  exportCmd  `cmd:"" help:"Write a run's weights as a diffusers folder or a PyTorch checkpoint."`
	Model   modelCmd   `cmd:"" help:"Print a model summary: layers, shapes, parameter count."`
	Bench   benchCmd   `cmd:"" help:"Time training steps and forward passes on random data."`
}

// env is what every command gets: where to write and how.
type env struct {
	json   bool
	out    io.Writer // results and human-readable lines
	errOut io.Writer // progress
}

// result prints res as the final JSON line when --json is set.
func (e *env) result(res any) error {
	if !e.json {
		return nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.out, string(b))
	return err
}

// say prints a human-readable line.
func (e *env) say(format string, args ...any) {
	fmt.Fprintf(e.out, format+"\n", args...)
}

// warn prints a line on standard error for something the user should know but that
// does not stop the command.
func (e *env) warn(format string, args ...any) {
	fmt.Fprintf(e.errOut, "warning: "+format+"\n", args...)
}

// deviceFlag chooses where the network runs.
type deviceFlag struct {
	Device string `default:"auto" enum:"auto,cpu,cuda" help:"Where the network runs: auto (a GPU if this build has CUDA and one can be used, else the CPU), cpu or cuda."`
}

// useDevice moves the model to the device the flag names, and says which it is (the
// first line of the commands that run the network) and, where "auto" stays on the CPU,
// why.
func (e *env) useDevice(m *run.Model, name string) error {
	note, err := m.Use(name)
	if err != nil {
		return err
	}
	if note != "" {
		e.warn("%s", note)
	}
	e.say("device: %s", m.Device)
	return nil
}

// errInterrupted marks a command ended by Ctrl-C or SIGTERM (exit status 130).
var errInterrupted = errors.New("interrupted")

// signalContext is cancelled by Ctrl-C or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// interrupted turns the error of work that ctx cancelled into errInterrupted.
func interrupted(ctx context.Context, err error, what string) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w during %s", errInterrupted, what)
	}
	return err
}

// defaultVars are the defaults the flags show and take, from run.DefaultOptions: the
// window and the command line share them.
func defaultVars() kong.Vars {
	d := run.DefaultOptions()
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return kong.Vars{
		"preset": d.Model.Preset, "presets": strings.Join(compute.PresetNames(), ", "),
		"steps": fmt.Sprint(d.Steps), "batch": fmt.Sprint(d.Batch), "lr": f(d.LR), "warmup": fmt.Sprint(d.Warmup),
		"ema": f(d.EMA), "schedule": d.Schedule, "timesteps": fmt.Sprint(d.T),
		"checkpoint_every": fmt.Sprint(d.CheckpointEvery), "checkpoint_minutes": f(d.CheckpointMinutes),
		"sample_every": fmt.Sprint(d.SampleEvery), "log_every": fmt.Sprint(d.LogEvery),
		"preview_every": fmt.Sprint(d.PreviewEvery), "data": d.Data,
	}
}

// finiteFlags refuses NaN and infinite values of float flags, naming the flag.
func finiteFlags(kctx *kong.Context) error {
	for _, p := range kctx.Path {
		if p.Flag == nil || !p.Flag.Target.IsValid() {
			continue
		}
		v := p.Flag.Target
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Float64 {
			if x := v.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("--%s %v: must be a finite number", p.Flag.Name, x)
			}
		}
	}
	return nil
}
func main() {
	// First of all: where OpenBLAS fell back to generic kernels, this runs the
	// program again with better ones and does not return (see ops.UseBestBLASCore).
	if err := ops.UseBestBLASCore(); err != nil {
		fmt.Fprintln(os.Stderr, "ddpm-studio: warning:", err)
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// execute runs the command line and returns the exit status.
func execute(args []string, stdout, stderr io.Writer) int {
	var c cli
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("ddpm-studio"),
		kong.Description("Train denoising diffusion models (DDPM, Ho et al. 2020) on your own images, and sample from them."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		defaultVars(),
	)
	if err != nil {
		fmt.Fprintln(stderr, "ddpm-studio:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 {
		return exit
	}
	if err != nil {
		fmt.Fprintln(stderr, "ddpm-studio:", err)
		return 2
	}
	if err := finiteFlags(kctx); err != nil {
		fmt.Fprintln(stderr, "ddpm-studio:", err)
		return 2
	}
	e := &env{json: c.JSON, out: stdout, errOut: stderr}
	if err := kctx.Run(e); err != nil {
		if errors.Is(err, errInterrupted) {
			fmt.Fprintln(stderr, "ddpm-studio:", err)
			return 130
		}
		fmt.Fprintln(stderr, "ddpm-studio:", err)
		return 1
	}
	return 0
}

// blas names the BLAS and the kernels it runs, for the JSON results.
func blas() ops.BLASInfo { return ops.RunningBLAS() }
