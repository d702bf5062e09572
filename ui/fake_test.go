package ui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend records what the window asks and answers from fixtures.
type fakeBackend struct {
	mu       sync.Mutex
	runsDir  string
	loads    []DataSpec
	loadErr  error
	runs     []RunInfo
	gallery  []GalleryItem
	imports  []string // paths given to ImportModel
	exports  []string // ExportModel calls
	started  []TrainRequest
	training *fakeTraining
	samples  []SampleRequest
}

func newFake(t *testing.T) *fakeBackend {
	return &fakeBackend{runsDir: t.TempDir()}
}

func (f *fakeBackend) Presets() []Preset {
	return []Preset{{Name: "mnist", Description: "28×28×1", Resolution: 28}, {Name: "tiny", Description: "16×16×1", Resolution: 16}}
}

func (f *fakeBackend) DefaultRunsDir() string { return f.runsDir }

func (f *fakeBackend) IsModel(path string) bool { return strings.HasSuffix(path, ".ckpt") }

func (f *fakeBackend) ImportModel(ctx context.Context, path string) (RunInfo, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := RunInfo{Dir: "/runs/imported", Name: "imported", Step: 0, Size: 256, Channels: 3, T: 1000}
	f.imports = append(f.imports, path)
	f.runs = append(f.runs, r)
	return r, "LSUN model (preset lsun256), 113,673,219 parameters, EMA weights", nil
}

func (f *fakeBackend) ExportModel(run, format, out string, ema bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exports = append(f.exports, fmt.Sprintf("%s %s %s %v", run, format, out, ema))
	return nil
}

func (f *fakeBackend) PassTime(ctx context.Context, run, device string) (time.Duration, error) {
	return 7 * time.Second, nil
}

func (f *fakeBackend) Devices() []string { return []string{"auto", "cpu", "cuda"} }

func (f *fakeBackend) Defaults() TrainRequest {
	return TrainRequest{Data: DataSpec{Folder: "mnist"}, Preset: "mnist", Size: 28, Batch: 64, LR: 2e-4, Steps: 2000,
		EMA: 0.9999, Schedule: "linear", PreviewEvery: 100}
}

// images returns n gray h×h images with distinct constant values.
func images(n, c, h int) Images {
	im := Images{N: n, C: c, H: h, W: h, Data: make([]float32, n*c*h*h)}
	for i := range im.Data {
		im.Data[i] = float32(i/(c*h*h))/float32(n)*2 - 1
	}
	return im
}

func (f *fakeBackend) LoadDataset(ctx context.Context, spec DataSpec, size int, progress func(done, total int)) (DatasetInfo, error) {
	f.mu.Lock()
	f.loads = append(f.loads, spec)
	err := f.loadErr
	f.mu.Unlock()
	progress(1, 2)
	progress(2, 2)
	if err != nil {
		return DatasetInfo{}, err
	}
	src := spec.Folder
	if src == "" {
		src = fmt.Sprintf("%d files", len(spec.Files))
	}
	return DatasetInfo{Source: src, Spec: spec, Count: 60000, Size: size, Channels: 1, Thumbs: images(8, 1, size),
		Skipped: []Skipped{{Path: "notes.txt", Reason: "not an image"}}}, nil
}

func (f *fakeBackend) StartTraining(req TrainRequest) (Training, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, req)
	f.training = &fakeTraining{events: make(chan TrainEvent, 100), ctl: make(chan string, 10), req: req}
	return f.training, nil
}

func (f *fakeBackend) Runs() ([]RunInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs, nil
}

func (f *fakeBackend) Sample(ctx context.Context, req SampleRequest, onFrame func(Frame)) (Images, error) {
	f.mu.Lock()
	f.samples = append(f.samples, req)
	f.mu.Unlock()
	steps := 5
	for i := 1; i <= steps; i++ {
		if ctx.Err() != nil {
			return Images{}, ctx.Err()
		}
		onFrame(Frame{Step: i, Steps: steps, T: 1000 - 200*i, Xt: images(req.Count, 1, 8), X0: images(req.Count, 1, 8)})
	}
	return images(req.Count, 1, 8), nil
}

func (f *fakeBackend) Interpolate(ctx context.Context, req InterpRequest, onFrame func(Frame)) (Images, error) {
	return images(req.Count, 1, 8), nil
}

func (f *fakeBackend) Gallery(run string) ([]GalleryItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gallery, nil
}

func (f *fakeBackend) lastTraining() *fakeTraining {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.training
}

// fakeTraining is driven by the test: it sends what the test tells it and records the
// controls it gets.
type fakeTraining struct {
	req    TrainRequest
	events chan TrainEvent
	ctl    chan string
	once   sync.Once
}

func (t *fakeTraining) Events() <-chan TrainEvent { return t.events }
func (t *fakeTraining) Pause()                    { t.ctl <- "pause" }
func (t *fakeTraining) Resume()                   { t.ctl <- "resume" }
func (t *fakeTraining) Stop()                     { t.ctl <- "stop" }

// finish sends a checkpoint and Done and closes the events.
func (t *fakeTraining) finish(step int64) {
	t.once.Do(func() {
		t.events <- TrainEvent{Kind: EventCheckpoint, Step: step, Steps: t.req.Steps, Path: filepath.Join(t.req.Run, "checkpoints", "x")}
		t.events <- TrainEvent{Kind: EventDone, Step: step, Steps: t.req.Steps, Message: "stopped and saved"}
		close(t.events)
	})
}

// control waits for the next control call.
func (t *fakeTraining) control(tb testing.TB) string {
	tb.Helper()
	select {
	case c := <-t.ctl:
		return c
	case <-time.After(5 * time.Second):
		tb.Fatal("no Pause/Resume/Stop arrived")
		return ""
	}
}

// eventually polls cond until it holds or fails the test after 5 s.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errBoom = errors.New("cannot read /data/x: permission denied")
