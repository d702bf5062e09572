package ui

import (
	"context"
	"time"
)

// Images is a batch of images as plain floats, N×C×H×W in NCHW order with values in
// model space (about −1 … 1). The window only lays such frames out and hands them to
// the renderer; it never computes with them.
type Images struct {
	Data       []float32
	N, C, H, W int
}

// Tile returns image i of the batch as a batch of one.
func (im Images) Tile(i int) Images {
	per := im.C * im.H * im.W
	return Images{Data: im.Data[i*per : (i+1)*per], N: 1, C: im.C, H: im.H, W: im.W}
}

// First returns the first n images (all of them if there are fewer).
func (im Images) First(n int) Images {
	n = min(n, im.N)
	return Images{Data: im.Data[:n*im.C*im.H*im.W], N: n, C: im.C, H: im.H, W: im.W}
}

// Skipped is a file a dataset could not use, and why.
type Skipped struct {
	Path, Reason string
}

// DatasetInfo is a loaded dataset as the Dataset screen shows it.
type DatasetInfo struct {
	Source   string    // folder, "mnist", or a description of dropped files
	Spec     DataSpec  // what to pass back to StartTraining
	Count    int       // usable images
	Size     int       // side of the square images after loading
	Channels int       // 1 (gray) or 3 (RGB)
	Thumbs   Images    // the first few images
	Skipped  []Skipped // files that were left out
}

// DataSpec names a dataset: the built-in MNIST set, a folder, or a list of image files.
type DataSpec struct {
	Folder string   // a folder, or "mnist"
	Files  []string // image files (used when Folder is empty)
}

// Preset is a model size the user can pick.
type Preset struct {
	Name        string
	Description string
	Resolution  int // the image size it was designed for
}

// LossPoint is the loss logged at a step.
type LossPoint struct {
	Step int64
	Loss float64
}

// TrainRequest is what the Train screen asks the backend to do.
type TrainRequest struct {
	Run          string   // run folder; an existing run is resumed (its model settings win)
	Data         DataSpec // the dataset
	Preset       string   // model preset
	Size         int      // image size (side, pixels)
	Batch        int      // images per step
	LR           float64  // Adam learning rate
	Steps        int64    // train up to this step
	EMA          float64  // EMA decay
	Schedule     string   // "linear" or "cosine"
	PreviewEvery int64    // preview sampling every this many steps (0: never)
	Device       string   // where to train: one of Backend.Devices
}

// EventKind says what a TrainEvent reports.
type EventKind int

// The kinds of training events.
const (
	EventStarted    EventKind = iota // the model is built and the data loaded; Step is the starting step
	EventStep                        // one training step finished
	EventPreview                     // one denoising step of a preview sampling (Frame set)
	EventCheckpoint                  // a checkpoint was written (Path set)
	EventPaused                      // training is paused
	EventResumed                     // training goes on
	EventDone                        // training ended (finished, or stopped and saved); the last event
	EventError                       // training failed (Err set); the last event
)

// TrainEvent is one report from a running training.
type TrainEvent struct {
	Kind         EventKind
	Run          string        // run folder
	Step, Steps  int64         // steps done and the target
	Loss         float64       // loss of this step (EventStep)
	ImagesPerSec float64       // throughput of the last step
	StepsPerSec  float64       // the same in steps
	Elapsed      time.Duration // training time in this session, pauses excluded
	Frame        *Frame        // EventPreview
	Path         string        // EventCheckpoint: the checkpoint written
	Message      string        // a human-readable note (EventStarted, EventDone)
	History      []LossPoint   // EventStarted: the losses a resumed run logged before
	Err          error         // EventError
}

// Frame is one step of a sampling: x_t and the prediction x̂0 at that step.
type Frame struct {
	Step, Steps int // denoising step (1-based) and how many there are
	T           int // the diffusion timestep t of Xt
	Xt, X0      Images
}

// Training is a training running in the background. Its events arrive on Events,
// which is closed after EventDone or EventError.
type Training interface {
	Events() <-chan TrainEvent
	Pause()
	Resume()
	// Stop ends training within about a second: the step in flight is abandoned, a
	// checkpoint of the last finished step is written, then EventDone is sent.
	Stop()
}

// RunInfo is a run folder with at least one checkpoint.
type RunInfo struct {
	Dir      string
	Name     string
	Step     int64
	Preset   string
	Size     int
	Channels int
	T        int // diffusion steps
	Data     string
	Updated  time.Time
	Settings TrainRequest // the settings it was trained with, to fill the form when resuming
}

// SampleRequest is what the Sample screen asks for.
type SampleRequest struct {
	Run     string
	EMA     bool    // EMA weights (true) or raw
	Sampler string  // "ddpm" or "ddim"
	Steps   int     // DDIM steps
	Eta     float64 // DDIM η
	Seed    uint64
	Count   int
	Device  string // where to sample: one of Backend.Devices
}

// InterpRequest asks for samples whose initial noise moves from seed A's to seed B's
// (spherical interpolation), decoded with deterministic DDIM (η = 0), as in Fig. 8 of
// the paper but in the space of x_T.
type InterpRequest struct {
	Run          string
	EMA          bool
	Steps        int // DDIM steps
	SeedA, SeedB uint64
	Count        int    // images along the path, both ends included
	Device       string // where to sample: one of Backend.Devices
}

// GalleryItem is one sample grid saved during training.
type GalleryItem struct {
	Path string
	Step int64
	Time time.Time
}

// Backend is everything the window needs from the engine. The application wires the
// real one; tests use a fake. Methods may block and are called off the UI goroutine;
// callbacks may come from any goroutine.
type Backend interface {
	Presets() []Preset
	// Defaults are the engine's defaults of a new run, shown in the Train screen.
	Defaults() TrainRequest
	DefaultRunsDir() string
	LoadDataset(ctx context.Context, spec DataSpec, size int, progress func(done, total int)) (DatasetInfo, error)
	StartTraining(req TrainRequest) (Training, error)
	Runs() ([]RunInfo, error)
	// IsModel reports whether path holds model weights (a PyTorch checkpoint, a
	// safetensors file or a diffusers folder) rather than images.
	IsModel(path string) bool
	// ImportModel makes a new run from the model weights at path and says what it found.
	ImportModel(ctx context.Context, path string) (RunInfo, string, error)
	// ExportModel writes a run's EMA or raw weights to out as format "diffusers" (a
	// folder) or "pytorch" (a .ckpt file).
	ExportModel(run, format, out string, ema bool) error
	// PassTime measures one network pass over one image of a run's model on device.
	PassTime(ctx context.Context, run, device string) (time.Duration, error)
	// Devices names where the network can run ("auto" first: a GPU if one can be used).
	Devices() []string
	Sample(ctx context.Context, req SampleRequest, onFrame func(Frame)) (Images, error)
	Interpolate(ctx context.Context, req InterpRequest, onFrame func(Frame)) (Images, error)
	Gallery(run string) ([]GalleryItem, error)
}
