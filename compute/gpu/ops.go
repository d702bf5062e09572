package gpu

import "fmt"

// Elementwise ops. n counts values; sizes are in float32 values.

// Swish is ops.Swish: y = x·sigmoid(x).
func Swish(be Backend, y, x Ptr, n int) error { return kSwishFwd(be, grid1(n), threads1, y, x, n) }

// SwishGrad is the gradient of Swish: dx = dy·swish'(x).
func SwishGrad(be Backend, dx, x, dy Ptr, n int) error {
	return kSwishGrad(be, grid1(n), threads1, dx, x, dy, n)
}

// Add is ops.Add: y = a + b.
func Add(be Backend, y, a, b Ptr, n int) error { return kAdd(be, grid1(n), threads1, y, a, b, n) }

// AddChannels is ops.AddChannels: y = h + t broadcast over the hw values of each plane.
func AddChannels(be Backend, y, h, t Ptr, n, hw int) error {
	return kAddChannels(be, grid1(n), threads1, y, h, t, n, hw)
}

// Upsample2x is ops.Upsample2x of planes planes of h×w values.
func Upsample2x(be Backend, y, x Ptr, planes, h, w int) error {
	n := 4 * planes * h * w
	return kUpsample2x(be, grid1(n), threads1, y, x, n, h, w)
}

// Sum2x2 is the gradient of Upsample2x: dx has planes planes of h×w values.
func Sum2x2(be Backend, dx, dy Ptr, planes, h, w int) error {
	n := planes * h * w
	return kSum2x2(be, grid1(n), threads1, dx, dy, n, h, w)
}

// Concat is ops.ConcatChannels: per image, la values of a, then lb of b.
func Concat(be Backend, y, a, b Ptr, imgs, la, lb int) error {
	n := imgs * (la + lb)
	return kConcat(be, grid1(n), threads1, y, a, b, n, la, lb)
}

// Channels copies, per image of stride values of x, the l values from off: the
// gradient of Concat for one of its inputs.
func Channels(be Backend, y, x Ptr, imgs, stride, off, l int) error {
	n := imgs * l
	return kChannels(be, grid1(n), threads1, y, x, n, stride, off, l)
}

// BinaryOp is an elementwise operation of Gorgonia's elemBinOp.
type BinaryOp int

// The operations of Binary.
const (
	OpAdd BinaryOp = iota
	OpSub
	OpMul
	OpDiv
)

// Binary is y = a op b over n values; a scalar operand (aScalar, bScalar) is repeated.
func Binary(be Backend, y, a, b Ptr, n int, op BinaryOp, aScalar, bScalar bool) error {
	step := func(scalar bool) int {
		if scalar {
			return 0
		}
		return 1
	}
	return kBinary(be, grid1(n), threads1, y, a, b, n, int(op), step(aScalar), step(bScalar))
}

// UnaryOp is an elementwise operation of Gorgonia's elemUnaryOp.
type UnaryOp int

// The operations of Unary.
const (
	OpNeg UnaryOp = iota
	OpSquare
)

// Unary is y = op(x) over n values.
func Unary(be Backend, y, x Ptr, n int, op UnaryOp) error {
	return kUnary(be, grid1(n), threads1, y, x, n, int(op))
}

// Transpose2d writes y [cols, rows] = x [rows, cols]ᵀ.
func Transpose2d(be Backend, y, x Ptr, rows, cols int) error {
	return kTranspose2d(be, grid1(rows*cols), threads1, y, x, rows, cols)
}

// Repeat writes y [outer, times, inner] from x [outer, 1, inner].
func Repeat(be Backend, y, x Ptr, outer, times, inner int) error {
	return kRepeat(be, grid1(outer*times*inner), threads1, y, x, outer, times, inner)
}

// NCHWToCN lays x [imgs, c, hw] out as y [c, imgs·hw].
func NCHWToCN(be Backend, y, x Ptr, imgs, c, hw int) error {
	return kNchwToCn(be, grid1(imgs*c*hw), threads1, y, x, imgs, c, hw)
}

// Reductions.

// PlaneSums writes out[p] = Σ of plane p of x [planes, hw] (gradient of AddChannels for t).
func PlaneSums(be Backend, out, x Ptr, planes, hw int) error {
	if err := checkGrid("plane sums", planes); err != nil {
		return err
	}
	return kPlaneSums(be, Dim3{planes, 1, 1}, redBlock, out, x, hw)
}

// ChannelSums writes out[c] = Σ over images and pixels of dy [imgs, c, hw]: a
// convolution's bias gradient.
func ChannelSums(be Backend, out, dy Ptr, imgs, c, hw int) error {
	if err := checkGrid("channel sums", c); err != nil {
		return err
	}
	return kChannelSums(be, Dim3{c, 1, 1}, redBlock, out, dy, imgs, c, hw)
}

// ColumnSums writes out[j] = Σ_i x[i, j] for x [rows, cols].
func ColumnSums(be Backend, out, x Ptr, rows, cols int) error {
	return kColumnSums(be, grid1(cols), threads1, out, x, rows, cols)
}

// SumParts is the number of float64 partial sums a Sum needs room for.
const SumParts = 1024

