package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func naiveSwish(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v / (1 + math.Exp(-v))
	}
	return y
}

func TestSwish(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, 0, 3, 2, 3, 4, 5)
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Swish(in[0]) }
	checkForward(t, f, x.Shape(), naiveSwish(x.Float64s()), x)
	requireGrad(t, f, 200, 1e-6, x)

	v := randTensor(rng, 0, 3, 7)
	checkForward(t, f, v.Shape(), naiveSwish(v.Float64s()), v)
	requireGrad(t, f, 200, 1e-6, v)
}

// TestSwishExtremes checks values and gradients far in the tails, where
// exp overflows if evaluated naively.
func TestSwishExtremes(t *testing.T) {
	xs := []float64{-1e4, -800, -100, -30, 0, 30, 100, 800, 1e4}
	want := []float64{-0, -0, -100 * math.Exp(-100), -30 / (1 + math.Exp(30)), 0, 30 / (1 + math.Exp(-30)), 100, 800, 1e4}
	wantGrad := make([]float64, len(xs))
	for i, v := range xs {
		s := 1 / (1 + math.Exp(-v))
		wantGrad[i] = s * (1 + v*(1-s))
	}
	x := tensor.New(tensor.WithShape(len(xs)), tensor.WithBacking(append([]float64(nil), xs...)))
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Swish(in[0]) }
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		_, got := forward(t, f, dt, x)
		for i := range xs {
			if d := math.Abs(got[i] - want[i]); !(d <= 1e-6*math.Max(1, math.Abs(want[i]))) {
				t.Errorf("%v: swish(%g) = %g, want %g", dt, xs[i], got[i], want[i])
			}
		}
		g := onesGrad(t, f, dt, x)
		for i := range xs {
			if d := math.Abs(g[i] - wantGrad[i]); !(d <= 1e-6) {
				t.Errorf("%v: swish'(%g) = %g, want %g", dt, xs[i], g[i], wantGrad[i])
			}
		}
	}
}

// onesGrad returns the gradient of Σ f(x) with respect to x, in dtype dt.
func onesGrad(t *testing.T, f builder, dt tensor.Dtype, x *tensor.Dense) []float64 {
	t.Helper()
	g := gorgonia.NewGraph()
	in := inputNodes(g, []*tensor.Dense{toDtype(x, dt)})
	y, err := f(in)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := gorgonia.Sum(y)
	if err != nil {
		t.Fatal(err)
	}
	gr, err := gorgonia.Grad(loss, in[0])
	if err != nil {
		t.Fatal(err)
	}
	m := gorgonia.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	return float64s(t, gr[0].Value())
}

func naiveUpsample(x *tensor.Dense) (tensor.Shape, []float64) {
	s := x.Shape()
	n, c, h, w := s[0], s[1], s[2], s[3]
	y := make([]float64, n*c*4*h*w)
	xs := x.Float64s()
	for p := 0; p < n*c; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				y[(p*2*h+i)*2*w+j] = xs[(p*h+i/2)*w+j/2]
			}
		}
	}
	return tensor.Shape{n, c, 2 * h, 2 * w}, y
}

func TestUpsample2x(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, shape := range [][]int{{2, 3, 4, 5}, {1, 2, 1, 1}, {3, 1, 3, 2}} {
		x := randTensor(rng, 0, 1, shape...)
		f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Upsample2x(in[0]) }
		s, want := naiveUpsample(x)
		checkForward(t, f, s, want, x)
		requireGrad(t, f, 200, 1e-6, x)
	}
}

func naiveSoftmax(x *tensor.Dense, scale float64) []float64 {
	xs := append([]float64(nil), x.Float64s()...)
	for i := range xs {
		xs[i] *= scale
	}
	w := x.Shape()[x.Dims()-1]
	y := make([]float64, len(xs))
	for r := 0; r < len(xs)/w; r++ {
		m := math.Inf(-1)
		for _, v := range xs[r*w : (r+1)*w] {
			m = math.Max(m, v)
		}
		var s float64
		for j := r * w; j < (r+1)*w; j++ {
			y[j] = math.Exp(xs[j] - m)
			s += y[j]
		}
		for j := r * w; j < (r+1)*w; j++ {
			y[j] /= s
		}
	}
	return y
}

func TestSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, scale := range []float64{1, 0.125} {
		f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Softmax(in[0], scale) }
		for _, shape := range [][]int{{3, 16, 16}, {2, 5, 7}, {6}, {4, 1}} {
			x := randTensor(rng, 0, 2, shape...)
			checkForward(t, f, x.Shape(), naiveSoftmax(x, scale), x)
			requireGrad(t, f, 150, 1e-6, x)
		}
		// Rows far apart in scale: a softmax that subtracts one value of the tensor
		// instead of each row's maximum (as gorgonia.SoftMax v0.9.18) gives NaN here.
		x := unstableSoftmaxInput()
		checkForward(t, f, x.Shape(), naiveSoftmax(x, scale), x)
	}
}

