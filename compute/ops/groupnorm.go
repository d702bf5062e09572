package ops

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// GroupNorm returns group normalisation of x (Wu & He 2018):
//
//	y[n,c,h,w] = (x[n,c,h,w] − μ[n,g]) / √(σ²[n,g] + eps) · gamma[c] + beta[c]
//
// where g is the group of channel c (channels are split into groups
// consecutive runs of C/groups) and μ, σ² are the mean and biased variance
// of the (C/groups)·H·W values of x in sample n and group g, computed in
// float64. x is [N,C,H,W], gamma and beta are [C]; C must be a multiple of
// groups and eps must be positive. It replaces gorgonia.GroupNorm, whose
// forward pass is wrong when (C/groups)·H·W > 256. Its gradient flows to x,
// gamma and beta.
func GroupNorm(x, gamma, beta *gorgonia.Node, groups int, eps float64) (*gorgonia.Node, error) {
	return applyGroupNorm(groupNormOp{p: gnParams{groups: groups, eps: eps}}, x, gamma, beta)
}

// GroupNormSwish returns Swish(GroupNorm(x, gamma, beta, groups, eps))
// computed by one op, which makes a single pass over x forward and over x
// and the output gradient backward (plus one pass over x and the output
// gradient for the statistics of the backward pass).
func GroupNormSwish(x, gamma, beta *gorgonia.Node, groups int, eps float64) (*gorgonia.Node, error) {
	return applyGroupNorm(groupNormOp{p: gnParams{groups: groups, eps: eps, swish: true}}, x, gamma, beta)
}

func applyGroupNorm(op groupNormOp, x, gamma, beta *gorgonia.Node) (*gorgonia.Node, error) {
	xs := x.Shape()
	switch {
	case xs.Dims() != 4:
		return nil, fmt.Errorf("%v: x has shape %v, want [N,C,H,W]", op, xs)
	case op.p.groups <= 0 || xs[1]%op.p.groups != 0:
		return nil, fmt.Errorf("%v: %d channels cannot be split into %d groups", op, xs[1], op.p.groups)
	case !(op.p.eps > 0):
		return nil, fmt.Errorf("%v: eps %v is not positive", op, op.p.eps)
	case !gamma.Shape().Eq(tensor.Shape{xs[1]}):
		return nil, fmt.Errorf("%v: gamma has shape %v, want (%d)", op, gamma.Shape(), xs[1])
	case !beta.Shape().Eq(tensor.Shape{xs[1]}):
		return nil, fmt.Errorf("%v: beta has shape %v, want (%d)", op, beta.Shape(), xs[1])
	}
	y, err := gorgonia.ApplyOp(op, x, gamma, beta)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	return y, nil
}

// gnParams are the parameters shared by the group normalisation op and its
// backward ops.
type gnParams struct {
	groups int
	eps    float64
	swish  bool // apply swish after the affine transform
}

// name returns "GroupNorm" or "GroupNormSwish" followed by the parameters.
func (p gnParams) name() string {
	if p.swish {
		return fmt.Sprintf("GroupNormSwish{groups=%d, eps=%g}", p.groups, p.eps)
	}
	return fmt.Sprintf("GroupNorm{groups=%d, eps=%g}", p.groups, p.eps)
}

// gnDims describes the layout of x: n samples of c channels of hw values,
// split into groups of cg channels, m = cg·hw values each.
type gnDims struct {
	n, c, hw, groups, cg, m int
}

func (p gnParams) dims(s tensor.Shape) (gnDims, error) {
	if s.Dims() != 4 || p.groups <= 0 || s[1]%p.groups != 0 {
		return gnDims{}, fmt.Errorf("%v: x has shape %v, want [N,C,H,W] with C a multiple of %d", p.name(), s, p.groups)
	}
	d := gnDims{n: s[0], c: s[1], hw: s[2] * s[3], groups: p.groups, cg: s[1] / p.groups}
	d.m = d.cg * d.hw
	return d, nil
}

