package ops

import (
	"fmt"
	"hash"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/chewxy/hm"
	"gonum.org/v1/gonum/blas"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Pads is the zero padding of a convolution's input, in pixels.
type Pads struct{ Top, Bottom, Left, Right int }

// Conv2d returns the cross-correlation of x [N,Cin,H,W] with w
// [Cout,Cin,k,k] plus the bias b [Cout], with the given stride and zero
// padding (the sides may differ: the official Downsample pads only bottom
// and right). The output is [N, Cout, (H+top+bottom−k)/stride+1,
// (W+left+right−k)/stride+1].
//
// It replaces gorgonia.Conv2d + BroadcastAdd, which run im2col per image
// into gonum's pure-Go GEMM: here the images of a chunk are laid out as one
// [Cin·k·k, chunk·Ho·Wo] matrix and multiplied with one BLAS call, the bias
// add is fused, and the gradients with respect to x, w and b are three ops
// of their own, so none is computed unless asked for.
func Conv2d(x, w, b *gorgonia.Node, stride int, pad Pads) (*gorgonia.Node, error) {
	return Conv2dStoppable(x, w, b, stride, pad, nil)
}

// Conv2dStoppable is Conv2d whose forward and gradient ops return ErrStopped instead of
// computing once stop is set, so that a long training step can be abandoned within one
// convolution's time. A nil stop never stops.
func Conv2dStoppable(x, w, b *gorgonia.Node, stride int, pad Pads, stop *atomic.Bool) (*gorgonia.Node, error) {
	op := conv2dOp{geom: geom{stride: stride, Pads: pad}, stop: stop}
	xs, ws, bs := x.Shape(), w.Shape(), b.Shape()
	if xs.Dims() != 4 || ws.Dims() != 4 || bs.Dims() != 1 || ws[1] != xs[1] || ws[2] != ws[3] || bs[0] != ws[0] {
		return nil, fmt.Errorf("%v: shapes x %v, w %v, b %v do not fit [N,Cin,H,W], [Cout,Cin,k,k], [Cout]", op, xs, ws, bs)
	}
	if stride < 1 || min(pad.Top, pad.Bottom, pad.Left, pad.Right) < 0 {
		return nil, fmt.Errorf("%v: bad stride or padding", op)
	}
	op.k = ws[2]
	if _, err := op.outShape(xs, ws[0]); err != nil {
		return nil, err
	}
	y, err := gorgonia.ApplyOp(op, x, w, b)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// geom is the geometry of a convolution.
type geom struct {
	k, stride int
	Pads
}

// outShape is the output shape for input shape xs and cout output channels.
func (g geom) outShape(xs tensor.Shape, cout int) (tensor.Shape, error) {
	ph, pw := xs[2]+g.Top+g.Bottom, xs[3]+g.Left+g.Right
	if ph < g.k || pw < g.k {
		return nil, fmt.Errorf("conv: padded input %d×%d is smaller than the %d×%d kernel", ph, pw, g.k, g.k)
	}
	return tensor.Shape{xs[0], cout, (ph-g.k)/g.stride + 1, (pw-g.k)/g.stride + 1}, nil
}

func (g geom) String() string {
	return fmt.Sprintf("k=%d, stride=%d, pad=(%d,%d,%d,%d)", g.k, g.stride, g.Top, g.Bottom, g.Left, g.Right)
}

// convPlan holds the sizes of one convolution's matrices.
type convPlan struct {
	geom
	n, cin, h, w, cout, oh, ow int
	kk                         int // cin·k·k: rows of the column matrix
	ohw                        int // oh·ow
	chunk                      int // images per BLAS call
}

// minCols is the fewest columns (pixels) a chunk's product should have for
// BLAS to run near its best; a chunk holds as few images as reach it, so its
// column matrix stays in cache, and a chunk of one image needs no reordering
// between NCHW and the product's [channel, pixel] layout.
const minCols = 512

func newPlan(g geom, xs tensor.Shape, cout int) (convPlan, error) {
	ys, err := g.outShape(xs, cout)
	if err != nil {
		return convPlan{}, err
	}
	p := convPlan{geom: g, n: xs[0], cin: xs[1], h: xs[2], w: xs[3], cout: cout, oh: ys[2], ow: ys[3]}
	p.kk, p.ohw = p.cin*g.k*g.k, p.oh*p.ow
	p.chunk = min(p.n, (minCols+p.ohw-1)/p.ohw)
	return p, nil
}

// validRun is, for a stride-1 convolution and kernel column kx, the range
// [lo, hi) of output columns ox whose input column ox−left+kx lies inside the image.
func (p convPlan) validRun(kx int) (lo, hi int) {
	lo = min(p.ow, max(0, p.Left-kx))
	return lo, max(lo, min(p.ow, p.w+p.Left-kx))
}

// im2col lays images [n0, n1) of x out as col [kk, (n1−n0)·ohw]: row (c,ky,kx),
// column (image, oy, ox) holds x[n, c, oy·s−top+ky, ox·s−left+kx], or 0 in the padding.
func im2col[T float](p convPlan, x, col []T, n0, n1 int) {
	if x32, ok := any(x).([]float32); ok && cKernels {
		im2colC(p, x32, any(col).([]float32), n0, n1)
		return
	}
	cols := (n1 - n0) * p.ohw
	for r := range p.kk {
		c, ky, kx := r/(p.k*p.k), r/p.k%p.k, r%p.k
		row := col[r*cols : (r+1)*cols]
		for n := n0; n < n1; n++ {
			plane := x[(n*p.cin+c)*p.h*p.w:][:p.h*p.w]
			out := row[(n-n0)*p.ohw:][:p.ohw]
			for oy := range p.oh {
				iy := oy*p.stride - p.Top + ky
				dst := out[oy*p.ow:][:p.ow]
				if iy < 0 || iy >= p.h {
					clear(dst)
					continue
				}
				src := plane[iy*p.w:][:p.w]
				if p.stride == 1 { // the valid ox form one run: a copy between two clears
					lo, hi := p.validRun(kx)
					clear(dst[:lo])
					copy(dst[lo:hi], src[lo-p.Left+kx:])
					clear(dst[hi:])
					continue
				}
				for ox := range p.ow {
					if ix := ox*p.stride - p.Left + kx; ix >= 0 && ix < p.w {
						dst[ox] = src[ix]
					} else {
						dst[ox] = 0
					}
				}
			}
		}
	}
}

// col2im adds col [kk, (n1−n0)·ohw] back into images [n0, n1) of dx (the adjoint of im2col).
func col2im[T float](p convPlan, col, dx []T, n0, n1 int) {
	if dx32, ok := any(dx).([]float32); ok && cKernels {
		col2imC(p, any(col).([]float32), dx32, n0, n1)
		return
	}
	cols := (n1 - n0) * p.ohw
	for r := range p.kk {
		c, ky, kx := r/(p.k*p.k), r/p.k%p.k, r%p.k
		row := col[r*cols : (r+1)*cols]
		for n := n0; n < n1; n++ {
			plane := dx[(n*p.cin+c)*p.h*p.w:][:p.h*p.w]
			in := row[(n-n0)*p.ohw:][:p.ohw]
			for oy := range p.oh {
				iy := oy*p.stride - p.Top + ky
				if iy < 0 || iy >= p.h {
					continue
				}
				dst := plane[iy*p.w:][:p.w]
				src := in[oy*p.ow:][:p.ow]
				if p.stride == 1 { // the valid ox form one run
					lo, hi := p.validRun(kx)
					d := dst[lo-p.Left+kx:][:hi-lo]
					for i, v := range src[lo:hi] {
						d[i] += v
					}
					continue
				}
				for ox := range p.ow {
					if ix := ox*p.stride - p.Left + kx; ix >= 0 && ix < p.w {
						dst[ix] += src[ox]
					}
				}
			}
		}
	}
}

// gemm is C = α·op(A)·op(B) + β·C in row-major order through BLAS. Large
// products are split by columns of C across GOMAXPROCS goroutines, one
// single-threaded BLAS call each.
func gemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	parts := 1
	if m*n*k >= 1<<20 && n >= 64 {
		parts = runtime.GOMAXPROCS(0)
	}
	parallelFor(parts, func(lo, hi int) {
		for part := lo; part < hi; part++ {
			j0, j1 := part*n/parts, (part+1)*n/parts
			if j0 == j1 {
				continue
			}
			// Columns j0..j1 of C need columns j0..j1 of op(B): rows of B when transposed.
			bj := b[j0:]
			if tB {
				bj = b[j0*ldb:]
			}
			gemmSerial(tA, tB, m, j1-j0, k, alpha, a, lda, bj, ldb, beta, c[j0:], ldc)
		}
	})
}

// gemmSerial is gemm in one BLAS call on the calling goroutine.
func gemmSerial[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if tA {
		ta = blas.Trans
	}
	if tB {
		tb = blas.Trans
	}
	switch a := any(a).(type) {
	case []float32:
		BLAS.Sgemm(ta, tb, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		BLAS.Dgemm(ta, tb, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// forChunks calls f for every chunk [n0, n1) of images, spread over GOMAXPROCS
// goroutines; worker numbers them, and each worker's col and tmp are its own
// buffers of kk and cout rows of one chunk's columns.
func forChunks[T float](p convPlan, f func(worker, n0, n1 int, col, tmp []T)) {
	chunks := (p.n + p.chunk - 1) / p.chunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	parallelFor(workers, func(lo, hi int) {
		for wk := lo; wk < hi; wk++ {
			col, tmp := scratch[T](p.kk*p.chunk*p.ohw), scratch[T](p.cout*p.chunk*p.ohw)
			for c := wk; c < chunks; c += workers {
				n0 := c * p.chunk
				f(wk, n0, min(n0+p.chunk, p.n), col, tmp)
			}
			release(col, tmp)
		}
	})
}

// images returns images [n0, n1) of a [N, c, ohw] tensor as one slice.
func images[T float](t []T, c, ohw, n0, n1 int) []T { return t[n0*c*ohw : n1*c*ohw] }

// pointwise reports a 1×1 convolution with stride 1 and no padding: per image, a plain
// product of w [cout, cin] with the image [cin, pixels], with no column matrix to build.
func (p convPlan) pointwise() bool { return p.k == 1 && p.stride == 1 && p.Pads == (Pads{}) }

// addBias adds b[c] to every pixel of each channel c of out [cout, ohw].
func addBias[T float](out, b []T, ohw int) {
	for co, bc := range b {
		for i := range out[co*ohw : (co+1)*ohw] {
			out[co*ohw+i] += bc
		}
	}
}

// convForward computes y = conv(x, w) + b.
func convForward[T float](p convPlan, x, w, b, y []T) {
	if x32, ok := any(x).([]float32); ok && winogradOK(p) {
		winogradForward(p, x32, any(w).([]float32), any(b).([]float32), any(y).([]float32))
		return
	}
	im2colForward(p, x, w, b, y)
}

// im2colForward computes y = conv(x, w) + b through column matrices (1×1: without).
func im2colForward[T float](p convPlan, x, w, b, y []T) {
	if p.pointwise() {
		parallelFor(p.n, func(lo, hi int) {
			for n := lo; n < hi; n++ {
				out := images(y, p.cout, p.ohw, n, n+1)
				gemmSerial(false, false, p.cout, p.ohw, p.cin, 1, w, p.cin, images(x, p.cin, p.ohw, n, n+1), p.ohw, 0, out, p.ohw)
				addBias(out, b, p.ohw)
			}
		})
		return
	}
	forChunks(p, func(_, n0, n1 int, col, tmp []T) {
		cols := (n1 - n0) * p.ohw
		im2col(p, x, col, n0, n1)
		out := images(y, p.cout, p.ohw, n0, n1)
		if n1-n0 == 1 { // [cout, ohw] is the image's own layout
			gemmSerial(false, false, p.cout, cols, p.kk, 1, w, p.kk, col, cols, 0, out, cols)
			addBias(out, b, cols)
			return
		}
		gemmSerial(false, false, p.cout, cols, p.kk, 1, w, p.kk, col, cols, 0, tmp, cols)
		// tmp is [cout, image, ohw]; y is [image, cout, ohw].
		for co := range p.cout {
			for n := range n1 - n0 {
				src := tmp[co*cols+n*p.ohw:][:p.ohw]
				dst := out[(n*p.cout+co)*p.ohw:][:p.ohw]
				for i, v := range src {
					dst[i] = v + b[co]
				}
			}
		}
	})
}

// dyColumns returns images [n0, n1) of dy [N, cout, ohw] as [cout, (n1−n0)·ohw]:
// the images themselves for one image, else gathered into tmp.
func dyColumns[T float](p convPlan, dy, tmp []T, n0, n1 int) []T {
	in := images(dy, p.cout, p.ohw, n0, n1)
	if n1-n0 == 1 {
		return in
	}
	cols := (n1 - n0) * p.ohw
	for co := range p.cout {
		for n := range n1 - n0 {
			copy(tmp[co*cols+n*p.ohw:][:p.ohw], in[(n*p.cout+co)*p.ohw:][:p.ohw])
		}
	}
	return tmp
}

// convGradW computes dw, the gradient of the weights.
func convGradW[T float](p convPlan, x, dy, dw []T) {
	if x32, ok := any(x).([]float32); ok && winogradOK(p) {
		winogradGradW(p, x32, any(dy).([]float32), any(dw).([]float32))
		return
	}
	im2colGradW(p, x, dy, dw)
}

// im2colGradW computes dw = Σ_chunks dyT · colᵀ. Each goroutine sums its chunks
// into a partial dw of its own, and the partials are added.
func im2colGradW[T float](p convPlan, x, dy, dw []T) {
	partial := make([][]T, runtime.GOMAXPROCS(0)) // one per worker, each touched by its own goroutine only
	partial[0] = dw
	clear(dw)
	forChunks(p, func(wk, n0, n1 int, col, tmp []T) {
		acc := partial[wk]
		if acc == nil {
			acc = scratch[T](len(dw))
			clear(acc)
			partial[wk] = acc
		}
		if p.pointwise() { // acc += dy_n · x_nᵀ per image
			for n := n0; n < n1; n++ {
				gemmSerial(false, true, p.cout, p.cin, p.ohw, 1, images(dy, p.cout, p.ohw, n, n+1), p.ohw,
					images(x, p.cin, p.ohw, n, n+1), p.ohw, 1, acc, p.cin)
			}
			return
		}
		cols := (n1 - n0) * p.ohw
		im2col(p, x, col, n0, n1)
		dyT := dyColumns(p, dy, tmp, n0, n1)
		gemmSerial(false, true, p.cout, p.kk, cols, 1, dyT, cols, col, cols, 1, acc, p.kk)
	})
	for _, acc := range partial[1:] {
		if acc == nil {
			continue
		}
		for i, v := range acc {
			dw[i] += v
		}
		release(acc)
	}
}

// convGradX computes dx, the gradient of the input.
func convGradX[T float](p convPlan, w, dy, dx []T) {
	if dy32, ok := any(dy).([]float32); ok && winogradOK(p) {
		winogradGradX(p, any(w).([]float32), dy32, any(dx).([]float32))
		return
	}
	im2colGradX(p, w, dy, dx)
}

// im2colGradX computes dx = col2im(wᵀ · dyT) (1×1: without columns).
func im2colGradX[T float](p convPlan, w, dy, dx []T) {
	if p.pointwise() { // dx_n = wᵀ · dy_n per image
		parallelFor(p.n, func(lo, hi int) {
			for n := lo; n < hi; n++ {
				gemmSerial(true, false, p.cin, p.ohw, p.cout, 1, w, p.cin, images(dy, p.cout, p.ohw, n, n+1), p.ohw,
					0, images(dx, p.cin, p.ohw, n, n+1), p.ohw)
			}
		})
		return
	}
	clear(dx)
	forChunks(p, func(_, n0, n1 int, col, tmp []T) {
		cols := (n1 - n0) * p.ohw
		dyT := dyColumns(p, dy, tmp, n0, n1)
		gemmSerial(true, false, p.kk, cols, p.cout, 1, w, p.kk, dyT, cols, 0, col, cols)
		col2im(p, col, dx, n0, n1)
	})
}

// convGradB computes db[c] = Σ_{n,pixels} dy[n,c,·], the channels spread over the cores.
func convGradB[T float](n, cout, ohw int, dy, db []T) {
	parallelFor(cout, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var s [4]float64 // four sums, so that the additions need not wait for each other
			for i := range n {
				plane := dy[(i*cout+c)*ohw:][:ohw]
				j := 0
				for ; j+4 <= len(plane); j += 4 {
					s[0] += float64(plane[j])
					s[1] += float64(plane[j+1])
					s[2] += float64(plane[j+2])
					s[3] += float64(plane[j+3])
				}
				for ; j < len(plane); j++ {
					s[0] += float64(plane[j])
				}
			}
			db[c] = T(s[0] + s[1] + s[2] + s[3])
		}
	})
}

// conv2dOp is y = conv(x, w) + b.
type conv2dOp struct {
	pure
	geom
	stop *atomic.Bool // see Conv2dStoppable; not part of the op's identity
}

func (conv2dOp) Arity() int { return 3 }

func (conv2dOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(4, a), tensorType(1, a), tensorType(4, a))
}

func (op conv2dOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	xs, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	ws, err := shapeOf(op, in, 1)
	if err != nil {
		return nil, err
	}
	return op.outShape(xs, ws[0])
}

func (op conv2dOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	ys, err := op.outShape(in[0].Shape(), in[1].Shape()[0])
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), ys), vals...)
}

