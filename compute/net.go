package compute

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	G "gorgonia.org/gorgonia"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// DefaultMaxBatch is the largest batch PredictEps runs through the network at once.
const DefaultMaxBatch = 64

// UNet is the DDPM noise-prediction network. It is not safe for concurrent use.
type UNet struct {
	Config   Config
	Params   []*Param // in the official declaration order
	MaxBatch int      // largest batch per forward pass; larger inputs are split

	byName map[string]*Param
	eval   map[int]*forward // forward graphs without dropout, by batch size
	dev    *devNet          // forward passes on a device (SetDevice); nil on the CPU
}

// forward is a compiled graph for one batch size.
type forward struct {
	g     *G.ExprGraph
	prog  *program
	x     *G.Node // [N,C,H,W] input
	temb  *G.Node // [N,ch] sinusoidal embedding of t
	out   *G.Node // ε̂ [N,C,H,W]
	masks []*G.Node
	flops float64 // of one forward pass
	// Training graphs only.
	eps   *G.Node   // target noise
	loss  *G.Node   // mean squared error
	grads []*G.Node // one per parameter, in Params order
}

// NewUNet declares the parameters of cfg and initialises them as the official code does,
// from a generator seeded with seed.
func NewUNet(cfg Config, seed uint64) (*UNet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	u := &UNet{Config: cfg, MaxBatch: DefaultMaxBatch, byName: map[string]*Param{}, eval: map[int]*forward{}}
	b := &builder{cfg: cfg, params: &u.Params, byName: u.byName}
	b.unet(nil, nil)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, p := range u.Params {
		p.init(p.Data, rng)
	}
	return u, nil
}

// NumParams is the number of scalar parameters.
func (u *UNet) NumParams() int {
	n := 0
	for _, p := range u.Params {
		n += len(p.Data)
	}
	return n
}

// Param returns the named parameter, or nil.
func (u *UNet) Param(name string) *Param { return u.byName[name] }

// WithWeights returns a UNet of the same architecture whose parameters read data[i]
// (for example the EMA weights). It has graphs of its own.
func (u *UNet) WithWeights(data [][]float32) *UNet {
	v := &UNet{Config: u.Config, MaxBatch: u.MaxBatch, byName: map[string]*Param{}, eval: map[int]*forward{}}
	for i, p := range u.Params {
		q := &Param{Name: p.Name, Shape: p.Shape, Data: data[i], init: p.init}
		v.Params = append(v.Params, q)
		v.byName[q.Name] = q
	}
	return v
}

// Close releases the compiled graphs (and the network's device memory).
func (u *UNet) Close() {
	clear(u.eval)
	if u.dev != nil {
		u.dev.close()
		u.dev = nil
	}
}

// build compiles the network for batch size n, with dropout and gradients when train is set.
func (u *UNet) build(n int, train bool, stop *atomic.Bool) (f *forward, err error) {
	return u.buildGraph(n, train, stop, false)
}

// buildGraph is build; with planOnly the inputs get no values and the program only
// plans its arena (prog.arena and prog.args are set, nothing can run), so that the
// memory of any batch can be known without allocating it.
func (u *UNet) buildGraph(n int, train bool, stop *atomic.Bool, planOnly bool) (f *forward, err error) {
	defer func() {
		if r := recover(); r != nil {
			be, ok := r.(buildError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("build graph: %w", be.err)
		}
	}()
	c := u.Config
	g := G.NewGraph()
	b := &builder{cfg: c, g: g, train: train, stop: stop, params: &u.Params, byName: u.byName, nodes: map[string]*G.Node{}, planOnly: planOnly}
	f = &forward{g: g}
	f.x = b.input("x", n, c.InChannels, c.Resolution, c.Resolution)
	f.temb = b.input("temb", n, c.Ch)
	f.out = b.unet(f.x, f.temb)
	f.masks, f.flops = b.masks, b.flops
	if !train {
		if f.prog, err = compileWith(g, planOnly, f.out); err != nil {
			return nil, fmt.Errorf("compile graph: %w", err)
		}
		return f, nil
	}
	f.eps = b.input("eps", n, c.OutCh, c.Resolution, c.Resolution)
	diff := b.must(G.Sub(f.out, f.eps))
	f.loss = b.must(G.Mean(b.must(G.Square(diff))))
	wrt := make([]*G.Node, len(u.Params))
	for i, p := range u.Params {
		wrt[i] = b.nodes[p.Name]
	}
	f.grads, err = G.Grad(f.loss, wrt...)
	if err != nil {
		return nil, fmt.Errorf("gradients: %w", err)
	}
	if f.prog, err = compileWith(g, planOnly, append([]*G.Node{f.out, f.loss}, f.grads...)...); err != nil {
		return nil, fmt.Errorf("compile graph: %w", err)
	}
	return f, nil
}

// run feeds x and t to f and executes it.
func (f *forward) run(x []float32, t []int, ch int) error {
	copy(backing(f.x), x)
	timestepEmbedding(t, ch, backing(f.temb))
	return f.prog.run()
}

// checkShape reports whether a batch fits the model.
func (u *UNet) checkShape(data []float32, t []int, s diffusion.Shape) error {
	c := u.Config
	if s.C != c.InChannels || s.H != c.Resolution || s.W != c.Resolution {
		return fmt.Errorf("input %d×%d×%d does not fit the model's %d×%d×%d", s.C, s.H, s.W, c.InChannels, c.Resolution, c.Resolution)
	}
	if len(data) != s.Size() || len(t) != s.N {
		return fmt.Errorf("batch of %d values and %d timesteps does not match shape %+v", len(data), len(t), s)
	}
	return nil
}

// PredictEps returns ε̂(x_t, t) for a batch, in chunks of at most MaxBatch.
func (u *UNet) PredictEps(ctx context.Context, xt []float32, t []int, shape diffusion.Shape) ([]float32, error) {
	if err := u.checkShape(xt, t, shape); err != nil {
		return nil, err
	}
	per := shape.C * shape.H * shape.W
	out := make([]float32, len(xt))
	if u.dev != nil {
		if err := u.predictDevice(ctx, xt, t, out, per); err != nil {
			return nil, err
		}
		return out, nil
	}
	for lo := 0; lo < shape.N; lo += u.MaxBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+u.MaxBatch, shape.N)
		f, ok := u.eval[hi-lo]
		if !ok {
			var err error
			if f, err = u.build(hi-lo, false, nil); err != nil {
				return nil, err
			}
			u.eval[hi-lo] = f
		}
		if err := f.run(xt[lo*per:hi*per], t[lo:hi], u.Config.Ch); err != nil {
			return nil, fmt.Errorf("forward pass: %w", err)
		}
		copy(out[lo*per:hi*per], f.prog.float32s(f.out))
	}
	return out, nil
}

// ForwardFLOPs is the floating-point operations (2 per multiply-add) of the
// convolutions, dense layers and attention products of one forward pass over n
// images; normalisations and elementwise ops are not counted. A training step
// costs about three times as much.
func (u *UNet) ForwardFLOPs(n int) (float64, error) {
	f, err := u.build(n, false, nil)
	if err != nil {
		return 0, err
	}
	return f.flops, nil
}
