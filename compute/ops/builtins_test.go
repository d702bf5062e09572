package ops

// Checks of the Gorgonia built-in ops the U-Net builds with (compute/unet.go): the dense
// layer (Mul by a transposed weight, then BroadcastAdd of a [1, out] bias), the dropout
// product (HadamardProd) and the elementwise part of the loss (Square of Sub), against
// naive float64 references and finite differences. Every other op of the model is ours.

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestGorgoniaDense checks y = x·Wᵀ + b with W stored [out, in] and b broadcast over the
// batch, as compute's dense layers build it.
func TestGorgoniaDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	const n, in, out = 3, 5, 4
	x, w, b := randTensor(rng, 0, 1, n, in), randTensor(rng, 0, 1, out, in), randTensor(rng, 0, 1, out)
	f := func(nodes []*gorgonia.Node) (*gorgonia.Node, error) {
		wt, err := gorgonia.Transpose(nodes[1], 1, 0)
		if err != nil {
			return nil, err
		}
		y, err := gorgonia.Mul(nodes[0], wt)
		if err != nil {
			return nil, err
		}
		bias, err := gorgonia.Reshape(nodes[2], tensor.Shape{1, out})
		if err != nil {
			return nil, err
		}
		return gorgonia.BroadcastAdd(y, bias, nil, []byte{0})
	}
	xd, wd, bd := x.Float64s(), w.Float64s(), b.Float64s()
	want := make([]float64, n*out)
	for i := range n {
		for o := range out {
			s := bd[o]
			for k := range in {
				s += xd[i*in+k] * wd[o*in+k]
			}
			want[i*out+o] = s
		}
	}
	checkForward(t, f, tensor.Shape{n, out}, want, x, w, b)
	requireGrad(t, f, 100, 1e-6, x, w, b)
}

// TestGorgoniaDropoutAndLoss checks the dropout product x ⊙ m and the loss's (a − b)².
func TestGorgoniaDropoutAndLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	a, b := randTensor(rng, 0, 1, 2, 3, 4, 5), randTensor(rng, 0, 1, 2, 3, 4, 5)
	ad, bd := a.Float64s(), b.Float64s()
	prod, sq := make([]float64, len(ad)), make([]float64, len(ad))
	for i := range ad {
		prod[i] = ad[i] * bd[i]
		sq[i] = (ad[i] - bd[i]) * (ad[i] - bd[i])
	}
	hadamard := func(in []*gorgonia.Node) (*gorgonia.Node, error) { return gorgonia.HadamardProd(in[0], in[1]) }
	checkForward(t, hadamard, a.Shape(), prod, a, b)
	requireGrad(t, hadamard, 100, 1e-6, a, b)
	loss := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
		d, err := gorgonia.Sub(in[0], in[1])
		if err != nil {
			return nil, err
		}
		return gorgonia.Square(d)
	}
	checkForward(t, loss, a.Shape(), sq, a, b)
	requireGrad(t, loss, 100, 1e-6, a, b)
}
