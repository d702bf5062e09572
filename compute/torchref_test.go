package compute_test

// Cross-checks of the Go U-Net against the independent PyTorch reference in
// bench/torchref (see bench/torchref/README.md):
//
//   - TestUNetNumParams: exact parameter counts of the presets (no Python needed).
//   - TestUNetMatchesTorchReference: random weights drawn by ref_eps.py are loaded
//     into both models; ε̂ must agree to a relative error below 1e-4.
//   - TestUNetLoadSafetensorsRejectsMismatch: matching weights load; a file with a
//     missing, an extra or mis-shaped tensors, or for another architecture, must not.
//
// The Python tests need python3 with torch and numpy (see internal/pyref); where
// there is none they are skipped, and under CI they fail.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// torchRefTol is the largest accepted ‖ours−ref‖/‖ref‖. Float32 round-off
// alone (PyTorch float32 vs float64, same weights) gives about 1e-6 on tiny
// and mnist.
const torchRefTol = 1e-4

// refScript is the path of bench/torchref/ref_eps.py (tests run in compute/).
func refScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "bench", "torchref", "ref_eps.py"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("reference script: %v", err)
	}
	return p
}

// runRef runs ref_eps.py with args and returns its combined output.
func runRef(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	py := pyref.Python(t, "torch, numpy")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{refScript(t)}, args...)...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1")
	return cmd.CombinedOutput()
}

func mustRunRef(t *testing.T, args ...string) {
	t.Helper()
	if out, err := runRef(t, args...); err != nil {
		t.Fatalf("ref_eps.py %q: %v\n%s", args, err, out)
	}
}

// refConfig holds the interchange keys of a compute.Config's JSON encoding.
type refConfig struct {
	Resolution      int     `json:"resolution"`
	InChannels      int     `json:"in_channels"`
	OutCh           int     `json:"out_ch"`
	Ch              int     `json:"ch"`
	ChMult          []int   `json:"ch_mult"`
	NumResBlocks    int     `json:"num_res_blocks"`
	AttnResolutions []int   `json:"attn_resolutions"`
	Dropout         float64 `json:"dropout"`
}

// presetJSON returns the preset, its JSON encoding and the decoded keys.
func presetJSON(t *testing.T, name string) (compute.Config, []byte, refConfig) {
	t.Helper()
	cfg, err := compute.PresetConfig(name)
	if err != nil {
		t.Fatalf("PresetConfig(%q): %v", name, err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json.Marshal(%q config): %v", name, err)
	}
	var rc refConfig
	if err := json.Unmarshal(js, &rc); err != nil {
		t.Fatalf("config JSON %s: %v", js, err)
	}
	return cfg, js, rc
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUNetNumParams(t *testing.T) {
	cases := []struct {
		preset string
		want   int
	}{
		{"tiny", 701_345},            // bench/torchref/count.py
		{"mnist", 1_623_169},         // bench/torchref/count.py
		{"cifar32", 6_472_195},       // bench/torchref/count.py
		{"cifar10", 35_746_307},      // official DDPM CIFAR-10 model
		{"celebahq256", 113_673_219}, // official DDPM 256×256 models
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			if c.preset == "celebahq256" && testing.Short() {
				t.Skip("celebahq256 allocates ~0.5 GB of weights; skipped with -short")
			}
			cfg, err := compute.PresetConfig(c.preset)
			if err != nil {
				t.Fatalf("PresetConfig(%q): %v", c.preset, err)
			}
			start := time.Now()
			m, err := compute.NewUNet(cfg, 1)
			if err != nil {
				t.Fatalf("NewUNet(%q): %v", c.preset, err)
			}
			if got := m.NumParams(); got != c.want {
				t.Errorf("%s: NumParams() = %d, want %d (off by %d)", c.preset, got, c.want, got-c.want)
			}
			t.Logf("%s: %d parameters, NewUNet took %v", c.preset, m.NumParams(), time.Since(start).Round(time.Millisecond))
			m = nil
			runtime.GC()
		})
	}
}

