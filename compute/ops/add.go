package ops

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Add returns a + b for two tensors of one shape (the U-Net's residual
// connections), on all cores: gorgonia.Add runs on one and leaves the others
// idle. The gradient is dy for both inputs.
func Add(a, b *gorgonia.Node) (*gorgonia.Node, error) {
	op := addOp{}
	if !a.Shape().Eq(b.Shape()) {
		return nil, fmt.Errorf("%v: shapes %v and %v differ", op, a.Shape(), b.Shape())
	}
	y, err := gorgonia.ApplyOp(op, a, b)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// addOp is y = a + b.
type addOp struct{ pure }

func (addOp) Arity() int { return 2 }

func (addOp) Type() hm.Type {
	a := hm.TypeVariable('a') // any tensor type, both inputs and the output alike
	return hm.NewFnType(a, a, a)
}

func (op addOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

func (op addOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

func (op addOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	if !in[0].Shape().Eq(in[1].Shape()) {
		return nil, fmt.Errorf("%v: shapes %v and %v differ", op, in[0].Shape(), in[1].Shape())
	}
	out, err := output(op, prealloc, in[0].Shape(), in[0].Dtype())
	if err != nil {
		return nil, err
	}
	if out.Dtype() == tensor.Float32 {
		addParallel(out.Float32s(), in[0].Float32s(), in[1].Float32s())
	} else {
		addParallel(out.Float64s(), in[0].Float64s(), in[1].Float64s())
	}
	return out, nil
}

// addParallel writes y = a + b in blocks of 16 Ki elements spread over the cores.
func addParallel[T float](y, a, b []T) {
	const block = 1 << 14
	parallelFor((len(y)+block-1)/block, func(lo, hi int) {
		lo, hi = lo*block, min(hi*block, len(y))
		ys, as, bs := y[lo:hi], a[lo:hi], b[lo:hi]
		for i := range ys {
			ys[i] = as[i] + bs[i]
		}
	})
}

func (op addOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op addOp) Hashcode() uint32      { return hashOf(op) }
func (addOp) String() string           { return "Add" }

// DiffWRT reports that the sum is differentiable in both inputs.
func (addOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff returns dy for both inputs.
func (op addOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 2 {
		return nil, fmt.Errorf("%v: expected 2 inputs, got %d", op, len(inputs))
	}
	return gorgonia.Nodes{grad, grad}, nil
}