func (op conv2dOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	if op.stop != nil && op.stop.Load() {
		return nil, ErrStopped
	}
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	x, w, b := in[0], in[1], in[2]
	p, err := newPlan(op.geom, x.Shape(), w.Shape()[0])
	if err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{p.n, p.cout, p.oh, p.ow}, x.Dtype())
	if err != nil {
		return nil, err
	}
	switch x.Dtype() {
	case tensor.Float32:
		convForward(p, x.Float32s(), w.Float32s(), b.Float32s(), out.Float32s())
	default:
		convForward(p, x.Float64s(), w.Float64s(), b.Float64s(), out.Float64s())
	}
	return out, nil
}

func (op conv2dOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op conv2dOp) Hashcode() uint32      { return hashOf(op) }
func (op conv2dOp) String() string        { return fmt.Sprintf("Conv2d{%v}", op.geom) }

// DiffWRT reports that the convolution is differentiable in x, w and b.
func (conv2dOp) DiffWRT(int) []bool { return []bool{true, true, true} }

// SymDiff returns the nodes of dx, dw and db.
func (op conv2dOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 3 {
		return nil, fmt.Errorf("%v: expected 3 inputs, got %d", op, len(inputs))
	}
	x, w := inputs[0], inputs[1]
	dx, err := gorgonia.ApplyOp(convGradOp{geom: op.geom, wrt: 'x', shape: x.Shape().Clone(), stop: op.stop}, w, grad)
	if err != nil {
		return nil, fmt.Errorf("%v dx: %w", op, err)
	}
	dw, err := gorgonia.ApplyOp(convGradOp{geom: op.geom, wrt: 'w', shape: w.Shape().Clone(), stop: op.stop}, x, grad)
	if err != nil {
		return nil, fmt.Errorf("%v dw: %w", op, err)
	}
	db, err := gorgonia.ApplyOp(convGradOp{geom: op.geom, wrt: 'b', shape: inputs[2].Shape().Clone(), stop: op.stop}, grad)
	if err != nil {
		return nil, fmt.Errorf("%v db: %w", op, err)
	}
	return gorgonia.Nodes{dx, dw, db}, nil
}

