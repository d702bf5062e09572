package ops

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// AddChannels returns h + t broadcast over H and W: y[n,c,i,j] = h[n,c,i,j] + t[n,c],
// for h [N,C,H,W] and t [N,C] (the U-Net's time-embedding projection). It
// replaces gorgonia.BroadcastAdd, which first materialises t repeated to the
// full size of h. Its gradients are dy for h and the H·W sums of dy for t.
func AddChannels(h, t *gorgonia.Node) (*gorgonia.Node, error) {
	op := addChannelsOp{}
	hs, ts := h.Shape(), t.Shape()
	if hs.Dims() != 4 || ts.Dims() != 2 || ts[0] != hs[0] || ts[1] != hs[1] {
		return nil, fmt.Errorf("%v: shapes h %v, t %v do not fit [N,C,H,W], [N,C]", op, hs, ts)
	}
	y, err := gorgonia.ApplyOp(op, h, t)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// addChannelsOp is y = h + t[:, :, None, None].
type addChannelsOp struct{ pure }

func (addChannelsOp) Arity() int { return 2 }

func (addChannelsOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(2, a), tensorType(4, a))
}

func (op addChannelsOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

func (op addChannelsOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

func (op addChannelsOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	h := in[0]
	out, err := output(op, prealloc, h.Shape(), h.Dtype())
	if err != nil {
		return nil, err
	}
	s := h.Shape()
	hw := s[2] * s[3]
	if h.Dtype() == tensor.Float32 {
		addChannels(out.Float32s(), h.Float32s(), in[1].Float32s(), hw)
	} else {
		addChannels(out.Float64s(), h.Float64s(), in[1].Float64s(), hw)
	}
	return out, nil
}

func addChannels[T float](y, h, t []T, hw int) {
	parallelFor(len(t), func(lo, hi int) {
		for nc := lo; nc < hi; nc++ {
			b := t[nc]
			dst, src := y[nc*hw:][:hw], h[nc*hw:][:hw]
			for i, v := range src {
				dst[i] = v + b
			}
		}
	})
}

func (op addChannelsOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op addChannelsOp) Hashcode() uint32      { return hashOf(op) }
func (addChannelsOp) String() string           { return "AddChannels" }

// DiffWRT reports that the sum is differentiable in both inputs.
func (addChannelsOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff returns dy for h and its H·W sums for t.
func (op addChannelsOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 2 {
		return nil, fmt.Errorf("%v: expected 2 inputs, got %d", op, len(inputs))
	}
	dt, err := gorgonia.ApplyOp(sumPlanesOp{}, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{grad, dt}, nil
}

// sumPlanesOp sums x [N,C,H,W] over H and W into [N,C].
type sumPlanesOp struct{ pure }

func (sumPlanesOp) Arity() int { return 1 }

func (sumPlanesOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(2, a))
}

func (op sumPlanesOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	return tensor.Shape{s[0], s[1]}, nil
}

func (op sumPlanesOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{s[0], s[1]}), vals...)
}

func (op sumPlanesOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{s[0], s[1]}, in[0].Dtype())
	if err != nil {
		return nil, err
	}
	if in[0].Dtype() == tensor.Float32 {
		sumPlanes(out.Float32s(), in[0].Float32s(), s[2]*s[3])
	} else {
		sumPlanes(out.Float64s(), in[0].Float64s(), s[2]*s[3])
	}
	return out, nil
}

func sumPlanes[T float](out, x []T, hw int) {
	for nc := range out {
		var s float64
		for _, v := range x[nc*hw:][:hw] {
			s += float64(v)
		}
		out[nc] = T(s)
	}
}

func (op sumPlanesOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op sumPlanesOp) Hashcode() uint32      { return hashOf(op) }
func (sumPlanesOp) String() string           { return "SumPlanes" }
