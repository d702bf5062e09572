package shaders

import (
	"image"
	"image/color"
	"math"
	"strings"
	"testing"
)

func pix(img *image.RGBA, x, y int) color.RGBA { return img.RGBAAt(x, y) }

func gray(v uint8) color.RGBA { return color.RGBA{v, v, v, 255} }

func TestGridConstantTiles(t *testing.T) {
	// 2×2 grid of 3×3 gray tiles with values -1, 0, 1, 0.5, Pad 2.
	vals := []float32{-1, 0, 1, 0.5}
	var data []float32
	for _, v := range vals {
		for i := 0; i < 9; i++ {
			data = append(data, v)
		}
	}
	bg := color.RGBA{10, 20, 30, 255}
	g := Grid{Data: data, N: 4, C: 1, H: 3, W: 3, Pad: 2, Background: bg}
	if w, h := g.Size(); w != 12 || h != 12 {
		t.Fatalf("Size = %d×%d, want 12×12", w, h)
	}
	img, err := NewCPU().Grid(g)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds() != image.Rect(0, 0, 12, 12) {
		t.Fatalf("bounds %v", img.Bounds())
	}
	want := []uint8{0, 128, 255, 191} // 0.5 → 0.75*255 = 191.25 → 191
	for i, w := range want {
		cx, cy := 2+(i%2)*5+1, 2+(i/2)*5+1
		if got := pix(img, cx, cy); got != gray(w) {
			t.Errorf("tile %d centre (%d,%d) = %v, want %v", i, cx, cy, got, gray(w))
		}
	}
	for _, p := range []image.Point{{0, 0}, {1, 6}, {5, 3}, {6, 6}, {11, 11}, {3, 5}, {3, 6}, {11, 3}} {
		if got := pix(img, p.X, p.Y); got != bg {
			t.Errorf("padding %v = %v, want background %v", p, got, bg)
		}
	}
	// Every tile pixel (not only the centre) has the tile's level.
	for i, w := range want {
		for y := 0; y < 3; y++ {
			for x := 0; x < 3; x++ {
				px, py := 2+(i%2)*5+x, 2+(i/2)*5+y
				if got := pix(img, px, py); got != gray(w) {
					t.Errorf("tile %d pixel (%d,%d) = %v, want %v", i, px, py, got, gray(w))
				}
			}
		}
	}
}

func TestGridValueMapping(t *testing.T) {
	// [-1,1] → [0,255], clipped, round half to even: 0 → 127.5 → 128,
	// -1+2/255 → 1.
	in := []float32{-5, -1, -0.5, 0, 0.5, 1, 5, -1 + 2.0/255, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
	want := []uint8{0, 0, 64, 128, 191, 255, 255, 1, 255, 0, 0}
	img, err := NewCPU().Grid(Grid{Data: in, N: 1, C: 1, H: 1, W: len(in)})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got := pix(img, i, 0); got != gray(w) {
			t.Errorf("value %v → %v, want %d", in[i], got, w)
		}
	}
}

