package run

import (
	"context"
	"errors"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// imageFolder writes n 16×16 gray PNGs of noise into a new folder.
func imageFolder(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		img := image.NewGray(image.Rect(0, 0, 16, 16))
		for j := range img.Pix {
			img.Pix[j] = uint8(r.IntN(256))
		}
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return dir
}

// tinyOptions are the options of a fast run: tiny model, T = 20, batch 2.
func tinyOptions(data string, steps int64) Options {
	o := DefaultOptions()
	o.Data, o.Model.Preset, o.Steps, o.Batch, o.T, o.Warmup, o.LR = data, "tiny", steps, 2, 20, 2, 1e-3
	o.CheckpointEvery, o.SampleEvery, o.PreviewEvery = 2, 0, 0
	return o
}

// train opens dir with o and runs it to the end.
func train(t *testing.T, dir string, o Options) Result {
	t.Helper()
	s, err := Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func intp(v int) *int { return &v }

// TestValidate: every value is checked and the message names the option; zero means
// zero (an error), never "the preset's". Each case was accepted before (issue 9).
func TestValidate(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name string
		set  func(o *Options)
		want string
	}{
		{"negative lr", func(o *Options) { o.LR = -1 }, "--lr -1"},
		{"NaN lr", func(o *Options) { o.LR = nan }, "--lr NaN"},
		{"EMA 2", func(o *Options) { o.EMA = 2 }, "--ema 2"},
		{"negative steps", func(o *Options) { o.Steps = -5 }, "--steps -5"},
		{"batch 0", func(o *Options) { o.Batch = 0 }, "--batch 0"},
		{"batch of a billion", func(o *Options) { o.Batch = 1e9 }, "--batch 1000000000"},
		{"T 1", func(o *Options) { o.T = 1 }, "--timesteps 1"},
		{"warm-up −1", func(o *Options) { o.Warmup = -1 }, "--warmup -1"},
		{"log every 0", func(o *Options) { o.LogEvery = 0 }, "--log-every 0"},
		{"checkpoint every 0", func(o *Options) { o.CheckpointEvery = 0 }, "--checkpoint-every 0"},
		{"infinite minutes", func(o *Options) { o.CheckpointMinutes = math.Inf(1) }, "--checkpoint-minutes +Inf"},
		{"image size 0", func(o *Options) { o.Model.ImageSize = intp(0) }, "--image-size 0"},
		{"image size 100000", func(o *Options) { o.Model.ImageSize = intp(100000) }, "--image-size 100000"},
		{"res blocks 0", func(o *Options) { o.Model.ResBlocks = intp(0) }, "--res-blocks 0"},
		{"ch 0", func(o *Options) { o.Model.Ch = intp(0) }, "--ch 0"},
		{"channels 2", func(o *Options) { o.Model.Channels = intp(2) }, "--channels 2"},
		{"ch-mult 0", func(o *Options) { o.Model.ChMult = []int{1, 0} }, "--ch-mult 1,0"},
		{"unknown preset", func(o *Options) { o.Model.Preset = "huge" }, "--preset"},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.set(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	// The model as a whole: attention at a resolution the mnist model (28, 14, 7) lacks
	// used to drop attention without a word.
	m := ModelOptions{Preset: "mnist", Attn: []int{5}}
	if _, err := m.Config(0); err == nil || !strings.Contains(err.Error(), "attention at 5") {
		t.Errorf("attention at 5: %v", err)
	}
}

// TestOneWriter: a second session on a run is refused in words, naming the process
// that holds it; once the first closes, the run opens again.
func TestOneWriter(t *testing.T) {
	data := imageFolder(t, 3)
	dir := filepath.Join(t.TempDir(), "run")
	s, err := Open(context.Background(), dir, tinyOptions(data, 2))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), dir, tinyOptions(data, 2))
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "being trained by process") {
		t.Fatalf("second writer: %v", err)
	}
	if _, err := s.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(context.Background(), dir, tinyOptions(data, 4))
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	s.Close()
}

