package imgio

import (
	"errors"
	"image"
	"image/png"
	"io"
	"slices"
)

// Pad is the padding, in pixels, of the grids and strips the program writes, so that
// the window and the command line write the same images.
const Pad = 2

// Progression keeps the x_t and x̂0 of the first few images of a sampling at about ten
// of its steps (the first, every tenth of the way, the last), for a strip as in Figure 6
// of the DDPM paper.
type Progression struct {
	max        int
	n, c, h, w int
	frames     [][]float32 // x_t and x̂0 of image 0, then of image 1, …
}

// NewProgression keeps at most max images of each step.
func NewProgression(max int) *Progression { return &Progression{max: max} }

// Keeps reports whether step (1-based, of steps) is one the strip shows.
func Keeps(step, steps int) bool {
	every := max(1, steps/10)
	return step == 1 || step%every == 0 || step == steps
}

// Add records step of steps if Keeps says so: xt and x0 hold n images of c×h×w. It
// copies what it keeps.
func (p *Progression) Add(step, steps int, xt, x0 []float32, n, c, h, w int) {
	if !Keeps(step, steps) {
		return
	}
	k := min(n, p.max)
	per := c * h * w
	if len(xt) < k*per || len(x0) < k*per {
		return
	}
	p.n, p.c, p.h, p.w = k, c, h, w
	f := make([]float32, 0, 2*k*per)
	for i := range k {
		f = append(f, xt[i*per:(i+1)*per]...)
		f = append(f, x0[i*per:(i+1)*per]...)
	}
	p.frames = append(p.frames, f)
}

// Len is the number of steps kept.
func (p *Progression) Len() int { return len(p.frames) }

// Image lays the kept steps out: for each image a row of x_t above a row of x̂0, time
// running left to right.
func (p *Progression) Image() (*image.RGBA, error) {
	if len(p.frames) == 0 {
		return nil, errors.New("no progression was recorded")
	}
	return Strip(slices.Clone(p.frames), 2*p.n, p.c, p.h, p.w, Pad), nil
}

// EncodePNG writes img as PNG to w, as SavePNG does to a file.
func EncodePNG(w io.Writer, img image.Image) error { return png.Encode(w, img) }

// Single is one c×h×w model-space image at its own size, without padding.
func Single(x []float32, c, h, w int) *image.RGBA { return Grid(x, 1, c, h, w, 1, 0) }
