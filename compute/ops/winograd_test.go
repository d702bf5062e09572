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
		var worst float64
		for i := range want {
			worst = max(worst, math.Abs(float64(got[i]-want[i]))/max(1, math.Abs(float64(want[i]))))
		}
		t.Logf("%v: max relative difference %.2g", s, worst)
		if worst > 1e-5 {
			t.Errorf("%v: Winograd and im2col differ by %.3g", s, worst)
		}
	}
}

func randF32(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// BenchmarkConv3x3 times the forward pass of 3×3 convolutions at batch 64 of the sizes
// in the mnist and cifar32 U-Nets, Winograd against im2col.
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
	}
}