func TestUNetMatchesTorchReference(t *testing.T) {
	cases := []struct {
		preset string
		seed   uint64
		ts     []int // one per image
	}{
		{"tiny", 11, []int{0, 17, 999}},
		{"mnist", 12, []int{5, 999}},
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			if c.preset != "tiny" && testing.Short() {
				t.Skip("only tiny with -short")
			}
			pyref.Python(t, "torch, numpy")
			cfg, js, rc := presetJSON(t, c.preset)
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.json")
			wPath := filepath.Join(dir, "weights.safetensors")
			xPath := filepath.Join(dir, "x.npy")
			tPath := filepath.Join(dir, "t.npy")
			outPath := filepath.Join(dir, "eps.npy")
			writeFile(t, cfgPath, js)
			mustRunRef(t, "--config", cfgPath, "--make-weights", wPath, "--seed", fmt.Sprint(c.seed))

			shape := diffusion.Shape{N: len(c.ts), C: rc.InChannels, H: rc.Resolution, W: rc.Resolution}
			rng := rand.New(rand.NewPCG(c.seed, 0x5eed))
			x := make([]float32, shape.Size())
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			t64 := make([]int64, len(c.ts))
			for i, v := range c.ts {
				t64[i] = int64(v)
			}
			pyref.WriteNPY(t, xPath, pyref.NCHW(x, shape.N, shape.C, shape.H, shape.W))
			pyref.WriteNPY(t, tPath, t64)

			start := time.Now()
			mustRunRef(t, "--config", cfgPath, "--weights", wPath, "--x", xPath, "--t", tPath, "--out", outPath)
			refTime := time.Since(start)
			ref := pyref.ReadNPY[float32](t, outPath)
			outShape := diffusion.Shape{N: shape.N, C: rc.OutCh, H: shape.H, W: shape.W}
			if len(ref) != outShape.Size() {
				t.Fatalf("reference ε̂ has %d values, want %d (%+v)", len(ref), outShape.Size(), outShape)
			}

			m, err := compute.NewUNet(cfg, 99)
			if err != nil {
				t.Fatalf("NewUNet: %v", err)
			}
			if err := m.LoadSafetensors(wPath); err != nil {
				t.Fatalf("LoadSafetensors(reference weights): %v", err)
			}
			start = time.Now()
			got, err := m.PredictEps(t.Context(), x, c.ts, shape)
			if err != nil {
				t.Fatalf("PredictEps: %v", err)
			}
			goTime := time.Since(start)
			if len(got) != len(ref) {
				t.Fatalf("PredictEps returned %d values, want %d", len(got), len(ref))
			}

			var diff2, ref2, maxAbs float64
			maxAt := 0
			for i := range ref {
				r, g := float64(ref[i]), float64(got[i])
				d := g - r
				diff2 += d * d
				ref2 += r * r
				if math.IsNaN(d) || math.Abs(d) > maxAbs {
					maxAbs, maxAt = math.Abs(d), i
				}
			}
			if ref2 == 0 || math.IsNaN(ref2) {
				t.Fatalf("reference ε̂ is degenerate (‖ref‖² = %v)", ref2)
			}
			rel := math.Sqrt(diff2 / ref2)
			t.Logf("%s N=%d t=%v: ‖ours−ref‖/‖ref‖ = %.3g, max |diff| = %.3g at %d (ours %g, ref %g), ‖ref‖/√n = %.3g; ref %v (incl. Python start), ours %v",
				c.preset, shape.N, c.ts, rel, maxAbs, maxAt, got[maxAt], ref[maxAt],
				math.Sqrt(ref2/float64(len(ref))), refTime.Round(time.Millisecond), goTime.Round(time.Millisecond))
			if !(rel < torchRefTol) {
				t.Errorf("%s: relative error %.3g ≥ %g (max abs diff %.3g)", c.preset, rel, torchRefTol, maxAbs)
			}
		})
	}
}

