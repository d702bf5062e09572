package compute

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// devPlan is where every value of a compiled graph lives on a device, and the steps
// that compute them: the device counterpart of program. Like program, it runs the
// nodes in creation order and places the values in one arena by their lifetimes
// (placeSpans), so a device holds no more of a training step at once than the CPU.
//
// It differs from program where the device does: a reshape is a view of its input's
// memory (it launches nothing); nodes computed from constants alone (Gorgonia's sizes,
// constant scalars and what it derives from them: the loss's 1/N and its gradient's
// seed) are evaluated once on the host, by the ops' own Do, and uploaded; scalars get a
// slot in the arena like any value; and a step may ask for scratch memory (a
// convolution's column matrices), placed in the arena for that step alone.
type devPlan struct {
	g       *G.ExprGraph
	nodes   []*G.Node
	index   map[*G.Node]int
	slots   []devSlot
	steps   []devStep
	arena   int       // floats
	consts  []float32 // constant values, packed
	inputs  []int     // nodes fed from the host or the trainer: x, temb, eps, dropout masks
	nparams int       // floats of the parameters
	spans   []span    // what was placed in the arena: each value and each step's scratch
	offs    []int     // the offset of each span
	owner   []int     // the node of each span, or −(k+1) for step k's scratch
}

// slotKind says where a value lives.
type slotKind int

const (
	slotArena slotKind = iota // planned in the arena
	slotParam                 // a parameter, in the flat weights
	slotInput                 // an input with a buffer of its own
	slotConst                 // a constant, in the constants buffer
	slotView                  // the memory of another node (a reshape)
)

type devSlot struct {
	kind slotKind
	off  int // floats into the arena, the weights or the constants
	size int // floats (at least 1)
	root int // slotView: the node whose memory it is
}

// devStep computes one node.
type devStep struct {
	node    int
	in      []int // input nodes, in the op's argument order
	scratch int   // floats of scratch
	scrOff  int   // offset of the scratch in the arena
}

// newDevPlan plans graph g, whose parameters are params (found by name; their flat
// offsets follow the order of params), whose other inputs are inputs, and whose keep
// nodes are read after a run. budget bounds each step's scratch, in bytes.
func newDevPlan(g *G.ExprGraph, params []*Param, inputs []*G.Node, keep []*G.Node, budget int64) (*devPlan, error) {
	nodes := g.AllNodes()
	slices.SortFunc(nodes, func(a, b *G.Node) int { return int(a.ID() - b.ID()) })
	p := &devPlan{g: g, nodes: nodes, index: make(map[*G.Node]int, len(nodes)), slots: make([]devSlot, len(nodes))}
	for i, n := range nodes {
		p.index[n] = i
	}
	paramOff := map[string]int{}
	for _, q := range params {
		paramOff[q.Name] = p.nparams
		p.nparams += len(q.Data)
	}
	isInput := map[*G.Node]bool{}
	for _, n := range inputs {
		isInput[n] = true
	}
	last := make([]int, len(nodes))
	vals := make([]G.Value, len(nodes)) // constants, evaluated
	constant := make([]bool, len(nodes))
	for i, n := range nodes {
		last[i] = i
		size := max(1, n.Shape().TotalSize())
		p.slots[i].size = size
		if n.Op() == nil {
			off, ok := paramOff[n.Name()]
			switch {
			case ok:
				p.slots[i] = devSlot{kind: slotParam, off: off, size: size}
			case isInput[n]:
				p.slots[i].kind = slotInput
				p.inputs = append(p.inputs, i)
			default:
				return nil, fmt.Errorf("input %v is neither a parameter nor a fed input", n)
			}
			continue
		}
		if n.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("node %v: dtype %v; the device computes float32 only", n, n.Dtype())
		}
		var in []int
		for it := g.From(n.ID()); it.Next(); {
			c, ok := p.index[it.Node().(*G.Node)]
			if !ok || c >= i {
				return nil, fmt.Errorf("node %v: input out of order", n)
			}
			in = append(in, c)
		}
		if v, ok, err := foldConstant(n, in, nodes, constant, vals); err != nil {
			return nil, fmt.Errorf("node %v: %w", n, err)
		} else if ok {
			constant[i], vals[i] = true, v
			continue
		}
		for _, c := range in {
			last[c] = max(last[c], i)
		}
		if opName(n.Op()) == "reshapeOp" {
			p.slots[i] = devSlot{kind: slotView, root: p.viewRoot(in[0]), size: size}
			continue
		}
		p.steps = append(p.steps, devStep{node: i, in: in})
	}
	// Constants: packed into one buffer, each aligned like the arena's values.
	for i, ok := range constant {
		if !ok {
			continue
		}
		data, err := float32Data(vals[i])
		if err != nil {
			return nil, fmt.Errorf("constant %v: %w", nodes[i], err)
		}
		p.slots[i] = devSlot{kind: slotConst, off: len(p.consts), size: len(data)}
		p.consts = append(p.consts, data...)
		for len(p.consts)%arenaAlign != 0 {
			p.consts = append(p.consts, 0)
		}
	}
	for _, n := range keep {
		i, ok := p.index[n]
		if !ok {
			return nil, fmt.Errorf("output %v is not in the graph", n)
		}
		last[i] = len(nodes)
	}
	// A view keeps its root's memory alive as long as itself; walking backwards settles
	// views of views.
	for i := len(nodes) - 1; i >= 0; i-- {
		if s := p.slots[i]; s.kind == slotView {
			last[s.root] = max(last[s.root], last[i])
		}
	}
	// Scratch, then placement.
	var spans []span
	var owner []int // node of each span, or −(step+1) for a step's scratch
	for k := range p.steps {
		st := &p.steps[k]
		scratch, err := p.lower(st, nil, budget)
		if err != nil {
			return nil, err
		}
		st.scratch = int(scratch.floats)
		if st.scratch > 0 {
			spans = append(spans, span{lo: st.node, hi: st.node, size: st.scratch})
			owner = append(owner, -(k + 1))
		}
		spans = append(spans, span{lo: st.node, hi: last[st.node], size: p.slots[st.node].size})
		owner = append(owner, st.node)
	}
	offs, total := placeSpans(spans)
	p.arena, p.spans, p.offs, p.owner = total, spans, offs, owner
	for j, o := range owner {
		if o < 0 {
			p.steps[-o-1].scrOff = offs[j]
		} else {
			p.slots[o].off = offs[j]
		}
	}
	return p, nil
}

