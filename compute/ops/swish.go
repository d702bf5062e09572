package ops

import (
	"unsafe"

	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Swish returns x·sigmoid(x) elementwise (also called SiLU). x may have any
// shape but must not be a scalar. The result is exact for large |x|: no
// intermediate overflows.
func Swish(x *gorgonia.Node) (*gorgonia.Node, error) {
	if x.IsScalar() {
		return nil, fmt.Errorf("swish: input %v is a scalar, want a tensor", x)
	}
	n, err := gorgonia.ApplyOp(swishOp{}, x)
	if err != nil {
		return nil, fmt.Errorf("swish: %w", err)
	}
	return n, nil
}

// sigmoid returns 1/(1+e^−x); e^−x overflowing to +Inf gives the limit 0.
// fast selects expFast, for float32 data, over math.Exp.
func sigmoid(x float64, fast bool) float64 {
	if fast {
		return 1 / (1 + expFast(-x))
	}
	return 1 / (1 + math.Exp(-x))
}

// fastMath reports whether T is float32, whose kernels use expFast.
func fastMath[T float]() bool {
	var t T
	return unsafe.Sizeof(t) == 4
}

// expFast is e^x to a relative error below 1e-8 (TestExpFast), far below
// float32's resolution, and cheaper than math.Exp, which works to full float64
// precision: with x = n·ln 2 + r, |r| ≤ ln 2 / 2, e^x = 2^n · e^r, e^r by its
// Taylor polynomial of degree 7.
func expFast(x float64) float64 {
	if !(x > -708 && x < 709) { // also NaN
		return math.Exp(x)
	}
	const round = 1.5 * (1 << 52) // adding and subtracting it rounds to an integer
	n := (x*math.Log2E + round) - round
	r := x - n*math.Ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return math.Float64frombits(uint64(int64(n)+1023)<<52) * p
}

// swish returns x·sigmoid(x).
func swish(x float64, fast bool) float64 { return x * sigmoid(x, fast) }

// swishDeriv returns the derivative of swish at x: s·(1 + x·(1−s)), s = sigmoid(x).
func swishDeriv(x float64, fast bool) float64 {
	s := sigmoid(x, fast)
	return s * (1 + x*(1-s))
}

// swishOp computes swish elementwise.
type swishOp struct{ pure }

// Arity returns 1.
func (swishOp) Arity() int { return 1 }

// Type returns a → a.
func (swishOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

// InferShape returns the input's shape.
func (op swishOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes swish into a new tensor.
func (op swishOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes swish into prealloc.
func (op swishOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, in[0].Shape(), in[0].Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		swishKernel(out.Float32s(), in[0].Float32s())
	default:
		swishKernel(out.Float64s(), in[0].Float64s())
	}
	return out, nil
}

func swishKernel[T float](y, x []T) {
	fast := fastMath[T]()
	parallelFor(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] = T(swish(float64(x[i]), fast))
		}
	})
}

// WriteHash writes the op's identity to h.
func (op swishOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op swishOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (swishOp) String() string { return "Swish" }

// DiffWRT reports that swish is differentiable with respect to its input.
func (swishOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff returns the node of dL/dx = dL/dy · swish'(x).
func (op swishOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 1 {
		return nil, fmt.Errorf("%v: expected 1 input, got %d", op, len(inputs))
	}
	dx, err := gorgonia.ApplyOp(swishGradOp{}, inputs[0], grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{dx}, nil
}

// swishGradOp computes dL/dx = dL/dy · swish'(x) from x and dL/dy.
type swishGradOp struct{ pure }

// Arity returns 2: x and dL/dy.
func (swishGradOp) Arity() int { return 2 }

// Type returns a → a → a.
func (swishGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a, a)
}

// InferShape returns the shape of x.
func (op swishGradOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes dL/dx into a new tensor.
func (op swishGradOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes dL/dx into prealloc.
func (op swishGradOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	x, dy := in[0], in[1]
	if !dy.Shape().Eq(x.Shape()) {
		return nil, fmt.Errorf("%v: gradient shape %v differs from input shape %v", op, dy.Shape(), x.Shape())
	}
	out, err := output(op, prealloc, x.Shape(), x.Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		swishGradKernel(out.Float32s(), x.Float32s(), dy.Float32s())
	default:
		swishGradKernel(out.Float64s(), x.Float64s(), dy.Float64s())
	}
	return out, nil
}

func swishGradKernel[T float](dx, x, dy []T) {
	fast := fastMath[T]()
	parallelFor(len(x), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dx[i] = T(float64(dy[i]) * swishDeriv(float64(x[i]), fast))
		}
	})
}

// WriteHash writes the op's identity to h.
func (op swishGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op swishGradOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (swishGradOp) String() string { return "SwishGrad" }
