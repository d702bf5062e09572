package ops

import "gorgonia.org/gorgonia"

// Kind names an op of this package for a device backend, which computes it with
// kernels of its own.
type Kind int

// The ops of this package.
const (
	KindNone           Kind = iota // not an op of this package
	KindConv                       // Conv2d: x, w, b → y
	KindConvGradX                  // w, dy → dx
	KindConvGradW                  // x, dy → dw
	KindConvGradB                  // dy → db
	KindGroupNorm                  // x, gamma, beta → y (Swish: GroupNormSwish)
	KindGroupNormStats             // x, gamma, beta, dy → statistics [N, 2G+2C]
	KindGroupNormDx                // x, gamma, beta, dy, statistics → dx
	KindGroupNormParam             // statistics → dgamma (Gamma) or dbeta
	KindSwish                      // x → y
	KindSwishGrad                  // x, dy → dx
	KindUpsample2x                 // x → y
	KindSum2x2                     // dy → dx
	KindSoftmax                    // x → y, over the last axis
	KindSoftmaxGrad                // y, dy → dx
	KindBatchedMatMul              // a, b → c
	KindConcat                     // a, b → y, along channels
	KindChannels                   // x → channels [Lo, Hi) of x
	KindAdd                        // a, b → a + b
	KindAddChannels                // h, t → h + t over H, W
	KindSumPlanes                  // dy → [N, C] sums over H, W
)

// Desc is what a device backend needs to know of an op beyond its inputs' shapes.
type Desc struct {
	Kind Kind
	// Convolutions.
	K, Stride int
	Pads      Pads
	// Group normalisation.
	Groups int
	Eps    float64
	Swish  bool // GroupNormSwish
	Gamma  bool // KindGroupNormParam: the gradient of gamma, not beta
	// Softmax.
	Scale float64
	// Batched products.
	TA, TB bool
	// Channel slices.
	Lo, Hi int
}

// Describe returns the description of op, or Kind KindNone for an op that is not one
// of this package's.
func Describe(op gorgonia.Op) Desc {
	switch o := op.(type) {
	case conv2dOp:
		return Desc{Kind: KindConv, K: o.k, Stride: o.stride, Pads: o.Pads}
	case convGradOp:
		d := Desc{K: o.k, Stride: o.stride, Pads: o.Pads}
		switch o.wrt {
		case 'x':
			d.Kind = KindConvGradX
		case 'w':
			d.Kind = KindConvGradW
		default:
			d.Kind = KindConvGradB
		}
		return d
	case groupNormOp:
		return Desc{Kind: KindGroupNorm, Groups: o.p.groups, Eps: o.p.eps, Swish: o.p.swish}
	case gnStatsOp:
		return Desc{Kind: KindGroupNormStats, Groups: o.p.groups, Eps: o.p.eps, Swish: o.p.swish}
	case gnDxOp:
		return Desc{Kind: KindGroupNormDx, Groups: o.p.groups, Eps: o.p.eps, Swish: o.p.swish}
	case gnParamGradOp:
		return Desc{Kind: KindGroupNormParam, Groups: o.groups, Gamma: o.gamma}
	case swishOp:
		return Desc{Kind: KindSwish}
	case swishGradOp:
		return Desc{Kind: KindSwishGrad}
	case upsample2xOp:
		return Desc{Kind: KindUpsample2x}
	case sum2x2Op:
		return Desc{Kind: KindSum2x2}
	case softmaxOp:
		return Desc{Kind: KindSoftmax, Scale: o.scale}
	case softmaxGradOp:
		return Desc{Kind: KindSoftmaxGrad, Scale: o.scale}
	case bmmOp:
		return Desc{Kind: KindBatchedMatMul, TA: o.tA, TB: o.tB}
	case concatOp:
		return Desc{Kind: KindConcat}
	case channelsOp:
		return Desc{Kind: KindChannels, Lo: o.lo, Hi: o.hi}
	case addOp:
		return Desc{Kind: KindAdd}
	case addChannelsOp:
		return Desc{Kind: KindAddChannels}
	case sumPlanesOp:
		return Desc{Kind: KindSumPlanes}
	}
	return Desc{}
}
