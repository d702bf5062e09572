package shaders

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Grid is a batch of float images to draw as a grid of tiles.
//
// Tiles are laid out row by row, Cols per row; the last row may be partly
// empty (filled with Background). Every tile is W*Scale × H*Scale pixels,
// with Pad pixels of Background between tiles and around the grid.
type Grid struct {
	Data       []float32  // N×C×H×W, NCHW order (channel 0,1,2 = red, green, blue)
	N, C, H, W int        // C is 1 (gray) or 3 (RGB)
	Cols       int        // tiles per row; 0 means ceil(sqrt(N))
	Scale      int        // nearest-neighbour upscaling factor; 0 means 1
	Pad        int        // pixels between tiles and around the grid
	Normalize  bool       // false: values in [-1,1] map to [0,255] (clipped; 0 → 128); true: each tile's own min..max maps to 0..255 (a constant tile maps to 128)
	Background color.RGBA // colour of the padding
}

// maxGridPixels bounds the output size, to turn absurd parameters into an
// error instead of an enormous allocation.
const maxGridPixels = 1 << 28

// cols returns the effective number of tiles per row.
func (g Grid) cols() int {
	if g.Cols > 0 {
		return g.Cols
	}
	if g.N < 1 {
		return 1
	}
	c := int(math.Ceil(math.Sqrt(float64(g.N))))
	for c > 1 && (c-1)*(c-1) >= g.N { // guard against sqrt rounding up
		c--
	}
	for c*c < g.N {
		c++
	}
	return c
}

// scale returns the effective upscaling factor.
func (g Grid) scale() int {
	if g.Scale > 0 {
		return g.Scale
	}
	return 1
}

// rows returns the number of tile rows.
func (g Grid) rows() int {
	c := g.cols()
	return (g.N + c - 1) / c
}

// Size returns the size in pixels of the picture Grid draws:
// cols*W*Scale + (cols+1)*Pad by rows*H*Scale + (rows+1)*Pad, where cols is
// Cols (or ceil(sqrt(N))) and rows is ceil(N/cols). It returns 0, 0 when N,
// H or W is not positive.
func (g Grid) Size() (w, h int) {
	if g.N < 1 || g.H < 1 || g.W < 1 {
		return 0, 0
	}
	pad := max(g.Pad, 0)
	c, r, s := g.cols(), g.rows(), g.scale()
	return c*g.W*s + (c+1)*pad, r*g.H*s + (r+1)*pad
}

// Validate reports what is wrong with g's shape or layout, or nil.
func (g Grid) Validate() error {
	switch {
	case g.N < 1:
		return fmt.Errorf("shaders: grid: N = %d, need at least one image", g.N)
	case g.C != 1 && g.C != 3:
		return fmt.Errorf("shaders: grid: C = %d, need 1 (gray) or 3 (RGB) channels", g.C)
	case g.H < 1 || g.W < 1:
		return fmt.Errorf("shaders: grid: image size H×W = %d×%d, need both positive", g.H, g.W)
	case g.Cols < 0:
		return fmt.Errorf("shaders: grid: Cols = %d, need >= 0 (0: ceil(sqrt(N)))", g.Cols)
	case g.Scale < 0:
		return fmt.Errorf("shaders: grid: Scale = %d, need >= 0 (0: 1)", g.Scale)
	case g.Pad < 0:
		return fmt.Errorf("shaders: grid: Pad = %d, need >= 0", g.Pad)
	}
	n := int64(g.N) * int64(g.C) * int64(g.H) * int64(g.W)
	if n > math.MaxInt32 {
		return fmt.Errorf("shaders: grid: N×C×H×W = %d×%d×%d×%d is too many values", g.N, g.C, g.H, g.W)
	}
	if int64(len(g.Data)) != n {
		return fmt.Errorf("shaders: grid: len(Data) = %d, want N×C×H×W = %d×%d×%d×%d = %d", len(g.Data), g.N, g.C, g.H, g.W, n)
	}
	c, r, s, p := int64(g.cols()), int64(g.rows()), int64(g.scale()), int64(g.Pad)
	w := c*int64(g.W)*s + (c+1)*p
	h := r*int64(g.H)*s + (r+1)*p
	if w > 1<<20 || h > 1<<20 || w*h > maxGridPixels {
		return fmt.Errorf("shaders: grid: output of %d×%d pixels is too large", w, h)
	}
	return nil
}

