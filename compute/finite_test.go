package compute

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// TestHugeLearningRateRefused trains the tiny preset the way the train command does
// (a step, then a checkpoint) first with a sane learning rate, then with one so large
// that the first Adam update overflows float32 (lr 1e39 > 3.4e38: |Δw| ≈ lr at step 1,
// since m̂/√v̂ = ±1). The step must fail with ErrDiverged and a message that suggests a
// lower learning rate, leave every bit of the trainer as before, and the newest
// checkpoint must load with finite values equal to the weights in memory.
// Planted bug it catches: TrainStep applying the update without checking the new
// values (the code before this test: 21 of 144 tensors of the checkpoint were Inf).
func TestHugeLearningRateRefused(t *testing.T) {
	shape := diffusion.Shape{N: 2, C: 1, H: 16, W: 16}
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 700}
	run := t.TempDir()
	opt := DefaultOptim()
	opt.Warmup = 1
	tr := NewTrainer(tinyNet(t, 0.1), opt, 3)
	defer tr.Close()
	for range 2 {
		if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
			t.Fatal(err)
		}
		if _, _, err := SaveCheckpoint(run, tr, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, lr := range []float64{1e39, math.Inf(1)} {
		tr.Optim.LR = lr
		before := takeSnapshot(t, tr)
		_, err := tr.TrainStep(x, ts, eps, shape)
		if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "lower the learning rate") {
			t.Fatalf("lr %g: err %v, want ErrDiverged suggesting a lower learning rate", lr, err)
		}
		t.Logf("lr %g: %v", lr, err)
		takeSnapshot(t, tr).assertSame(t, before)
	}
	// A trainer started with the huge rate refuses its very first step too.
	fresh := NewTrainer(tinyNet(t, 0.1), opt, 3)
	defer fresh.Close()
	fresh.Optim.LR = 1e39
	before := takeSnapshot(t, fresh)
	if _, err := fresh.TrainStep(x, ts, eps, shape); !errors.Is(err, ErrDiverged) {
		t.Fatalf("first step at lr 1e39: err %v, want ErrDiverged", err)
	}
	takeSnapshot(t, fresh).assertSame(t, before)

	l, err := LoadLatest(run)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Trainer.Close()
	if l.State.Step != 2 || len(l.Warnings) > 0 {
		t.Fatalf("newest checkpoint: step %d, warnings %q", l.State.Step, l.Warnings)
	}
	for _, d := range [][][]float32{l.Trainer.Net.data(), l.Trainer.EMA, l.Trainer.M, l.Trainer.V} {
		if !allFinite(d) {
			t.Fatal("the newest checkpoint holds values that are not finite")
		}
	}
	takeSnapshot(t, l.Trainer).assertSame(t, takeSnapshot(t, tr))
}

// adamReference is Trainer.adam and Trainer.updateEMA as they were before the update
// was checked for finiteness (commit 5387043), the source of TestUpdateMatchesReference.
func adamReference(t *Trainer, grads [][]float32, scale, lr float64) {
	o := t.Optim
	step := float64(t.Step + 1)
	lrt := lr * math.Sqrt(1-math.Pow(o.Beta2, step)) / (1 - math.Pow(o.Beta1, step))
	b1, b2 := float32(o.Beta1), float32(o.Beta2)
	sc, eps, lr32 := float32(scale), o.Eps, lrt
	for i, p := range t.Net.Params {
		m, v, g, w := t.M[i], t.V[i], grads[i], p.Data
		for j := range w {
			gj := g[j] * sc
			m[j] = b1*m[j] + (1-b1)*gj
			v[j] = b2*v[j] + (1-b2)*gj*gj
			w[j] -= float32(lr32 * float64(m[j]) / (math.Sqrt(float64(v[j])) + eps))
		}
	}
	t.Step++
	if t.Optim.EMADecay == 0 {
		for i, p := range t.Net.Params {
			copy(t.EMA[i], p.Data)
		}
		return
	}
	d := float32(t.Optim.EMADecayAt(t.Step - 1))
	for i, p := range t.Net.Params {
		e := t.EMA[i]
		for j, w := range p.Data {
			e[j] = d*e[j] + (1-d)*w
		}
	}
}