// statsWidth returns the row length of the backward statistics: per sample,
// the mean and 1/√(σ²+eps) of each group, then per channel Σ dz and Σ dz·x̂
// over H·W, where x̂ is the normalised input and dz the gradient with respect
// to the affine (pre-swish) output.
func (d gnDims) statsWidth() int { return 2*d.groups + 2*d.c }

// moments returns the mean of x and 1/√(var+eps), with var the biased
// variance, computed in float64 in two passes.
func moments[T float](x []T, eps float64) (mean, rstd float64) {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	mean = s / float64(len(x))
	var ss float64
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	return mean, 1 / math.Sqrt(ss/float64(len(x))+eps)
}

// gnForward computes y = act(x̂·gamma + beta).
func gnForward[T float](y, x, gamma, beta []T, d gnDims, eps float64, act bool) {
	if y32, ok := any(y).([]float32); ok && cKernels {
		x32, g32, b32 := any(x).([]float32), any(gamma).([]float32), any(beta).([]float32)
		parallelFor(d.n*d.groups, func(lo, hi int) { gnForwardC(y32, x32, g32, b32, d, eps, act, lo, hi) })
		return
	}
	fast := fastMath[T]()
	parallelFor(d.n*d.groups, func(lo, hi int) {
		for ng := lo; ng < hi; ng++ {
			base := ng * d.m
			mean, rstd := moments(x[base:base+d.m], eps)
			for k := range d.cg {
				ch := ng%d.groups*d.cg + k
				a := rstd * float64(gamma[ch])
				b := float64(beta[ch]) - mean*a
				off := base + k*d.hw
				for i := off; i < off+d.hw; i++ {
					z := float64(x[i])*a + b
					if act {
						z = swish(z, fast)
					}
					y[i] = T(z)
				}
			}
		}
	})
}

// gnStats computes the backward statistics (see statsWidth) into st, [N, statsWidth].
func gnStats[T float](st, x, gamma, beta, dy []T, d gnDims, eps float64, act bool) {
	if st32, ok := any(st).([]float32); ok && cKernels {
		x32, g32, b32, dy32 := any(x).([]float32), any(gamma).([]float32), any(beta).([]float32), any(dy).([]float32)
		parallelFor(d.n*d.groups, func(lo, hi int) { gnStatsC(st32, x32, g32, b32, dy32, d, eps, act, lo, hi) })
		return
	}
	fast := fastMath[T]()
	w := d.statsWidth()
	parallelFor(d.n*d.groups, func(lo, hi int) {
		for ng := lo; ng < hi; ng++ {
			base := ng * d.m
			g := ng % d.groups
			row := st[ng/d.groups*w : (ng/d.groups+1)*w]
			mean, rstd := moments(x[base:base+d.m], eps)
			row[g], row[d.groups+g] = T(mean), T(rstd)
			for k := range d.cg {
				ch := g*d.cg + k
				gm, bt := float64(gamma[ch]), float64(beta[ch])
				var s1, s2 float64
				off := base + k*d.hw
				for i := off; i < off+d.hw; i++ {
					xh := (float64(x[i]) - mean) * rstd
					dz := float64(dy[i])
					if act {
						dz *= swishDeriv(xh*gm+bt, fast)
					}
					s1 += dz
					s2 += dz * xh
				}
				row[2*d.groups+ch], row[2*d.groups+d.c+ch] = T(s1), T(s2)
			}
		}
	})
}

