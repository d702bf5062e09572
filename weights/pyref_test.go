package weights

// Helpers for the tests that check against PyTorch (bench/torchref: our
// reference U-Net in the port's naming, unet.py, and an independent
// implementation of diffusers' UNet2DModel, diffusers_unet.py). They need
// python3 with torch and numpy (Debian's python3-torch, python3-numpy; see
// internal/pyref). Without one the tests are skipped, except under CI, where they fail.

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// torchTol is the largest accepted ‖ours−ref‖/‖ref‖ (the 1e-4; float32
// against float64 round-off is about 1e-6, see bench/torchref/README.md).
const torchTol = 1e-4

// runPy runs bench/torchref/SCRIPT with args and fails the test if it fails.
func runPy(t testing.TB, script string, args ...string) {
	t.Helper()
	py := pyref.Python(t, "torch, numpy")
	path, err := filepath.Abs(filepath.Join("..", "bench", "torchref", script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=2", "MKL_NUM_THREADS=2", "PYTHONDONTWRITEBYTECODE=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", script, args, err, out)
	}
	t.Logf("%s %s: %v", script, args[0], time.Since(start).Round(time.Millisecond))
}

// runPyJobs runs several commands of SCRIPT (each a list of its arguments) in one process.
func runPyJobs(t testing.TB, script string, jobs [][]string) {
	t.Helper()
	b, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "jobs.json")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPy(t, script, "many", f)
}

// configJSON writes cfg as the reference scripts read it (compute.Config's JSON keys).
func configJSON(t testing.TB, dir string, cfg compute.Config) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// inputs writes x (N(0,1), n images of cfg) and t for the reference scripts.
func inputs(t testing.TB, dir string, cfg compute.Config, ts []int, seed uint64) (x []float32, shape diffusion.Shape, xPath, tPath string) {
	t.Helper()
	shape = diffusion.Shape{N: len(ts), C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
	rng := rand.New(rand.NewPCG(seed, 99))
	x = make([]float32, shape.Size())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	t64 := make([]int64, len(ts))
	for i, v := range ts {
		t64[i] = int64(v)
	}
	xPath, tPath = filepath.Join(dir, "x.npy"), filepath.Join(dir, "t.npy")
	pyref.WriteNPY(t, xPath, pyref.NCHW(x, shape.N, shape.C, shape.H, shape.W))
	pyref.WriteNPY(t, tPath, t64)
	return x, shape, xPath, tPath
}

// epsOf runs the model's U-Net on x at ts.
func epsOf(t testing.TB, m *Model, x []float32, ts []int, shape diffusion.Shape) []float32 {
	t.Helper()
	u, err := m.UNet()
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.MaxBatch = shape.N
	start := time.Now()
	eps, err := u.PredictEps(context.Background(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Go forward pass of %d image(s): %v", shape.N, time.Since(start).Round(time.Millisecond))
	return eps
}

// closeTo fails unless ‖got−ref‖/‖ref‖ < torchTol.
func closeTo(t testing.TB, what string, got, ref []float32) {
	t.Helper()
	if len(got) != len(ref) {
		t.Fatalf("%s: %d values, reference %d", what, len(got), len(ref))
	}
	var d2, r2 float64
	for i := range ref {
		d := float64(got[i]) - float64(ref[i])
		d2 += d * d
		r2 += float64(ref[i]) * float64(ref[i])
	}
	rel := math.Sqrt(d2 / r2)
	t.Logf("%s: ‖ours−ref‖/‖ref‖ = %.3g (‖ref‖/√n = %.3g)", what, rel, math.Sqrt(r2/float64(len(ref))))
	if !(rel < torchTol) || r2 == 0 {
		t.Errorf("%s: relative error %.3g, want < %g", what, rel, torchTol)
	}
}
