package ops

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Softmax returns the softmax of scale·x along its last axis,
// y = exp(s·x − max s·x) / Σ exp(s·x − max s·x), with the maximum and the sum
// taken over each row (attention's C^−½ factor is the scale, so it costs no
// pass of its own). x may have any number of dimensions but must not be a
// scalar. It replaces gorgonia.SoftMax, whose forward pass subtracts the
// first element of the whole tensor instead of each row's maximum (so rows
// far below that element underflow to 0/0) and starts a goroutine per row.
func Softmax(x *gorgonia.Node, scale float64) (*gorgonia.Node, error) {
	if x.IsScalar() || x.Shape().TotalSize() == 0 {
		return nil, fmt.Errorf("softmax: input %v has shape %v, want a tensor", x, x.Shape())
	}
	if !(scale > 0) {
		return nil, fmt.Errorf("softmax: scale %g must be positive", scale)
	}
	y, err := gorgonia.ApplyOp(softmaxOp{scale: scale}, x)
	if err != nil {
		return nil, fmt.Errorf("softmax: %w", err)
	}
	return y, nil
}

// rowLen returns the length of the last axis of s, which must be positive.
func rowLen(op gorgonia.Op, s tensor.Shape) (int, error) {
	if s.Dims() == 0 || s[s.Dims()-1] <= 0 {
		return 0, fmt.Errorf("%v: shape %v has no last axis of positive length", op, s)
	}
	return s[s.Dims()-1], nil
}

func softmaxRows[T float](y, x []T, w int, scale float64) {
	if y32, ok := any(y).([]float32); ok && cKernels {
		x32 := any(x).([]float32)
		parallelFor(len(x)/w, func(lo, hi int) { softmaxRowsC(y32, x32, w, scale, lo, hi) })
		return
	}
	fast := fastMath[T]()
	parallelFor(len(x)/w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*w:][:w], y[r*w:][:w]
			m := math.Inf(-1)
			for _, v := range xr {
				m = max(m, scale*float64(v))
			}
			var s float64
			for i, v := range xr {
				e := scale*float64(v) - m
				if fast {
					e = expFast(e)
				} else {
					e = math.Exp(e)
				}
				yr[i] = T(e)
				s += e
			}
			inv := 1 / s
			for i := range yr {
				yr[i] = T(float64(yr[i]) * inv)
			}
		}
	})
}

// softmaxGradRows writes dx = scale · y ⊙ (dy − Σ y ⊙ dy), the sum over each row.
func softmaxGradRows[T float](dx, y, dy []T, w int, scale float64) {
	if dx32, ok := any(dx).([]float32); ok && cKernels {
		y32, dy32 := any(y).([]float32), any(dy).([]float32)
		parallelFor(len(y)/w, func(lo, hi int) { softmaxGradRowsC(dx32, y32, dy32, w, scale, lo, hi) })
		return
	}
	parallelFor(len(y)/w, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			yr, dyr, dxr := y[r*w:][:w], dy[r*w:][:w], dx[r*w:][:w]
			var s float64
			for i, v := range yr {
				s += float64(v) * float64(dyr[i])
			}
			for i, v := range yr {
				dxr[i] = T(scale * float64(v) * (float64(dyr[i]) - s))
			}
		}
	})
}

// softmaxOp computes the softmax along the last axis.
type softmaxOp struct {
	pure
	scale float64
}

// Arity returns 1.
func (softmaxOp) Arity() int { return 1 }

// Type returns a → a.
func (softmaxOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}

// InferShape returns the input's shape.
func (op softmaxOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes the softmax into a new tensor.
func (op softmaxOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes the softmax into prealloc.
func (op softmaxOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	x := in[0]
	out, err := output(op, prealloc, x.Shape(), x.Dtype())
	if err != nil {
		return nil, err
	}
	w, err := rowLen(op, x.Shape())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		softmaxRows(out.Float32s(), x.Float32s(), w, op.scale)
	default:
		softmaxRows(out.Float64s(), x.Float64s(), w, op.scale)
	}
	return out, nil
}

// WriteHash writes the op's identity to h.
func (op softmaxOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op softmaxOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (op softmaxOp) String() string { return fmt.Sprintf("Softmax{last axis, scale=%g}", op.scale) }

// DiffWRT reports that softmax is differentiable with respect to its input.
func (softmaxOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff returns the node of dL/dx = y ⊙ (dL/dy − Σ y ⊙ dL/dy).
func (op softmaxOp) SymDiff(inputs gorgonia.Nodes, out, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 1 {
		return nil, fmt.Errorf("%v: expected 1 input, got %d", op, len(inputs))
	}
	dx, err := gorgonia.ApplyOp(softmaxGradOp{scale: op.scale}, out, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{dx}, nil
}

// softmaxGradOp computes dL/dx of the softmax from its output y and dL/dy.
type softmaxGradOp struct {
	pure
	scale float64
}

// Arity returns 2: y and dL/dy.
func (softmaxGradOp) Arity() int { return 2 }

// Type returns a → a → a.
func (softmaxGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a, a)
}

// InferShape returns the shape of y.
func (op softmaxGradOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes dL/dx into a new tensor.
func (op softmaxGradOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes dL/dx into prealloc.
func (op softmaxGradOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	y, dy := in[0], in[1]
	if !dy.Shape().Eq(y.Shape()) {
		return nil, fmt.Errorf("%v: gradient shape %v differs from output shape %v", op, dy.Shape(), y.Shape())
	}
	out, err := output(op, prealloc, y.Shape(), y.Dtype())
	if err != nil {
		return nil, err
	}
	w, err := rowLen(op, y.Shape())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		softmaxGradRows(out.Float32s(), y.Float32s(), dy.Float32s(), w, op.scale)
	default:
		softmaxGradRows(out.Float64s(), y.Float64s(), dy.Float64s(), w, op.scale)
	}
	return out, nil
}

// WriteHash writes the op's identity to h.
func (op softmaxGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op softmaxGradOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name.
func (op softmaxGradOp) String() string {
	return fmt.Sprintf("SoftmaxGrad{last axis, scale=%g}", op.scale)
}
