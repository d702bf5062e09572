package compute

import (
	"fmt"
	"slices"
	"strings"

	"gorgonia.org/tensor"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
	"github.com/ddpm-studio/ddpm-studio/compute/ops"
)

// lowered is a step's launches: scratch floats it needs, and (once bound) the function
// that queues its kernels.
type lowered struct {
	floats int64
	run    func(be gpu.Backend) error
}

// binding resolves a node to its device address; scratch is the step's scratch.
type binding struct {
	ptr     func(node int) gpu.Ptr
	scratch gpu.Ptr
}

// lower maps step st to the launches of package gpu. With b nil it only checks that the
// op is one the device computes and returns the scratch it needs.
func (p *devPlan) lower(st *devStep, b *binding, budget int64) (lowered, error) {
	n := p.nodes[st.node]
	op := n.Op()
	out := n.Shape()
	shape := func(j int) tensor.Shape { return p.nodes[st.in[j]].Shape() }
	var ptr func(j int) gpu.Ptr // the address of input j
	var y, scratch gpu.Ptr
	if b != nil {
		ptr = func(j int) gpu.Ptr { return b.ptr(st.in[j]) }
		y, scratch = b.ptr(st.node), b.scratch
	}
	fail := func(format string, args ...any) (lowered, error) {
		return lowered{}, fmt.Errorf("node %v (%v): %s", n, op, fmt.Sprintf(format, args...))
	}
	size := out.TotalSize()
	l := lowered{}
	// run sets l.run when bound.
	run := func(f func(be gpu.Backend) error) (lowered, error) {
		if b != nil {
			l.run = f
		}
		return l, nil
	}

	if d := ops.Describe(op); d.Kind != ops.KindNone {
		switch d.Kind {
		case ops.KindConv, ops.KindConvGradX, ops.KindConvGradW, ops.KindConvGradB:
			var xs, ws tensor.Shape
			var pass gpu.ConvPass
			switch d.Kind {
			case ops.KindConv:
				xs, ws, pass = shape(0), shape(1), gpu.ConvForward
			case ops.KindConvGradX:
				xs, ws, pass = out, shape(0), gpu.ConvGradX
			case ops.KindConvGradW:
				xs, ws, pass = shape(0), out, gpu.ConvGradW
			default: // the bias gradient needs only dy
				dy := shape(0)
				return run(func(be gpu.Backend) error { return gpu.ChannelSums(be, y, ptr(0), dy[0], dy[1], dy[2]*dy[3]) })
			}
			c := gpu.Conv{N: xs[0], Cin: xs[1], H: xs[2], W: xs[3], Cout: ws[0], K: d.K, Stride: d.Stride,
				Top: d.Pads.Top, Bottom: d.Pads.Bottom, Left: d.Pads.Left, Right: d.Pads.Right}
			if err := c.Check(); err != nil {
				return fail("%v", err)
			}
			imgs, bytes := c.Chunk(pass, budget)
			l.floats = bytes / 4
			switch pass {
			case gpu.ConvForward:
				return run(func(be gpu.Backend) error { return c.Forward(be, y, ptr(0), ptr(1), ptr(2), scratch, imgs) })
			case gpu.ConvGradX:
				return run(func(be gpu.Backend) error { return c.GradX(be, y, ptr(0), ptr(1), scratch, imgs) })
			default:
				return run(func(be gpu.Backend) error { return c.GradW(be, y, ptr(0), ptr(1), scratch, imgs) })
			}
		case ops.KindGroupNorm, ops.KindGroupNormStats, ops.KindGroupNormDx:
			xs := shape(0)
			nn, c, hw := xs[0], xs[1], xs[2]*xs[3]
			switch d.Kind {
			case ops.KindGroupNorm:
				return run(func(be gpu.Backend) error {
					return gpu.GroupNorm(be, y, ptr(0), ptr(1), ptr(2), nn, c, hw, d.Groups, d.Eps, d.Swish)
				})
			case ops.KindGroupNormStats:
				return run(func(be gpu.Backend) error {
					return gpu.GroupNormStats(be, y, ptr(0), ptr(1), ptr(2), ptr(3), nn, c, hw, d.Groups, d.Eps, d.Swish)
				})
			default:
				return run(func(be gpu.Backend) error {
					return gpu.GroupNormDx(be, y, ptr(0), ptr(1), ptr(2), ptr(3), ptr(4), nn, c, hw, d.Groups, d.Swish)
				})
			}
		case ops.KindGroupNormParam:
			return run(func(be gpu.Backend) error {
				return gpu.GroupNormParamGrad(be, y, ptr(0), shape(0)[0], out[0], d.Groups, d.Gamma)
			})
		case ops.KindSwish:
			return run(func(be gpu.Backend) error { return gpu.Swish(be, y, ptr(0), size) })
		case ops.KindSwishGrad:
			return run(func(be gpu.Backend) error { return gpu.SwishGrad(be, y, ptr(0), ptr(1), size) })
		case ops.KindUpsample2x:
			xs := shape(0)
			return run(func(be gpu.Backend) error { return gpu.Upsample2x(be, y, ptr(0), xs[0]*xs[1], xs[2], xs[3]) })
		case ops.KindSum2x2:
			return run(func(be gpu.Backend) error { return gpu.Sum2x2(be, y, ptr(0), out[0]*out[1], out[2], out[3]) })
		case ops.KindSoftmax, ops.KindSoftmaxGrad:
			w := out[out.Dims()-1]
			if d.Kind == ops.KindSoftmax {
				return run(func(be gpu.Backend) error { return gpu.Softmax(be, y, ptr(0), size/w, w, d.Scale) })
			}
			return run(func(be gpu.Backend) error { return gpu.SoftmaxGrad(be, y, ptr(0), ptr(1), size/w, w, d.Scale) })
		case ops.KindBatchedMatMul:
			as, bs := shape(0), shape(1)
			batch, m, nn := out[0], out[1], out[2]
			k := as[2]
			if d.TA {
				k = as[1]
			}
			g := gpu.Gemm{TA: d.TA, TB: d.TB, M: m, N: nn, K: k, Alpha: 1, LDA: as[2], SA: as[1] * as[2],
				LDB: bs[2], SB: bs[1] * bs[2], LDC: nn, SC: m * nn, Batch: batch}
			if err := g.Check(); err != nil {
				return fail("%v", err)
			}
			return run(func(be gpu.Backend) error {
				g.A, g.B, g.C = ptr(0), ptr(1), y
				return be.Gemm(g)
			})
		case ops.KindConcat:
			as, bs := shape(0), shape(1)
			hw := as[2] * as[3]
			return run(func(be gpu.Backend) error { return gpu.Concat(be, y, ptr(0), ptr(1), as[0], as[1]*hw, bs[1]*hw) })
		case ops.KindChannels:
			xs := shape(0)
			hw := xs[2] * xs[3]
			return run(func(be gpu.Backend) error {
				return gpu.Channels(be, y, ptr(0), xs[0], xs[1]*hw, d.Lo*hw, (d.Hi-d.Lo)*hw)
			})
		case ops.KindAdd:
			return run(func(be gpu.Backend) error { return gpu.Add(be, y, ptr(0), ptr(1), size) })
		case ops.KindAddChannels:
			hw := out[2] * out[3]
			return run(func(be gpu.Backend) error { return gpu.AddChannels(be, y, ptr(0), ptr(1), size, hw) })
		case ops.KindSumPlanes:
			xs := shape(0)
			return run(func(be gpu.Backend) error { return gpu.PlaneSums(be, y, ptr(0), xs[0]*xs[1], xs[2]*xs[3]) })
		}
		return fail("no device kernel")
	}

	// Gorgonia's own ops, as the U-Net graph uses them.
	scalar := func(j int) bool { return p.nodes[st.in[j]].IsScalar() }
	switch opName(op) {
	case "transposeOp":
		xs := shape(0)
		if xs.Dims() != 2 {
			return fail("transpose of a %d-D tensor", xs.Dims())
		}
		return run(func(be gpu.Backend) error { return gpu.Transpose2d(be, y, ptr(0), xs[0], xs[1]) })
	case "linAlgBinOp":
		as, bs := shape(0), shape(1)
		if as.Dims() != 2 || bs.Dims() != 2 || out.Dims() != 2 || !strings.Contains(op.String(), "×") {
			return fail("only products of two matrices run on the device")
		}
		ta, tb := opField(op, "transA").Bool(), opField(op, "transB").Bool()
		k := as[1]
		if ta {
			k = as[0]
		}
		g := gpu.Gemm{TA: ta, TB: tb, M: out[0], N: out[1], K: k, Alpha: 1, LDA: as[1], LDB: bs[1], LDC: out[1], Batch: 1}
		if err := g.Check(); err != nil {
			return fail("%v", err)
		}
		return run(func(be gpu.Backend) error {
			g.A, g.B, g.C = ptr(0), ptr(1), y
			return be.Gemm(g)
		})
	case "repeatOp":
		xs := shape(0)
		along := int(opField(op, "along").Int())
		if along >= xs.Dims() || xs[along] != 1 || out.Dims() != xs.Dims() {
			return fail("repeat of input %v along axis %d into %v: only axes of length 1 are repeated on the device", xs, along, out)
		}
		outer, inner := 1, 1
		for i, d := range xs {
			switch {
			case i < along:
				outer *= d
			case i > along:
				inner *= d
			}
		}
		times := out[along]
		return run(func(be gpu.Backend) error { return gpu.Repeat(be, y, ptr(0), outer, times, inner) })
	case "elemBinOp":
		var bop gpu.BinaryOp
		switch strings.Fields(op.String())[0] {
		case "+":
			bop = gpu.OpAdd
		case "-":
			bop = gpu.OpSub
		case "⊙":
			bop = gpu.OpMul
		case "÷":
			bop = gpu.OpDiv
		default:
			return fail("no device kernel")
		}
		sa, sb := scalar(0), scalar(1)
		if !sa && !sb && !shape(0).Eq(shape(1)) {
			return fail("operands of shapes %v and %v (broadcasting is not supported on the device)", shape(0), shape(1))
		}
		return run(func(be gpu.Backend) error { return gpu.Binary(be, y, ptr(0), ptr(1), max(1, size), bop, sa, sb) })
	case "elemUnaryOp":
		var uop gpu.UnaryOp
		switch op.String() {
		case "neg":
			uop = gpu.OpNeg
		case "square":
			uop = gpu.OpSquare
		default:
			return fail("no device kernel")
		}
		return run(func(be gpu.Backend) error { return gpu.Unary(be, y, ptr(0), max(1, size), uop) })
	case "sumOp":
		xs := shape(0)
		av := opField(op, "along")
		along := make([]int, av.Len())
		for i := range along {
			along[i] = int(av.Index(i).Int())
		}
		all := make([]int, xs.Dims())
		for i := range all {
			all[i] = i
		}
		switch {
		case slices.Equal(sortedCopy(along), all): // everything: the loss's sum
			l.floats = 2 * (gpu.SumParts + 1) // float64 partial sums and the total
			return run(func(be gpu.Backend) error {
				return gpu.Sum(be, scratch, y, ptr(0), xs.TotalSize(), false, scratch.Add(2))
			})
		case slices.Equal(along, []int{0}) && xs.Dims() == 2:
			return run(func(be gpu.Backend) error { return gpu.ColumnSums(be, y, ptr(0), xs[0], xs[1]) })
		}
		return fail("sum along %v of %v: not supported on the device", along, xs)
	}
	return fail("no device kernel for %s", opName(op))
}

func sortedCopy(s []int) []int {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
