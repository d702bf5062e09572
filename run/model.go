package run

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
	"github.com/ddpm-studio/ddpm-studio/weights"
)

// ImportOptions say how to make a run from weights trained elsewhere.
type ImportOptions struct {
	Raw        bool   // take the raw weights where the file has raw and EMA ones (else the EMA)
	Resolution int    // the image size, for a file that does not say (0: from the presets)
	Preset     string // if not "", the weights must have this preset's architecture
	Data       string // a dataset to remember for later training or evaluation ("" for none)
	// The schedule of a file that does not say (a PyTorch checkpoint): its kind, T and
	// DDPM variance. A file that says (a diffusers folder) keeps its own, and giving
	// another is an error. Empty values take the paper's for the model's size.
	Schedule string
	T        int
	Variance string
}

// Imported is a run made by Import.
type Imported struct {
	Dir         string
	Checkpoint  string
	Description string // what was found: "CIFAR-10 model (preset cifar10), 35,746,307 parameters, EMA weights, …"
	Config      compute.Config
	Params      int
	Warnings    []string
}

// Import makes a new run in dir from src: a PyTorch checkpoint, a safetensors file or a
// diffusers folder (see package weights). The run holds the weights as both its raw and
// its EMA weights, the schedule they were trained with, and no training state: training
// it starts Adam afresh (fine-tuning).
func Import(src, dir string, o ImportOptions) (*Imported, error) {
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("weights %s: %w", src, err)
	}
	if compute.LatestCheckpoint(dir) != "" {
		return nil, fmt.Errorf("run %s already has a checkpoint; import into a new folder", dir)
	}
	if err := checkFileMemory(src); err != nil {
		return nil, err
	}
	m, err := weights.OpenOptions(src, weights.Options{Raw: o.Raw, Resolution: o.Resolution})
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", src, err)
	}
	if o.Preset != "" {
		p, err := compute.PresetConfig(o.Preset)
		if err != nil {
			return nil, err
		}
		p.Resolution, p.InChannels, p.OutCh = m.Config.Resolution, m.Config.InChannels, m.Config.OutCh
		if !reflect.DeepEqual(p, m.Config) {
			return nil, fmt.Errorf("--preset %s: the weights in %s are another model: %s", o.Preset, src, m.Config)
		}
	}
	kind, T, variance, err := importSchedule(m, o)
	if err != nil {
		return nil, err
	}
	if err := checkParamMemory(m.Config); err != nil {
		return nil, err
	}
	net, err := m.UNet()
	if err != nil {
		return nil, err
	}
	tr := compute.NewTrainer(net, compute.DefaultOptim(), 0) // the EMA starts as the weights
	defer tr.Close()
	data, err := absData(o.Data)
	if err != nil {
		return nil, err
	}
	extra, err := marshalMeta(Meta{Data: data, Preset: m.Preset, Schedule: kind, T: T, Variance: variance})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	lock, err := LockDir(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	ckpt, warnings, err := compute.SaveCheckpoint(dir, tr, extra)
	if err != nil {
		return nil, err
	}
	return &Imported{Dir: dir, Checkpoint: ckpt, Description: m.Describe(), Config: m.Config, Params: net.NumParams(),
		Warnings: append(m.Warnings, warnings...)}, nil
}

