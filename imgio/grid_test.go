package imgio

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

var padColour = color.RGBA{PadGray, PadGray, PadGray, 255}

func TestGridGray(t *testing.T) {
	const n, c, h, w, pad = 4, 1, 2, 3, 2
	x := make([]float32, n*c*h*w)
	// Tile 0: all 0 (→ 128). Tile 1: all 1. Tile 2: all −1.
	// Tile 3: −1 except 1 at row 1, column 2.
	for i := range h * w {
		x[0*h*w+i], x[1*h*w+i], x[2*h*w+i], x[3*h*w+i] = 0, 1, -1, -1
	}
	x[3*h*w+1*w+2] = 1

	img := Grid(x, n, c, h, w, 0, pad) // cols 0 → ceil(sqrt(4)) = 2
	if b := img.Bounds(); b != image.Rect(0, 0, 2*w+3*pad, 2*h+3*pad) {
		t.Fatalf("bounds = %v, want 12×10", b)
	}
	gray := func(v uint8) color.RGBA { return color.RGBA{v, v, v, 255} }
	for _, tc := range []struct {
		x, y int
		want color.RGBA
	}{
		{0, 0, padColour}, {1, 1, padColour}, {11, 9, padColour}, // outer border
		{5, 3, padColour}, {6, 2, padColour}, // between tile columns
		{3, 4, padColour}, {3, 5, padColour}, // between tile rows
		{2, 2, gray(128)}, {4, 3, gray(128)}, // tile 0 corners
		{7, 2, gray(255)}, {9, 3, gray(255)}, // tile 1
		{2, 6, gray(0)},                                     // tile 2
		{7, 6, gray(0)}, {9, 7, gray(255)}, {8, 7, gray(0)}, // tile 3
	} {
		if got := img.RGBAAt(tc.x, tc.y); got != tc.want {
			t.Errorf("pixel (%d,%d) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}

func TestGridColourPartialRow(t *testing.T) {
	const n, c, h, w, pad = 3, 3, 1, 1, 1
	// Red, green, blue single-pixel tiles, two per row.
	x := []float32{
		1, -1, -1,
		-1, 1, -1,
		-1, -1, 1,
	}
	img := Grid(x, n, c, h, w, 2, pad)
	if b := img.Bounds(); b.Dx() != 5 || b.Dy() != 5 {
		t.Fatalf("bounds = %v, want 5×5", b)
	}
	for _, tc := range []struct {
		x, y int
		want color.RGBA
	}{
		{1, 1, color.RGBA{255, 0, 0, 255}},
		{3, 1, color.RGBA{0, 255, 0, 255}},
		{1, 3, color.RGBA{0, 0, 255, 255}},
		{3, 3, padColour}, // empty cell
	} {
		if got := img.RGBAAt(tc.x, tc.y); got != tc.want {
			t.Errorf("pixel (%d,%d) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}

func TestGridPanicsOnWrongLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Grid with too few values did not panic")
		}
	}()
	Grid(make([]float32, 5), 2, 1, 2, 2, 0, 2)
}

func TestStrip(t *testing.T) {
	const n, c, h, w, pad, steps = 2, 3, 4, 5, 2, 3
	frames := make([][]float32, steps)
	for k := range frames {
		frames[k] = make([]float32, n*c*h*w)
		for i := range frames[k] {
			frames[k][i] = -1
		}
	}
	// Frame 2, image 1, green channel, row 3, column 4.
	frames[2][1*c*h*w+1*h*w+3*w+4] = 1
	img := Strip(frames, n, c, h, w, pad)
	if b := img.Bounds(); b.Dx() != steps*w+(steps+1)*pad || b.Dy() != n*h+(n+1)*pad {
		t.Fatalf("bounds = %v, want 23×14", b)
	}
	x, y := pad+2*(w+pad)+4, pad+1*(h+pad)+3 // (20, 11)
	if got := img.RGBAAt(x, y); got != (color.RGBA{0, 255, 0, 255}) {
		t.Errorf("pixel (%d,%d) = %v, want green", x, y, got)
	}
	if got := img.RGBAAt(x-1, y); got != (color.RGBA{0, 0, 0, 255}) {
		t.Errorf("pixel (%d,%d) = %v, want black", x-1, y, got)
	}
	if got := img.RGBAAt(x+1, y); got != padColour {
		t.Errorf("pixel (%d,%d) = %v, want padding", x+1, y, got)
	}
}

func TestSavePNGRoundTrip(t *testing.T) {
	x := make([]float32, 2*3*4*4)
	for i := range x {
		x[i] = float32(i%17)/8 - 1
	}
	img := Grid(x, 2, 3, 4, 4, 0, 2)
	path := filepath.Join(t.TempDir(), "grid.png")
	if err := SavePNG(path, img); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != img.Bounds() {
		t.Fatalf("bounds = %v, want %v", got.Bounds(), img.Bounds())
	}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if g, w := color.RGBAModel.Convert(got.At(x, y)), img.At(x, y); g != w {
				t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, g, w)
			}
		}
	}
}

func TestSavePNGMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "grid.png")
	if err := SavePNG(path, image.NewRGBA(image.Rect(0, 0, 1, 1))); err == nil {
		t.Error("SavePNG into a missing directory succeeded")
	}
}
