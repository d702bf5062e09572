package ops

// Checks of the Gorgonia built-in ops the U-Net relies on, against naive
// float64 references and finite differences.

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// naiveConv computes the cross-correlation of x [N,C,H,W] with w [O,C,K,K],
// zero padding pad on all sides, and stride.
func naiveConv(x, w *tensor.Dense, pad, stride int) (tensor.Shape, []float64) {
	xs, ws := x.Shape(), w.Shape()
	n, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, k := ws[0], ws[2]
	oh, ow := (h+2*pad-k)/stride+1, (wd+2*pad-k)/stride+1
	xd, wdata := x.Float64s(), w.Float64s()
	y := make([]float64, n*o*oh*ow)
	for b := range n {
		for oc := range o {
			for i := range oh {
				for j := range ow {
					var s float64
					for ic := range c {
						for di := range k {
							for dj := range k {
								si, sj := i*stride-pad+di, j*stride-pad+dj
								if si < 0 || si >= h || sj < 0 || sj >= wd {
									continue
								}
								s += xd[((b*c+ic)*h+si)*wd+sj] * wdata[((oc*c+ic)*k+di)*k+dj]
							}
						}
					}
					y[((b*o+oc)*oh+i)*ow+j] = s
				}
			}
		}
	}
	return tensor.Shape{n, o, oh, ow}, y
}

func TestGorgoniaConv2d(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, tc := range []struct {
		name              string
		x                 []int
		o, k, pad, stride int
	}{
		{"3x3_pad1_stride1", []int{2, 3, 7, 6}, 5, 3, 1, 1},
		{"3x3_pad0_stride2_odd", []int{2, 3, 9, 9}, 5, 3, 0, 2},
		{"3x3_pad0_stride2_even", []int{2, 4, 8, 10}, 3, 3, 0, 2},
		{"1x1", []int{2, 3, 5, 4}, 5, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := randTensor(rng, 0, 1, tc.x...)
			w := randTensor(rng, 0, 0.5, tc.o, tc.x[1], tc.k, tc.k)
			f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
				return gorgonia.Conv2d(in[0], in[1], tensor.Shape{tc.k, tc.k}, []int{tc.pad, tc.pad}, []int{tc.stride, tc.stride}, []int{1, 1})
			}
			shape, want := naiveConv(x, w, tc.pad, tc.stride)
			checkForward(t, f, shape, want, x, w)
			requireGrad(t, f, 100, 1e-6, x, w)
		})
	}
}

// naiveBatchedMatMul multiplies op(a) [B,M,K] by op(b) [B,K,N], op
// transposing the last two axes when asked.
func naiveBatchedMatMul(a, b *tensor.Dense, transA, transB bool) (tensor.Shape, []float64) {
	as, bs := a.Shape(), b.Shape()
	nb := as[0]
	m, k := as[1], as[2]
	if transA {
		m, k = k, m
	}
	n := bs[2]
	if transB {
		n = bs[1]
	}
	ad, bd := a.Float64s(), b.Float64s()
	at := func(bi, i, j int) float64 { // op(a)[bi,i,j]
		if transA {
			return ad[(bi*as[1]+j)*as[2]+i]
		}
		return ad[(bi*as[1]+i)*as[2]+j]
	}
	bt := func(bi, i, j int) float64 {
		if transB {
			return bd[(bi*bs[1]+j)*bs[2]+i]
		}
		return bd[(bi*bs[1]+i)*bs[2]+j]
	}
	y := make([]float64, nb*m*n)
	for bi := range nb {
		for i := range m {
			for j := range n {
				var s float64
				for l := range k {
					s += at(bi, i, l) * bt(bi, l, j)
				}
				y[(bi*m+i)*n+j] = s
			}
		}
	}
	return tensor.Shape{nb, m, n}, y
}

func TestGorgoniaBatchedMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	const nb, m, k, n = 3, 4, 5, 6
	for _, tc := range []struct {
		name           string
		transA, transB bool
	}{{"NN", false, false}, {"TN", true, false}, {"NT", false, true}, {"TT", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			as, bs := []int{nb, m, k}, []int{nb, k, n}
			if tc.transA {
				as = []int{nb, k, m}
			}
			if tc.transB {
				bs = []int{nb, n, k}
			}
			a, b := randTensor(rng, 0, 1, as...), randTensor(rng, 0, 1, bs...)
			f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
				return gorgonia.BatchedMatMul(in[0], in[1], tc.transA, tc.transB)
			}
			shape, want := naiveBatchedMatMul(a, b, tc.transA, tc.transB)
			checkForward(t, f, shape, want, a, b)
			requireGrad(t, f, 100, 1e-6, a, b)
		})
	}
}

