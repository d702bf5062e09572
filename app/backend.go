package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/ui"
)

// thumbCount is how many images LoadDataset returns for the thumbnail strip.
const thumbCount = 32

// backend is the engine behind the window (ui.Backend): datasets, training sessions on
// a goroutine each, sampling and the runs folder.
type backend struct {
	runsDir string
	log     io.Writer // one line per notable event, for people reading the terminal

	mu     sync.Mutex
	cached *dataset.Dataset // the dataset loaded last, reused by a training on the same data
	key    string           // what cached was loaded from
	active map[*guiTraining]bool
}

func newBackend(runsDir string, log io.Writer) *backend {
	return &backend{runsDir: runsDir, log: log, active: map[*guiTraining]bool{}}
}

// Presets lists the model presets.
func (b *backend) Presets() []ui.Preset {
	var out []ui.Preset
	for _, name := range compute.PresetNames() {
		cfg, err := compute.PresetConfig(name)
		if err != nil {
			continue
		}
		out = append(out, ui.Preset{Name: name, Description: cfg.String(), Resolution: cfg.Resolution})
	}
	return out
}

// DefaultRunsDir is where new runs are made.
func (b *backend) DefaultRunsDir() string { return b.runsDir }

// dataKey names a dataset load, to know when a cached one can be reused.
func dataKey(spec ui.DataSpec, size, channels int) string {
	return fmt.Sprintf("%s|%s|%d|%d", spec.Folder, strings.Join(spec.Files, "\x00"), size, channels)
}

// load loads spec, or returns the cached dataset loaded from the same spec.
func (b *backend) load(spec ui.DataSpec, size, channels int, progress func(done, total int)) (*dataset.Dataset, error) {
	key := dataKey(spec, size, channels)
	b.mu.Lock()
	if b.cached != nil && b.key == key {
		ds := b.cached
		b.mu.Unlock()
		return ds, nil
	}
	b.mu.Unlock()
	opt := dataset.Options{Size: size, Channels: channels, Progress: progress}
	var ds *dataset.Dataset
	var err error
	if len(spec.Files) > 0 {
		ds, err = dataset.LoadFiles(spec.Files, opt)
	} else {
		ds, err = dataset.Load(spec.Folder, opt)
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.cached, b.key = ds, key
	b.mu.Unlock()
	return ds, nil
}

// LoadDataset loads a dataset at the given size and describes it.
func (b *backend) LoadDataset(ctx context.Context, spec ui.DataSpec, size int, progress func(done, total int)) (ui.DatasetInfo, error) {
	ds, err := b.load(spec, size, 0, progress)
	if err != nil {
		return ui.DatasetInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ui.DatasetInfo{}, err
	}
	info := ui.DatasetInfo{Source: ds.Source, Spec: spec, Count: ds.N, Size: ds.H, Channels: ds.C}
	if spec.Folder == "mnist" {
		info.Source = "MNIST (built-in training set)"
	} else if len(spec.Files) > 0 {
		info.Source = fmt.Sprintf("%d dropped files in %s", len(spec.Files), ds.Source)
	}
	n := min(thumbCount, ds.N)
	per := ds.C * ds.H * ds.W
	info.Thumbs = ui.Images{Data: make([]float32, n*per), N: n, C: ds.C, H: ds.H, W: ds.W}
	for i, v := range ds.Pixels[:n*per] {
		info.Thumbs.Data[i] = imgio.ToModel(v)
	}
	for _, s := range ds.Skipped {
		info.Skipped = append(info.Skipped, ui.Skipped{Path: s.Path, Reason: s.Reason})
	}
	return info, nil
}

// Runs lists the run folders with a checkpoint, newest first.
func (b *backend) Runs() ([]ui.RunInfo, error) {
	entries, err := os.ReadDir(b.runsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runs folder %s: %w", b.runsDir, err)
	}
	var runs []ui.RunInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(b.runsDir, e.Name())
		if r, ok := runInfo(dir); ok {
			runs = append(runs, r)
		}
	}
	slices.SortFunc(runs, func(a, b ui.RunInfo) int { return b.Updated.Compare(a.Updated) })
	return runs, nil
}

// runInfo describes the run in dir from its newest checkpoint's state (not its weights).
func runInfo(dir string) (ui.RunInfo, bool) {
	ckpt, st, err := compute.LatestState(dir)
	if err != nil {
		return ui.RunInfo{}, false
	}
	var app runState
	_ = json.Unmarshal(st.Extra, &app) // an imported run has none
	if app.Preset == "" {
		app.Preset = presetOf(st.Config)
	}
	r := ui.RunInfo{Dir: dir, Name: filepath.Base(dir), Step: st.Step, Preset: app.Preset, Size: st.Config.Resolution,
		Channels: st.Config.InChannels, Data: app.Data}
	if info, err := os.Stat(ckpt); err == nil {
		r.Updated = info.ModTime()
	}
	r.Settings = ui.TrainRequest{Run: dir, Preset: app.Preset, Size: st.Config.Resolution, Batch: app.Batch,
		LR: st.Optim.LR, Steps: app.Steps, EMA: st.Optim.EMADecay, Schedule: app.Schedule}
	return r, true
}