// gnDx computes dL/dx = rstd·(dz·γ − mean(dz·γ) − x̂·mean(dz·γ·x̂)), the
// means taken over the group, from the statistics st.
func gnDx[T float](dx, x, gamma, beta, dy, st []T, d gnDims, act bool) {
	if dx32, ok := any(dx).([]float32); ok && cKernels {
		x32, g32, b32, dy32, st32 := any(x).([]float32), any(gamma).([]float32), any(beta).([]float32), any(dy).([]float32), any(st).([]float32)
		parallelFor(d.n*d.groups, func(lo, hi int) { gnDxC(dx32, x32, g32, b32, dy32, st32, d, act, lo, hi) })
		return
	}
	fast := fastMath[T]()
	w := d.statsWidth()
	parallelFor(d.n*d.groups, func(lo, hi int) {
		for ng := lo; ng < hi; ng++ {
			base := ng * d.m
			g := ng % d.groups
			row := st[ng/d.groups*w : (ng/d.groups+1)*w]
			mean, rstd := float64(row[g]), float64(row[d.groups+g])
			s1, s2 := row[2*d.groups:2*d.groups+d.c], row[2*d.groups+d.c:]
			var a, b float64
			for ch := g * d.cg; ch < (g+1)*d.cg; ch++ {
				a += float64(gamma[ch]) * float64(s1[ch])
				b += float64(gamma[ch]) * float64(s2[ch])
			}
			a /= float64(d.m)
			b /= float64(d.m)
			for k := range d.cg {
				ch := g*d.cg + k
				gm, bt := float64(gamma[ch]), float64(beta[ch])
				off := base + k*d.hw
				for i := off; i < off+d.hw; i++ {
					xh := (float64(x[i]) - mean) * rstd
					dz := float64(dy[i])
					if act {
						dz *= swishDeriv(xh*gm+bt, fast)
					}
					dx[i] = T(rstd * (dz*gm - a - xh*b))
				}
			}
		}
	})
}

// gnParamGrad sums the per-sample channel statistics at offset off of each
// row of st into out: off 2G gives dL/dbeta, off 2G+C gives dL/dgamma.
func gnParamGrad[T float](out, st []T, n, w, off int) {
	for ch := range out {
		var s float64
		for b := range n {
			s += float64(st[b*w+off+ch])
		}
		out[ch] = T(s)
	}
}

// groupNormOp computes GroupNorm or GroupNormSwish from x, gamma and beta.
type groupNormOp struct {
	pure
	p gnParams
}

// Arity returns 3: x, gamma, beta.
func (groupNormOp) Arity() int { return 3 }

// Type returns Tensor-4 a → Tensor-1 a → Tensor-1 a → Tensor-4 a.
func (groupNormOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(1, a), tensorType(1, a), tensorType(4, a))
}

// InferShape returns the shape of x.
func (op groupNormOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes the normalisation into a new tensor.
func (op groupNormOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes the normalisation into prealloc.
func (op groupNormOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	d, err := op.p.checkInputs(in[:3])
	if err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, in[0].Shape(), in[0].Dtype())
	if err != nil {
		return nil, err
	}
	x, gamma, beta := in[0], in[1], in[2]
	switch out.Dtype() {
	case tensor.Float32:
		gnForward(out.Float32s(), x.Float32s(), gamma.Float32s(), beta.Float32s(), d, op.p.eps, op.p.swish)
	default:
		gnForward(out.Float64s(), x.Float64s(), gamma.Float64s(), beta.Float64s(), d, op.p.eps, op.p.swish)
	}
	return out, nil
}

// checkInputs checks the shapes of x, gamma and beta.
func (p gnParams) checkInputs(in []*tensor.Dense) (gnDims, error) {
	d, err := p.dims(in[0].Shape())
	if err != nil {
		return d, err
	}
	for i, name := range []string{"gamma", "beta"} {
		if s := in[1+i].Shape(); !s.Eq(tensor.Shape{d.c}) {
			return d, fmt.Errorf("%v: %s has shape %v, want (%d)", p.name(), name, s, d.c)
		}
	}
	return d, nil
}

// WriteHash writes the op's identity to h.
func (op groupNormOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op groupNormOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name and parameters.
func (op groupNormOp) String() string { return op.p.name() }

// DiffWRT reports that the op is differentiable with respect to x, gamma and beta.
func (groupNormOp) DiffWRT(int) []bool { return []bool{true, true, true} }

// SymDiff returns the gradient nodes of x, gamma and beta. They share one
// node of backward statistics.
func (op groupNormOp) SymDiff(inputs gorgonia.Nodes, _, grad *gorgonia.Node) (gorgonia.Nodes, error) {
	if len(inputs) != 3 {
		return nil, fmt.Errorf("%v: expected 3 inputs, got %d", op, len(inputs))
	}
	x, gamma, beta := inputs[0], inputs[1], inputs[2]
	st, err := gorgonia.ApplyOp(gnStatsOp{p: op.p}, x, gamma, beta, grad)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	dx, err := gorgonia.ApplyOp(gnDxOp{p: op.p}, x, gamma, beta, grad, st)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	dgamma, err := gorgonia.ApplyOp(gnParamGradOp{groups: op.p.groups, gamma: true}, st)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	dbeta, err := gorgonia.ApplyOp(gnParamGradOp{groups: op.p.groups}, st)
	if err != nil {
		return nil, fmt.Errorf("%v gradient: %w", op, err)
	}
	return gorgonia.Nodes{dx, dgamma, dbeta}, nil
}

// gnStatsOp computes the backward statistics of group normalisation (see
// gnDims.statsWidth) from x, gamma, beta and dL/dy.
type gnStatsOp struct {
	pure
	p gnParams
}

// Arity returns 4: x, gamma, beta, dL/dy.
func (gnStatsOp) Arity() int { return 4 }

// Type returns Tensor-4 a → Tensor-1 a → Tensor-1 a → Tensor-4 a → Tensor-2 a.
func (gnStatsOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(1, a), tensorType(1, a), tensorType(4, a), tensorType(2, a))
}

// InferShape returns [N, 2·groups + 2·C].
func (op gnStatsOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	d, err := op.p.dims(s)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{d.n, d.statsWidth()}, nil
}

// Do computes the statistics into a new tensor.
func (op gnStatsOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	d, err := op.p.dims(in[0].Shape())
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{d.n, d.statsWidth()}), vals...)
}

