package ops

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// naiveBMM is c[i] = op(a[i])·op(b[i]) by the definition, in float64.
func naiveBMM(a, b *tensor.Dense, tA, tB bool) (tensor.Shape, []float64) {
	as, bs := a.Shape(), b.Shape()
	at := func(x []float64, s tensor.Shape, i, r, c int, t bool) float64 {
		if t {
			r, c = c, r
		}
		return x[i*s[1]*s[2]+r*s[2]+c]
	}
	m, k := as[1], as[2]
	if tA {
		m, k = k, m
	}
	n := bs[2]
	if tB {
		n = bs[1]
	}
	av, bv := a.Float64s(), b.Float64s()
	out := make([]float64, as[0]*m*n)
	for i := range as[0] {
		for r := range m {
			for c := range n {
				var s float64
				for j := range k {
					s += at(av, as, i, r, j, tA) * at(bv, bs, i, j, c, tB)
				}
				out[(i*m+r)*n+c] = s
			}
		}
	}
	return tensor.Shape{as[0], m, n}, out
}

func TestBatchedMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(30, 30))
	const batch, m, k, n = 3, 4, 5, 6
	for _, tc := range []struct{ tA, tB bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		as, bs := []int{batch, m, k}, []int{batch, k, n}
		if tc.tA {
			as = []int{batch, k, m}
		}
		if tc.tB {
			bs = []int{batch, n, k}
		}
		a, b := randTensor(rng, 0, 1, as...), randTensor(rng, 0, 1, bs...)
		f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return BatchedMatMul(in[0], in[1], tc.tA, tc.tB) }
		shape, want := naiveBMM(a, b, tc.tA, tc.tB)
		checkForward(t, f, shape, want, a, b)
		requireGrad(t, f, 200, 1e-6, a, b)
	}
	x := gorgonia.NewTensor(gorgonia.NewGraph(), tensor.Float64, 3, gorgonia.WithShape(2, 3, 4))
	if _, err := BatchedMatMul(x, x, false, false); err == nil {
		t.Error("3×4 · 3×4: no error")
	}
}
