package compute

import (
	"fmt"
	"sync/atomic"

	G "gorgonia.org/gorgonia"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// devGraph is a compiled graph bound to device memory: its arena, constants and input
// buffers, the flat weights it reads, and one queued launch function per step.
type devGraph struct {
	f      *forward // the U-Net's nodes (built with planOnly: no host arena); nil for other graphs
	plan   *devPlan
	be     gpu.Backend
	arena  gpu.Ptr
	consts gpu.Ptr
	inputs map[int]gpu.Ptr // buffers of the fed inputs, by node
	steps  []func(be gpu.Backend) error
	names  []string // each step's op, for errors
}

// newDevGraph plans the U-Net graph f on device d with the parameters params (laid
// out flat at weights), allocates its memory and binds its launches.
func newDevGraph(d *Device, f *forward, params []*Param, weights gpu.Ptr) (*devGraph, error) {
	inputs := append([]*G.Node{f.x, f.temb}, f.masks...)
	keep := []*G.Node{f.out}
	if f.eps != nil {
		inputs = append(inputs, f.eps)
		keep = append(append(keep, f.loss), f.grads...)
	}
	g, err := bindGraph(d, f.g, params, weights, inputs, keep)
	if err != nil {
		return nil, err
	}
	g.f = f
	return g, nil
}

// bindGraph plans graph gr on device d (see newDevPlan), allocates its memory and binds
// its launches.
func bindGraph(d *Device, gr *G.ExprGraph, params []*Param, weights gpu.Ptr, inputs, keep []*G.Node) (g *devGraph, err error) {
	plan, err := newDevPlan(gr, params, inputs, keep, d.scratchBudget)
	if err != nil {
		return nil, err
	}
	be := d.be
	g = &devGraph{plan: plan, be: be, inputs: map[int]gpu.Ptr{}}
	defer func() {
		if err != nil {
			g.free()
		}
	}()
	if g.arena, err = be.Alloc(4 * int64(max(1, plan.arena))); err != nil {
		return nil, err
	}
	if g.consts, err = be.Alloc(4 * int64(max(1, len(plan.consts)))); err != nil {
		return nil, err
	}
	if err := gpu.Upload(be, g.consts, plan.consts); err != nil {
		return nil, err
	}
	for _, i := range plan.inputs {
		p, err := be.Alloc(4 * int64(plan.slots[i].size))
		if err != nil {
			return nil, err
		}
		g.inputs[i] = p
	}
	ptr := func(i int) gpu.Ptr {
		i = plan.viewRoot(i)
		s := plan.slots[i]
		switch s.kind {
		case slotParam:
			return weights.Add(s.off)
		case slotInput:
			return g.inputs[i]
		case slotConst:
			return g.consts.Add(s.off)
		default:
			return g.arena.Add(s.off)
		}
	}
	for k := range plan.steps {
		st := &plan.steps[k]
		l, err := plan.lower(st, &binding{ptr: ptr, scratch: g.arena.Add(st.scrOff)}, d.scratchBudget)
		if err != nil {
			return nil, err
		}
		g.steps = append(g.steps, l.run)
		g.names = append(g.names, plan.nodes[st.node].Op().String())
	}
	return g, nil
}

// ptr returns the device address of node n's value.
func (g *devGraph) ptr(n *G.Node) gpu.Ptr {
	i := g.plan.viewRoot(g.plan.index[n])
	s := g.plan.slots[i]
	switch s.kind {
	case slotInput:
		return g.inputs[i]
	case slotConst:
		return g.consts.Add(s.off)
	default:
		return g.arena.Add(s.off)
	}
}

// input returns the buffer of a fed input node.
func (g *devGraph) input(n *G.Node) gpu.Ptr { return g.inputs[g.plan.index[n]] }

// feed uploads x and the timestep embedding of t.
func (g *devGraph) feed(x []float32, t []int, ch int) error {
	if err := gpu.Upload(g.be, g.input(g.f.x), x); err != nil {
		return err
	}
	temb := make([]float32, len(t)*ch)
	timestepEmbedding(t, ch, temb)
	return gpu.Upload(g.be, g.input(g.f.temb), temb)
}

// run queues every step; it stops early, returning ErrInterrupted, once stop is set.
func (g *devGraph) run(stop *atomic.Bool) error {
	for k, step := range g.steps {
		if stop != nil && stop.Load() {
			return ErrInterrupted
		}
		if err := step(g.be); err != nil {
			return fmt.Errorf("%s: %w", g.names[k], err)
		}
	}
	return nil
}

// bytes is the device memory the graph holds.
func (g *devGraph) bytes() int64 { return g.plan.bytes() }

// free releases the graph's memory.
func (g *devGraph) free() {
	for _, p := range []gpu.Ptr{g.arena, g.consts} {
		if p != 0 {
			g.be.Free(p)
		}
	}
	for _, p := range g.inputs {
		g.be.Free(p)
	}
	g.arena, g.consts, g.inputs = 0, 0, nil
}

// devParams is the layout of the parameters as one flat array on a device.
type devParams struct {
	offs []int // offset of each parameter, in floats
	n    int   // floats in all
}

func newDevParams(params []*Param) devParams {
	var l devParams
	for _, p := range params {
		l.offs = append(l.offs, l.n)
		l.n += len(p.Data)
	}
	return l
}

// upload copies one host slice per parameter into the flat array at dst.
func (l devParams) upload(be gpu.Backend, dst gpu.Ptr, data [][]float32) error {
	for i, d := range data {
		if err := gpu.Upload(be, dst.Add(l.offs[i]), d); err != nil {
			return err
		}
	}
	return nil
}

// download copies the flat array at src into one host slice per parameter.
func (l devParams) download(be gpu.Backend, data [][]float32, src gpu.Ptr) error {
	for i, d := range data {
		if err := gpu.Download(be, d, src.Add(l.offs[i])); err != nil {
			return err
		}
	}
	return nil
}

// devNet runs a UNet's forward passes on a device, reading flat weights there.
type devNet struct {
	dev     *Device
	layout  devParams
	weights gpu.Ptr
	owned   bool // weights were allocated by this devNet (else they are a trainer's)
	eval    map[int]*devGraph
}

// newDevNet uploads u's weights to d.
func newDevNet(d *Device, u *UNet) (*devNet, error) {
	l := newDevParams(u.Params)
	w, err := d.be.Alloc(4 * int64(l.n))
	if err != nil {
		return nil, fmt.Errorf("device %s: weights: %w", d.kind, err)
	}
	if err := l.upload(d.be, w, u.data()); err != nil {
		d.be.Free(w)
		return nil, err
	}
	return &devNet{dev: d, layout: l, weights: w, owned: true, eval: map[int]*devGraph{}}, nil
}

// graph returns the forward graph for batches of n, building it the first time.
func (dn *devNet) graph(u *UNet, n int) (*devGraph, error) {
	if g, ok := dn.eval[n]; ok {
		return g, nil
	}
	f, err := u.buildGraph(n, false, nil, true)
	if err != nil {
		return nil, err
	}
	g, err := newDevGraph(dn.dev, f, u.Params, dn.weights)
	if err != nil {
		return nil, fmt.Errorf("device %s: forward pass of %d: %w", dn.dev.kind, n, err)
	}
	dn.eval[n] = g
	return g, nil
}

// predict is UNet.PredictEps on the device, for one chunk of at most MaxBatch images.
func (dn *devNet) predict(u *UNet, xt []float32, t []int, out []float32) error {
	g, err := dn.graph(u, len(t))
	if err != nil {
		return err
	}
	if err := g.feed(xt, t, u.Config.Ch); err != nil {
		return err
	}
	if err := g.run(nil); err != nil {
		return err
	}
	return gpu.Download(g.be, out, g.ptr(g.f.out))
}

// close releases the graphs and, if owned, the weights.
func (dn *devNet) close() {
	for _, g := range dn.eval {
		g.free()
	}
	clear(dn.eval)
	if dn.owned && dn.weights != 0 {
		dn.dev.be.Free(dn.weights)
	}
	dn.weights = 0
}

// devTrainer is a Trainer's state on a device: flat weights W, Adam's moments M and V,
// the EMA E and the gathered gradients G, one layout for all; and the training graphs.
type devTrainer struct {
	dev           *Device
	layout        devParams
	w, m, v, e, g gpu.Ptr
	small         gpu.Ptr // float64 partial sums and total of the norm, then the uint64 check word
	train         map[int]*devTrainGraph
}

// devTrainGraph is a training graph with the table that gathers its gradients into G.
type devTrainGraph struct {
	*devGraph
	table  gpu.Ptr // srcs, offs and lens of the gather, nparams each
	maxLen int
}

// smallFloats is the size of devTrainer.small in floats: SumParts+1 float64s and a uint64.
const smallFloats = 2 * (gpu.SumParts + 2)

// newDevTrainer moves t's state to d.
func newDevTrainer(d *Device, t *Trainer) (dt *devTrainer, err error) {
	l := newDevParams(t.Net.Params)
	dt = &devTrainer{dev: d, layout: l, train: map[int]*devTrainGraph{}}
	defer func() {
		if err != nil {
			dt.close()
		}
	}()
	for _, p := range []*gpu.Ptr{&dt.w, &dt.m, &dt.v, &dt.e, &dt.g} {
		if *p, err = d.be.Alloc(4 * int64(max(1, l.n))); err != nil {
			return nil, fmt.Errorf("device %s: optimizer state: %w", d.kind, err)
		}
	}
	if dt.small, err = d.be.Alloc(4 * smallFloats); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		dst  gpu.Ptr
		data [][]float32
	}{{dt.w, t.Net.data()}, {dt.m, t.M}, {dt.v, t.V}, {dt.e, t.EMA}} {
		if err := l.upload(d.be, c.dst, c.data); err != nil {
			return nil, err
		}
	}
	return dt, nil
}

