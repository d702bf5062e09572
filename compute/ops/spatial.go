package ops

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Upsample2x returns x, [N,C,H,W], upsampled to [N,C,2H,2W] by nearest
// neighbour: y[n,c,i,j] = x[n,c,i/2,j/2]. Its gradient sums each 2×2 block
// of the output gradient.
func Upsample2x(x *gorgonia.Node) (*gorgonia.Node, error) {
	op := upsample2xOp{}
	if x.Shape().Dims() != 4 {
		return nil, fmt.Errorf("%v: x has shape %v, want [N,C,H,W]", op, x.Shape())
	}
	y, err := gorgonia.ApplyOp(op, x)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// checkShape4 checks that s is 4-D and positive.
func checkShape4(op gorgonia.Op, s tensor.Shape) error {
	if s.Dims() != 4 || min(s[0], s[1], s[2], s[3]) <= 0 {
		return fmt.Errorf("%v: shape %v, want [N,C,H,W]", op, s)
	}
	return nil
}

type upsample2xOp struct{ pure }

// Arity returns 1.
func (upsample2xOp) Arity() int { return 1 }

// Type returns Tensor-4 a → Tensor-4 a.
func (upsample2xOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(4, a))
}

// InferShape returns [N,C,2H,2W].
func (op upsample2xOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	return tensor.Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, nil
}

// Do upsamples into a new tensor.
func (op upsample2xOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{s[0], s[1], 2 * s[2], 2 * s[3]}), vals...)
}

// UsePreallocDo upsamples into prealloc.
func (op upsample2xOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	x := in[0]
	s := x.Shape()
	if err := checkShape4(op, s); err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, x.Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		upsample2x(out.Float32s(), x.Float32s(), s[0]*s[1], s[2], s[3])
	default:
		upsample2x(out.Float64s(), x.Float64s(), s[0]*s[1], s[2], s[3])
	}
	return out, nil
}

// upsample2x writes each of the planes h×w planes of x twice as large into y.
func upsample2x[T float](y, x []T, planes, h, w int) {
	parallelFor(planes*h, func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = plane·h + row
			src := x[r*w:][:w]
			dst := y[4*r*w:][:4*w]
			for j, v := range src {
				dst[2*j], dst[2*j+1] = v, v
			}
			copy(dst[2*w:], dst[:2*w])
		}
	})
}

// WriteHash writes the op's identity to h.
func (op upsample2xOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op upsample2xOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (upsample2xOp) String() string { return "Upsample2x" }

// DiffWRT reports that upsampling is differentiable with respect to its input.
func (upsample2xOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff returns the node of the 2×2 block sums of the output gradient.
func (op upsample2xOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 1 {
		return nil, fmt.Errorf("%v: expected 1 input, got %d", op, len(inputs))
	}
	dx, err := gorgonia.ApplyOp(sum2x2Op{}, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{dx}, nil
}

// sum2x2Op sums 2×2 blocks of H and W: the gradient of upsample2xOp.
type sum2x2Op struct{ pure }

// Arity returns 1.
func (sum2x2Op) Arity() int { return 1 }

// Type returns Tensor-4 a → Tensor-4 a.
func (sum2x2Op) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(4, a))
}

func (op sum2x2Op) check(s tensor.Shape) error {
	if err := checkShape4(op, s); err != nil {
		return err
	}
	if s[2]%2 != 0 || s[3]%2 != 0 {
		return fmt.Errorf("%v: shape %v has odd H or W", op, s)
	}
	return nil
}

// InferShape returns [N,C,H/2,W/2].
func (op sum2x2Op) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	if err := op.check(s); err != nil {
		return nil, err
	}
	return tensor.Shape{s[0], s[1], s[2] / 2, s[3] / 2}, nil
}

// Do sums into a new tensor.
func (op sum2x2Op) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if err := op.check(s); err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{s[0], s[1], s[2] / 2, s[3] / 2}), vals...)
}

// UsePreallocDo sums into prealloc.
func (op sum2x2Op) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	dy := in[0]
	s := dy.Shape()
	if err := op.check(s); err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{s[0], s[1], s[2] / 2, s[3] / 2}, dy.Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		sum2x2(out.Float32s(), dy.Float32s(), s[0]*s[1], s[2]/2, s[3]/2)
	default:
		sum2x2(out.Float64s(), dy.Float64s(), s[0]*s[1], s[2]/2, s[3]/2)
	}
	return out, nil
}

// sum2x2 writes into dx, planes h×w planes, the 2×2 block sums of dy.
func sum2x2[T float](dx, dy []T, planes, h, w int) {
	parallelFor(planes*h, func(lo, hi int) {
		for r := lo; r < hi; r++ { // r = plane·h + row
			a := dy[4*r*w:][:2*w]
			b := dy[4*r*w+2*w:][:2*w]
			for j := range w {
				dx[r*w+j] = a[2*j] + a[2*j+1] + b[2*j] + b[2*j+1]
			}
		}
	})
}

// WriteHash writes the op's identity to h.
func (op sum2x2Op) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op sum2x2Op) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (sum2x2Op) String() string { return "Sum2x2" }
