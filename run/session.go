package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/dataset"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// Preview sampling during training, and the gallery's grids: DDIM from a fixed noise
// with the EMA weights.
const (
	PreviewImages = 16
	PreviewSteps  = 20
	galleryImages = 16
	gallerySteps  = 50
)

// Session is an open training run: the trainer, its data, the schedule, the stream that
// draws batches, timesteps and noise, and the metrics log. The command line and the
// window both drive one with Run. A session holds the run's lock until Close.
type Session struct {
	Dir      string
	Opts     Options // in effect: a resumed run's stored settings with the changes applied
	Meta     Meta
	Trainer  *compute.Trainer
	Data     *dataset.Dataset
	Sched    *diffusion.Schedule
	Resumed  bool     // the run had a checkpoint
	Notes    []string // changes applied on resume
	Warnings []string // files the dataset skipped, damaged checkpoints passed over

	Device *compute.Device // where the trainer runs

	lock      *Lock
	created   bool   // Open made the run directory
	saved     int64  // step of the newest checkpoint, -1 if none
	savedPath string // its directory
	pcg       *rand.PCG
	rng       *rand.Rand
	metrics   *os.File
	shape     diffusion.Shape
	x0        []float32
	idx       []int
	flip      []bool
	lastCkpt  time.Time

	ctl      chan bool // true: pause, false: resume
	stopOnce sync.Once
	stopped  chan struct{} // closed by Stop
}

