// Package ops holds the custom Gorgonia operations of the DDPM U-Net:
// convolution on BLAS, group normalisation (optionally fused with swish), swish,
// nearest-neighbour upsampling, a numerically stable softmax, a batched matrix
// product and a parallel elementwise sum.
//
// Every op works on Float32 and Float64 tensors in NCHW layout where a
// layout applies, supports symbolic differentiation (gorgonia.SDOp, what
// gorgonia.Grad needs) through backward ops of its own, and fills the output
// buffer an executor hands it (UsePreallocDo) whatever that buffer held before.
package ops

import (
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"runtime"
	"sync"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ErrStopped is returned by an op built with a stop flag (Conv2dStoppable) once the flag is set.
var ErrStopped = errors.New("stopped")

// float is the element type of the tensors the kernels work on.
type float interface{ ~float32 | ~float64 }

// hashOf returns the FNV-32a hash of what op writes with WriteHash.
func hashOf(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// tensorType returns the type of a dims-dimensional tensor of a.
func tensorType(dims int, a hm.Type) gorgonia.TensorType {
	return gorgonia.TensorType{Dims: dims, Of: a}
}

// dense returns v as a *tensor.Dense of dtype Float32 or Float64.
func dense(v gorgonia.Value) (*tensor.Dense, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("expected a *tensor.Dense, got %T", v)
	}
	if dt := d.Dtype(); dt != tensor.Float32 && dt != tensor.Float64 {
		return nil, fmt.Errorf("unsupported dtype %v", dt)
	}
	return d, nil
}

// denses converts vals with dense, checking their count and that they share a dtype.
func denses(op gorgonia.Op, vals []gorgonia.Value) ([]*tensor.Dense, error) {
	if len(vals) != op.Arity() {
		return nil, fmt.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vals))
	}
	ds := make([]*tensor.Dense, len(vals))
	for i, v := range vals {
		d, err := dense(v)
		if err != nil {
			return nil, fmt.Errorf("%v: input %d: %w", op, i, err)
		}
		if i > 0 && d.Dtype() != ds[0].Dtype() {
			return nil, fmt.Errorf("%v: input %d has dtype %v, input 0 has %v", op, i, d.Dtype(), ds[0].Dtype())
		}
		ds[i] = d
	}
	return ds, nil
}

// output checks that prealloc can hold a result of the given shape and
// dtype and returns it as a *tensor.Dense.
func output(op gorgonia.Op, prealloc gorgonia.Value, shape tensor.Shape, dt tensor.Dtype) (*tensor.Dense, error) {
	d, ok := prealloc.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("%v: preallocated output is a %T, not a *tensor.Dense", op, prealloc)
	}
	if d.Dtype() != dt || !d.Shape().Eq(shape) || !d.IsNativelyAccessible() || d.RequiresIterator() {
		return nil, fmt.Errorf("%v: preallocated output is %v%v, want %v%v", op, d.Dtype(), d.Shape(), dt, shape)
	}
	return d, nil
}

// newLike allocates a zeroed tensor of the given dtype and shape.
func newLike(dt tensor.Dtype, shape tensor.Shape) *tensor.Dense {
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape.Clone()...))
}

// shapeOf returns the i-th DimSizer as a tensor.Shape.
func shapeOf(op gorgonia.Op, in []gorgonia.DimSizer, i int) (tensor.Shape, error) {
	if len(in) != op.Arity() {
		return nil, fmt.Errorf("%v: expected %d input shapes, got %d", op, op.Arity(), len(in))
	}
	s, ok := in[i].(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("%v: input %d: expected a tensor.Shape, got %T", op, i, in[i])
	}
	return s, nil
}

// addSlice adds src to dst elementwise.
func addSlice[T float](dst, src []T) {
	for i, v := range src {
		dst[i] += v
	}
}

// parallelFor splits [0, n) into contiguous chunks and calls f on each chunk
// from up to GOMAXPROCS goroutines, returning when all are done.
func parallelFor(n int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// pure provides the Op methods common to all ops here: they run in Go on
// the CPU, return a new value and leave their inputs alone.
type pure struct{}

// ReturnsPtr returns false: the result is a new value.
func (pure) ReturnsPtr() bool { return false }

// CallsExtern returns false: the op runs in Go.
func (pure) CallsExtern() bool { return false }

// OverwritesInput returns -1: no input is overwritten.
func (pure) OverwritesInput() int { return -1 }