// importSchedule is the schedule of imported weights: the file's if it says, else the
// options', else the paper's for the model's size.
func importSchedule(m *weights.Model, o ImportOptions) (string, int, string, error) {
	s := m.Schedule
	if !s.Known {
		if o.Schedule == "" && o.T == 0 && o.Variance == "" {
			return s.Run()
		}
		kind, T, variance := o.Schedule, o.T, o.Variance
		pk, pT, pv, err := s.Run()
		if err != nil {
			return "", 0, "", err
		}
		if kind == "" {
			kind = pk
		}
		if T == 0 {
			T = pT
		}
		if variance == "" {
			variance = pv
		}
		if _, err := diffusion.NewSchedule(kind, T); err != nil {
			return "", 0, "", err
		}
		return kind, T, variance, nil
	}
	kind, T, variance, err := s.Run()
	if err != nil {
		return "", 0, "", fmt.Errorf("the weights' schedule: %w", err)
	}
	switch {
	case o.Schedule != "" && o.Schedule != kind:
		return "", 0, "", fmt.Errorf("--schedule %s: the weights were trained with the %s schedule (their scheduler_config.json says so)", o.Schedule, kind)
	case o.T != 0 && o.T != T:
		return "", 0, "", fmt.Errorf("--timesteps %d: the weights were trained with T = %d (their scheduler_config.json says so)", o.T, T)
	case o.Variance != "" && o.Variance != variance:
		return "", 0, "", fmt.Errorf("--variance %s: the weights' scheduler_config.json says %s", o.Variance, variance)
	}
	return kind, T, variance, nil
}

// checkFileMemory refuses weights whose files alone would not fit in memory twice over
// (read, then converted to float32 and copied into the model).
func checkFileMemory(src string) error {
	avail := available()
	if avail <= 0 {
		return nil
	}
	var size int64
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("weights %s: %w", src, err)
	}
	if 2*size > avail {
		return fmt.Errorf("weights %s: %s of files, and reading them needs about twice that while %s is available", src, bytesize.Format(size), bytesize.Format(avail))
	}
	return nil
}

// Export formats.
const (
	FormatDiffusers = "diffusers"
	FormatPyTorch   = "pytorch"
)

// Export writes the newest weights of the run in dir (EMA or raw) to out: a diffusers
// folder that DDPMPipeline.from_pretrained loads, with the run's schedule, or a PyTorch
// state dict (.ckpt) in the port's naming. It returns the checkpoint exported.
func Export(dir, format, out string, ema bool) (string, error) {
	if format != FormatDiffusers && format != FormatPyTorch {
		return "", fmt.Errorf("--format %q: must be diffusers or pytorch", format)
	}
	m, err := OpenModel(dir, ema)
	if err != nil {
		return "", err
	}
	defer m.Close()
	s, err := weights.ScheduleOf(m.Meta.Schedule, m.Meta.T, m.Meta.Variance)
	if err != nil {
		return "", fmt.Errorf("run %s: %w", dir, err)
	}
	data := make([][]float32, len(m.Net.Params))
	for i, p := range m.Net.Params {
		data[i] = p.Data
	}
	kind := weights.RawWeights
	if ema {
		kind = weights.EMAWeights
	}
	wm, err := weights.FromUNet(m.Net, data, s, kind)
	if err != nil {
		return "", err
	}
	if format == FormatDiffusers {
		err = weights.WriteDiffusers(out, wm)
	} else {
		err = weights.WriteTorch(out, wm)
	}
	if err != nil {
		return "", fmt.Errorf("export %s: %w", out, err)
	}
	return m.Checkpoint, nil
}

// PassTime measures one forward pass of the model over one image, after building its
// graph, to tell how long a sampling will take (Sampling). It takes about a second for
// a 32×32 model and several for a 256×256 one on a CPU.
func (m *Model) PassTime(ctx context.Context) (time.Duration, error) {
	shape := m.Shape(1)
	x := make([]float32, shape.Size())
	t := []int{m.Sched.T - 1}
	if _, err := m.Net.PredictEps(ctx, x, t, shape); err != nil { // builds the graph
		return 0, err
	}
	start := time.Now()
	if _, err := m.Net.PredictEps(ctx, x, t, shape); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Sampling estimates how long a sampling takes from the time of one pass over one
// image (PassTime): the network runs once per step over all the images, and its cost
// grows with their number.
func (m *Model) Sampling(o SampleOptions, pass time.Duration) time.Duration {
	return time.Duration(m.Steps(o)) * time.Duration(max(o.N, 1)) * pass
}

// Large reports a model whose sampling on a CPU takes minutes per image with DDPM's T
// steps, for which DDIM with few steps is offered first.
func (m *Model) Large() bool { return m.Net.Config.Resolution >= 128 }