// viewRoot follows views to the node that owns the memory.
func (p *devPlan) viewRoot(i int) int {
	for p.slots[i].kind == slotView {
		i = p.slots[i].root
	}
	return i
}

// opName is the name of a Gorgonia op's type without its package: "reshapeOp".
func opName(op G.Op) string {
	s := fmt.Sprintf("%T", op)
	return s[strings.LastIndex(s, ".")+1:]
}

// opField reads an unexported field of a Gorgonia op (it has no accessors).
func opField(op G.Op, name string) reflect.Value {
	v := reflect.ValueOf(op)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	return v.FieldByName(name)
}

// foldConstant evaluates node n on the host if its value follows from constants alone:
// a constant scalar, a size (which depends on a shape only), or an op all of whose
// inputs are constant. It runs the op's own Do.
func foldConstant(n *G.Node, in []int, nodes []*G.Node, constant []bool, vals []G.Value) (G.Value, bool, error) {
	op := n.Op()
	args := make([]G.Value, len(in))
	switch opName(op) {
	case "constantScalar":
	case "sizeOp": // only the shape of its input counts
		s := nodes[in[0]].Shape()
		args[0] = tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(s.Clone()...))
	default:
		if len(in) == 0 {
			return nil, false, nil
		}
		for j, c := range in {
			if !constant[c] {
				return nil, false, nil
			}
			args[j] = vals[c]
		}
	}
	v, err := op.Do(args...)
	if err != nil {
		return nil, false, fmt.Errorf("fold constant: %w", err)
	}
	return v, true, nil
}

// float32Data returns a constant's values.
func float32Data(v G.Value) ([]float32, error) {
	switch d := v.Data().(type) {
	case float32:
		return []float32{d}, nil
	case []float32:
		return slices.Clone(d), nil
	}
	return nil, fmt.Errorf("value of type %T", v.Data())
}

// bytes is the device memory of the plan: arena, constants and inputs (not the
// parameters, which the caller holds).
func (p *devPlan) bytes() int64 {
	n := int64(p.arena) + int64(len(p.consts))
	for _, i := range p.inputs {
		n += int64(p.slots[i].size)
	}
	return 4 * n
}
