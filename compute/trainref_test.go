package compute_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// Tolerances of TestTrainStepsMatchTorchReference, as ‖ours − ref‖/‖ref‖ per parameter
// tensor (each step of the reference starts from our state, so these are one step's
// round-off). Ours runs in float32, the reference in float64. Our forward pass matches
// to ~1e-6 (TestUNetMatchesTorchReference); a gradient sums many float32 products, the
// most for the biases (over every pixel of the batch), and measures up to ~4e-6 per
// tensor; Adam's moments inherit that. A weight update is lr·m̂/(√v̂ + ε), which is
// nearly lr·sign(g) where |g| ≫ ε and proportional to g where |g| is near ε/√(1−β2^t)
// ≈ 3e-7: there a gradient's relative error passes on whole, and a bias whose entries
// are sums that nearly cancel has such entries (measured up to ~2e-4). The loss and
// the global norm are sums and agree to ~1e-6. Each bound is five to ten times what was
// measured; the bugs the test is meant to catch give errors of 1e-2 or more.
const (
	trainRefTolScalar = 1e-5 // loss and global norm, relative
	trainRefTolGrad   = 3e-5 // gradients, clipped gradients, Adam's m and v
	trainRefTolUpdate = 1e-3 // weight and EMA updates
)

// TestTrainStepsMatchTorchReference runs four training steps of the tiny model and
// checks each against bench/torchref/ref_train.py, which starts from our state before
// the step (weights, Adam's moments, EMA), runs PyTorch autograd in float64 on the same
// batch with our dropout masks, and applies the optimizer as the official TensorFlow
// code did (tf.clip_by_global_norm, tf.train.AdamOptimizer,
// tf.train.ExponentialMovingAverage). Compared: the loss, every parameter's gradient,
// the global norm, the learning rate, the clipped gradients (read from Adam's first
// moment), both moments, the weight update and the EMA's update. The steps have
// gradient norms of about 7.3, 5.1, 2.9 and 2.1 with the clip at 4 (so two are
// clipped and two are not), a 3-step warm-up, and an EMA decay of 0.2, so that the
// EMA uses (1+s)/(10+s) on the first two steps and the decay itself on the last two.
//
// Two semantics are ours by design and given to the reference as options (see
// compute/doc.go and ref_train.py): the warm-up rate of step s is LR·(s+1)/Warmup
// (official: LR·s/Warmup, so its first step runs at rate 0), and the EMA's num_updates
// is the step count before the step (the official DDPM code passes no num_updates).
//
// Bugs it catches (each planted once; bench/torchref/README.md lists the errors they
// gave): d and 1−d swapped in the EMA, the EMA decay of step s+1 (EMADecayAt(Step))
// instead of s, an off-by-one in Adam's bias correction, clipping per tensor instead of
// globally, a dropout mask applied at the wrong place, a wrong gradient of an op.
func TestTrainStepsMatchTorchReference(t *testing.T) {
	py := pyref.Python(t, "torch, numpy")
	const steps = 4
	cfg, js, _ := presetJSON(t, "tiny")
	dir := t.TempDir()
	refDir := filepath.Join(dir, "ref")
	if err := os.Mkdir(refDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	w0Path := filepath.Join(dir, "w0.safetensors")
	writeFile(t, cfgPath, js)
	// Random weights with every layer awake (the official init zeroes some), so that every
	// parameter has a gradient.
	mustRunRef(t, "--config", cfgPath, "--make-weights", w0Path, "--seed", "21")
	net, err := compute.NewUNet(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.LoadSafetensors(w0Path); err != nil {
		t.Fatal(err)
	}
	opt := compute.OptimConfig{LR: 5e-3, Warmup: 3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, GradClip: 4, EMADecay: 0.2}
	tr := compute.NewTrainer(net, opt, 77)
	defer tr.Close()
	shape := diffusion.Shape{N: 2, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}

	optJSON, _ := json.Marshal(opt)
	writeFile(t, filepath.Join(dir, "optim.json"), optJSON)

	// Our state: before step 0, then after each step.
	type state struct{ w, m, v, ema [][]float32 }
	clone := func(src [][]float32) [][]float32 {
		out := make([][]float32, len(src))
		for i, s := range src {
			out[i] = slices.Clone(s)
		}
		return out
	}
	current := func() state {
		w := make([][]float32, len(net.Params))
		for i, p := range net.Params {
			w[i] = p.Data
		}
		return state{clone(w), clone(tr.M), clone(tr.V), clone(tr.EMA)}
	}
	saveState := func(k int, st state) {
		for name, v := range map[string][][]float32{"w": st.w, "m": st.m, "v": st.v, "ema": st.ema} {
			if err := compute.SaveWeights(filepath.Join(dir, fmt.Sprintf("%s_%d.safetensors", name, k)), net, v, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := []state{current()}
	var stats []diffusion.StepStats
	var grads [][][]float32
	rng := rand.New(rand.NewPCG(21, 22))
	for k := range steps {
		saveState(k, before[k])
		x := make([]float32, shape.Size())
		eps := make([]float32, shape.Size())
		for i := range x {
			x[i], eps[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		ts := []int{rng.IntN(1000), rng.IntN(1000)}
		st, err := tr.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		masks := slices.Concat(tr.LastDropoutMasks(shape.N)...)
		if len(masks) == 0 {
			t.Fatal("the tiny model has no dropout masks; the test wants them")
		}
		pyref.WriteNPY(t, filepath.Join(dir, fmt.Sprintf("x_%d.npy", k)), x)
		pyref.WriteNPY(t, filepath.Join(dir, fmt.Sprintf("eps_%d.npy", k)), eps)
		pyref.WriteNPY(t, filepath.Join(dir, fmt.Sprintf("t_%d.npy", k)), []int64{int64(ts[0]), int64(ts[1])})
		pyref.WriteNPY(t, filepath.Join(dir, fmt.Sprintf("mask_%d.npy", k)), masks)
		stats = append(stats, st)
		grads = append(grads, tr.LastGradients(shape.N))
		before = append(before, current())
	}

	start := time.Now()
	cmd := exec.CommandContext(t.Context(), py, trainRefScript(t), "--config", cfgPath,
		"--optim", filepath.Join(dir, "optim.json"), "--state", dir, "--steps", fmt.Sprint(steps), "--out", refDir,
		"--lr-offset", "1", "--ema", "pre")
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ref_train.py: %v\n%s", err, out)
	}
	t.Logf("reference: %v", time.Since(start).Round(time.Millisecond))
	var sum struct {
		Loss     []float64 `json:"loss"`
		Norm     []float64 `json:"norm"`
		LR       []float64 `json:"lr"`
		EMADecay []float64 `json:"ema_decay"`
	}
	sb, err := os.ReadFile(filepath.Join(refDir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(sb, &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Loss) != steps || len(sum.Norm) != steps || len(sum.LR) != steps || len(sum.EMADecay) != steps {
		t.Fatalf("reference summary: %s", sb)
	}

	clipped := 0
	for k := range steps {
		ref := func(name string) [][]float64 {
			dst := make([][]float32, len(net.Params))
			for i, p := range net.Params {
				dst[i] = make([]float32, len(p.Data))
			}
			if err := compute.LoadWeights(filepath.Join(refDir, fmt.Sprintf("%s_%d.safetensors", name, k)), net, dst); err != nil {
				t.Fatal(err)
			}
			return to64s(dst)
		}
		st, old, now := stats[k], before[k], before[k+1]
		if sum.Norm[k] > opt.GradClip {
			clipped++
		}
		t.Logf("step %d: loss %.7g (ref %.7g), norm %.7g (ref %.7g), lr %.4g (ref %.4g), reference's EMA decay %.4g",
			k, st.Loss, sum.Loss[k], st.GradNorm, sum.Norm[k], st.LR, sum.LR[k], sum.EMADecay[k])
		check := func(what string, got, want float64, tol float64) {
			if d := math.Abs(got-want) / math.Abs(want); !(d <= tol) {
				t.Errorf("step %d: %s %.9g, reference %.9g (relative difference %.3g > %g)", k, what, got, want, d, tol)
			}
		}
		check("loss", st.Loss, sum.Loss[k], trainRefTolScalar)
		check("global gradient norm", st.GradNorm, sum.Norm[k], trainRefTolScalar)
		check("learning rate", st.LR, sum.LR[k], 1e-12)

		refGrad := ref("grad")
		null := nullGradients(refGrad)
		if k == 0 {
			var nn []string
			for i, p := range net.Params {
				if null[i] {
					nn = append(nn, p.Name)
				}
			}
			t.Logf("%d tensors with a zero gradient in exact arithmetic: %v", len(nn), nn)
		}
		for i, p := range net.Params { // ours must be round-off there
			if null[i] {
				if n, floor := norm64(to64(grads[k][i])), share(refGrad, i); !(n <= 1e-5*floor) {
					t.Errorf("step %d: gradient of %s: ‖ours‖ = %.3g, but the reference's is 0 (round-off allowed: %.3g)", k, p.Name, n, 1e-5*floor)
				}
			}
		}
		compareTensors(t, k, "gradient", net, to64s(grads[k]), refGrad, trainRefTolGrad, null)
		// Adam's first moment is m_k = β1 m_{k−1} + (1−β1) g_c: ours gives the clipped gradient.
		gc := make([][]float64, len(net.Params))
		for i := range gc {
			gc[i] = make([]float64, len(now.m[i]))
			for j, mj := range now.m[i] {
				gc[i][j] = (float64(mj) - opt.Beta1*float64(old.m[i][j])) / (1 - opt.Beta1)
			}
		}
		compareTensors(t, k, "clipped gradient (from Adam's m)", net, gc, ref("clipped"), trainRefTolGrad, null)
		compareTensors(t, k, "Adam m", net, to64s(now.m), ref("m"), trainRefTolGrad, null)
		compareTensors(t, k, "Adam v", net, to64s(now.v), ref("v"), trainRefTolGrad, null)
		compareTensors(t, k, "weight update", net, diff64s(to64s(now.w), to64s(old.w)), ref("dw"), trainRefTolUpdate, null)
		compareTensors(t, k, "EMA update", net, diff64s(to64s(now.ema), to64s(old.ema)), ref("dema"), trainRefTolUpdate, null)
	}
	if clipped == 0 || clipped == steps {
		t.Errorf("test setup: %d of %d steps had a norm above the clip %g; choose a threshold between the norms %v", clipped, steps, opt.GradClip, sum.Norm)
	}
}

// nullGradients marks the tensors whose gradient is zero in exact arithmetic: in the tiny
// model (32 channels, 32 groups) a per-channel constant added before a GroupNorm of one
// channel per group (conv1's bias, temb_proj) is normalised away, and a key bias adds
// the same amount to every logit of a softmax row. The float64 reference gives ~1e-17
// there, float32 round-off; Adam turns any round-off into steps of up to lr, so those
// tensors' moments and updates are compared only in that our gradient must be round-off.
func nullGradients(ref [][]float64) []bool {
	null := make([]bool, len(ref))
	for i := range ref {
		null[i] = norm64(ref[i]) <= 1e-9*share(ref, i)
	}
	return null
}

// share is the norm tensor i would have if every value of every tensor in all had the
// same size: ‖all‖·√(len(all[i])/Σ len).
func share(all [][]float64, i int) float64 {
	var s2 float64
	n := 0
	for _, a := range all {
		for _, v := range a {
			s2 += v * v
		}
		n += len(a)
	}
	return math.Sqrt(s2 * float64(len(all[i])) / float64(n))
}

func norm64(a []float64) float64 {
	var s2 float64
	for _, v := range a {
		s2 += v * v
	}
	return math.Sqrt(s2)
}

// compareTensors requires ‖got − want‖/‖want‖ ≤ tol for every parameter tensor not
// marked null and logs the worst one.
func compareTensors(t *testing.T, step int, what string, net *compute.UNet, got, want [][]float64, tol float64, null []bool) {
	t.Helper()
	worst, worstName := 0.0, ""
	bad := 0
	for i, p := range net.Params {
		if null[i] {
			continue
		}
		var d2, r2 float64
		for j := range want[i] {
			d := got[i][j] - want[i][j]
			d2 += d * d
			r2 += want[i][j] * want[i][j]
		}
		rel := math.Sqrt(d2 / r2)
		if !(rel <= worst) {
			worst, worstName = rel, p.Name
		}
		if !(rel <= tol) {
			if bad < 3 {
				t.Errorf("step %d: %s of %s: ‖ours − ref‖/‖ref‖ = %.3g > %g (‖ref‖ = %.3g)", step, what, p.Name, rel, tol, math.Sqrt(r2))
			}
			bad++
		}
	}
	if bad > 3 {
		t.Errorf("step %d: %s: %d more tensors off", step, what, bad-3)
	}
	t.Logf("step %d: %s: worst %.2g (%s)", step, what, worst, worstName)
}

func trainRefScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "bench", "torchref", "ref_train.py"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func to64(a []float32) []float64 {
	out := make([]float64, len(a))
	for i, v := range a {
		out[i] = float64(v)
	}
	return out
}

func to64s(a [][]float32) [][]float64 {
	out := make([][]float64, len(a))
	for i, v := range a {
		out[i] = to64(v)
	}
	return out
}

func diff64s(a, b [][]float64) [][]float64 {
	out := make([][]float64, len(a))
	for i := range a {
		out[i] = make([]float64, len(a[i]))
		for j := range a[i] {
			out[i][j] = a[i][j] - b[i][j]
		}
	}
	return out
}