// tileParams are the per-tile constants of the value mapping
// level(v) = roundEven(clamp((clamp(v, lo, hi) - lo)*scale + bias, 0, 1) * 255).
type tileParams struct{ lo, hi, scale, bias float32 }

// gridPrep holds what both renderers derive from a validated Grid.
type gridPrep struct {
	data  []float32    // g.Data, or a copy with NaN replaced by -Inf
	tiles []tileParams // one per tile
	w, h  int          // output size
}

// prepareGrid validates g and computes the inputs of the per-pixel function.
func prepareGrid(g Grid) (*gridPrep, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	p := &gridPrep{data: g.Data, tiles: make([]tileParams, g.N)}
	p.w, p.h = g.Size()
	for i, v := range g.Data {
		if v != v { // NaN: clamp(NaN, ...) is undefined in GLSL; draw it as the lowest level
			p.data = make([]float32, len(g.Data))
			copy(p.data, g.Data)
			for j := i; j < len(p.data); j++ {
				if p.data[j] != p.data[j] {
					p.data[j] = float32(math.Inf(-1))
				}
			}
			break
		}
	}
	per := g.C * g.H * g.W
	for t := range p.tiles {
		if !g.Normalize {
			p.tiles[t] = tileParams{lo: -1, hi: 1, scale: 0.5, bias: 0}
			continue
		}
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, v := range p.data[t*per : (t+1)*per] {
			if math.IsInf(float64(v), 0) {
				continue
			}
			lo = min(lo, v)
			hi = max(hi, v)
		}
		switch {
		case lo > hi: // no finite value
			p.tiles[t] = tileParams{lo: 0, hi: 0, scale: 0, bias: 0.5}
		case lo == hi:
			p.tiles[t] = tileParams{lo: lo, hi: hi, scale: 0, bias: 0.5}
		default:
			p.tiles[t] = tileParams{lo: lo, hi: hi, scale: float32(1 / (float64(hi) - float64(lo))), bias: 0}
		}
	}
	return p, nil
}

// tileLevel mirrors level() in grid.frag.
func tileLevel(v float32, t tileParams) uint8 {
	x := float32(float32(clampf(v, t.lo, t.hi)-t.lo)*t.scale) + t.bias
	return quantize(clampf(x, 0, 1))
}

// renderGridCPU mirrors main() of grid.frag for every pixel.
func renderGridCPU(g Grid, p *gridPrep) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, p.w, p.h))
	bg := g.Background
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = bg.R, bg.G, bg.B, bg.A
	}
	s, pad, cols := g.scale(), g.Pad, g.cols()
	cellW, cellH := g.W*s, g.H*s
	plane := g.H * g.W
	parallelRows(g.N, func(tile int) {
		line := make([]uint8, cellW*4)
		tc, tr := tile%cols, tile/cols
		x0 := pad + tc*(cellW+pad)
		y0 := pad + tr*(cellH+pad)
		t := p.tiles[tile]
		base := tile * g.C * plane
		for y := 0; y < g.H; y++ {
			for x := 0; x < g.W; x++ {
				i := base + y*g.W + x
				r := tileLevel(p.data[i], t)
				gg, b := r, r
				if g.C == 3 {
					gg = tileLevel(p.data[i+plane], t)
					b = tileLevel(p.data[i+2*plane], t)
				}
				for k := x * s * 4; k < (x+1)*s*4; k += 4 {
					line[k], line[k+1], line[k+2], line[k+3] = r, gg, b, 255
				}
			}
			for iy := y * s; iy < (y+1)*s; iy++ {
				copy(img.Pix[(y0+iy)*img.Stride+x0*4:], line)
			}
		}
	})
	return img
}
