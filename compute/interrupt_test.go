package compute

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// TestInterruptLeavesStateUntouched interrupts training steps at varying moments (before
// the step, during the forward pass, during the backward pass) and checks that every
// interrupted step left the trainer exactly as it was: the next completed steps give the
// same weights, moments, EMA and dropout stream as a trainer that was never interrupted.
func TestInterruptLeavesStateUntouched(t *testing.T) {
	shape := diffusion.Shape{N: 4, C: 1, H: 16, W: 16}
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 200, 500, 900}
	newTrainer := func() *Trainer {
		net := tinyNet(t, 0.1) // with dropout, so the dropout stream matters
		opt := DefaultOptim()
		opt.Warmup = 1
		return NewTrainer(net, opt, 7)
	}
	ref, tr := newTrainer(), newTrainer()
	defer ref.Close()
	defer tr.Close()

	if _, err := ref.TrainStep(x, ts, eps, shape); err != nil { // builds the graph
		t.Fatal(err)
	}
	start := time.Now() // how long a step takes, to spread the interrupts over it
	if _, err := ref.TrainStep(x, ts, eps, shape); err != nil {
		t.Fatal(err)
	}
	stepTime := time.Since(start)
	for i := 0; i < 2; i++ {
		if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
			t.Fatal(err)
		}
	}

	tr.Interrupt() // before the step: the first convolution gives up
	if _, err := tr.TrainStep(x, ts, eps, shape); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted before the step: err %v, want ErrInterrupted", err)
	}
	interrupted := 1
	for i := 1; i <= 8; i++ {
		delay := stepTime * time.Duration(i) / 9
		timer := time.AfterFunc(delay, tr.Interrupt)
		_, err := tr.TrainStep(x, ts, eps, shape)
		timer.Stop()
		switch {
		case errors.Is(err, ErrInterrupted):
			interrupted++
		case err != nil:
			t.Fatal(err)
		default: // the step finished first: keep the reference in step
			if _, err := ref.TrainStep(x, ts, eps, shape); err != nil {
				t.Fatal(err)
			}
		}
		tr.stop.Store(false) // an interrupt that arrived after the step finished
	}
	for i := 0; i < 2; i++ {
		if _, err := ref.TrainStep(x, ts, eps, shape); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d of 9 steps interrupted (step time %v)", interrupted, stepTime)
	if tr.Step != ref.Step {
		t.Fatalf("step %d, reference %d", tr.Step, ref.Step)
	}
	same := func(what string, a, b [][]float32) {
		for i := range a {
			for j := range a[i] {
				if a[i][j] != b[i][j] {
					t.Fatalf("%s %d[%d]: %g, reference %g", what, i, j, a[i][j], b[i][j])
				}
			}
		}
	}
	var w, wr [][]float32
	for i := range tr.Net.Params {
		w, wr = append(w, tr.Net.Params[i].Data), append(wr, ref.Net.Params[i].Data)
	}
	same("weights", w, wr)
	same("Adam m", tr.M, ref.M)
	same("Adam v", tr.V, ref.V)
	same("EMA", tr.EMA, ref.EMA)
	a, _ := tr.RNGState()
	b, _ := ref.RNGState()
	if string(a) != string(b) {
		t.Fatal("dropout streams differ")
	}
}

// TestPrepareEstimate: the memory estimate covers at least the parameters, their
// gradients, Adam's moments, the EMA and the activations every image adds; it grows
// with the batch, and never exceeds what keeping every value of the graph alive would take.
func TestPrepareEstimate(t *testing.T) {
	tr := NewTrainer(tinyNet(t, 0), DefaultOptim(), 0)
	defer tr.Close()
	b1, err := tr.Prepare(1)
	if err != nil {
		t.Fatal(err)
	}
	b8, err := tr.Prepare(8)
	if err != nil {
		t.Fatal(err)
	}
	params := int64(4 * tr.Net.NumParams())
	perImage := (b8 - b1) / 7
	t.Logf("estimate: batch 1 %d bytes (%.1f× the parameters), %d more per image", b1, float64(b1)/float64(params), perImage)
	if b1 < 5*params {
		t.Errorf("estimate %d bytes at batch 1, less than 5× the %d bytes of parameters", b1, params)
	}
	// Each image's activations at least include its 16×16 input, output, noise and the
	// first convolution's 32 channels, forward and backward.
	if minimum := int64(4 * 16 * 16 * (3 + 2*32)); perImage < minimum {
		t.Errorf("%d bytes per image, less than %d", perImage, minimum)
	}
	f, _ := tr.graph(8)
	all := 3 * params
	for _, n := range f.g.AllNodes() {
		all += 4 * int64(n.Shape().TotalSize())
	}
	if b8 > all {
		t.Errorf("estimate %d bytes at batch 8, more than the %d of every value in the graph", b8, all)
	}
}

// TestDropoutMasks: the masks hold 0 with probability p (within four standard
// deviations) and 1/(1−p) elsewhere, change from step to step, and follow from the
// trainer's seed alone.
func TestDropoutMasks(t *testing.T) {
	const p = 0.1
	masks := func(seed uint64) [][]float32 {
		tr := NewTrainer(tinyNet(t, p), DefaultOptim(), seed)
		defer tr.Close()
		f, err := tr.graph(20) // masks of several blocks, the last one short
		if err != nil {
			t.Fatal(err)
		}
		if n := len(backing(f.masks[0])); n <= 2*maskBlock || n%maskBlock == 0 {
			t.Fatalf("the first mask has %d values; the test wants more than two blocks and a short last one", n)
		}
		var out [][]float32
		for range 2 {
			tr.fillMasks(f)
			for _, m := range f.masks {
				out = append(out, append([]float32(nil), backing(m)...))
			}
		}
		return out
	}
	a, b, c := masks(1), masks(1), masks(2)
	zeros, total := 0, 0
	for i, m := range a {
		if !slices.Equal(m, b[i]) {
			t.Fatalf("mask %d differs between two trainers with seed 1", i)
		}
		if slices.Equal(m, c[i]) {
			t.Errorf("mask %d is the same for seeds 1 and 2", i)
		}
		for _, v := range m {
			switch v {
			case 0:
				zeros++
			case float32(1 / (1 - p)):
			default:
				t.Fatalf("mask value %v", v)
			}
		}
		total += len(m)
	}
	half := len(a) / 2
	if slices.Equal(a[0], a[half]) {
		t.Error("the first mask is the same at two steps")
	}
	sd := math.Sqrt(float64(total) * p * (1 - p))
	t.Logf("%d zeros in %d values (expected %.0f ± %.0f)", zeros, total, p*float64(total), sd)
	if math.Abs(float64(zeros)-p*float64(total)) > 4*sd {
		t.Errorf("%d zeros in %d values, expected %.0f ± %.0f", zeros, total, p*float64(total), sd)
	}
}