// unstableSoftmaxInput returns a [2,2,3] tensor whose first element is far
// above the other rows.
func unstableSoftmaxInput() *tensor.Dense {
	return tensor.New(tensor.WithShape(2, 2, 3), tensor.WithBacking([]float64{
		500, 1, 2,
		-300, -301, -299,
		3, 1, 0,
		-700, -690, -695,
	}))
}

// TestRepeatedRuns runs a graph of all ops three times on one TapeMachine
// and checks that each run gives the same output and gradients as the
// first.
func TestRepeatedRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	g := gorgonia.NewGraph()
	in := inputNodes(g, []*tensor.Dense{
		toDtype(randTensor(rng, 0, 1, 2, 8, 3, 3), tensor.Float32),
		toDtype(randTensor(rng, 1, 0.5, 8), tensor.Float32),
		toDtype(randTensor(rng, 0, 1, 8), tensor.Float32),
	})
	h, err := GroupNormSwish(in[0], in[1], in[2], 4, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	h, err = Upsample2x(h)
	if err != nil {
		t.Fatal(err)
	}
	h, err = GroupNorm(h, in[1], in[2], 2, 1e-6)
	if err != nil {
		t.Fatal(err)
	}
	h, err = Swish(h)
	if err != nil {
		t.Fatal(err)
	}
	h, err = Softmax(h, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := weightedSum(g, h, randTensor(rng, 0, 1, h.Shape()...))
	if err != nil {
		t.Fatal(err)
	}
	gr, err := gorgonia.Grad(loss, in...)
	if err != nil {
		t.Fatal(err)
	}
	m := gorgonia.NewTapeMachine(g)
	defer m.Close()
	var first [][]float64
	for run := range 3 {
		if err := m.RunAll(); err != nil {
			t.Fatal(err)
		}
		vals := [][]float64{float64s(t, h.Value())}
		for _, n := range gr {
			vals = append(vals, float64s(t, n.Value()))
		}
		m.Reset()
		if run == 0 {
			first = vals
			continue
		}
		for i := range vals {
			if d := maxRelDiff(vals[i], first[i]); d != 0 {
				t.Errorf("run %d: value %d differs from the first run by %.3g", run, i, d)
			}
		}
	}
}

func TestExpFast(t *testing.T) {
	worst := 0.0
	for i := -700000; i <= 700000; i++ {
		x := float64(i) / 997
		got, want := expFast(x), math.Exp(x)
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 1e-8 {
		t.Errorf("expFast: worst relative error %g", worst)
	}
	if !math.IsInf(expFast(710), 1) || expFast(-710) != math.Exp(-710) || expFast(0) != 1 || !math.IsNaN(expFast(math.NaN())) {
		t.Errorf("expFast edges: %g %g %g", expFast(710), expFast(-710), expFast(0))
	}
}

func TestAddChannels(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	h := randTensor(rng, 0, 1, 2, 3, 4, 5)
	tt := randTensor(rng, 0, 1, 2, 3)
	want := append([]float64(nil), h.Float64s()...)
	for i := range want {
		want[i] += tt.Float64s()[i/20]
	}
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return AddChannels(in[0], in[1]) }
	checkForward(t, f, h.Shape(), want, h, tt)
	requireGrad(t, f, 200, 1e-6, h, tt)
}

func TestAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	a, b := randTensor(rng, 0, 1, 2, 3, 4, 5), randTensor(rng, 0, 1, 2, 3, 4, 5)
	want := append([]float64(nil), a.Float64s()...)
	for i, v := range b.Float64s() {
		want[i] += v
	}
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Add(in[0], in[1]) }
	checkForward(t, f, a.Shape(), want, a, b)
	requireGrad(t, f, 200, 1e-6, a, b)
	big := randTensor(rng, 0, 1, 3, 50000) // several blocks, the last one short
	want = append([]float64(nil), big.Float64s()...)
	for i := range want {
		want[i] *= 2
	}
	checkForward(t, f, big.Shape(), want, big, big)
}

func TestConcatChannels(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	a, b := randTensor(rng, 0, 1, 2, 3, 2, 2), randTensor(rng, 0, 1, 2, 1, 2, 2)
	var want []float64
	for n := range 2 {
		want = append(want, a.Float64s()[n*12:(n+1)*12]...)
		want = append(want, b.Float64s()[n*4:(n+1)*4]...)
	}
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return ConcatChannels(in[0], in[1]) }
	checkForward(t, f, tensor.Shape{2, 4, 2, 2}, want, a, b)
	requireGrad(t, f, 100, 1e-6, a, b)
}