// TestUpdateMatchesReference: the checked update stores bit for bit what the unchecked
// Adam and EMA updates stored, over several steps, with and without the EMA.
func TestUpdateMatchesReference(t *testing.T) {
	for _, decay := range []float64{0.9999, 0} {
		opt := DefaultOptim()
		opt.EMADecay = decay
		a, b := NewTrainer(tinyNet(t, 0), opt, 0), NewTrainer(tinyNet(t, 0), opt, 0)
		r := rand.New(rand.NewPCG(9, 9))
		for step := range 3 {
			grads := make([][]float32, len(a.Net.Params))
			for i, p := range a.Net.Params {
				grads[i] = make([]float32, len(p.Data))
				for j := range grads[i] {
					grads[i][j] = float32(r.NormFloat64() * 0.01)
				}
			}
			scale, lr := 0.7, opt.LRAt(int64(step))
			u := a.newUpdate(scale, lr)
			if bad := u.check(a, grads); bad != nil {
				t.Fatalf("finite update reported %+v", bad)
			}
			u.commit(a, grads)
			a.Step++
			adamReference(b, grads, scale, lr)
		}
		takeSnapshot(t, a).assertSame(t, takeSnapshot(t, b))
	}
}

// BenchmarkUpdateMNIST is the Adam and EMA update of the mnist preset's 1.6 M parameters:
// the commit alone (what TrainStep did before it checked), the check TrainStep runs
// first, and the exact check (every value computed as the commit does).
func BenchmarkUpdateMNIST(b *testing.B) {
	cfg, _ := PresetConfig("mnist")
	net, _ := NewUNet(cfg, 0)
	tr := NewTrainer(net, DefaultOptim(), 0)
	grads := make([][]float32, len(net.Params))
	for i, p := range net.Params {
		grads[i] = randn(len(p.Data), uint64(i))
	}
	u := tr.newUpdate(0.5, 2e-4)
	// With -count N the three alternate, so that a busy machine hurts each alike.
	b.Run("commit", func(b *testing.B) {
		for b.Loop() {
			u.commit(tr, grads)
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			u.check(tr, grads)
		}
	})
	b.Run("exact-check", func(b *testing.B) {
		for b.Loop() {
			for i := range tr.Net.Params {
				u.exact(tr, i, grads[i])
			}
		}
	})
}

// TestCheckAgreesWithExact: the check TrainStep runs (a bound from the moments, and the
// exact check only where the bound leaves doubt) reports the same first non-finite value
// as checking every value exactly, in five kinds of update: sane; one tensor of weights
// near the float32 limit; one tensor of gradients whose squares overflow; learning rates
// from 1e30 to 1e40; ε = 0 (no bound, every tensor checked exactly).
func TestCheckAgreesWithExact(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	tr := NewTrainer(tinyNet(t, 0), DefaultOptim(), 0)
	grads := make([][]float32, len(tr.Net.Params))
	finite := map[bool]int{}
	for c := range 30 {
		kind := c % 5
		lr, eps := 2e-4, 1e-8
		switch kind {
		case 3:
			lr = math.Pow(10, 30+10*r.Float64())
		case 4:
			eps = 0
		}
		tr.Optim.Eps = eps
		odd := r.IntN(len(tr.Net.Params))
		for i, p := range tr.Net.Params {
			wScale, gScale := float32(1), float32(1)
			if i == odd && kind == 1 {
				wScale = float32(math.Pow(10, 37+0.6*r.Float64())) // up to 4e37 of 3.4e38
			}
			if i == odd && kind == 2 {
				gScale = float32(math.Pow(10, 18+6*r.Float64())) // squares overflow above 1.8e19
			}
			grads[i] = make([]float32, len(p.Data))
			for j := range p.Data {
				p.Data[j] = float32(r.NormFloat64()) * wScale
				tr.EMA[i][j] = p.Data[j]
				tr.M[i][j] = float32(r.NormFloat64() * 1e-3)
				tr.V[i][j] = float32(r.Float64() * 1e-6)
				grads[i][j] = float32(r.NormFloat64()) * gScale
			}
		}
		u := tr.newUpdate(1, lr)
		var exact *nonFinite
		for i := range tr.Net.Params {
			if exact = u.exact(tr, i, grads[i]); exact != nil {
				break
			}
		}
		got := u.check(tr, grads)
		if (got == nil) != (exact == nil) || got != nil && *got != *exact {
			t.Fatalf("case %d (kind %d, lr %g, ε %g): check %+v, exact %+v", c, kind, lr, eps, got, exact)
		}
		finite[got == nil]++
	}
	t.Logf("finite: %d, not finite: %d", finite[true], finite[false])
	if finite[true] == 0 || finite[false] == 0 {
		t.Fatal("the cases do not cover both outcomes")
	}
}