// convGradOp computes one gradient of a convolution from dy:
// wrt 'x' takes (w, dy), 'w' takes (x, dy), 'b' takes (dy).
type convGradOp struct {
	pure
	geom
	wrt   byte
	shape tensor.Shape // shape of the result
	stop  *atomic.Bool // inherited from the forward op
}

func (op convGradOp) Arity() int {
	if op.wrt == 'b' {
		return 1
	}
	return 2
}

func (op convGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	out := tensorType(op.shape.Dims(), a)
	if op.wrt == 'b' {
		return hm.NewFnType(tensorType(4, a), out)
	}
	return hm.NewFnType(tensorType(4, a), tensorType(4, a), out)
}

func (op convGradOp) InferShape(...gorgonia.DimSizer) (tensor.Shape, error) {
	return op.shape.Clone(), nil
}

func (op convGradOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	if len(vals) == 0 {
		return nil, fmt.Errorf("%v: no inputs", op)
	}
	d, err := dense(vals[0])
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(d.Dtype(), op.shape), vals...)
}

func (op convGradOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	if op.stop != nil && op.stop.Load() {
		return nil, ErrStopped
	}
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	dy := in[len(in)-1]
	dt := dy.Dtype()
	out, err := output(op, prealloc, op.shape, dt)
	if err != nil {
		return nil, err
	}
	ys := dy.Shape()
	if op.wrt == 'b' {
		if dt == tensor.Float32 {
			convGradB(ys[0], ys[1], ys[2]*ys[3], dy.Float32s(), out.Float32s())
		} else {
			convGradB(ys[0], ys[1], ys[2]*ys[3], dy.Float64s(), out.Float64s())
		}
		return out, nil
	}
	xs := op.shape // wrt x
	if op.wrt == 'w' {
		xs = in[0].Shape()
	}
	p, err := newPlan(op.geom, xs, ys[1])
	if err != nil {
		return nil, err
	}
	if p.n != ys[0] || p.oh != ys[2] || p.ow != ys[3] {
		return nil, fmt.Errorf("%v: dy %v does not fit input %v", op, ys, xs)
	}
	switch {
	case op.wrt == 'x' && dt == tensor.Float32:
		convGradX(p, in[0].Float32s(), dy.Float32s(), out.Float32s())
	case op.wrt == 'x':
		convGradX(p, in[0].Float64s(), dy.Float64s(), out.Float64s())
	case dt == tensor.Float32:
		convGradW(p, in[0].Float32s(), dy.Float32s(), out.Float32s())
	default:
		convGradW(p, in[0].Float64s(), dy.Float64s(), out.Float64s())
	}
	return out, nil
}

func (op convGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }
func (op convGradOp) Hashcode() uint32      { return hashOf(op) }
func (op convGradOp) String() string {
	return fmt.Sprintf("Conv2dGrad_%c{%v, %v}", op.wrt, op.geom, op.shape)
}

// scratchPool recycles the large temporary matrices of the convolutions
// (their contents are always overwritten before use), so a training step
// does not allocate and clear hundreds of megabytes.
var scratchPool = struct{ f32, f64 sync.Pool }{}

// scratch returns a slice of n elements with arbitrary contents.
func scratch[T float](n int) []T {
	var t T
	pool := &scratchPool.f64
	if unsafe.Sizeof(t) == 4 {
		pool = &scratchPool.f32
	}
	if b, ok := pool.Get().(*[]T); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]T, n)
}

// release returns slices from scratch to the pool.
func release[T float](bufs ...[]T) {
	var t T
	pool := &scratchPool.f64
	if unsafe.Sizeof(t) == 4 {
		pool = &scratchPool.f32
	}
	for _, b := range bufs {
		pool.Put(&b)
	}
}
