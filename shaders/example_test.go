package shaders

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteExamples writes example pictures from both renderers for a person
// to look at: SHADERS_EXAMPLES=dir go test -run WriteExamples ./shaders/
// (under xvfb-run for the GL ones).
func TestWriteExamples(t *testing.T) {
	dir := os.Getenv("SHADERS_EXAMPLES")
	if dir == "" {
		t.Skip("set SHADERS_EXAMPLES=dir to write example PNGs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	renderers := []struct {
		tag string
		r   Renderer
	}{{"cpu", NewCPU()}}
	if _, err := contextWindow(); err == nil {
		renderers = append(renderers, struct {
			tag string
			r   Renderer
		}{"gl", newTestGL(t)})
	} else {
		t.Logf("GL examples skipped: %v", err)
	}
	write := func(name string, img *image.RGBA) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	xs, ys := lossCurve(1, 2000)
	blue := color.RGBA{31, 119, 180, 255}
	loss := []Series{
		{X: xs, Y: ys, Color: WithAlpha(blue, 0.25), Width: 1, Label: "loss"},
		{X: xs, Y: Smooth(ys, 0.98), Color: blue, Width: 2, Label: "smoothed (0.98)"},
	}
	grids := testGrids()
	for _, rr := range renderers {
		for name, p := range map[string]Plot{
			"loss_log":    {Width: 512, Height: 384, Series: loss, LogY: true, Title: "Training loss"},
			"loss_linear": {Width: 512, Height: 384, Series: loss, Title: "Training loss"},
			"loss_dark": {Width: 512, Height: 384, Series: loss, LogY: true, Title: "Training loss",
				Background: color.RGBA{32, 33, 36, 255}, Axis: color.RGBA{150, 150, 150, 255},
				GridLine: color.RGBA{62, 64, 68, 255}, Text: color.RGBA{220, 220, 220, 255}},
			"sparse": testPlots()["sparse widths"],
		} {
			img, err := rr.r.Plot(p)
			if err != nil {
				t.Fatal(err)
			}
			write(name+"_"+rr.tag+".png", img)
		}
		for name, g := range map[string]Grid{
			"grid_gray": grids["28x28x1 N16 scale3"],
			"grid_rgb":  grids["28x28x3 N64 scale3"],
		} {
			img, err := rr.r.Grid(g)
			if err != nil {
				t.Fatal(err)
			}
			write(name+"_"+rr.tag+".png", img)
		}
	}
	t.Logf("wrote examples to %s", dir)
}