// UsePreallocDo computes the statistics into prealloc.
func (op gnStatsOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	d, err := op.p.checkInputs(in[:3])
	if err != nil {
		return nil, err
	}
	x, gamma, beta, dy := in[0], in[1], in[2], in[3]
	if !dy.Shape().Eq(x.Shape()) {
		return nil, fmt.Errorf("%v: gradient shape %v differs from input shape %v", op, dy.Shape(), x.Shape())
	}
	out, err := output(op, prealloc, tensor.Shape{d.n, d.statsWidth()}, x.Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		gnStats(out.Float32s(), x.Float32s(), gamma.Float32s(), beta.Float32s(), dy.Float32s(), d, op.p.eps, op.p.swish)
	default:
		gnStats(out.Float64s(), x.Float64s(), gamma.Float64s(), beta.Float64s(), dy.Float64s(), d, op.p.eps, op.p.swish)
	}
	return out, nil
}

// WriteHash writes the op's identity to h.
func (op gnStatsOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op gnStatsOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name and parameters.
func (op gnStatsOp) String() string { return op.p.name() + "Stats" }

// gnDxOp computes dL/dx of group normalisation from x, gamma, beta, dL/dy
// and the backward statistics.
type gnDxOp struct {
	pure
	p gnParams
}

// Arity returns 5: x, gamma, beta, dL/dy, statistics.
func (gnDxOp) Arity() int { return 5 }

// Type returns Tensor-4 a → Tensor-1 a → Tensor-1 a → Tensor-4 a → Tensor-2 a → Tensor-4 a.
func (gnDxOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(4, a), tensorType(1, a), tensorType(1, a), tensorType(4, a), tensorType(2, a), tensorType(4, a))
}

// InferShape returns the shape of x.
func (op gnDxOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// Do computes dL/dx into a new tensor.
func (op gnDxOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), in[0].Shape()), vals...)
}