// Open resumes the run in dir from its newest intact checkpoint, or starts a new one
// from opts, takes the run's lock, loads the data (ctx cancels the loading), checks that
// a training step fits in memory and builds its graph. On a resumed run the options the
// user gave (opts.Given) that differ from the stored ones are applied where that is
// safe (see the package documentation) and refused otherwise.
func Open(ctx context.Context, dir string, opts Options) (*Session, error) {
	if dir == "" {
		return nil, errors.New("no run folder given")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Session{Dir: dir, saved: -1, ctl: make(chan bool, 4), stopped: make(chan struct{}), lastCkpt: time.Now()}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		s.created = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	if err := s.open(ctx, opts); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// open does the work of Open once the run directory exists.
func (s *Session) open(ctx context.Context, opts Options) error {
	dir := s.Dir
	var err error
	if s.lock, err = LockDir(dir); err != nil {
		return err
	}
	if compute.LatestCheckpoint(dir) != "" {
		err = s.resume(ctx, opts)
	} else {
		err = s.start(ctx, opts)
	}
	if err != nil {
		return err
	}
	if len(s.Data.Skipped) > 0 {
		s.Warnings = append(s.Warnings, s.Data.SkippedSummary(5))
	}
	if s.Sched, err = diffusion.NewSchedule(s.Meta.Schedule, s.Meta.T); err != nil {
		return err
	}
	s.pcg = rand.NewPCG(s.Meta.Seed, 1)
	if s.Meta.DataRNG != nil {
		if err := s.pcg.UnmarshalBinary(s.Meta.DataRNG); err != nil {
			return fmt.Errorf("run %s: data stream state: %w", dir, err)
		}
	}
	s.rng = rand.New(s.pcg)
	var note string
	if s.Device, note, err = OpenDevice(opts.Device); err != nil {
		return err
	}
	if note != "" {
		s.Warnings = append(s.Warnings, note)
	}
	if s.Device.IsGPU() {
		if err := checkDeviceMemory(s.Device, s.Trainer.Net, s.Opts.Batch); err != nil {
			return err
		}
		if err := s.Trainer.SetDevice(s.Device); err != nil {
			return fmt.Errorf("moving the model to %s: %w", s.Device, err)
		}
	} else if err := checkTrainMemory(s.Trainer.Net, s.Opts.Batch); err != nil {
		return err
	}
	if _, err := s.Trainer.Prepare(s.Opts.Batch); err != nil {
		return err
	}
	if err := trimMetrics(dir, s.Trainer.Step); err != nil {
		return err
	}
	if s.metrics, err = os.OpenFile(filepath.Join(dir, MetricsFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.shape = diffusion.Shape{N: s.Opts.Batch, C: s.Data.C, H: s.Data.H, W: s.Data.W}
	s.x0 = make([]float32, s.shape.Size())
	s.idx = make([]int, s.Opts.Batch)
	s.flip = make([]bool, s.Opts.Batch)
	return nil
}

// start makes a new run from opts: the model, then the data.
func (s *Session) start(ctx context.Context, opts Options) error {
	if opts.Data == "" && len(opts.DataFiles) == 0 {
		return fmt.Errorf("--%s is required for a new run (a folder of images, or mnist)", OptData)
	}
	data, err := absData(opts.Data)
	if err != nil {
		return err
	}
	opts.Data = data
	cfg, err := opts.Model.Config(0)
	if err != nil {
		return err
	}
	// Whether the model and the batch fit is checked before a long load of the data;
	// the channels may still change with the data, which changes little.
	net, err := NewNet(cfg, opts.Seed, opts.Batch)
	if err != nil {
		return err
	}
	channels := 0 // gray or RGB, chosen from the data
	if opts.Model.Channels != nil {
		channels = cfg.InChannels
	}
	if s.Data, err = opts.loadData(ctx, opts.Data, opts.DataFiles, cfg.Resolution, channels); err != nil {
		return err
	}
	if s.Data.C != cfg.InChannels {
		if cfg, err = opts.Model.Config(s.Data.C); err != nil {
			return err
		}
		if net, err = compute.NewUNet(cfg, opts.Seed); err != nil {
			return err
		}
	}
	optim := compute.DefaultOptim()
	optim.LR, optim.Warmup, optim.EMADecay = opts.LR, opts.Warmup, opts.EMA
	s.Trainer = compute.NewTrainer(net, optim, opts.Seed)
	s.Opts = opts
	s.Meta = Meta{Data: opts.Data, DataFiles: opts.DataFiles, Preset: opts.Model.Preset, Schedule: opts.Schedule, T: opts.T,
		Variance: diffusion.VarianceFixedLarge, Batch: opts.Batch, Flip: opts.Hflip, Seed: opts.Seed, Steps: opts.Steps}
	return nil
}

// resume opens the newest intact checkpoint and reconciles opts with it.
func (s *Session) resume(ctx context.Context, opts Options) error {
	ck, err := openCheckpoint(s.Dir)
	if err != nil {
		return err
	}
	s.Warnings = append(s.Warnings, ck.Warnings...)
	s.Trainer, s.Meta, s.Resumed, s.saved, s.savedPath = ck.Trainer, ck.Meta, true, ck.State.Step, ck.Dir
	if err := s.reconcile(opts, ck.State); err != nil {
		return err
	}
	cfg := s.Trainer.Net.Config
	s.Data, err = opts.loadData(ctx, s.Meta.Data, s.Meta.DataFiles, cfg.Resolution, cfg.InChannels)
	return err
}

// reconcile applies to the stored run what the user gave and may change, and refuses
// what would change the model, the diffusion or the random streams.
func (s *Session) reconcile(opts Options, st compute.State) error {
	m, cfg, optim := &s.Meta, st.Config, &s.Trainer.Optim
	// Refused: the model and the process it was trained for.
	refuse := func(name string, v any, stored string) error {
		return fmt.Errorf("--%s %v: the run in %s %s, and that cannot change on resume (leave the flag out, or start a new run)", name, v, s.Dir, stored)
	}
	mo := opts.Model
	switch {
	case opts.given(OptPreset) && mo.Preset != m.Preset:
		if m.Preset == "" {
			return refuse(OptPreset, mo.Preset, "has a model of no preset ("+cfg.String()+")")
		}
		return refuse(OptPreset, mo.Preset, "has a model of preset "+m.Preset)
	case opts.given(OptImageSize) && mo.ImageSize != nil && *mo.ImageSize != cfg.Resolution:
		return refuse(OptImageSize, *mo.ImageSize, fmt.Sprintf("takes %d×%d images", cfg.Resolution, cfg.Resolution))
	case opts.given(OptChannels) && mo.Channels != nil && *mo.Channels != cfg.InChannels:
		return refuse(OptChannels, *mo.Channels, fmt.Sprintf("takes %d channels", cfg.InChannels))
	case opts.given(OptCh) && mo.Ch != nil && *mo.Ch != cfg.Ch:
		return refuse(OptCh, *mo.Ch, fmt.Sprintf("has ch %d", cfg.Ch))
	case opts.given(OptChMult) && mo.ChMult != nil && !slices.Equal(mo.ChMult, cfg.ChMult):
		return refuse(OptChMult, joinInts(mo.ChMult), "has ch_mult "+joinInts(cfg.ChMult))
	case opts.given(OptResBlocks) && mo.ResBlocks != nil && *mo.ResBlocks != cfg.NumResBlocks:
		return refuse(OptResBlocks, *mo.ResBlocks, fmt.Sprintf("has %d res blocks per level", cfg.NumResBlocks))
	case opts.given(OptAttn) && mo.Attn != nil && !slices.Equal(mo.Attn, cfg.AttnResolutions):
		return refuse(OptAttn, joinInts(mo.Attn), "has attention at "+orNone(joinInts(cfg.AttnResolutions)))
	case opts.given(OptDropout) && mo.Dropout != nil && *mo.Dropout != cfg.Dropout:
		return refuse(OptDropout, *mo.Dropout, fmt.Sprintf("has dropout %g", cfg.Dropout))
	case opts.given(OptSchedule) && opts.Schedule != m.Schedule:
		return refuse(OptSchedule, opts.Schedule, "was trained with the "+m.Schedule+" schedule")
	case opts.given(OptT) && opts.T != m.T:
		return refuse(OptT, opts.T, fmt.Sprintf("was trained with T = %d", m.T))
	case opts.given(OptSeed) && opts.Seed != m.Seed && m.Batch != 0:
		return refuse(OptSeed, opts.Seed, fmt.Sprintf("started from seed %d and its random streams are stored in the checkpoint", m.Seed))
	}

	// Applied from now on.
	note := func(format string, args ...any) {
		s.Notes = append(s.Notes, fmt.Sprintf(format, args...)+fmt.Sprintf(" from step %d on", st.Step))
	}
	eff := opts // the cadences and the device are the session's own
	eff.Model = ModelOptions{Preset: m.Preset}
	eff.Schedule, eff.T, eff.Seed = m.Schedule, m.T, m.Seed
	if m.Batch == 0 { // a run made by import has no training settings yet: the options are its first
		m.Batch, m.Flip, m.Seed, m.DataRNG = opts.Batch, opts.Hflip, opts.Seed, nil
		eff.Seed = opts.Seed
	}
	if opts.given(OptData) || len(opts.DataFiles) > 0 {
		data, err := absData(opts.Data)
		if err != nil {
			return err
		}
		if m.Data != "" && (data != m.Data || !slices.Equal(opts.DataFiles, m.DataFiles)) {
			note("training on %s (the run was trained on %s)", describeData(data, opts.DataFiles), describeData(m.Data, m.DataFiles))
		}
		m.Data, m.DataFiles = data, opts.DataFiles
	} else if m.Data != "" && m.Data != "mnist" && !filepath.IsAbs(m.Data) {
		// Runs made before data paths were stored absolute.
		abs, err := absData(m.Data)
		if err != nil {
			return err
		}
		s.Notes = append(s.Notes, fmt.Sprintf("the run stored its data as the relative path %s; using %s", m.Data, abs))
		m.Data = abs
	}
	if m.Data == "" && len(m.DataFiles) == 0 {
		return fmt.Errorf("run %s has no dataset: give --%s DIR or --%s mnist", s.Dir, OptData, OptData)
	}
	eff.Data, eff.DataFiles = m.Data, m.DataFiles
	if opts.given(OptBatch) && opts.Batch != m.Batch {
		note("batch %d (was %d)", opts.Batch, m.Batch)
		m.Batch = opts.Batch
	}
	eff.Batch = m.Batch
	if opts.given(OptHflip) && opts.Hflip != m.Flip {
		note("horizontal flips %s", onOff(opts.Hflip))
		m.Flip = opts.Hflip
	}
	eff.Hflip = m.Flip
	if opts.given(OptLR) && opts.LR != optim.LR {
		note("learning rate %g (was %g)", opts.LR, optim.LR)
		optim.LR = opts.LR
	}
	if opts.given(OptWarmup) && opts.Warmup != optim.Warmup {
		note("warm-up %d steps (was %d)", opts.Warmup, optim.Warmup)
		optim.Warmup = opts.Warmup
	}
	if opts.given(OptEMA) && opts.EMA != optim.EMADecay {
		note("EMA decay %g (was %g)", opts.EMA, optim.EMADecay)
		optim.EMADecay = opts.EMA
	}
	eff.LR, eff.Warmup, eff.EMA = optim.LR, optim.Warmup, optim.EMADecay
	if !opts.given(OptSteps) && m.Steps > 0 {
		eff.Steps = m.Steps // continue to the target the run was started with
	}
	m.Steps = eff.Steps
	s.Opts = eff
	return nil
}

// loadData is LoadData, or the dataset the caller loaded if it is spec at that size and
// channels.
func (o Options) loadData(ctx context.Context, spec string, files []string, size, channels int) (*dataset.Dataset, error) {
	if d := o.Loaded; d != nil && d.H == size && (channels == 0 || d.C == channels) && spec == o.Data && slices.Equal(files, o.DataFiles) {
		return d, nil
	}
	return LoadData(ctx, spec, files, size, channels, o.LoadProgress)
}

// LoadData loads a dataset at size×size with channels (0: from the data): the image
// files if any are given, else spec (a folder or "mnist"). ctx cancels the loading;
// progress, if not nil, is told how it goes.
func LoadData(ctx context.Context, spec string, files []string, size, channels int, progress func(done, total int)) (*dataset.Dataset, error) {
	opt := dataset.Options{Size: size, Channels: channels, Progress: progress}
	if len(files) > 0 {
		return dataset.LoadFiles(ctx, files, opt)
	}
	return dataset.Load(ctx, spec, opt)
}

// describeData names a dataset in a message.
func describeData(spec string, files []string) string {
	if len(files) > 0 {
		return fmt.Sprintf("%d image files", len(files))
	}
	return spec
}

// Describe is one line about what the session trains.
func (s *Session) Describe() string {
	cfg := s.Trainer.Net.Config
	verb := "training"
	if s.Resumed && s.Trainer.Step > 0 {
		verb = fmt.Sprintf("resuming at step %d:", s.Trainer.Step)
	}
	name := s.Meta.Preset
	if name == "" {
		name = "custom"
	}
	return fmt.Sprintf("%s a %s model (%s, %s parameters) on %d images of %s, batch %d, up to step %d, on %s",
		verb, name, cfg, thousands(int64(s.Trainer.Net.NumParams())), s.Data.N, describeData(s.Meta.Data, s.Meta.DataFiles), s.Opts.Batch, s.Opts.Steps, s.Device)
}

// EventKind says what an Event reports.
type EventKind int

// The kinds of events Run reports.
const (
	EventStep       EventKind = iota // a training step finished (Stats, StepSeconds set)
	EventPreview                     // one denoising step of a preview sampling (Frame set)
	EventCheckpoint                  // a checkpoint was written (Path set)
	EventGallery                     // a gallery grid was written (Path set)
	EventPaused                      // training is paused
	EventResumed                     // training goes on
	EventWarning                     // something went wrong that does not stop training (Message set)
)

// Event is one report of a running session.
type Event struct {
	Kind        EventKind
	Step, Steps int64 // steps done and the target
	Stats       diffusion.StepStats
	StepSeconds float64       // time of this step
	Elapsed     time.Duration // time of this session's Run so far, pauses excluded
	Frame       *Frame
	Path        string
	Message     string
}

// Result is how a Run ended.
type Result struct {
	Step       int64
	Loss       float64       // of the last step, NaN if none
	Checkpoint string        // the newest checkpoint ("" if none was ever written)
	Stopped    bool          // Stop (or the context) ended it before the target
	Finished   bool          // the target was reached
	StepTimes  []float64     // seconds of each step of this session
	Elapsed    time.Duration // time of Run, pauses excluded
}

// Pause pauses after the step in flight.
func (s *Session) Pause() { s.send(true) }

// Resume resumes a paused session.
func (s *Session) Resume() { s.send(false) }

func (s *Session) send(pause bool) {
	select {
	case s.ctl <- pause:
	default:
	}
}

// Stop abandons the step in flight within one convolution (its work is redone on
// resume: the weights, the optimizer, the EMA and the data stream are as they were
// before it) and ends Run, which then saves. Safe to call from any goroutine.
func (s *Session) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopped)
		s.Trainer.Interrupt()
	})
}