// presetOf names the preset a configuration was made from (runs older than the preset
// field, and imported ones), or "" if none matches.
func presetOf(c compute.Config) string {
	for _, name := range compute.PresetNames() {
		p, err := compute.PresetConfig(name)
		if err != nil {
			continue
		}
		p.Resolution, p.InChannels, p.OutCh = c.Resolution, c.InChannels, c.OutCh // size and channels follow the data
		if reflect.DeepEqual(p, c) {
			return name
		}
	}
	return ""
}

// Gallery lists the sample grids of a run (RUN/samples/step-N.png), newest first.
func (b *backend) Gallery(run string) ([]ui.GalleryItem, error) {
	paths, err := filepath.Glob(filepath.Join(run, "samples", "step-*.png"))
	if err != nil {
		return nil, err
	}
	var items []ui.GalleryItem
	for _, p := range paths {
		var step int64
		if _, err := fmt.Sscanf(filepath.Base(p), "step-%d.png", &step); err != nil {
			continue
		}
		it := ui.GalleryItem{Path: p, Step: step}
		if info, err := os.Stat(p); err == nil {
			it.Time = info.ModTime()
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b ui.GalleryItem) int { return int(b.Step - a.Step) })
	return items, nil
}

// frame turns a sampler's progress into a ui frame (sharing its buffers).
func frame(p diffusion.Progress, s diffusion.Shape) ui.Frame {
	im := func(d []float32) ui.Images { return ui.Images{Data: d, N: s.N, C: s.C, H: s.H, W: s.W} }
	return ui.Frame{Step: p.Step, Steps: p.Steps, T: p.T, Xt: im(p.Xt), X0: im(p.X0)}
}

// gaussian draws n standard normal floats from the stream of seed (the CLI's sample
// command draws x_T the same way, so a seed gives the same images in both).
func gaussian(seed uint64, n int) ([]float32, *rand.Rand) {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x, rng
}

// sampleRun opens the run's newest checkpoint with the EMA or raw weights and runs
// sample on count images, reporting every step to onFrame.
func sampleRun(run string, ema bool, count int, onFrame func(ui.Frame),
	sample func(r *openRun, net *compute.UNet, shape diffusion.Shape, progress diffusion.ProgressFunc) ([]float32, error)) (ui.Images, error) {
	r, err := loadSampler(run, ema)
	if err != nil {
		return ui.Images{}, err
	}
	net := r.net(ema)
	defer net.Close()
	shape := r.imageShape(count)
	x, err := sample(r, net, shape, func(p diffusion.Progress) { onFrame(frame(p, shape)) })
	if err != nil {
		return ui.Images{}, err
	}
	return ui.Images{Data: x, N: shape.N, C: shape.C, H: shape.H, W: shape.W}, nil
}

// Sample generates images with a run's newest checkpoint.
func (b *backend) Sample(ctx context.Context, req ui.SampleRequest, onFrame func(ui.Frame)) (ui.Images, error) {
	return sampleRun(req.Run, req.EMA, req.Count, onFrame, func(r *openRun, net *compute.UNet, shape diffusion.Shape, progress diffusion.ProgressFunc) ([]float32, error) {
		xT, rng := gaussian(req.Seed, shape.Size())
		if req.Sampler == "ddim" {
			return r.sched.SampleDDIM(ctx, net, xT, shape, req.Steps, req.Eta, rng, progress)
		}
		return r.sched.SampleDDPM(ctx, net, xT, shape, r.app.Variance, rng, progress)
	})
}

// Interpolate decodes, with deterministic DDIM, initial noises on the great circle from
// seed A's x_T to seed B's (slerp keeps their norm, so every point looks like noise the
// model was trained on).
func (b *backend) Interpolate(ctx context.Context, req ui.InterpRequest, onFrame func(ui.Frame)) (ui.Images, error) {
	if req.Count < 2 {
		return ui.Images{}, fmt.Errorf("interpolation needs at least 2 images, got %d", req.Count)
	}
	return sampleRun(req.Run, req.EMA, req.Count, onFrame, func(r *openRun, net *compute.UNet, shape diffusion.Shape, progress diffusion.ProgressFunc) ([]float32, error) {
		per := shape.C * shape.H * shape.W
		a, _ := gaussian(req.SeedA, per)
		c, _ := gaussian(req.SeedB, per)
		xT := make([]float32, 0, shape.Size())
		for i := 0; i < req.Count; i++ {
			xT = append(xT, slerp(a, c, float64(i)/float64(req.Count-1))...)
		}
		rng := rand.New(rand.NewPCG(req.SeedA, req.SeedB))
		return r.sched.SampleDDIM(ctx, net, xT, shape, req.Steps, 0, rng, progress)
	})
}

// slerp is the spherical interpolation between a (λ = 0) and b (λ = 1).
func slerp(a, b []float32, lambda float64) []float32 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	theta := math.Acos(max(-1, min(1, dot/math.Sqrt(na*nb))))
	wa, wb := 1-lambda, lambda
	if s := math.Sin(theta); s > 1e-6 {
		wa, wb = math.Sin((1-lambda)*theta)/s, math.Sin(lambda*theta)/s
	}
	out := make([]float32, len(a))
	for i := range a {
		out[i] = float32(wa*float64(a[i]) + wb*float64(b[i]))
	}
	return out
}

// lossHistory reads the (step, loss) pairs of a run's metrics.jsonl up to step.
func lossHistory(run string, step int64) []ui.LossPoint {
	f, err := os.Open(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []ui.LossPoint
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m metric
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Step <= step {
			out = append(out, ui.LossPoint{Step: m.Step, Loss: m.Loss})
		}
	}
	return out
}
