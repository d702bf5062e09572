package compute

import (
	"fmt"
	"math"
)

// ParamShapes declares the parameters of cfg, in order, with their names and shapes but
// no values (Data is nil): nothing is allocated, so it is safe on configurations too big
// to build.
func ParamShapes(cfg Config) ([]*Param, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	return paramShapes(cfg), nil
}

// Size is the number of values of a parameter of this shape.
func (p *Param) Size() int64 {
	n := int64(1)
	for _, d := range p.Shape {
		n *= int64(d)
	}
	return n
}

// ParamCount is the number of scalar parameters of a model of cfg, counted from the
// shapes alone (see ParamShapes).
func ParamCount(cfg Config) (int64, error) {
	ps, err := ParamShapes(cfg)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range ps {
		n += p.Size()
	}
	return n, nil
}

// TrainBytes is the memory, in bytes, that training this model at batch n needs: what
// the training graph's program plans for that batch (its arena of activations and
// gradients, and the inputs and parameters bound to it), plus Adam's two moments and the
// EMA. It plans the graph without allocating it, so any batch can be asked about; it is
// what Trainer.Prepare(n) reports once it has built the graph.
func (u *UNet) TrainBytes(n int) (int64, error) {
	b, err := u.planBytes(n, true)
	return satAdd(b, 3*4*int64(u.NumParams())), err
}

// EvalBytes is the memory of one forward pass over n images (PredictEps runs at most
// MaxBatch at a time): its program's arena, inputs and the parameters.
func (u *UNet) EvalBytes(n int) (int64, error) {
	return u.planBytes(n, false)
}

func (u *UNet) planBytes(n int, train bool) (int64, error) {
	if n < 1 {
		return 0, fmt.Errorf("batch %d: must be at least 1", n)
	}
	f, err := u.buildGraph(n, train, nil, true)
	if err != nil {
		return 0, err
	}
	return satAdd(f.prog.arena, f.prog.args), nil
}

// MaxTrainBatch is the largest batch, up to n, whose training fits in budget bytes
// (0 if none does), found from the plans of a few batch sizes.
func (u *UNet) MaxTrainBatch(n int, budget int64) (int, error) {
	lo, hi := 0, n // lo fits (or is 0), hi+1 does not
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		b, err := u.TrainBytes(mid)
		if err != nil {
			return 0, err
		}
		if b <= budget {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