// TestResumeRules: on resume, what may change is applied with a note and what may not
// is refused naming the stored value; defaults never override the stored run.
func TestResumeRules(t *testing.T) {
	data := imageFolder(t, 3)
	dir := filepath.Join(t.TempDir(), "run")
	train(t, dir, tinyOptions(data, 2))

	refused := []struct {
		set  func(o *Options)
		want string
	}{
		{func(o *Options) { o.Model.Preset = "mnist"; o.Given[OptPreset] = true }, "preset tiny"},
		{func(o *Options) { o.Model.ImageSize = intp(32); o.Given[OptImageSize] = true }, "16×16"},
		{func(o *Options) { o.Model.Attn = []int{16}; o.Given[OptAttn] = true }, "attention at 8"},
		{func(o *Options) { o.T = 1000; o.Given[OptT] = true }, "T = 20"},
		{func(o *Options) { o.Schedule = "cosine"; o.Given[OptSchedule] = true }, "linear schedule"},
		{func(o *Options) { o.Seed = 5; o.Given[OptSeed] = true }, "seed 0"},
	}
	for _, c := range refused {
		o := DefaultOptions()
		o.Given = map[string]bool{}
		c.set(&o)
		_, err := Open(context.Background(), dir, o)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "cannot change") {
			t.Errorf("%v: %v, want a refusal naming %q", o.Given, err, c.want)
		}
	}

	// Nothing given: every stored value holds (T 20, lr 1e-3, batch 2, the data), and the
	// run keeps its stored target (step 2, reached: no step).
	o := DefaultOptions()
	o.Given = map[string]bool{}
	s, err := Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sched.T != 20 || s.Trainer.Optim.LR != 1e-3 || s.Opts.Batch != 2 || s.Opts.Steps != 2 || s.Meta.Data != data || len(s.Notes) != 0 {
		t.Errorf("resumed with nothing given: T %d, lr %g, batch %d, steps %d, data %s, notes %q",
			s.Sched.T, s.Trainer.Optim.LR, s.Opts.Batch, s.Opts.Steps, s.Meta.Data, s.Notes)
	}
	s.Close()

	// Given: applied from the resumed step on, each with a note, and stored.
	o.Steps, o.LR, o.Batch, o.Hflip = 4, 5e-4, 3, true
	o.Given = map[string]bool{OptSteps: true, OptLR: true, OptBatch: true, OptHflip: true}
	s, err = Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(s.Notes, "; ")
	for _, want := range []string{"learning rate 0.0005 (was 0.001) from step 2", "batch 3 (was 2)", "horizontal flips on"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	res, err := s.Run(context.Background(), nil)
	s.Close()
	if err != nil || res.Step != 4 {
		t.Fatalf("resumed run: %+v, %v", res, err)
	}
	in, ok := Describe(dir)
	if !ok || in.Optim.LR != 5e-4 || in.Meta.Batch != 3 || !in.Meta.Flip || in.Meta.Steps != 4 {
		t.Errorf("stored after resume: %+v", in)
	}
}

// TestDataStoredAbsolute: a relative data folder is stored absolute, so a resume from
// another directory trains on the same images.
func TestDataStoredAbsolute(t *testing.T) {
	data := imageFolder(t, 3)
	t.Chdir(filepath.Dir(data))
	dir := filepath.Join(t.TempDir(), "run")
	train(t, dir, tinyOptions(filepath.Base(data), 2))
	in, _ := Describe(dir)
	if in.Meta.Data != data {
		t.Fatalf("stored data %q, want %q", in.Meta.Data, data)
	}
	t.Chdir(t.TempDir())
	o := DefaultOptions()
	o.Given = map[string]bool{OptSteps: true}
	o.Steps = 3
	if res := train(t, dir, o); res.Step != 3 {
		t.Fatalf("resumed from elsewhere to step %d", res.Step)
	}
}

