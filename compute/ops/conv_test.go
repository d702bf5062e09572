package ops

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// naiveConvPads is the cross-correlation of x [N,C,H,W] with w [O,C,K,K] plus the bias
// b [O], with zero padding top, bottom, left, right and the given stride.
func naiveConvPads(x, w, b *tensor.Dense, stride, top, bottom, left, right int) (tensor.Shape, []float64) {
	xs, ws := x.Shape(), w.Shape()
	n, c, h, wd := xs[0], xs[1], xs[2], xs[3]
	o, k := ws[0], ws[2]
	oh, ow := (h+top+bottom-k)/stride+1, (wd+left+right-k)/stride+1
	xd, wdata, bd := x.Float64s(), w.Float64s(), b.Float64s()
	y := make([]float64, n*o*oh*ow)
	for i := range n {
		for oc := range o {
			for r := range oh {
				for q := range ow {
					s := bd[oc]
					for ic := range c {
						for di := range k {
							for dj := range k {
								si, sj := r*stride-top+di, q*stride-left+dj
								if si >= 0 && si < h && sj >= 0 && sj < wd {
									s += xd[((i*c+ic)*h+si)*wd+sj] * wdata[((oc*c+ic)*k+di)*k+dj]
								}
							}
						}
					}
					y[((i*o+oc)*oh+r)*ow+q] = s
				}
			}
		}
	}
	return tensor.Shape{n, o, oh, ow}, y
}

func TestConv2d(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 20))
	for _, tc := range []struct {
		name                     string
		x                        []int
		o, k, stride             int
		top, bottom, left, right int
	}{
		{"3x3_pad1", []int{2, 3, 7, 6}, 5, 3, 1, 1, 1, 1, 1},
		{"downsample_odd", []int{2, 3, 7, 7}, 4, 3, 2, 0, 1, 0, 1},
		{"downsample_even", []int{3, 4, 8, 8}, 4, 3, 2, 0, 1, 0, 1},
		{"1x1", []int{2, 6, 5, 4}, 3, 1, 1, 0, 0, 0, 0},
		{"1x1_chunks", []int{5, 4, 12, 12}, 3, 1, 1, 0, 0, 0, 0},
		{"1x1_padded", []int{2, 3, 4, 4}, 2, 1, 1, 1, 0, 0, 1}, // not pointwise: through the column matrix
		{"asymmetric", []int{1, 2, 5, 6}, 3, 3, 1, 2, 0, 1, 3},
		{"one_image_chunks", []int{3, 2, 24, 24}, 3, 3, 1, 1, 1, 1, 1}, // 576 pixels: a chunk per image
		{"uneven_chunks", []int{5, 2, 12, 12}, 3, 3, 1, 1, 1, 1, 1},    // 144 pixels: chunks of 4 and 1
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := randTensor(rng, 0, 1, tc.x...)
			w := randTensor(rng, 0, 0.5, tc.o, tc.x[1], tc.k, tc.k)
			b := randTensor(rng, 0, 1, tc.o)
			f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
				return Conv2d(in[0], in[1], in[2], tc.stride, Pads{tc.top, tc.bottom, tc.left, tc.right})
			}
			shape, want := naiveConvPads(x, w, b, tc.stride, tc.top, tc.bottom, tc.left, tc.right)
			checkForward(t, f, shape, want, x, w, b)
			requireGrad(t, f, 100, 1e-6, x, w, b)
		})
	}
}

// TestConv2dChunks checks a batch of large images, one chunk per image,
// against the naive reference.
func TestConv2dChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	x := randTensor(rng, 0, 1, 6, 8, 64, 64)
	w := randTensor(rng, 0, 0.2, 2, 8, 3, 3)
	b := randTensor(rng, 0, 1, 2)
	p, err := newPlan(geom{k: 3, stride: 1, Pads: Pads{1, 1, 1, 1}}, x.Shape(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if p.chunk >= p.n {
		t.Fatalf("chunk %d of %d images: the test does not exercise chunking", p.chunk, p.n)
	}
	f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
		return Conv2d(in[0], in[1], in[2], 1, Pads{1, 1, 1, 1})
	}
	shape, want := naiveConvPads(x, w, b, 1, 1, 1, 1, 1)
	checkForward(t, f, shape, want, x, w, b)
}

func TestConv2dShapeErrors(t *testing.T) {
	g := gorgonia.NewGraph()
	x := gorgonia.NewTensor(g, tensor.Float32, 4, gorgonia.WithShape(1, 3, 4, 4))
	w := gorgonia.NewTensor(g, tensor.Float32, 4, gorgonia.WithShape(2, 4, 3, 3))
	b := gorgonia.NewTensor(g, tensor.Float32, 1, gorgonia.WithShape(2))
	if _, err := Conv2d(x, w, b, 1, Pads{1, 1, 1, 1}); err == nil {
		t.Error("channel mismatch: no error")
	}
	w5 := gorgonia.NewTensor(g, tensor.Float32, 4, gorgonia.WithShape(2, 3, 5, 5))
	if _, err := Conv2d(x, w5, b, 1, Pads{}); err == nil {
		t.Error("kernel larger than input: no error")
	}
}

// TestConv2dFloat32Gradients compares the float32 gradients (C kernels where
// cgo is on) with the float64 ones (Go), for one-image and several-image chunks.
func TestConv2dFloat32Gradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(22, 22))
	for _, xs := range [][]int{{2, 3, 24, 24}, {3, 4, 9, 9}} {
		x := randTensor(rng, 0, 1, xs...)
		w := randTensor(rng, 0, 0.3, 5, xs[1], 3, 3)
		b := randTensor(rng, 0, 1, 5)
		for _, stride := range []int{1, 2} {
			f := func(in []*gorgonia.Node) (*gorgonia.Node, error) {
				return Conv2d(in[0], in[1], in[2], stride, Pads{0, 1, 1, 1})
			}
			g64 := symGrads(t, f, tensor.Float64, x, w, b)
			g32 := symGrads(t, f, tensor.Float32, x, w, b)
			for i := range g64 {
				if d := maxRelDiff(g32[i], g64[i]); d > 1e-4 {
					t.Errorf("x %v stride %d: gradient %d float32 vs float64 differ by %.3g", xs, stride, i, d)
				}
			}
		}
	}
}
