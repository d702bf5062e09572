package run

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// Options are the settings of a training run. DefaultOptions holds every default;
// the command line and the window both start from it.
type Options struct {
	Data      string   // a folder of images, or "mnist"; a new run stores it as an absolute path
	DataFiles []string // image files to train on instead of a folder (the window's dropped files)
	Model     ModelOptions

	Steps             int64   // train until this many steps in all
	Batch             int     // images per step
	LR                float64 // Adam learning rate after warm-up
	Warmup            int     // steps of linear learning-rate warm-up
	EMA               float64 // EMA decay of the weights; 0 disables the EMA
	Seed              uint64  // seed of the initial weights, batches, timesteps, noise and dropout
	Schedule          string  // noise schedule: "linear" or "cosine"
	T                 int     // diffusion steps
	Hflip             bool    // random horizontal flips
	CheckpointEvery   int64   // save a checkpoint every this many steps
	CheckpointMinutes float64 // and when this many minutes have passed since the last (0: only by steps)
	SampleEvery       int64   // save a 4×4 sample grid to the gallery every this many steps (0: never)
	LogEvery          int64   // append a line to metrics.jsonl every this many steps
	PreviewEvery      int64   // sample the live preview every this many steps (0: never)
	Device            string  // where to train: "auto" (a GPU if one can be used, else the CPU), "cpu" or "cuda"

	// Loaded is the dataset, if the caller has already loaded it (the window has); it
	// is used when its size and channels are the model's.
	Loaded *dataset.Dataset
	// LoadProgress, if not nil, is told how the loading of the data goes.
	LoadProgress func(done, total int)

	// Given names the options the user chose, by their command-line names (the Opt
	// constants); the others are defaults. A new run uses every value; resuming a run
	// compares the given ones with what the run stored (see Open).
	Given map[string]bool
}

// ModelOptions choose the network: a preset, and any of its fields overridden.
// A nil field keeps the preset's value (image size and channels: the data's).
type ModelOptions struct {
	Preset    string
	ImageSize *int
	Channels  *int
	Ch        *int
	ChMult    []int
	ResBlocks *int
	Attn      []int
	Dropout   *float64
}

// DefaultOptions are the defaults of a new run: the mnist preset, Adam at 2e-4 with a
// short warm-up (the paper's 5000 steps are for 800k-step runs), the paper's EMA decay
// (its warm-up, see compute.OptimConfig.EMADecayAt, makes it right for short runs too),
// a checkpoint and a gallery grid every 500 steps or 10 minutes, and every step logged,
// so that a resumed run's loss curve is whole.
func DefaultOptions() Options {
	return Options{
		Data:              "mnist",
		Model:             ModelOptions{Preset: "mnist"},
		Steps:             2000,
		Batch:             64,
		LR:                2e-4,
		Warmup:            500,
		EMA:               0.9999,
		Schedule:          diffusion.ScheduleLinear,
		T:                 diffusion.DefaultT,
		CheckpointEvery:   500,
		CheckpointMinutes: 10,
		SampleEvery:       500,
		LogEvery:          1,
		PreviewEvery:      100,
		Device:            compute.DeviceAuto,
	}
}

// Option names, as the command line spells its flags; messages and Options.Given use them.
const (
	OptData              = "data"
	OptPreset            = "preset"
	OptImageSize         = "image-size"
	OptChannels          = "channels"
	OptCh                = "ch"
	OptChMult            = "ch-mult"
	OptResBlocks         = "res-blocks"
	OptAttn              = "attn"
	OptDropout           = "dropout"
	OptSteps             = "steps"
	OptBatch             = "batch"
	OptLR                = "lr"
	OptWarmup            = "warmup"
	OptEMA               = "ema"
	OptSeed              = "seed"
	OptSchedule          = "schedule"
	OptT                 = "timesteps"
	OptHflip             = "hflip"
	OptCheckpointEvery   = "checkpoint-every"
	OptCheckpointMinutes = "checkpoint-minutes"
	OptSampleEvery       = "sample-every"
	OptLogEvery          = "log-every"
	OptPreviewEvery      = "preview-every"
	OptDevice            = "device"
)

// Limits on options: far above anything useful, low enough that no size computed from
// them overflows. Whether a batch fits is decided by its memory estimate.
const (
	MaxSteps = 1 << 40
	MaxBatch = 1 << 20
	MaxT     = 100_000
)

// given reports whether the user chose option name.
func (o Options) given(name string) bool { return o.Given[name] }