// TestMemoryRefusals: a batch, a model or a sampling that would not fit is refused
// before anything is allocated, with what would fit.
func TestMemoryRefusals(t *testing.T) {
	data := imageFolder(t, 3)
	cfg, _ := compute.PresetConfig("tiny")
	cfg.InChannels, cfg.OutCh, cfg.Resolution = 1, 1, 16
	net, err := compute.NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	four, _ := net.TrainBytes(4)
	five, _ := net.TrainBytes(5)
	budget := (four + five) / 2
	defer func(f func() int64) { available = f }(available)
	available = func() int64 { return budget }

	o := tinyOptions(data, 2)
	o.Batch = 1_000_000
	dir := filepath.Join(t.TempDir(), "run")
	_, err = Open(context.Background(), dir, o)
	if err == nil || !strings.Contains(err.Error(), "use --batch 4 or less") {
		t.Fatalf("batch of a million: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run left its folder: %v", err)
	}
	o.Batch = 4
	train(t, dir, o)

	o.Model.ChMult = []int{1, 2000}
	_, err = Open(context.Background(), filepath.Join(t.TempDir(), "big"), o)
	if err == nil || !strings.Contains(err.Error(), "parameters and training it needs") {
		t.Fatalf("a model of billions of parameters: %v", err)
	}

	m, err := OpenModel(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Sample(context.Background(), SampleOptions{Sampler: SamplerDDIM, Steps: 2, N: 100_000}, nil)
	if err == nil || !strings.Contains(err.Error(), "ask for at most") {
		t.Fatalf("100000 samples: %v", err)
	}
	for _, o := range []SampleOptions{{Sampler: SamplerDDIM, Steps: 2, N: 0}, {Sampler: SamplerDDIM, Steps: 0, N: 1},
		{Sampler: SamplerDDIM, Steps: 2, Eta: math.NaN(), N: 1}, {Sampler: "x", N: 1}} {
		if _, err := m.Sample(context.Background(), o, nil); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestStopBeforeFirstStep: a new run stopped before its first step writes no step-0
// checkpoint and leaves no folder.
func TestStopBeforeFirstStep(t *testing.T) {
	data := imageFolder(t, 3)
	dir := filepath.Join(t.TempDir(), "run")
	s, err := Open(context.Background(), dir, tinyOptions(data, 10))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.Run(ctx, nil)
	s.Close()
	if err != nil || !res.Stopped || res.Checkpoint != "" || res.Step != 0 {
		t.Fatalf("stopped before the first step: %+v, %v", res, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder left behind: %v", err)
	}
}

// TestNonFiniteLoss: a learning rate that blows the weights up ends training with an
// error that keeps the last checkpoint, which is finite and loads.
func TestNonFiniteLoss(t *testing.T) {
	data := imageFolder(t, 3)
	dir := filepath.Join(t.TempDir(), "run")
	o := tinyOptions(data, 60)
	o.LR, o.Warmup = 1e30, 0
	s, err := Open(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background(), nil)
	s.Close()
	if err == nil || !strings.Contains(err.Error(), "the last checkpoint is kept") {
		t.Fatalf("lr 1e30: %+v, %v", res, err)
	}
	m, err := OpenModel(dir, false)
	if err != nil {
		t.Fatalf("the kept checkpoint does not open: %v", err)
	}
	defer m.Close()
	for _, p := range m.Net.Params {
		for _, v := range p.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("kept checkpoint %s: %s holds %v", m.Checkpoint, p.Name, v)
			}
		}
	}
}

func TestSlerp(t *testing.T) {
	a, b := []float32{1, 0}, []float32{0, 1}
	mid := slerp(a, b, 0.5) // closed form: (√½, √½) halfway between unit axes
	if math.Abs(float64(mid[0])-math.Sqrt(0.5)) > 1e-6 || math.Abs(float64(mid[1])-math.Sqrt(0.5)) > 1e-6 {
		t.Errorf("slerp halfway between unit axes: %v, want (√½, √½)", mid)
	}
	if e := slerp(a, b, 1); e[0] != 0 || math.Abs(float64(e[1])-1) > 1e-7 {
		t.Errorf("slerp at 1: %v", e)
	}
	if same := slerp(a, a, 0.3); same[0] != 1 || same[1] != 0 {
		t.Errorf("slerp of equal vectors: %v", same)
	}
}