func (s *Session) isStopped() bool {
	select {
	case <-s.stopped:
		return true
	default:
		return false
	}
}

// Run trains up to Opts.Steps, or until Stop or ctx ends it: step, log, checkpoint
// (every CheckpointEvery steps or CheckpointMinutes), gallery grid (every SampleEvery
// steps and at the target), preview (right after the first step and every PreviewEvery,
// when PreviewEvery > 0), pause. It always leaves a checkpoint of the last finished step,
// unless no step was ever taken. A NaN or infinite loss ends it with an error after that
// checkpoint (of finite weights) is written.
func (s *Session) Run(ctx context.Context, onEvent func(Event)) (res Result, err error) {
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-done:
		}
	}()
	// stopCtx ends previews and gallery grids on Stop.
	stopCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stopped:
			cancel()
		case <-done:
		}
	}()
	start := time.Now()
	var paused time.Duration
	emit := func(ev Event) {
		ev.Step, ev.Steps = s.Trainer.Step, s.Opts.Steps
		res.Elapsed = time.Since(start) - paused
		ev.Elapsed = res.Elapsed
		onEvent(ev)
	}
	var preview *compute.UNet
	defer func() {
		if preview != nil {
			preview.Close()
		}
	}()
	res.Loss = math.NaN()
	first := s.Trainer.Step
	var stepErr error
	for s.Trainer.Step < s.Opts.Steps && !s.isStopped() {
		p0 := time.Now()
		ok := s.waitIfPaused(emit)
		paused += time.Since(p0)
		if !ok {
			break
		}
		t0 := time.Now()
		st, err := s.step()
		if errors.Is(err, compute.ErrInterrupted) {
			break
		}
		if err != nil {
			stepErr = err
			break
		}
		dt := time.Since(t0)
		res.Elapsed = time.Since(start) - paused
		res.Loss = st.Loss
		res.StepTimes = append(res.StepTimes, dt.Seconds())
		if err := s.log(st, dt.Seconds(), res.Elapsed); err != nil {
			return res, err
		}
		emit(Event{Kind: EventStep, Stats: st, StepSeconds: dt.Seconds()})
		if s.dueCheckpoint() {
			path, err := s.save(emit)
			if err != nil {
				return res, err
			}
			emit(Event{Kind: EventCheckpoint, Path: path})
		}
		if k := s.Opts.SampleEvery; k > 0 && s.Trainer.Step%k == 0 {
			s.galleryGrid(stopCtx, emit)
		}
		if k := s.Opts.PreviewEvery; k > 0 && (s.Trainer.Step == first+1 || s.Trainer.Step%k == 0) {
			if preview == nil {
				preview = s.Trainer.EMANet()
			}
			s.preview(stopCtx, preview, emit)
		}
	}
	res.Step = s.Trainer.Step
	res.Elapsed = time.Since(start) - paused
	res.Finished = s.Trainer.Step >= s.Opts.Steps
	res.Stopped = !res.Finished && stepErr == nil
	if s.Trainer.Step > s.saved && s.Trainer.Step > 0 {
		path, err := s.save(emit)
		if err != nil {
			return res, errors.Join(stepErr, err)
		}
		emit(Event{Kind: EventCheckpoint, Path: path})
	}
	res.Checkpoint = s.savedPath
	if stepErr != nil {
		kept := res.Checkpoint
		if kept == "" {
			kept = "none yet"
		}
		return res, fmt.Errorf("%w; the last checkpoint is kept: %s", stepErr, kept)
	}
	if res.Finished && s.Opts.SampleEvery > 0 {
		if _, err := os.Stat(galleryPath(s.Dir, s.Trainer.Step)); err != nil {
			s.galleryGrid(stopCtx, emit)
		}
	}
	return res, nil
}

