package ops

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ConcatChannels joins a [N,Ca,H,W] and b [N,Cb,H,W] into [N,Ca+Cb,H,W]
// (the U-Net's skip connections). It replaces gorgonia.Concat, whose forward
// and gradient (slice + Materialize) walk elements one at a time with a
// flat iterator; here every image's channels are two block copies. The
// gradients are the two channel ranges of dy.
func ConcatChannels(a, b *gorgonia.Node) (*gorgonia.Node, error) {
	op := concatOp{}
	as, bs := a.Shape(), b.Shape()
	if as.Dims() != 4 || bs.Dims() != 4 || as[0] != bs[0] || as[2] != bs[2] || as[3] != bs[3] {
		return nil, fmt.Errorf("%v: shapes %v and %v differ in more than channels", op, as, bs)
	}
	y, err := gorgonia.ApplyOp(op, a, b)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// concatOp joins two NCHW tensors along channels.
type concatOp struct{ pure }

func (concatOp) Arity() int { return 2 }

func (concatOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(4, a), tensorType(4, a))
}

func (op concatOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	as, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	bs, err := shapeOf(op, in, 1)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{as[0], as[1] + bs[1], as[2], as[3]}, nil
}

func (op concatOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	as, bs := in[0].Shape(), in[1].Shape()
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{as[0], as[1] + bs[1], as[2], as[3]}), vals...)
}

func (op concatOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	as, bs := in[0].Shape(), in[1].Shape()
	out, err := output(op, prealloc, tensor.Shape{as[0], as[1] + bs[1], as[2], as[3]}, in[0].Dtype())
	if err != nil {
		return nil, err
	}
	hw := as[2] * as[3]
	if out.Dtype() == tensor.Float32 {
		concatChannels(out.Float32s(), in[0].Float32s(), in[1].Float32s(), as[0], as[1]*hw, bs[1]*hw)
	} else {
		concatChannels(out.Float64s(), in[0].Float64s(), in[1].Float64s(), as[0], as[1]*hw, bs[1]*hw)
	}
	return out, nil
}

// concatChannels copies, per image, la values of a then lb values of b into y.
func concatChannels[T float](y, a, b []T, n, la, lb int) {
	parallelFor(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(y[i*(la+lb):], a[i*la:][:la])
			copy(y[i*(la+lb)+la:], b[i*lb:][:lb])
		}
	})
}

func (op concatOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op concatOp) Hashcode() uint32      { return hashOf(op) }
func (concatOp) String() string           { return "ConcatChannels" }

// DiffWRT reports that the join is differentiable in both inputs.
func (concatOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff returns the channel ranges of dy that belong to each input.
func (op concatOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 2 {
		return nil, fmt.Errorf("%v: expected 2 inputs, got %d", op, len(inputs))
	}
	ca := inputs[0].Shape()[1]
	da, err := gorgonia.ApplyOp(channelsOp{lo: 0, hi: ca}, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	db, err := gorgonia.ApplyOp(channelsOp{lo: ca, hi: ca + inputs[1].Shape()[1]}, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{da, db}, nil
}

// channelsOp copies channels [lo, hi) of an NCHW tensor.
type channelsOp struct {
	pure
	lo, hi int
}

func (channelsOp) Arity() int { return 1 }

func (channelsOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(4, a))
}

func (op channelsOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	return tensor.Shape{s[0], op.hi - op.lo, s[2], s[3]}, nil
}

func (op channelsOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{s[0], op.hi - op.lo, s[2], s[3]}), vals...)
}

func (op channelsOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if err := checkShape4(op, s); err != nil || op.hi > s[1] {
		return nil, fmt.Errorf("%v: input %v", op, s)
	}
	out, err := output(op, prealloc, tensor.Shape{s[0], op.hi - op.lo, s[2], s[3]}, in[0].Dtype())
	if err != nil {
		return nil, err
	}
	hw := s[2] * s[3]
	if out.Dtype() == tensor.Float32 {
		copyChannels(out.Float32s(), in[0].Float32s(), s[0], s[1]*hw, op.lo*hw, (op.hi-op.lo)*hw)
	} else {
		copyChannels(out.Float64s(), in[0].Float64s(), s[0], s[1]*hw, op.lo*hw, (op.hi-op.lo)*hw)
	}
	return out, nil
}

// copyChannels copies, per image of stride values in x, the run [off, off+l) into y.
func copyChannels[T float](y, x []T, n, stride, off, l int) {
	parallelFor(n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(y[i*l:][:l], x[i*stride+off:][:l])
		}
	})
}

func (op channelsOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op channelsOp) Hashcode() uint32      { return hashOf(op) }
func (op channelsOp) String() string        { return fmt.Sprintf("Channels[%d:%d]", op.lo, op.hi) }
