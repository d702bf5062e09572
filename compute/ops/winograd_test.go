package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestWinogradMatchesIm2col compares the Winograd forward pass with the im2col one
// (itself checked against the definition in TestConv2d) on even and odd sizes, one
// image and several per chunk.
func TestWinogradMatchesIm2col(t *testing.T) {
	if !cKernels {
		t.Skip("the Winograd path needs the C kernels (cgo)")
	}
	rng := rand.New(rand.NewPCG(40, 40))
	for _, s := range [][4]int{{1, 3, 4, 4}, {2, 5, 7, 9}, {5, 8, 14, 14}, {3, 4, 28, 28}, {9, 16, 7, 7}} {
		n, cin, h, w := s[0], s[1], s[2], s[3]
		cout := 6
		x, wt, b := randF32(rng, n*cin*h*w), randF32(rng, cout*cin*9), randF32(rng, cout)
		p, err := newPlan(geom{k: 3, stride: 1, Pads: Pads{1, 1, 1, 1}}, []int{n, cin, h, w}, cout)
		if err != nil {
			t.Fatal(err)
		}
		if !winogradOK(p) {
			t.Fatal("plan not taken by Winograd")
		}
		got, want := make([]float32, n*cout*h*w), make([]float32, n*cout*h*w)
		winogradForward(p, x, wt, b, got)
		im2colForward(p, x, wt, b, want)
		worst := elemRelDiff(got, want)
		t.Logf("%v: max relative difference %.2g", s, worst)
		if worst > 1e-5 {
			t.Errorf("%v: Winograd and im2col differ by %.3g", s, worst)
		}
	}
}

// TestWinogradGradXMatchesIm2col compares the Winograd gradient of the input with the
// im2col one (itself checked by finite differences in float64), with fewer and more
// output than input channels, over odd sizes and chunks of one and of several images.
func TestWinogradGradXMatchesIm2col(t *testing.T) {
	if !cKernels {
		t.Skip("the Winograd path needs the C kernels (cgo)")
	}
	rng := rand.New(rand.NewPCG(42, 42))
	for _, s := range [][5]int{{1, 3, 4, 4, 6}, {2, 5, 7, 9, 3}, {5, 8, 14, 14, 16}, {3, 4, 28, 28, 4}, {9, 16, 7, 7, 8}, {8, 3, 32, 31, 5}} {
		n, cin, h, w, cout := s[0], s[1], s[2], s[3], s[4]
		wt, dy := randF32(rng, cout*cin*9), randF32(rng, n*cout*h*w)
		p, err := newPlan(geom{k: 3, stride: 1, Pads: Pads{1, 1, 1, 1}}, []int{n, cin, h, w}, cout)
		if err != nil {
			t.Fatal(err)
		}
		got, want := randF32(rng, n*cin*h*w), randF32(rng, n*cin*h*w) // garbage the ops must overwrite
		convGradX(p, wt, dy, got)
		im2colGradX(p, wt, dy, want)
		worst := elemRelDiff(got, want)
		t.Logf("%v: max relative difference %.2g", s, worst)
		if worst > 1e-5 {
			t.Errorf("%v: Winograd and im2col gradients differ by %.3g", s, worst)
		}
	}
}

// TestWinogradGradWMatchesIm2col compares the Winograd gradient of the weights with the
// im2col one (itself checked by finite differences in float64), over odd sizes and
// chunks of one and of several images.
func TestWinogradGradWMatchesIm2col(t *testing.T) {
	if !cKernels {
		t.Skip("the Winograd path needs the C kernels (cgo)")
	}
	rng := rand.New(rand.NewPCG(43, 43))
	for _, s := range [][5]int{{1, 3, 4, 4, 6}, {2, 5, 7, 9, 3}, {5, 8, 14, 14, 16}, {3, 4, 28, 28, 4}, {9, 16, 7, 7, 8}, {20, 6, 5, 5, 7}, {8, 3, 32, 31, 5}} {
		n, cin, h, w, cout := s[0], s[1], s[2], s[3], s[4]
		x, dy := randF32(rng, n*cin*h*w), randF32(rng, n*cout*h*w)
		p, err := newPlan(geom{k: 3, stride: 1, Pads: Pads{1, 1, 1, 1}}, []int{n, cin, h, w}, cout)
		if err != nil {
			t.Fatal(err)
		}
		got, want := randF32(rng, cout*cin*9), randF32(rng, cout*cin*9) // garbage the ops must overwrite
		convGradW(p, x, dy, got)
		im2colGradW(p, x, dy, want)
		var worst, scale float64
		for _, v := range want {
			scale = max(scale, math.Abs(float64(v)))
		}
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i]))/scale)
		}
		t.Logf("%v: max difference %.2g of the largest |dw| %.3g", s, worst, scale)
		if worst > 1e-5 {
			t.Errorf("%v: Winograd and im2col weight gradients differ by %.3g of the largest", s, worst)
		}
	}
}

// elemRelDiff is the largest |got − want| / max(1, |want|) over the elements (maxRelDiff
// divides by the largest |want| instead).
func elemRelDiff(got, want []float32) float64 {
	var worst float64
	for i := range want {
		worst = max(worst, math.Abs(float64(got[i]-want[i]))/max(1, math.Abs(float64(want[i]))))
	}
	return worst
}

func randF32(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// BenchmarkConv3x3 times the forward pass and the gradients of 3×3 convolutions at
// batch 64 of the sizes in the mnist and cifar32 U-Nets, Winograd against im2col.
func BenchmarkConv3x3(b *testing.B) {
	rng := rand.New(rand.NewPCG(41, 41))
	for _, s := range [][4]int{{32, 32, 28, 0}, {96, 32, 28, 0}, {64, 64, 14, 0}, {64, 64, 32, 0}, {128, 64, 32, 0}, {128, 128, 16, 0}, {256, 128, 16, 0}, {128, 128, 8, 0}} {
		cin, cout, hw := s[0], s[1], s[2]
		const n = 64
		x, w, bias, y := randF32(rng, n*cin*hw*hw), randF32(rng, cout*cin*9), randF32(rng, cout), make([]float32, n*cout*hw*hw)
		p, err := newPlan(geom{k: 3, stride: 1, Pads: Pads{1, 1, 1, 1}}, []int{n, cin, hw, hw}, cout)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%dto%d_%dpx", cin, cout, hw)
		b.Run(name+"/winograd", func(b *testing.B) {
			for b.Loop() {
				winogradForward(p, x, w, bias, y)
			}
		})
		b.Run(name+"/im2col", func(b *testing.B) {
			for b.Loop() {
				im2colForward(p, x, w, bias, y)
			}
		})
		dy, dx := y, make([]float32, len(x))
		b.Run(name+"/gradx_winograd", func(b *testing.B) {
			for b.Loop() {
				winogradGradX(p, w, dy, dx)
			}
		})
		b.Run(name+"/gradx_im2col", func(b *testing.B) {
			for b.Loop() {
				im2colGradX(p, w, dy, dx)
			}
		})
		b.Run(name+"/gradw_winograd", func(b *testing.B) {
			for b.Loop() {
				winogradGradW(p, x, dy, w)
			}
		})
		b.Run(name+"/gradw_im2col", func(b *testing.B) {
			for b.Loop() {
				im2colGradW(p, x, dy, w)
			}
		})
	}
}