// UsePreallocDo computes dL/dx into prealloc.
func (op gnDxOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	d, err := op.p.checkInputs(in[:3])
	if err != nil {
		return nil, err
	}
	x, gamma, beta, dy, st := in[0], in[1], in[2], in[3], in[4]
	if !dy.Shape().Eq(x.Shape()) {
		return nil, fmt.Errorf("%v: gradient shape %v differs from input shape %v", op, dy.Shape(), x.Shape())
	}
	if want := (tensor.Shape{d.n, d.statsWidth()}); !st.Shape().Eq(want) {
		return nil, fmt.Errorf("%v: statistics have shape %v, want %v", op, st.Shape(), want)
	}
	out, err := output(op, prealloc, x.Shape(), x.Dtype())
	if err != nil {
		return nil, err
	}
	switch out.Dtype() {
	case tensor.Float32:
		gnDx(out.Float32s(), x.Float32s(), gamma.Float32s(), beta.Float32s(), dy.Float32s(), st.Float32s(), d, op.p.swish)
	default:
		gnDx(out.Float64s(), x.Float64s(), gamma.Float64s(), beta.Float64s(), dy.Float64s(), st.Float64s(), d, op.p.swish)
	}
	return out, nil
}

// WriteHash writes the op's identity to h.
func (op gnDxOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op gnDxOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name and parameters.
func (op gnDxOp) String() string { return op.p.name() + "Dx" }

// gnParamGradOp computes dL/dgamma (gamma true) or dL/dbeta of group
// normalisation from the backward statistics.
type gnParamGradOp struct {
	pure
	groups int
	gamma  bool
}

// Arity returns 1: the statistics.
func (gnParamGradOp) Arity() int { return 1 }

// Type returns Tensor-2 a → Tensor-1 a.
func (gnParamGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(tensorType(2, a), tensorType(1, a))
}

// channels returns C given the shape [N, 2·groups + 2·C] of the statistics.
func (op gnParamGradOp) channels(s tensor.Shape) (int, error) {
	if s.Dims() != 2 || s[1] <= 2*op.groups || (s[1]-2*op.groups)%2 != 0 {
		return 0, fmt.Errorf("%v: statistics have shape %v, want [N, 2·%d+2·C]", op, s, op.groups)
	}
	return (s[1] - 2*op.groups) / 2, nil
}

// InferShape returns [C].
func (op gnParamGradOp) InferShape(in ...gorgonia.DimSizer) (tensor.Shape, error) {
	s, err := shapeOf(op, in, 0)
	if err != nil {
		return nil, err
	}
	c, err := op.channels(s)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{c}, nil
}

// Do computes the gradient into a new tensor.
func (op gnParamGradOp) Do(vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	c, err := op.channels(in[0].Shape())
	if err != nil {
		return nil, err
	}
	return op.UsePreallocDo(newLike(in[0].Dtype(), tensor.Shape{c}), vals...)
}

// UsePreallocDo computes the gradient into prealloc.
func (op gnParamGradOp) UsePreallocDo(prealloc gorgonia.Value, vals ...gorgonia.Value) (gorgonia.Value, error) {
	in, err := denses(op, vals)
	if err != nil {
		return nil, err
	}
	st := in[0]
	c, err := op.channels(st.Shape())
	if err != nil {
		return nil, err
	}
	out, err := output(op, prealloc, tensor.Shape{c}, st.Dtype())
	if err != nil {
		return nil, err
	}
	n, w := st.Shape()[0], st.Shape()[1]
	off := 2 * op.groups
	if op.gamma {
		off += c
	}
	switch out.Dtype() {
	case tensor.Float32:
		gnParamGrad(out.Float32s(), st.Float32s(), n, w, off)
	default:
		gnParamGrad(out.Float64s(), st.Float64s(), n, w, off)
	}
	return out, nil
}

// WriteHash writes the op's identity to h.
func (op gnParamGradOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode returns the op's hash.
func (op gnParamGradOp) Hashcode() uint32 { return hashOf(op) }

// String returns the op's name and parameters.
func (op gnParamGradOp) String() string {
	if op.gamma {
		return fmt.Sprintf("GroupNormGammaGrad{groups=%d}", op.groups)
	}
	return fmt.Sprintf("GroupNormBetaGrad{groups=%d}", op.groups)
}
