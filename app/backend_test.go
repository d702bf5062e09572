//go:build !headless

package main

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/run"
	"github.com/ddpm-studio/ddpm-studio/ui"
)

// drain collects a training's events until it ends, calling on for each.
func drain(t *testing.T, tr ui.Training, on func(ui.TrainEvent)) []ui.TrainEvent {
	t.Helper()
	var evs []ui.TrainEvent
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case ev, ok := <-tr.Events():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
			if on != nil {
				on(ev)
			}
		case <-timeout:
			t.Fatal("training did not end")
		}
	}
}

func count(evs []ui.TrainEvent, k ui.EventKind) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

// TestBackendTrainStopResume drives the window's backend with the real engine: a new
// run on a dropped set of files trains with previews, pauses, resumes and stops (saving a
// checkpoint of the last finished step), shows up in Runs, and continues where it stopped.
func TestBackendTrainStopResume(t *testing.T) {
	data := imageFolder(t, 4)
	files, _ := filepath.Glob(filepath.Join(data, "img*.png"))
	b := newBackend(t.TempDir(), io.Discard)
	info, err := b.LoadDataset(context.Background(), ui.DataSpec{Files: files}, 16, func(int, int) {})
	if err != nil {
		t.Fatal(err)
	}
	if info.Count != 4 || info.Channels != 1 || info.Size != 16 || info.Thumbs.N != 4 {
		t.Fatalf("dataset info %+v", info)
	}
	dir := filepath.Join(b.runsDir, "files-tiny")
	req := ui.TrainRequest{Run: dir, Data: info.Spec, Preset: "tiny", Size: 16, Batch: 2, LR: 1e-3, Steps: 1000,
		EMA: 0.999, Schedule: "linear", PreviewEvery: 3}
	tr, err := b.StartTraining(req)
	if err != nil {
		t.Fatal(err)
	}
	var stopAsked time.Time
	paused := false
	evs := drain(t, tr, func(ev ui.TrainEvent) {
		switch {
		case ev.Kind == ui.EventStep && ev.Step == 4 && !paused:
			tr.Pause()
		case ev.Kind == ui.EventPaused:
			paused = true
			tr.Resume()
		case ev.Kind == ui.EventStep && ev.Step == 7:
			stopAsked = time.Now()
			tr.Stop()
		}
	})
	last := evs[len(evs)-1]
	if last.Kind != ui.EventDone {
		t.Fatalf("last event %+v, want Done", last)
	}
	t.Logf("stopped %v after Stop; %d events", time.Since(stopAsked), len(evs))
	if evs[0].Kind != ui.EventStarted || count(evs, ui.EventPaused) != 1 || count(evs, ui.EventResumed) != 1 {
		t.Errorf("events: started %v, paused %d, resumed %d", evs[0].Kind, count(evs, ui.EventPaused), count(evs, ui.EventResumed))
	}
	// Previews after step 1 and at step 3 and 6, each with every DDIM step shown.
	if n := count(evs, ui.EventPreview); n != 3*run.PreviewSteps {
		t.Errorf("%d preview frames, want %d", n, 3*run.PreviewSteps)
	}
	for _, ev := range evs {
		if ev.Kind == ui.EventPreview {
			f := ev.Frame
			if f.Xt.N != run.PreviewImages || f.Xt.H != 16 || len(f.Xt.Data) != run.PreviewImages*16*16 || len(f.X0.Data) != len(f.Xt.Data) {
				t.Fatalf("preview frame %d/%d: %d images of %d×%d, %d values", f.Step, f.Steps, f.Xt.N, f.Xt.H, f.Xt.W, len(f.Xt.Data))
			}
		}
		if ev.Kind == ui.EventStep && (math.IsNaN(ev.Loss) || ev.ImagesPerSec <= 0) {
			t.Errorf("step event %+v", ev)
		}
	}
	steps := count(evs, ui.EventStep)
	st, err := compute.ReadState(compute.LatestCheckpoint(dir))
	if err != nil || st.Step != int64(steps) || steps < 7 {
		t.Fatalf("checkpoint at step %d (%v) after %d step events", st.Step, err, steps)
	}

	runs, err := b.Runs()
	if err != nil || len(runs) != 1 || runs[0].Step != st.Step || runs[0].Preset != "tiny" || runs[0].Settings.Batch != 2 {
		t.Fatalf("runs %+v, %v", runs, err)
	}

	// Resume: the history comes back and training continues from the checkpoint.
	req.Steps = st.Step + 2
	tr, err = b.StartTraining(ui.TrainRequest{Run: dir, Steps: req.Steps, PreviewEvery: 0})
	if err != nil {
		t.Fatal(err)
	}
	evs = drain(t, tr, nil)
	if evs[0].Step != st.Step || len(evs[0].History) == 0 || evs[0].History[len(evs[0].History)-1].Step != st.Step {
		t.Errorf("resumed start %+v", evs[0])
	}
	if evs[len(evs)-1].Kind != ui.EventDone || count(evs, ui.EventStep) != 2 {
		t.Errorf("resumed run: %d steps, last %+v", count(evs, ui.EventStep), evs[len(evs)-1])
	}
	items, err := b.Gallery(dir)
	if err != nil || len(items) != 1 || items[0].Step != req.Steps {
		t.Errorf("gallery %+v, %v: want the grid of the finished run", items, err)
	}

	// Sampling and interpolation from the run, with every step reported.
	frames := 0
	im, err := b.Sample(context.Background(), ui.SampleRequest{Run: dir, EMA: true, Sampler: "ddim", Steps: 5, Seed: 3, Count: 3},
		func(f ui.Frame) { frames++ })
	if err != nil || im.N != 3 || im.C != 1 || im.H != 16 || frames != 5 {
		t.Fatalf("sample: %d images of %d×%d×%d, %d frames, %v", im.N, im.C, im.H, im.W, frames, err)
	}
	im, err = b.Interpolate(context.Background(), ui.InterpRequest{Run: dir, EMA: true, Steps: 4, SeedA: 1, SeedB: 2, Count: 5}, func(ui.Frame) {})
	if err != nil || im.N != 5 {
		t.Fatalf("interpolate: %d images, %v", im.N, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Sample(ctx, ui.SampleRequest{Run: dir, Sampler: "ddpm", Count: 2, Seed: 1}, func(ui.Frame) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled sampling: %v", err)
	}
}

// TestBackendErrors: bad folders, missing runs and NaN losses come back as errors in words.
func TestBackendErrors(t *testing.T) {
	b := newBackend(t.TempDir(), io.Discard)
	empty := t.TempDir()
	if _, err := b.LoadDataset(context.Background(), ui.DataSpec{Folder: empty}, 16, func(int, int) {}); err == nil {
		t.Error("empty folder: no error")
	}
	if _, err := b.LoadDataset(context.Background(), ui.DataSpec{Folder: filepath.Join(empty, "nope")}, 16, func(int, int) {}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing folder: %v", err)
	}
	if _, err := b.Sample(context.Background(), ui.SampleRequest{Run: filepath.Join(empty, "nope"), Count: 1}, func(ui.Frame) {}); err == nil {
		t.Error("missing run: no error")
	}
	// A run that cannot start leaves no empty folder behind.
	bad := filepath.Join(b.runsDir, "bad")
	if _, err := b.StartTraining(ui.TrainRequest{Run: bad, Data: ui.DataSpec{Folder: empty}, Preset: "tiny", Size: 16, Batch: 2, LR: 1e-3, Steps: 5}); err == nil {
		t.Fatal("training on an empty folder started")
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder of a failed start: %v", err)
	}
	// A learning rate this large overflows within a few steps: the loss turns NaN and the
	// training reports it instead of going on.
	tr, err := b.StartTraining(ui.TrainRequest{Run: filepath.Join(b.runsDir, "nan"), Data: ui.DataSpec{Folder: imageFolder(t, 2)},
		Preset: "tiny", Size: 16, Batch: 2, LR: 1e30, Steps: 50, EMA: 0.9, Schedule: "linear"})
	if err != nil {
		t.Fatal(err)
	}
	evs := drain(t, tr, nil)
	last := evs[len(evs)-1]
	if last.Kind != ui.EventError || last.Err == nil {
		t.Fatalf("last event %+v, want an error", last)
	}
	t.Logf("error: %v", last.Err)
}

// TestBackendModels: the window's backend exports a run in both formats, recognises
// them as models (and a folder of images as not), imports them as new runs that sample
// the same images as the original, and measures a network pass.
func TestBackendModels(t *testing.T) {
	data := imageFolder(t, 4)
	src := filepath.Join(t.TempDir(), "run")
	mustRun(t, new(trainResult), tinyTrain(data, src, "2")...)
	b := newBackend(t.TempDir(), io.Discard)
	out := t.TempDir()
	ckpt, folder := filepath.Join(out, "w.ckpt"), filepath.Join(out, "diffusers")
	if err := b.ExportModel(src, "pytorch", ckpt, true); err != nil {
		t.Fatal(err)
	}
	if err := b.ExportModel(src, "diffusers", folder, true); err != nil {
		t.Fatal(err)
	}
	if b.IsModel(data) || b.IsModel(filepath.Join(data, "imga.png")) || !b.IsModel(ckpt) || !b.IsModel(folder) {
		t.Errorf("IsModel: images %v %v, checkpoint %v, folder %v", b.IsModel(data), b.IsModel(filepath.Join(data, "imga.png")),
			b.IsModel(ckpt), b.IsModel(folder))
	}
	req := ui.SampleRequest{EMA: true, Sampler: "ddim", Steps: 3, Seed: 5, Count: 2}
	req.Run = src
	want, err := b.Sample(context.Background(), req, func(ui.Frame) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{folder, ckpt} {
		r, desc, err := b.ImportModel(context.Background(), path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		if !strings.Contains(desc, "701,345 parameters") || r.Size != 16 || r.Settings.Batch == 0 {
			t.Errorf("import %s: %q, %+v", path, desc, r)
		}
		if path == folder && r.T != 20 {
			t.Errorf("the diffusers folder's run has T = %d, want the source's 20", r.T)
		}
		if path == ckpt { // a .ckpt does not carry the schedule: the paper's T = 1000
			continue
		}
		req.Run = r.Dir
		got, err := b.Sample(context.Background(), req, func(ui.Frame) {})
		if err != nil {
			t.Fatal(err)
		}
		for i := range want.Data {
			if got.Data[i] != want.Data[i] {
				t.Fatalf("samples of the imported %s differ at %d: %g vs %g", path, i, got.Data[i], want.Data[i])
			}
		}
	}
	if d, err := b.PassTime(context.Background(), src, "cpu"); err != nil || d <= 0 {
		t.Errorf("pass time %v, %v", d, err)
	}
}

// TestWindowBytesMatchCLI: the window writes the same bytes as the command line for the
// same samples: a grid and a strip of seed 7, sampled through the window's backend and
// laid out as its Sample screen does (ui.TestSampleAndExport pins that to these imgio
// calls).
func TestWindowBytesMatchCLI(t *testing.T) {
	data := imageFolder(t, 4)
	runDir := filepath.Join(t.TempDir(), "run")
	mustRun(t, new(trainResult), tinyTrain(data, runDir, "2")...)
	out := t.TempDir()
	var s2 sampleResult
	mustRun(t, &s2, "sample", "--run", runDir, "--sampler", "ddim", "--steps", "5", "--seed", "7", "--n", "3",
		"--grid", filepath.Join(out, "g7.png"), "--strip", filepath.Join(out, "s7.png"))
	prog := imgio.NewProgression(8)
	im, err := newBackend(t.TempDir(), io.Discard).Sample(context.Background(),
		ui.SampleRequest{Run: runDir, EMA: true, Sampler: "ddim", Steps: 5, Seed: 7, Count: 3},
		func(f ui.Frame) { prog.Add(f.Step, f.Steps, f.Xt.Data, f.X0.Data, f.Xt.N, f.Xt.C, f.Xt.H, f.Xt.W) })
	if err != nil {
		t.Fatal(err)
	}
	stripImg, _ := prog.Image()
	for _, c := range []struct {
		file string
		img  image.Image
	}{{"g7.png", imgio.Grid(im.Data, im.N, im.C, im.H, im.W, 0, imgio.Pad)}, {"s7.png", stripImg}} {
		var buf bytes.Buffer
		imgio.EncodePNG(&buf, c.img)
		cli, _ := os.ReadFile(filepath.Join(out, c.file))
		if !bytes.Equal(cli, buf.Bytes()) {
			t.Errorf("%s: the command line's PNG differs from the window's", c.file)
		}
	}

}
