package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// cmd runs the CLI in-process and returns its exit status, standard output and standard error.
func cmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := execute(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs the CLI with --json and decodes the JSON object on the last line of output into res.
func mustRun(t *testing.T, res any, args ...string) string {
	t.Helper()
	code, out, errOut := cmd(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), res); err != nil {
		t.Fatalf("%v: last line is not JSON: %q (%v)", args, lines[len(lines)-1], err)
	}
	return errOut
}

// imageFolder writes n 20×24 gray PNGs (non-square, so they are cropped), a corrupt PNG and a text file.
func imageFolder(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	for i := range n {
		img := image.NewGray(image.Rect(0, 0, 20, 24))
		for y := range 24 {
			for x := range 20 {
				img.SetGray(x, y, color.Gray{uint8(r.IntN(256))})
			}
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "img"+string(rune('a'+i))+".png"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			os.WriteFile(filepath.Join(dir, "broken.png"), buf.Bytes()[:buf.Len()/2], 0o644)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	return dir
}

// tinyTrain are the flags of a fast training run: tiny model, short schedule.
func tinyTrain(data, runDir string, steps string) []string {
	return []string{"train", "--data", data, "--run", runDir, "--preset", "tiny", "--steps", steps, "--batch", "3",
		"--timesteps", "20", "--warmup", "2", "--checkpoint-every", "2", "--sample-every", "2", "--log-every", "1"}
}

func TestHelp(t *testing.T) {
	code, out, _ := cmd(t, "--help")
	if code != 0 || !strings.Contains(out, "train") || !strings.Contains(out, "sample") || !strings.Contains(out, "gui") {
		t.Fatalf("--help: exit %d, output %q", code, out)
	}
}

// TestNoDisplay: with no arguments the window opens; without a display that is a
// one-line error that says what to do, not a crash inside the GUI toolkit.
func TestNoDisplay(t *testing.T) {
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	code, _, errOut := cmd(t)
	if code != 1 || !strings.Contains(errOut, "no display") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("no display: exit %d, stderr %q", code, errOut)
	}
}

func TestModelCounts(t *testing.T) {
	for preset, want := range map[string]int64{"mnist": 1623169, "cifar10": 35746307} {
		var res modelResult
		mustRun(t, &res, "model", "--preset", preset)
		if res.Params != want {
			t.Errorf("%s: %d parameters, want %d", preset, res.Params, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	empty := t.TempDir()
	code, _, errOut := cmd(t, "train", "--data", empty, "--run", filepath.Join(t.TempDir(), "r"), "--preset", "tiny")
	if code == 0 || !strings.Contains(errOut, empty) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("empty folder: exit %d, stderr %q (want one line naming the folder)", code, errOut)
	}
	code, _, errOut = cmd(t, "sample", "--run", filepath.Join(empty, "nope"))
	if code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("missing run: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = cmd(t, "model", "--preset", "huge")
	if code == 0 || !strings.Contains(errOut, "huge") {
		t.Errorf("bad preset: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = cmd(t, "model", "--preset", "tiny", "--ch", "48")
	if code == 0 || !strings.Contains(errOut, "multiple of 32") {
		t.Errorf("bad --ch: exit %d, stderr %q", code, errOut)
	}
}

// TestTrainSampleDenoiseEval walks a run through every subcommand.
func TestTrainSampleDenoiseEval(t *testing.T) {
	data := imageFolder(t, 6)
	runDir := filepath.Join(t.TempDir(), "run")
	var tr trainResult
	warn := mustRun(t, &tr, tinyTrain(data, runDir, "4")...)
	if tr.Step != 4 || tr.Interrupted || tr.Loss == nil || *tr.Loss <= 0 {
		t.Fatalf("train result %+v", tr)
	}
	if !strings.Contains(warn, "2 files skipped") || !strings.Contains(warn, "broken.png") || !strings.Contains(warn, "notes.txt") {
		t.Errorf("no warning about the skipped files: %q", warn)
	}
	metrics, err := os.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(metrics), "\n"); n != 4 {
		t.Errorf("metrics.jsonl has %d lines, want 4", n)
	}
	var m run.Metric
	json.Unmarshal([]byte(strings.SplitN(string(metrics), "\n", 2)[0]), &m)
	if m.Step != 1 || m.Loss <= 0 || m.LR <= 0 || m.GradNorm <= 0 || m.ImagesPerSec <= 0 {
		t.Errorf("first metrics line %+v", m)
	}
	for _, f := range []string{"samples/step-00000002.png", "samples/step-00000004.png", "checkpoints/step-00000004/model.safetensors", "checkpoints/step-00000004/ema.safetensors"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err != nil {
			t.Error(err)
		}
	}

	out := t.TempDir()
	noise := filepath.Join(out, "noise.npy")
	rng := rand.New(rand.NewPCG(2, 2))
	xT := make([]float32, 3*16*16)
	for i := range xT {
		xT[i] = float32(rng.NormFloat64())
	}
	if err := imgio.WriteNPY(noise, xT, []int{3, 1, 16, 16}); err != nil {
		t.Fatal(err)
	}
	var s1, s2 sampleResult
	mustRun(t, &s1, "sample", "--run", runDir, "--sampler", "ddim", "--steps", "5", "--init-noise", noise,
		"--grid", filepath.Join(out, "grid.png"), "--strip", filepath.Join(out, "strip.png"),
		"--out-dir", filepath.Join(out, "each"), "--save-npy", filepath.Join(out, "a.npy"))
	mustRun(t, &s2, "sample", "--run", runDir, "--sampler", "ddim", "--steps", "5", "--init-noise", noise, "--save-npy", filepath.Join(out, "b.npy"))
	if s1.N != 3 || len(s1.Files) != 6 {
		t.Errorf("sample result %+v", s1)
	}
	a, shape, err := imgio.ReadNPY(filepath.Join(out, "a.npy"))
	if err != nil || len(shape) != 4 || shape[0] != 3 {
		t.Fatalf("samples: %v %v", shape, err)
	}
	b, _, _ := imgio.ReadNPY(filepath.Join(out, "b.npy"))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("DDIM η=0 from the same noise differs at %d: %g vs %g", i, a[i], b[i])
		}
	}
	grid := decodePNG(t, filepath.Join(out, "grid.png"))
	if g := grid.Bounds(); g.Dx() != 2*16+3*2 || g.Dy() != 2*16+3*2 { // 3 tiles: 2 columns, 2 rows, padding 2
		t.Errorf("grid is %v", g)
	}
	strip := decodePNG(t, filepath.Join(out, "strip.png"))
	if s := strip.Bounds(); s.Dy() != 6*16+7*2 { // x_t and x̂0 rows for each of 3 samples
		t.Errorf("strip is %v", s)
	}

	var d denoiseResult
	mustRun(t, &d, "denoise", "--run", runDir, "--input", filepath.Join(data, "imga.png"), "--t", "10",
		"--save-eps", filepath.Join(out, "eps.npy"), "--save-x0", filepath.Join(out, "x0.npy"), "--out", filepath.Join(out, "d.png"))
	if !d.Noised || d.N != 1 || d.EpsRMS <= 0 {
		t.Errorf("denoise result %+v", d)
	}
	mustRun(t, &d, "denoise", "--run", runDir, "--input", noise, "--t", "19", "--save-eps", filepath.Join(out, "eps3.npy"))
	if _, shape, err := imgio.ReadNPY(filepath.Join(out, "eps3.npy")); err != nil || shape[0] != 3 {
		t.Errorf("eps of 3 inputs: %v %v", shape, err)
	}
	if code, _, errOut := cmd(t, "denoise", "--run", runDir, "--input", noise, "--t", "20"); code == 0 || !strings.Contains(errOut, "[0, 20)") {
		t.Errorf("t out of range: exit %d, %q", code, errOut)
	}

	var ev evalResult
	mustRun(t, &ev, "eval", "--run", runDir, "--bpd", "--n", "2")
	if ev.N != 2 || !(ev.BPD > 0) || ev.BPD > 100 {
		t.Errorf("eval result %+v", ev)
	}
}

// TestResumeIsExact: 4 steps straight give the same checkpoint, byte for byte, as 2 steps then a resume to 4.
func TestResumeIsExact(t *testing.T) {
	data := imageFolder(t, 5)
	straight, split := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	var r trainResult
	mustRun(t, &r, tinyTrain(data, straight, "4")...)
	mustRun(t, &r, tinyTrain(data, split, "2")...)
	mustRun(t, &r, "train", "--run", split, "--steps", "4", "--sample-every", "0", "--log-every", "1")
	if r.Step != 4 {
		t.Fatalf("resumed run stopped at %d", r.Step)
	}
	for _, f := range []string{"model.safetensors", "ema.safetensors", "optimizer.safetensors"} {
		a, err := os.ReadFile(filepath.Join(straight, "checkpoints/step-00000004", f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(split, "checkpoints/step-00000004", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between a straight and a resumed run", f)
		}
	}
	ma, _ := os.ReadFile(filepath.Join(straight, "metrics.jsonl"))
	mb, _ := os.ReadFile(filepath.Join(split, "metrics.jsonl"))
	if strings.Count(string(ma), "\n") != strings.Count(string(mb), "\n") {
		t.Errorf("metrics lines: %d straight, %d resumed", strings.Count(string(ma), "\n"), strings.Count(string(mb), "\n"))
	}
}

// TestImport: a run's weights imported into a new run, and exported as a PyTorch
// checkpoint and as a diffusers folder and imported again, give the same ε̂ bit for bit;
// the schedule travels with them (T = 20 here).
func TestImport(t *testing.T) {
	data := imageFolder(t, 4)
	runDir := filepath.Join(t.TempDir(), "run")
	var tr trainResult
	mustRun(t, &tr, tinyTrain(data, runDir, "2")...)
	weights := filepath.Join(tr.Checkpoint, "model.safetensors")
	imported := filepath.Join(t.TempDir(), "imported")
	var ir importResult
	mustRun(t, &ir, "import", "--weights", weights, "--preset", "tiny", "--run", imported, "--timesteps", "20")
	if ir.Params != 701345 || !strings.Contains(ir.Description, "701,345 parameters") {
		t.Errorf("imported %+v", ir)
	}
	out := t.TempDir()
	var er exportResult
	mustRun(t, &er, "export", "--run", imported, "--format", "pytorch", "--out", filepath.Join(out, "w.ckpt"))
	mustRun(t, &er, "export", "--run", imported, "--format", "diffusers", "--out", filepath.Join(out, "diffusers"))
	mustRun(t, &ir, "import", "--weights", filepath.Join(out, "w.ckpt"), "--run", filepath.Join(out, "from-ckpt"), "--timesteps", "20")
	mustRun(t, &ir, "import", "--weights", filepath.Join(out, "diffusers"), "--run", filepath.Join(out, "from-diffusers"))

	var d denoiseResult
	input := filepath.Join(data, "imgb.png")
	mustRun(t, &d, "denoise", "--run", runDir, "--no-ema", "--input", input, "--t", "7", "--save-eps", filepath.Join(out, "want.npy"))
	want, _, _ := imgio.ReadNPY(filepath.Join(out, "want.npy"))
	for _, r := range []string{imported, filepath.Join(out, "from-ckpt"), filepath.Join(out, "from-diffusers")} {
		mustRun(t, &d, "denoise", "--run", r, "--input", input, "--t", "7", "--save-eps", filepath.Join(out, "got.npy"))
		got, _, _ := imgio.ReadNPY(filepath.Join(out, "got.npy"))
		if len(want) == 0 || len(got) != len(want) {
			t.Fatalf("%s: eps lengths %d, %d", r, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: ε̂ differs at %d: %g vs %g", r, i, got[i], want[i])
			}
		}
	}
	if in, ok := run.Describe(filepath.Join(out, "from-diffusers")); !ok || in.Meta.T != 20 || in.Meta.Preset != "tiny" {
		t.Errorf("imported diffusers folder: %+v", in.Meta)
	}
	if code, _, errOut := cmd(t, "import", "--weights", weights, "--preset", "mnist", "--run", t.TempDir()); code == 0 || !strings.Contains(errOut, "are another model") {
		t.Errorf("weights of another architecture: exit %d, %q", code, errOut)
	}
	if code, _, errOut := cmd(t, "import", "--weights", filepath.Join(out, "diffusers"), "--run", t.TempDir(), "--timesteps", "1000"); code == 0 || !strings.Contains(errOut, "T = 20") {
		t.Errorf("a schedule other than the folder's: exit %d, %q", code, errOut)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