// Validate checks every value and names the option of the first that is wrong. It
// does not check what needs the data or the machine (memory), which Open does.
func (o Options) Validate() error {
	bad := func(name string, v any, why string) error { return fmt.Errorf("--%s %v: %s", name, v, why) }
	switch {
	case o.Steps < 1 || o.Steps > MaxSteps:
		return bad(OptSteps, o.Steps, fmt.Sprintf("must be between 1 and %d", int64(MaxSteps)))
	case o.Batch < 1 || o.Batch > MaxBatch:
		return bad(OptBatch, o.Batch, fmt.Sprintf("must be between 1 and %d", MaxBatch))
	case !finite(o.LR) || o.LR <= 0:
		return bad(OptLR, o.LR, "must be a positive number")
	case o.Warmup < 0:
		return bad(OptWarmup, o.Warmup, "must not be negative")
	case !finite(o.EMA) || o.EMA < 0 || o.EMA >= 1:
		return bad(OptEMA, o.EMA, "must be in [0, 1) (0 disables the EMA)")
	case o.Schedule != diffusion.ScheduleLinear && o.Schedule != diffusion.ScheduleCosine:
		return bad(OptSchedule, o.Schedule, "must be linear or cosine")
	case o.T < 2 || o.T > MaxT:
		return bad(OptT, o.T, fmt.Sprintf("must be between 2 and %d", MaxT))
	case o.CheckpointEvery < 1:
		return bad(OptCheckpointEvery, o.CheckpointEvery, "must be at least 1")
	case !finite(o.CheckpointMinutes) || o.CheckpointMinutes < 0:
		return bad(OptCheckpointMinutes, o.CheckpointMinutes, "must be a number ≥ 0 (0: by steps only)")
	case o.SampleEvery < 0:
		return bad(OptSampleEvery, o.SampleEvery, "must not be negative (0: never)")
	case o.LogEvery < 1:
		return bad(OptLogEvery, o.LogEvery, "must be at least 1")
	case o.PreviewEvery < 0:
		return bad(OptPreviewEvery, o.PreviewEvery, "must not be negative (0: never)")
	case o.Data == "" && len(o.DataFiles) == 0 && o.given(OptData):
		return fmt.Errorf("--%s is empty: give a folder of images, or mnist", OptData)
	}
	return o.Model.check()
}

// check checks each value given, on its own (Config checks the whole model).
func (m ModelOptions) check() error {
	bad := func(name string, v any, why string) error { return fmt.Errorf("--%s %v: %s", name, v, why) }
	if _, err := compute.PresetConfig(m.Preset); err != nil {
		return fmt.Errorf("--%s: %w", OptPreset, err)
	}
	switch {
	case m.ImageSize != nil && (*m.ImageSize < 1 || *m.ImageSize > compute.MaxResolution):
		return bad(OptImageSize, *m.ImageSize, fmt.Sprintf("must be between 1 and %d pixels", compute.MaxResolution))
	case m.Channels != nil && *m.Channels != 1 && *m.Channels != 3:
		return bad(OptChannels, *m.Channels, "must be 1 (gray) or 3 (RGB)")
	case m.Ch != nil && (*m.Ch < compute.Groups || *m.Ch%compute.Groups != 0):
		return bad(OptCh, *m.Ch, fmt.Sprintf("must be a positive multiple of %d (the GroupNorm groups)", compute.Groups))
	case m.ChMult != nil && len(m.ChMult) == 0:
		return bad(OptChMult, "''", "needs at least one multiplier")
	case m.ResBlocks != nil && *m.ResBlocks < 1:
		return bad(OptResBlocks, *m.ResBlocks, "must be at least 1")
	case m.Dropout != nil && !(*m.Dropout >= 0 && *m.Dropout < 1):
		return bad(OptDropout, *m.Dropout, "must be in [0, 1)")
	}
	for _, v := range m.ChMult {
		if v < 1 {
			return bad(OptChMult, joinInts(m.ChMult), "multipliers must be at least 1")
		}
	}
	return nil
}

// Config is the network the options describe for images of the given channels
// (0: the preset's), checked as a whole (attention must be at a level's resolution, say).
func (m ModelOptions) Config(channels int) (compute.Config, error) {
	if err := m.check(); err != nil {
		return compute.Config{}, err
	}
	c, _ := compute.PresetConfig(m.Preset)
	if m.ImageSize != nil {
		c.Resolution = *m.ImageSize
	}
	if m.Channels != nil {
		c.InChannels, c.OutCh = *m.Channels, *m.Channels
	} else if channels != 0 {
		c.InChannels, c.OutCh = channels, channels
	}
	if m.Ch != nil {
		c.Ch = *m.Ch
	}
	if m.ChMult != nil {
		c.ChMult = slices.Clone(m.ChMult)
	}
	if m.ResBlocks != nil {
		c.NumResBlocks = *m.ResBlocks
	}
	if m.Attn != nil {
		c.AttnResolutions = slices.Clone(m.Attn)
	}
	if m.Dropout != nil {
		c.Dropout = *m.Dropout
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("model: %w", err)
	}
	return c, nil
}

// absData returns the data option with a folder made absolute ("mnist" stays), so a
// run resumes on the same folder whatever the current directory.
func absData(spec string) (string, error) {
	if spec == "" || spec == "mnist" {
		return spec, nil
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		return "", fmt.Errorf("--%s %s: %w", OptData, spec, err)
	}
	return abs, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func joinInts(v []int) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s
}
