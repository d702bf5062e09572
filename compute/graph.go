package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
)

// Param is one named weight tensor. Data is shared by every graph built for the model.
type Param struct {
	Name  string
	Shape []int
	Data  []float32
	init  initFunc
}

// initFunc fills a new parameter.
type initFunc func(data []float32, rng *rand.Rand)

// varianceScaling is the official default_init: variance scaling, fan_avg, uniform.
// A scale of 0 means 1e-10, as in the official code's zero-initialised layers.
func varianceScaling(fanIn, fanOut int, scale float64) initFunc {
	if scale == 0 {
		scale = 1e-10
	}
	limit := math.Sqrt(3 * scale / (float64(fanIn+fanOut) / 2))
	return func(data []float32, rng *rand.Rand) {
		for i := range data {
			data[i] = float32((2*rng.Float64() - 1) * limit)
		}
	}
}

// constInit fills with a constant (GroupNorm γ = 1, biases and β = 0).
func constInit(v float32) initFunc {
	return func(data []float32, _ *rand.Rand) {
		for i := range data {
			data[i] = v
		}
	}
}

// builder walks the architecture. With g == nil it only declares parameters (spec mode).
type builder struct {
	cfg    Config
	g      *G.ExprGraph
	train  bool
	stop   *atomic.Bool      // convolutions give up once it is set (training graphs only)
	params *[]*Param         // the model's parameters, in declaration order
	byName map[string]*Param // the same, by name
	nodes  map[string]*G.Node
	masks  []*G.Node
	flops  float64 // multiply-adds ×2 of the convolutions, dense layers and attention built so far
	noData bool    // spec mode only: declare names and shapes without allocating the values
}

func (b *builder) spec() bool { return b.g == nil }

// param declares (in spec mode) or binds (in a graph) the named parameter.
func (b *builder) param(name string, shape []int, init initFunc) *G.Node {
	p, ok := b.byName[name]
	if !ok {
		if !b.spec() {
			panic(fmt.Sprintf("parameter %s used in a graph but never declared", name))
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		p = &Param{Name: name, Shape: shape, init: init}
		if !b.noData {
			p.Data = make([]float32, n)
		}
		*b.params = append(*b.params, p)
		b.byName[name] = p
		return nil
	}
	if b.spec() {
		panic(fmt.Sprintf("parameter %s declared twice", name))
	}
	if n, ok := b.nodes[name]; ok {
		return n
	}
	t := tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(p.Data))
	n := G.NewTensor(b.g, tensor.Float32, len(p.Shape), G.WithShape(p.Shape...), G.WithName(name), G.WithValue(t))
	b.nodes[name] = n
	return n
}

// input creates a float32 input node whose backing slice the caller fills before each run.
func (b *builder) input(name string, shape ...int) *G.Node {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(make([]float32, n)))
	return G.NewTensor(b.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
}

func (b *builder) reshape(x *G.Node, shape ...int) *G.Node {
	return b.must(G.Reshape(x, tensor.Shape(shape)))
}

// must turns a graph-building error into a panic that build recovers.
func (b *builder) must(n *G.Node, err error) *G.Node {
	if err != nil {
		panic(buildError{err})
	}
	return n
}

type buildError struct{ err error }

// backing returns the float32 slice behind a node's value.
func backing(n *G.Node) []float32 {
	return n.Value().Data().([]float32)
}

// timestepEmbedding writes the sinusoidal embedding of each t into out [N, dim]:
// half = dim/2, f_i = exp(−ln(10000)·i/(half−1)), emb = [sin(t f), cos(t f)].
func timestepEmbedding(t []int, dim int, out []float32) {
	half := dim / 2
	scale := math.Log(10000) / float64(half-1)
	for n, tn := range t {
		row := out[n*dim : (n+1)*dim]
		for i := 0; i < half; i++ {
			a := float64(tn) * math.Exp(-scale*float64(i))
			row[i] = float32(math.Sin(a))
			row[half+i] = float32(math.Cos(a))
		}
		if dim%2 == 1 {
			row[dim-1] = 0
		}
	}
}

// Gorgonia's own matrix products (dense layers, attention) use the same BLAS as ops.Conv2d.
// gorgonia.Use is the library's only way to choose it: a process-wide setting.
func init() { G.Use(ops.BLAS) }