func TestUNetLoadSafetensorsRejectsMismatch(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	cfg, js, _ := presetJSON(t, "tiny")
	var base map[string]any
	if err := json.Unmarshal(js, &base); err != nil {
		t.Fatal(err)
	}
	variants := []struct {
		name   string
		change func(map[string]any) // edits the config the weights are made for
		args   []string             // extra ref_eps.py arguments
	}{
		{"missing tensor", nil, []string{"--drop", "mid.attn_1.q.bias"}},
		{"extra tensor", nil, []string{"--extra", "mid.attn_1.extra.weight"}},
		{"mis-shaped tensors (ch 64)", func(m map[string]any) { m["ch"] = 64 }, nil},
		{"other architecture (2 res blocks)", func(m map[string]any) { m["num_res_blocks"] = 2 }, nil},
	}
	m, err := compute.NewUNet(cfg, 1)
	if err != nil {
		t.Fatalf("NewUNet: %v", err)
	}
	// The matching weights must load, so that a loader that always fails cannot pass.
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	wPath := filepath.Join(dir, "weights.safetensors")
	writeFile(t, cfgPath, js)
	mustRunRef(t, "--config", cfgPath, "--make-weights", wPath, "--seed", "1")
	if err := m.LoadSafetensors(wPath); err != nil {
		t.Fatalf("LoadSafetensors(matching tiny weights): %v", err)
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			other := make(map[string]any, len(base))
			for k, val := range base {
				other[k] = val
			}
			if v.change != nil {
				v.change(other)
			}
			oj, err := json.Marshal(other)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.json")
			wPath := filepath.Join(dir, "weights.safetensors")
			writeFile(t, cfgPath, oj)
			mustRunRef(t, append([]string{"--config", cfgPath, "--make-weights", wPath, "--seed", fmt.Sprint(i + 2)}, v.args...)...)
			if err := m.LoadSafetensors(wPath); err == nil {
				t.Errorf("LoadSafetensors accepted weights for %s %q into the tiny model", oj, v.args)
			} else {
				t.Logf("rejected as expected: %v", err)
			}
		})
	}
}

// TestTorchLoadsOurWeights: weights written by our checkpoint code load by name into the
// PyTorch reference (strictly: every key and shape must match) and give the same ε̂.
func TestTorchLoadsOurWeights(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	cfg, js, _ := presetJSON(t, "tiny")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	writeFile(t, cfgPath, js)
	m, err := compute.NewUNet(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	data := make([][]float32, len(m.Params))
	for i, p := range m.Params { // wake the zero-initialised layers
		for j := range p.Data {
			p.Data[j] += float32(0.05 * rng.NormFloat64())
		}
		data[i] = p.Data
	}
	wPath := filepath.Join(dir, "ours.safetensors")
	if err := compute.SaveWeights(wPath, m, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	shape := diffusion.Shape{N: 2, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
	x := make([]float32, shape.Size())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	ts := []int{3, 500}
	xPath, tPath, outPath := filepath.Join(dir, "x.npy"), filepath.Join(dir, "t.npy"), filepath.Join(dir, "eps.npy")
	pyref.WriteNPY(t, xPath, pyref.NCHW(x, shape.N, shape.C, shape.H, shape.W))
	pyref.WriteNPY(t, tPath, []int64{3, 500})
	mustRunRef(t, "--config", cfgPath, "--weights", wPath, "--x", xPath, "--t", tPath, "--out", outPath)
	ref := pyref.ReadNPY[float32](t, outPath)
	got, err := m.PredictEps(t.Context(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	var d2, r2 float64
	for i := range ref {
		d := float64(got[i] - ref[i])
		d2 += d * d
		r2 += float64(ref[i]) * float64(ref[i])
	}
	if rel := math.Sqrt(d2 / r2); !(rel < torchRefTol) || r2 == 0 {
		t.Errorf("PyTorch on our weights: relative error %.3g (‖ref‖² %g)", rel, r2)
	}
}
