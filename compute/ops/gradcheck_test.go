package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// builder applies the operation under test to its input nodes.
type builder func(in []*gorgonia.Node) (*gorgonia.Node, error)

// randTensor returns a float64 tensor of the given shape with entries
// mean + scale·N(0,1).
func randTensor(rng *rand.Rand, mean, scale float64, shape ...int) *tensor.Dense {
	s := tensor.Shape(shape)
	data := make([]float64, s.TotalSize())
	for i := range data {
		data[i] = mean + scale*rng.NormFloat64()
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

// toDtype returns a copy of the float64 tensor t with dtype dt.
func toDtype(t *tensor.Dense, dt tensor.Dtype) *tensor.Dense {
	src := t.Float64s()
	if dt == tensor.Float64 {
		return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(append([]float64(nil), src...)))
	}
	data := make([]float32, len(src))
	for i, v := range src {
		data[i] = float32(v)
	}
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(data))
}

// float64s returns the elements of a Float32 or Float64 value as float64s.
func float64s(t *testing.T, v gorgonia.Value) []float64 {
	t.Helper()
	d, err := dense(v)
	if err != nil {
		t.Fatal(err)
	}
	if d.Dtype() == tensor.Float64 {
		return append([]float64(nil), d.Float64s()...)
	}
	src := d.Float32s()
	out := make([]float64, len(src))
	for i, x := range src {
		out[i] = float64(x)
	}
	return out
}

// inputNodes adds one tensor node per input to g, bound to the input.
func inputNodes(g *gorgonia.ExprGraph, inputs []*tensor.Dense) []*gorgonia.Node {
	nodes := make([]*gorgonia.Node, len(inputs))
	for i, in := range inputs {
		nodes[i] = gorgonia.NewTensor(g, in.Dtype(), in.Dims(), gorgonia.WithShape(in.Shape().Clone()...),
			gorgonia.WithName(fmt.Sprintf("in%d", i)), gorgonia.WithValue(in))
	}
	return nodes
}

// forward runs f on inputs converted to dtype dt and returns the output's
// shape and its elements as float64s.
func forward(t *testing.T, f builder, dt tensor.Dtype, inputs ...*tensor.Dense) (tensor.Shape, []float64) {
	t.Helper()
	g := gorgonia.NewGraph()
	conv := make([]*tensor.Dense, len(inputs))
	for i, in := range inputs {
		conv[i] = toDtype(in, dt)
	}
	out, err := f(inputNodes(g, conv))
	if err != nil {
		t.Fatal(err)
	}
	m := gorgonia.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	if !out.Shape().Eq(out.Value().Shape()) {
		t.Fatalf("node shape %v, value shape %v", out.Shape(), out.Value().Shape())
	}
	return out.Shape().Clone(), float64s(t, out.Value())
}

// maxRelDiff returns max|got−want| / max(max|want|, 1e-300).
func maxRelDiff(got, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, w float64
	for i := range want {
		if math.IsNaN(got[i]) {
			return math.Inf(1)
		}
		d = max(d, math.Abs(got[i]-want[i]))
		w = max(w, math.Abs(want[i]))
	}
	return d / max(w, 1e-300)
}

// checkForward runs f in Float64 and Float32 and compares the outputs with
// the float64 reference want of shape wantShape.
func checkForward(t *testing.T, f builder, wantShape tensor.Shape, want []float64, inputs ...*tensor.Dense) {
	t.Helper()
	for _, c := range []struct {
		dt  tensor.Dtype
		tol float64
	}{{tensor.Float64, 1e-12}, {tensor.Float32, 1e-5}} {
		shape, got := forward(t, f, c.dt, inputs...)
		if !shape.Eq(wantShape) {
			t.Fatalf("%v: output shape %v, want %v", c.dt, shape, wantShape)
		}
		d := maxRelDiff(got, want)
		t.Logf("%v: forward max relative difference %.3g", c.dt, d)
		if !(d <= c.tol) {
			t.Errorf("%v: forward max relative difference %.3g > %g", c.dt, d, c.tol)
		}
	}
}