// waitIfPaused handles Pause/Resume requests; it returns false if Stop came while paused.
func (s *Session) waitIfPaused(emit func(Event)) bool {
	select {
	case pause := <-s.ctl:
		if !pause {
			return true
		}
	default:
		return true
	}
	emit(Event{Kind: EventPaused})
	for {
		select {
		case pause := <-s.ctl:
			if !pause {
				emit(Event{Kind: EventResumed})
				return true
			}
		case <-s.stopped:
			return false
		}
	}
}

// step takes one training step (Algorithm 1). On an error (an interrupted step, a
// non-finite loss) everything, the data stream included, is as before the step.
func (s *Session) step() (diffusion.StepStats, error) {
	before := *s.pcg
	for i := range s.idx {
		s.idx[i] = s.rng.IntN(s.Data.N)
		s.flip[i] = s.Meta.Flip && s.rng.IntN(2) == 1
	}
	s.Data.Batch(s.idx, s.flip, s.x0)
	st, err := diffusion.TrainStep(s.Sched, s.Trainer, s.x0, s.shape, s.rng)
	if err != nil {
		*s.pcg = before
		if errors.Is(err, compute.ErrInterrupted) {
			return st, compute.ErrInterrupted
		}
	}
	return st, err
}

// log appends the step to metrics.jsonl every LogEvery steps and at the target.
func (s *Session) log(st diffusion.StepStats, stepSecs float64, elapsed time.Duration) error {
	if s.Trainer.Step%s.Opts.LogEvery != 0 && s.Trainer.Step != s.Opts.Steps {
		return nil
	}
	m := Metric{Step: s.Trainer.Step, Loss: st.Loss, LR: st.LR, GradNorm: st.GradNorm,
		ImagesPerSec: float64(s.Opts.Batch) / stepSecs, Elapsed: elapsed.Seconds()}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if _, err := s.metrics.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// dueCheckpoint reports whether a checkpoint is due at this step.
func (s *Session) dueCheckpoint() bool {
	if s.Trainer.Step%s.Opts.CheckpointEvery == 0 {
		return true
	}
	m := s.Opts.CheckpointMinutes
	return m > 0 && time.Since(s.lastCkpt).Minutes() >= m
}

// save writes a checkpoint of the current step; what the user should know about it
// (an older checkpoint moved aside or deleted for room) is emitted as warnings.
func (s *Session) save(emit func(Event)) (string, error) {
	state, err := s.pcg.MarshalBinary()
	if err != nil {
		return "", err
	}
	s.Meta.DataRNG = state
	extra, err := marshalMeta(s.Meta)
	if err != nil {
		return "", err
	}
	path, warnings, err := compute.SaveCheckpoint(s.Dir, s.Trainer, extra)
	for _, w := range warnings {
		emit(Event{Kind: EventWarning, Message: w})
	}
	if err != nil {
		return "", err
	}
	s.lastCkpt, s.saved, s.savedPath = time.Now(), s.Trainer.Step, path
	return path, nil
}

// galleryGrid saves the gallery's grid of the current step; a failure is a warning.
func (s *Session) galleryGrid(ctx context.Context, emit func(Event)) {
	path := galleryPath(s.Dir, s.Trainer.Step)
	net := s.Trainer.EMANet()
	defer net.Close()
	shape := s.imageShape(galleryImages)
	x, err := s.Sched.SampleDDIM(ctx, net, FixedNoise(shape), shape, min(gallerySteps, s.Sched.T), 0, nil, nil)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			err = imgio.SavePNG(path, GridImage(Images{Data: x, N: shape.N, C: shape.C, H: shape.H, W: shape.W}, 4))
		}
	}
	switch {
	case ctx.Err() != nil:
	case err != nil:
		emit(Event{Kind: EventWarning, Message: fmt.Sprintf("gallery grid: %v", err)})
	default:
		emit(Event{Kind: EventGallery, Path: path})
	}
}