func TestGridNormalize(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	data := []float32{
		2, 4, 6, 3, // tile 0: min 2 max 6
		7, 7, 7, 7, // tile 1: constant → mid gray
		nan, 1, 3, inf, // tile 2: finite min 1 max 3; NaN lowest, +Inf clipped
		-1000, 0, 1000, 500, // tile 3: own range, ignores the others
	}
	img, err := NewCPU().Grid(Grid{Data: data, N: 4, C: 1, H: 1, W: 4, Cols: 1, Normalize: true})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]uint8{
		{0, 128, 255, 64}, // (3-2)/4 = 0.25 → 63.75 → 64
		{128, 128, 128, 128},
		{0, 0, 255, 255},
		{0, 128, 255, 191},
	}
	for y, row := range want {
		for x, w := range row {
			if got := pix(img, x, y); got != gray(w) {
				t.Errorf("tile %d value %v → %v, want %d", y, data[4*y+x], got, w)
			}
		}
	}
	// Normalisation is per tile, over all channels of an RGB tile.
	img, err = NewCPU().Grid(Grid{Data: []float32{0, 10, 5}, N: 1, C: 3, H: 1, W: 1, Normalize: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := pix(img, 0, 0); got != (color.RGBA{0, 255, 128, 255}) {
		t.Errorf("normalised RGB = %v, want {0 255 128 255}", got)
	}
}

func TestGridRGBOrder(t *testing.T) {
	// One 1×2 RGB image: channel planes R = [1, -1], G = [-1, 0], B = [0, 1].
	data := []float32{1, -1, -1, 0, 0, 1}
	img, err := NewCPU().Grid(Grid{Data: data, N: 1, C: 3, H: 1, W: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pix(img, 0, 0), (color.RGBA{255, 0, 128, 255}); got != want {
		t.Errorf("pixel 0 = %v, want %v", got, want)
	}
	if got, want := pix(img, 1, 0), (color.RGBA{0, 128, 255, 255}); got != want {
		t.Errorf("pixel 1 = %v, want %v", got, want)
	}
}

func TestGridScalePadGeometry(t *testing.T) {
	// N=3 images of 2×1 (H=2, W=1) with Scale 3 and Pad 1: 2 columns, 2 rows;
	// tile cells are 3 wide and 6 tall; the fourth cell is empty.
	data := []float32{-1, 1, 0, 1, 1, -1}
	bg := color.RGBA{1, 2, 3, 4}
	g := Grid{Data: data, N: 3, C: 1, H: 2, W: 1, Scale: 3, Pad: 1, Background: bg}
	w, h := g.Size()
	if w != 9 || h != 15 {
		t.Fatalf("Size = %d×%d, want 9×15", w, h)
	}
	img, err := NewCPU().Grid(g)
	if err != nil {
		t.Fatal(err)
	}
	level := map[float32]uint8{-1: 0, 0: 128, 1: 255}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			want := bg
			gx, gy := x-1, y-1
			if gx >= 0 && gy >= 0 && gx%4 < 3 && gy%7 < 6 {
				tile := (gy/7)*2 + gx/4
				if tile < 3 {
					want = gray(level[data[tile*2+(gy%7)/3]])
				}
			}
			if got := pix(img, x, y); got != want {
				t.Errorf("(%d,%d) = %v, want %v", x, y, got, want)
			}
		}
	}
}

func TestGridSize(t *testing.T) {
	for _, c := range []struct {
		g    Grid
		w, h int
	}{
		{Grid{N: 16, C: 1, H: 28, W: 28, Scale: 3, Pad: 2}, 4*84 + 5*2, 4*84 + 5*2},
		{Grid{N: 64, C: 3, H: 32, W: 32, Pad: 1}, 8*32 + 9, 8*32 + 9},
		{Grid{N: 5, C: 1, H: 2, W: 3}, 3 * 3, 2 * 2},             // ceil(sqrt(5)) = 3 columns, 2 rows
		{Grid{N: 10, C: 1, H: 1, W: 1, Cols: 5}, 5, 2},           // explicit columns
		{Grid{N: 9, C: 1, H: 1, W: 1}, 3, 3},                     // exact square
		{Grid{N: 1, C: 1, H: 7, W: 5, Pad: 4, Scale: 2}, 18, 22}, // one tile
		{Grid{N: 0, C: 1, H: 7, W: 5}, 0, 0},
	} {
		if w, h := c.g.Size(); w != c.w || h != c.h {
			t.Errorf("%+v: Size = %d×%d, want %d×%d", c.g, w, h, c.w, c.h)
		}
	}
}

func TestGridValidate(t *testing.T) {
	ok := Grid{Data: make([]float32, 2*3*4*5), N: 2, C: 3, H: 4, W: 5}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid grid: %v", err)
	}
	for _, c := range []struct {
		name string
		mod  func(*Grid)
		want string
	}{
		{"short data", func(g *Grid) { g.Data = g.Data[1:] }, "len(Data) = 119, want N×C×H×W = 2×3×4×5 = 120"},
		{"C=2", func(g *Grid) { g.C = 2 }, "C = 2"},
		{"N=0", func(g *Grid) { g.N = 0 }, "N = 0"},
		{"negative pad", func(g *Grid) { g.Pad = -1 }, "Pad = -1"},
		{"negative scale", func(g *Grid) { g.Scale = -2 }, "Scale = -2"},
		{"negative cols", func(g *Grid) { g.Cols = -1 }, "Cols = -1"},
		{"zero width", func(g *Grid) { g.W = 0 }, "H×W = 4×0"},
		{"huge", func(g *Grid) { g.Scale = 100000 }, "too large"},
	} {
		g := ok
		c.mod(&g)
		err := g.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
		if _, err := NewCPU().Grid(g); err == nil {
			t.Errorf("%s: Grid() succeeded", c.name)
		}
	}
}