// TestGorgoniaSoftMax checks gorgonia.SoftMax along the last axis of a 3-D
// tensor: right on ordinary inputs, NaN when a row lies far below the
// tensor's first element (it subtracts x[0] rather than the row maximum).
func TestGorgoniaSoftMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	x := randTensor(rng, 0, 2, 3, 8, 8)
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return gorgonia.SoftMax(in[0]) }
	checkForward(t, f, x.Shape(), naiveSoftmax(x, 1), x)
	requireGrad(t, f, 100, 1e-6, x)

	u := unstableSoftmaxInput()
	_, got := forward(t, f, tensor.Float64, u)
	nan := 0
	for _, v := range got {
		if math.IsNaN(v) {
			nan++
		}
	}
	t.Logf("gorgonia.SoftMax on rows far below x[0]: %d of %d outputs NaN, max difference %.3g", nan, len(got), maxRelDiff(got, naiveSoftmax(u, 1)))
}

func TestGorgoniaConcat(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	a, b := randTensor(rng, 0, 1, 2, 3, 4, 5), randTensor(rng, 0, 1, 2, 2, 4, 5)
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return gorgonia.Concat(1, in[0], in[1]) }
	ad, bd := a.Float64s(), b.Float64s()
	var want []float64
	for n := range 2 {
		want = append(want, ad[n*3*20:(n+1)*3*20]...)
		want = append(want, bd[n*2*20:(n+1)*2*20]...)
	}
	checkForward(t, f, tensor.Shape{2, 5, 4, 5}, want, a, b)
	requireGrad(t, f, 100, 1e-6, a, b)
}

func TestGorgoniaBroadcastAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	x := randTensor(rng, 0, 1, 2, 3, 4, 5)
	for _, tc := range []struct {
		name  string
		bn    int    // first axis of the bias
		right []byte // broadcast axes of the bias
	}{
		{"bias_1C11", 1, []byte{0, 2, 3}},
		{"temb_NC11", 2, []byte{2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := randTensor(rng, 0, 1, tc.bn, 3, 1, 1)
			f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
				return gorgonia.BroadcastAdd(in[0], in[1], nil, tc.right)
			}
			xd, bd := x.Float64s(), b.Float64s()
			want := make([]float64, len(xd))
			for i := range xd {
				n, c := i/60, i/20%3
				want[i] = xd[i] + bd[(n%tc.bn)*3+c]
			}
			checkForward(t, f, x.Shape(), want, x, b)
			requireGrad(t, f, 100, 1e-6, x, b)
		})
	}
}

// TestGorgoniaGroupNorm measures gorgonia.GroupNorm against the naive
// reference; it is wrong when (C/G)·H·W > 256, so GroupNorm replaces it.
func TestGorgoniaGroupNorm(t *testing.T) {
	for _, tc := range gnCases[:3] {
		x, gamma, beta := gnInputs(tc.n, tc.c, tc.h, tc.w)
		f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
			gamma, err := gorgonia.Reshape(in[1], tensor.Shape{1, tc.c, 1, 1})
			if err != nil {
				return nil, err
			}
			beta, err := gorgonia.Reshape(in[2], tensor.Shape{1, tc.c, 1, 1})
			if err != nil {
				return nil, err
			}
			return gorgonia.GroupNorm(in[0], gamma, beta, tc.g, tc.c, 1e-6)
		}
		_, got := forward(t, f, tensor.Float64, x, gamma, beta)
		want := naiveGroupNorm(x, gamma, beta, tc.g, 1e-6, false)
		t.Logf("%s ((C/G)·H·W = %d): gorgonia.GroupNorm max relative difference %.3g",
			tc.name, tc.c/tc.g*tc.h*tc.w, maxRelDiff(got, want))
	}
}

// TestGorgoniaUpsample2D checks that gorgonia.Upsample2D(x, 2) is nearest
// ×2 with a correct gradient. It is, but it moves every element through
// interface-boxed At/SetAt, so Upsample2x has its own kernels.
func TestGorgoniaUpsample2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	x := randTensor(rng, 0, 1, 2, 3, 4, 5)
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return gorgonia.Upsample2D(in[0], 2) }
	s, want := naiveUpsample(x)
	checkForward(t, f, s, want, x)
	requireGrad(t, f, 100, 1e-6, x)
}