// preview samples the preview images with the EMA weights, reporting every step.
func (s *Session) preview(ctx context.Context, net *compute.UNet, emit func(Event)) {
	shape := s.imageShape(PreviewImages)
	_, err := s.Sched.SampleDDIM(ctx, net, FixedNoise(shape), shape, min(PreviewSteps, s.Sched.T), 0, nil, func(p diffusion.Progress) {
		f := frameOf(p, shape)
		f.Xt.Data = slices.Clone(f.Xt.Data) // the sampler reuses its buffers
		f.X0.Data = slices.Clone(f.X0.Data)
		emit(Event{Kind: EventPreview, Frame: &f})
	})
	if err != nil && ctx.Err() == nil {
		emit(Event{Kind: EventWarning, Message: fmt.Sprintf("preview: %v", err)})
	}
}

func (s *Session) imageShape(n int) diffusion.Shape {
	cfg := s.Trainer.Net.Config
	return diffusion.Shape{N: n, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
}

// Close releases the trainer, the log and the lock. A new run that never saved a
// checkpoint leaves no folder behind.
func (s *Session) Close() {
	if s.metrics != nil {
		s.metrics.Close()
	}
	if s.Trainer != nil {
		s.Trainer.Close()
	}
	if s.Device != nil {
		s.Device.Close()
	}
	if s.created && s.savedPath == "" {
		os.Remove(filepath.Join(s.Dir, MetricsFile))
		os.Remove(filepath.Join(s.Dir, lockFile))
		os.Remove(s.Dir) // only if empty
	}
	s.lock.Unlock()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func orNone(s string) string {
	if s == "" {
		return "no resolution"
	}
	return s
}

// thousands writes n with commas: 35,746,307.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
