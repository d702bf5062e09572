package compute

import (
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// TestProgramMatchesTapeMachine runs a training graph (dropout included) with our
// program and with Gorgonia's own TapeMachine, the independent reference, and
// requires the same loss and every parameter gradient, bit for bit (not the
// output: the TapeMachine computes ε̂ − ε in ε̂'s register). The
// program runs twice first, so that the second run starts from an arena full of
// other values' data: no op may depend on what its buffer held.
func TestProgramMatchesTapeMachine(t *testing.T) {
	net := tinyNet(t, 0.1)
	tr := NewTrainer(net, DefaultOptim(), 3)
	defer tr.Close()
	shape := diffusion.Shape{N: 3, C: 1, H: 16, W: 16}
	f, err := tr.graph(shape.N)
	if err != nil {
		t.Fatal(err)
	}
	copy(backing(f.eps), randn(shape.Size(), 2))
	tr.fillMasks(f)
	x, ts := randn(shape.Size(), 1), []int{0, 321, 999}
	for range 2 {
		if err := f.run(x, ts, net.Config.Ch); err != nil {
			t.Fatal(err)
		}
	}
	outs := append([]*G.Node{f.loss}, f.grads...)
	ours := make([][]float32, len(outs))
	for i, n := range outs {
		ours[i] = append([]float32(nil), valueFloat32s(t, f.prog.value(n))...)
	}

	vm := G.NewTapeMachine(f.g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	for i, n := range outs {
		ref := valueFloat32s(t, n.Value())
		if !slices.Equal(ours[i], ref) {
			t.Errorf("%v: program and TapeMachine differ (first values %v vs %v)", n, ours[i][:min(4, len(ref))], ref[:min(4, len(ref))])
		}
	}
}

func valueFloat32s(t *testing.T, v G.Value) []float32 {
	t.Helper()
	switch d := v.Data().(type) {
	case []float32:
		return d
	case float32:
		return []float32{d}
	}
	t.Fatalf("value of type %T", v.Data())
	return nil
}

// TestPlacementNeverOverlaps checks placeByLifetime on random lifetimes and sizes:
// two values alive at the same step never share a float of the arena, and the
// arena is no longer than the sum of the values' sizes.
func TestPlacementNeverOverlaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := G.NewGraph()
	for trial := range 20 {
		n := 60
		nodes := make([]*G.Node, n)
		planned := make([]bool, n)
		last := make([]int, n)
		sum := 0
		for i := range nodes {
			size := 1 + rng.IntN(100)
			if rng.IntN(4) == 0 {
				size *= 50
			}
			nodes[i] = G.NewTensor(g, tensor.Float32, 1, G.WithShape(size), G.WithName(""))
			planned[i] = rng.IntN(5) != 0
			last[i] = i + rng.IntN(15)
			if planned[i] {
				sum += (size + arenaAlign - 1) / arenaAlign * arenaAlign
			}
		}
		offsets, total := placeByLifetime(nodes, planned, last)
		if total > sum {
			t.Errorf("trial %d: arena %d floats, more than the %d of all values", trial, total, sum)
		}
		for i := range n {
			for j := i + 1; j < n; j++ {
				if !planned[i] || !planned[j] || last[i] < j { // j starts after i's last use
					continue
				}
				si, sj := nodes[i].Shape().TotalSize(), nodes[j].Shape().TotalSize()
				if offsets[i] < offsets[j]+sj && offsets[j] < offsets[i]+si {
					t.Fatalf("trial %d: values %d [%d,%d] and %d [%d,%d] overlap in time and share floats %d+%d and %d+%d",
						trial, i, i, last[i], j, j, last[j], offsets[i], si, offsets[j], sj)
				}
				if offsets[i]+si > total || offsets[j]+sj > total {
					t.Fatalf("trial %d: a value ends past the arena", trial)
				}
			}
		}
	}
}

// TestProgramArenaIsSmall shows why the program replaces the TapeMachine: for the
// mnist preset at batch 64, the TapeMachine keeps all the graph's values alive at
// once (1.9 GB), while the arena, planned from the values' lifetimes, is under
// a third of that.
func TestProgramArenaIsSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the mnist training graph")
	}
	cfg, _ := PresetConfig("mnist")
	net, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTrainer(net, DefaultOptim(), 0)
	defer tr.Close()
	f, err := tr.graph(64)
	if err != nil {
		t.Fatal(err)
	}
	var all int64
	for _, n := range f.g.AllNodes() {
		if n.Op() != nil {
			all += 4 * int64(n.Shape().TotalSize())
		}
	}
	t.Logf("values of all nodes %.0f MB, arena %.0f MB, inputs and parameters %.0f MB", float64(all)/1e6, float64(f.prog.arena)/1e6, float64(f.prog.args)/1e6)
	if all < 1.8e9 {
		t.Errorf("the graph's values total %d bytes; the test expects the mnist graph's 1.9 GB", all)
	}
	if f.prog.arena*3 > all {
		t.Errorf("arena of %d bytes is more than a third of the %d bytes of all values", f.prog.arena, all)
	}
}