// gradCheck compares the gradients that gorgonia.Grad computes for
// loss = Σ f(inputs) ⊙ R, with R fixed and random, against float64 central
// finite differences with step h = 1e-5, at up to maxProbes elements of each
// input (all of them when the input is smaller). It returns the largest
// error |analytic − numeric| / max(|numeric|, 1).
func gradCheck(f builder, maxProbes int, inputs ...*tensor.Dense) (float64, error) {
	const h = 1e-5
	rng := rand.New(rand.NewPCG(7, 11))
	ins := make([]*tensor.Dense, len(inputs))
	for i, in := range inputs {
		ins[i] = toDtype(in, tensor.Float64)
	}

	// Graph with gradients.
	g := gorgonia.NewGraph()
	nodes := inputNodes(g, ins)
	out, err := f(nodes)
	if err != nil {
		return 0, err
	}
	r := randTensor(rng, 0, 1, out.Shape()...)
	loss, err := weightedSum(g, out, r)
	if err != nil {
		return 0, err
	}
	grads, err := gorgonia.Grad(loss, nodes...)
	if err != nil {
		return 0, fmt.Errorf("grad: %w", err)
	}
	m := gorgonia.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		return 0, err
	}
	analytic := make([][]float64, len(grads))
	for i, gr := range grads {
		d, err := dense(gr.Value())
		if err != nil {
			return 0, err
		}
		if !d.Shape().Eq(ins[i].Shape()) {
			return 0, fmt.Errorf("gradient %d has shape %v, input has %v", i, d.Shape(), ins[i].Shape())
		}
		analytic[i] = append([]float64(nil), d.Float64s()...)
	}

	// Forward-only graph whose inputs are perturbed in place.
	g2 := gorgonia.NewGraph()
	out2, err := f(inputNodes(g2, ins))
	if err != nil {
		return 0, err
	}
	loss2, err := weightedSum(g2, out2, r)
	if err != nil {
		return 0, err
	}
	m2 := gorgonia.NewTapeMachine(g2)
	defer m2.Close()
	eval := func() (float64, error) {
		defer m2.Reset()
		if err := m2.RunAll(); err != nil {
			return 0, err
		}
		return loss2.Value().Data().(float64), nil
	}

	var worst float64
	for i, in := range ins {
		data := in.Float64s()
		probes := rng.Perm(len(data))
		if len(probes) > maxProbes {
			probes = probes[:maxProbes]
		}
		for _, j := range probes {
			v := data[j]
			data[j] = v + h
			lp, err := eval()
			if err != nil {
				return 0, err
			}
			data[j] = v - h
			lm, err := eval()
			if err != nil {
				return 0, err
			}
			data[j] = v
			num := (lp - lm) / (2 * h)
			e := math.Abs(analytic[i][j]-num) / max(math.Abs(num), 1)
			if math.IsNaN(e) {
				return math.Inf(1), fmt.Errorf("input %d element %d: NaN gradient", i, j)
			}
			worst = max(worst, e)
		}
	}
	return worst, nil
}

// weightedSum returns the node Σ out ⊙ r.
func weightedSum(g *gorgonia.ExprGraph, out *gorgonia.Node, r *tensor.Dense) (*gorgonia.Node, error) {
	r = toDtype(r, out.Dtype())
	rn := gorgonia.NewTensor(g, r.Dtype(), r.Dims(), gorgonia.WithShape(r.Shape().Clone()...), gorgonia.WithName("R"), gorgonia.WithValue(r))
	p, err := gorgonia.HadamardProd(out, rn)
	if err != nil {
		return nil, err
	}
	return gorgonia.Sum(p)
}

// requireGrad fails t if gradCheck reports an error or an error above tol.
func requireGrad(t *testing.T, f builder, maxProbes int, tol float64, inputs ...*tensor.Dense) {
	t.Helper()
	e, err := gradCheck(f, maxProbes, inputs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gradient error %.3g", e)
	if !(e <= tol) {
		t.Errorf("gradient error %.3g > %g", e, tol)
	}
}

// scaledGradSwish is swish with a gradient 0.1% too large, to show that
// gradCheck notices small gradient errors.
type scaledGradSwish struct{ swishOp }

func (op scaledGradSwish) SymDiff(inputs gorgonia.Nodes, out, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	dx, err := op.swishOp.SymDiff(inputs, out, grad)
	if err != nil {
		return nil, err
	}
	s, err := gorgonia.Mul(dx[0], gorgonia.NewConstant(1.001))
	return gorgonia.Nodes{s}, err
}

func TestGradCheckDetectsWrongGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := randTensor(rng, 0, 2, 3, 4)
	bad := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
		return gorgonia.ApplyOp(scaledGradSwish{}, in[0])
	}
	e, err := gradCheck(bad, 100, x)
	if err != nil {
		t.Fatal(err)
	}
	if e < 1e-4 {
		t.Errorf("gradCheck error %.3g for a gradient off by 0.1%%, want ≥ 1e-4", e)
	}
	good := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return Swish(in[0]) }
	requireGrad(t, good, 100, 1e-6, x)
}

// symGrads returns the gradients of Σ f(inputs) ⊙ R, R fixed and random,
// computed in dtype dt by gorgonia.Grad (symbolic differentiation) and a TapeMachine.
func symGrads(t *testing.T, f builder, dt tensor.Dtype, inputs ...*tensor.Dense) [][]float64 {
	t.Helper()
	g := gorgonia.NewGraph()
	conv := make([]*tensor.Dense, len(inputs))
	for i, in := range inputs {
		conv[i] = toDtype(in, dt)
	}
	nodes := inputNodes(g, conv)
	out, err := f(nodes)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := weightedSum(g, out, randTensor(rand.New(rand.NewPCG(5, 6)), 0, 1, out.Shape()...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gorgonia.Grad(loss, nodes...); err != nil {
		t.Fatal(err)
	}
	m := gorgonia.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	res := make([][]float64, len(nodes))
	for i, n := range nodes {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		res[i] = float64s(t, gv)
	}
	return res
}
