package compute

import (
	"fmt"
	"slices"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// program runs a Gorgonia graph with buffers planned from the values' lifetimes.
//
// It replaces Gorgonia's TapeMachine, whose register allocator gives every node
// a register of its own for the whole run: a training step then holds every
// activation and every gradient at once, where far less is ever needed at the
// same moment (TestProgramArenaIsSmall).
// program executes the nodes in the order they were created, which is a
// topological order and, for the gradient nodes gorgonia.Grad adds, the usual
// reverse-mode order. Before the first run it plans where each result lives:
// a value whose last reader has run hands its memory to later values. All the
// planned values share one float32 arena, placed by greedy-by-size offset
// assignment (the largest values first, each at the lowest offset that no
// value alive at the same time uses). Ops that can write into a given buffer
// (gorgonia.UsePreallocDoer, as all of ours) write into their planned slice of
// the arena on every run, so a run allocates nothing large. Ops that make their
// own value (Gorgonia's reshape returns a view of its input, transpose and the
// scalar reductions a new value) keep their inputs alive as long as their own
// result, since the result may share their memory.
type program struct {
	steps []instr
	vals  []G.Value // every node's value, by index; inputs are bound when the program is made
	index map[*G.Node]int
	arena int64 // bytes of the planned arena
	args  int64 // bytes of the inputs and parameters bound to the graph
}

// instr computes one node.
type instr struct {
	node *G.Node
	op   G.Op
	pd   G.UsePreallocDoer // nil when the op makes its own value
	dst  G.Value           // the planned result, for pd
	in   []int             // the inputs' indices in vals
	args []G.Value         // the inputs of the current run
	out  int
}

// arenaAlign is the alignment of planned values, in float32s (one cache line).
const arenaAlign = 16

// compile plans the execution of g. The values of keep (the outputs a caller
// reads after a run) stay valid until the next run; any other value may be
// overwritten once its last reader has run.
func compile(g *G.ExprGraph, keep ...*G.Node) (*program, error) {
	return compileWith(g, false, keep...)
}

// compileWith is compile; with planOnly, inputs without a value count by their shape
// and the arena is planned but not allocated: the program only reports its size.
func compileWith(g *G.ExprGraph, planOnly bool, keep ...*G.Node) (*program, error) {
	nodes := g.AllNodes()
	slices.SortFunc(nodes, func(a, b *G.Node) int { return int(a.ID() - b.ID()) })
	p := &program{vals: make([]G.Value, len(nodes)), index: make(map[*G.Node]int, len(nodes))}
	for i, n := range nodes {
		p.index[n] = i
	}
	// last[i] is the step after which node i's value is no longer read.
	last := make([]int, len(nodes))
	for i, n := range nodes {
		last[i] = i
		if n.Op() == nil {
			switch {
			case n.Value() != nil:
				p.vals[i] = n.Value()
				p.args += int64(n.Value().MemSize())
			case planOnly:
				p.args += 4 * int64(n.Shape().TotalSize())
			default:
				return nil, fmt.Errorf("input %v has no value", n)
			}
			continue
		}
		in := []int{}
		for it := g.From(n.ID()); it.Next(); {
			c, ok := p.index[it.Node().(*G.Node)]
			if !ok || c >= i {
				return nil, fmt.Errorf("node %v: input out of order", n)
			}
			in = append(in, c)
			last[c] = max(last[c], i)
		}
		pd, _ := n.Op().(G.UsePreallocDoer)
		p.steps = append(p.steps, instr{node: n, op: n.Op(), pd: pd, in: in, args: make([]G.Value, len(in)), out: i})
	}
	for _, n := range keep {
		i, ok := p.index[n]
		if !ok {
			return nil, fmt.Errorf("output %v is not in the graph", n)
		}
		last[i] = len(nodes)
	}
	// A value an op made itself may share its inputs' memory (a reshape is a view),
	// so the inputs live as long as it does. Walking backwards settles chains.
	planned := make([]bool, len(nodes))
	for k := len(p.steps) - 1; k >= 0; k-- {
		s := &p.steps[k]
		if s.pd != nil && plannable(s.node) {
			planned[s.out] = true
			continue
		}
		s.pd = nil
		for _, c := range s.in {
			last[c] = max(last[c], last[s.out])
		}
	}
	offsets, size := placeByLifetime(nodes, planned, last)
	p.arena = 4 * int64(size)
	if planOnly {
		return p, nil
	}
	arena := make([]float32, size)
	for k := range p.steps {
		s := &p.steps[k]
		if !planned[s.out] {
			continue
		}
		n := s.node
		off := offsets[s.out]
		s.dst = tensor.New(tensor.WithShape(n.Shape().Clone()...), tensor.WithBacking(arena[off:off+n.Shape().TotalSize():off+n.Shape().TotalSize()]))
	}
	return p, nil
}

// plannable reports whether n's value can live in the float32 arena.
func plannable(n *G.Node) bool {
	return n.Dtype() == tensor.Float32 && !n.IsScalar() && n.Shape().TotalSize() > 0
}

// placeByLifetime assigns every planned node an offset in one arena so that no
// two values alive at the same time overlap (placeSpans). Node i is alive from step i
// to step last[i]. It returns the offsets (in float32s) and the arena's length.
func placeByLifetime(nodes []*G.Node, planned []bool, last []int) ([]int, int) {
	var spans []span
	var which []int
	for i, ok := range planned {
		if ok {
			spans = append(spans, span{lo: i, hi: last[i], size: nodes[i].Shape().TotalSize()})
			which = append(which, i)
		}
	}
	offs, total := placeSpans(spans)
	offsets := make([]int, len(nodes))
	for k, i := range which {
		offsets[i] = offs[k]
	}
	return offsets, total
}

// span is a value alive from step lo to step hi (inclusive) of size floats.
type span struct{ lo, hi, size int }

// placeSpans assigns every span an offset in one arena so that no two spans alive at
// the same time overlap: greedy by size, largest first, each at the lowest offset that
// fits between the spans already placed; sizes are rounded up to arenaAlign. It
// returns the offsets (in float32s, in the order of spans) and the arena's length.
func placeSpans(spans []span) ([]int, int) {
	type item struct{ i, lo, hi, size, off int }
	items := make([]item, len(spans))
	for i, s := range spans {
		items[i] = item{i: i, lo: s.lo, hi: s.hi, size: (s.size + arenaAlign - 1) / arenaAlign * arenaAlign}
	}
	slices.SortStableFunc(items, func(a, b item) int { return b.size - a.size })
	offsets := make([]int, len(spans))
	total := 0
	var placed []item // sorted by offset
	for _, it := range items {
		off := 0
		for _, q := range placed {
			if q.hi < it.lo || it.hi < q.lo {
				continue // never alive together
			}
			if q.off-off >= it.size {
				break // fits in the gap before q
			}
			off = max(off, q.off+q.size)
		}
		it.off = off
		offsets[it.i] = off
		total = max(total, off+it.size)
		at, _ := slices.BinarySearchFunc(placed, off, func(q item, off int) int { return q.off - off })
		placed = slices.Insert(placed, at, it)
	}
	return offsets, total
}

// run executes every step once.
func (p *program) run() error {
	for k := range p.steps {
		s := &p.steps[k]
		for j, c := range s.in {
			s.args[j] = p.vals[c]
		}
		var v G.Value
		var err error
		if s.pd != nil {
			v, err = s.pd.UsePreallocDo(s.dst, s.args...)
		} else {
			v, err = s.op.Do(s.args...)
		}
		if err != nil {
			return fmt.Errorf("%v: %w", s.op, err)
		}
		p.vals[s.out] = v
	}
	return nil
}

// value returns n's value after a run.
func (p *program) value(n *G.Node) G.Value { return p.vals[p.index[n]] }

// float32s returns the data of n's value after a run.
func (p *program) float32s(n *G.Node) []float32 { return p.value(n).Data().([]float32) }
