package shaders

import (
	"fmt"
	"image/color"
	"testing"
)

// The benchmarks draw the same work with both renderers: a 64-tile 28×28 RGB
// grid at scale 1 and 3, and a 512×384 loss plot of 2000 points plus its smoothed
// curve. The GL ones need a display (see newTestGL).

func benchGrid(scale int) Grid {
	return Grid{Data: randomGrid(6, 64, 3, 28, 28), N: 64, C: 3, H: 28, W: 28, Scale: scale, Pad: 2}
}

func benchPlot() Plot {
	xs, ys := lossCurve(1, 2000)
	blue := color.RGBA{31, 119, 180, 255}
	return Plot{Width: 512, Height: 384, LogY: true, Title: "Training loss", Series: []Series{
		{X: xs, Y: ys, Color: WithAlpha(blue, 0.25), Width: 1, Label: "loss"},
		{X: xs, Y: Smooth(ys, 0.98), Color: blue, Width: 2, Label: "smoothed"},
	}}
}

func benchRenderers(b *testing.B, f func(b *testing.B, r Renderer)) {
	b.Run("CPU", func(b *testing.B) { f(b, NewCPU()) })
	b.Run("GL", func(b *testing.B) { f(b, newTestGL(b)) })
}

func BenchmarkGrid(b *testing.B) {
	for _, scale := range []int{1, 3} {
		g := benchGrid(scale)
		w, h := g.Size()
		b.Run(fmt.Sprintf("64x3x28x28-%dx%d", w, h), func(b *testing.B) {
			benchRenderers(b, func(b *testing.B, r Renderer) {
				for b.Loop() {
					if _, err := r.Grid(g); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkPlot(b *testing.B) {
	p := benchPlot()
	benchRenderers(b, func(b *testing.B, r Renderer) {
		for b.Loop() {
			if _, err := r.Plot(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