// graph returns the training graph for batches of n, building it the first time.
func (dt *devTrainer) graph(t *Trainer, n int) (*devTrainGraph, error) {
	if g, ok := dt.train[n]; ok {
		return g, nil
	}
	f, err := t.Net.buildGraph(n, true, &t.stop, true)
	if err != nil {
		return nil, err
	}
	g, err := newDevGraph(dt.dev, f, t.Net.Params, dt.w)
	if err != nil {
		return nil, fmt.Errorf("device %s: training step of %d: %w", dt.dev.kind, n, err)
	}
	tg := &devTrainGraph{devGraph: g}
	np := len(f.grads)
	words := make([]uint64, 3*np)
	for i, gn := range f.grads {
		words[i] = uint64(g.ptr(gn))
		words[np+i] = uint64(dt.layout.offs[i])
		words[2*np+i] = uint64(len(t.Net.Params[i].Data))
		tg.maxLen = max(tg.maxLen, len(t.Net.Params[i].Data))
	}
	if tg.table, err = dt.dev.be.Alloc(8 * int64(len(words))); err != nil {
		g.free()
		return nil, err
	}
	if err := gpu.UploadWords(dt.dev.be, tg.table, words); err != nil {
		g.free()
		return nil, err
	}
	dt.train[n] = tg
	return tg, nil
}

// sync copies the weights, moments and EMA back to the trainer's host slices.
func (dt *devTrainer) sync(t *Trainer) error {
	be := dt.dev.be
	for _, c := range []struct {
		data [][]float32
		src  gpu.Ptr
	}{{t.Net.data(), dt.w}, {t.M, dt.m}, {t.V, dt.v}, {t.EMA, dt.e}} {
		if err := dt.layout.download(be, c.data, c.src); err != nil {
			return fmt.Errorf("device %s: copy the training state back: %w", dt.dev.kind, err)
		}
	}
	return nil
}

// close releases the device memory.
func (dt *devTrainer) close() {
	for _, g := range dt.train {
		g.free()
		if g.table != 0 {
			dt.dev.be.Free(g.table)
		}
	}
	clear(dt.train)
	for _, p := range []*gpu.Ptr{&dt.w, &dt.m, &dt.v, &dt.e, &dt.g, &dt.small} {
		if *p != 0 {
			dt.dev.be.Free(*p)
			*p = 0
		}
	}
}