// Sum writes Σ x (Σ x² with square) over n values, accumulated in float64, to *out64
// and, unless out32 is 0, as a float32 to *out32. part is scratch for SumParts float64s.
func Sum(be Backend, out64, out32, x Ptr, n int, square bool, part Ptr) error {
	parts := max(1, min(SumParts, (n+RedThreads-1)/RedThreads))
	sq := 0
	if square {
		sq = 1
	}
	if err := kSumPartial(be, Dim3{parts, 1, 1}, redBlock, part, x, n, sq); err != nil {
		return err
	}
	return kSumFinal(be, Dim3{1, 1, 1}, redBlock, out64, out32, part, parts)
}

// Group normalisation: x [n, c, hw] in groups groups of c/groups channels.

// GroupNorm is ops.GroupNorm, or ops.GroupNormSwish with act.
func GroupNorm(be Backend, y, x, gamma, beta Ptr, n, c, hw, groups int, eps float64, act bool) error {
	if err := checkGrid("group norm", n*groups); err != nil {
		return err
	}
	return kGnForward(be, Dim3{n * groups, 1, 1}, redBlock, y, x, gamma, beta, groups, c/groups, hw, eps, b2i(act))
}

// GroupNormStats writes the backward statistics [n, 2·groups+2·c] of group
// normalisation (see ops' gnDims.statsWidth) from x and dy.
func GroupNormStats(be Backend, st, x, gamma, beta, dy Ptr, n, c, hw, groups int, eps float64, act bool) error {
	if err := checkGrid("group norm statistics", n*groups); err != nil {
		return err
	}
	return kGnStats(be, Dim3{n * groups, 1, 1}, redBlock, st, x, gamma, beta, dy, groups, c, c/groups, hw, eps, b2i(act))
}

// GroupNormDx writes dL/dx of group normalisation from the statistics st.
func GroupNormDx(be Backend, dx, x, gamma, beta, dy, st Ptr, n, c, hw, groups int, act bool) error {
	total := n * c * hw
	return kGnDx(be, grid1(total), threads1, dx, x, gamma, beta, dy, st, total, groups, c, c/groups, hw, b2i(act))
}

// GroupNormParamGrad writes dL/dγ (gamma) or dL/dβ from the statistics of n samples.
func GroupNormParamGrad(be Backend, out, st Ptr, n, c, groups int, gamma bool) error {
	off := 2 * groups
	if gamma {
		off += c
	}
	return kGnParamGrad(be, grid1(c), threads1, out, st, n, 2*groups+2*c, off, c)
}

// Softmax is ops.Softmax: softmax(scale·x) over each of rows rows of w values.
func Softmax(be Backend, y, x Ptr, rows, w int, scale float64) error {
	if err := checkGrid("softmax", rows); err != nil {
		return err
	}
	return kSoftmaxRows(be, Dim3{rows, 1, 1}, redBlock, y, x, w, scale)
}

// SoftmaxGrad is the gradient of Softmax from its output y.
func SoftmaxGrad(be Backend, dx, y, dy Ptr, rows, w int, scale float64) error {
	if err := checkGrid("softmax gradient", rows); err != nil {
		return err
	}
	return kSoftmaxGradRows(be, Dim3{rows, 1, 1}, redBlock, dx, y, dy, w, scale)
}

// The optimizer.

// Adam holds the settings of one Adam and EMA update (compute.Trainer's).
type Adam struct {
	Beta1, Beta2 float32
	Scale        float32 // gradient multiplier (global-norm clipping)
	LRT          float64 // step size with the bias corrections folded in
	Eps          float64
	EMA          bool    // false: the EMA copies the weights
	Decay        float32 // EMA decay
}

// AdamEMA computes the update of n values of the flat weights w, moments m and v and
// EMA e from gradients g. With commit it stores the new values; without, it only sets
// *bad (a uint64, which must hold MaxUint64 before) to the smallest 4·i+what over the
// values i whose update is not finite, what 0 for m, 1 v, 2 w, 3 the EMA.
func AdamEMA(be Backend, w, m, v, e, g Ptr, n int, a Adam, commit bool, bad Ptr) error {
	return kAdamEma(be, grid1(n), threads1, w, m, v, e, g, n, float64(a.Beta1), float64(a.Beta2), float64(a.Scale),
		a.LRT, a.Eps, b2i(a.EMA), float64(a.Decay), b2i(commit), bad)
}

// DropoutMask fills y with n mask values drawn from seed as compute.Trainer does on
// the CPU: 0 where the 32 random bits are below drop, keep elsewhere.
func DropoutMask(be Backend, y Ptr, n int, seed uint64, drop uint32, keep float32) error {
	blocks := (n + MaskBlock - 1) / MaskBlock
	threads := blocks * (MaskBlock / (2 * MaskRun))
	return kDropoutMask(be, grid1(threads), threads1, y, n, seed, int(drop), float64(keep))
}

// Gather copies nseg segments into dst: segment s has lens[s] floats at the device
// address srcs[s] and goes to dst+offs[s]; the three tables are device arrays (uint64,
// int64, int64) and maxLen is the longest segment.
func Gather(be Backend, dst, srcs, offs, lens Ptr, nseg, maxLen int) error {
	if nseg > 65535 {
		return fmt.Errorf("gather: %d segments, at most 65535", nseg)
	}
	g := grid1(maxLen)
	g.X = min(g.X, 64)
	return kGather(be, Dim3{g.X, nseg, 1}, threads1, dst, srcs, offs, lens)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
