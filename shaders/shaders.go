package shaders

import (
	_ "embed"
	"errors"
	"image"
	"image/color"
	"math"
)

// GLSL sources of the OpenGL renderer (GLSL 3.30 core).
var (
	//go:embed fullscreen.vert
	fullscreenVert string
	//go:embed grid.frag
	gridFrag string
	//go:embed plot.frag
	plotFrag string
)

// Renderer draws grids and plots. The CPU and OpenGL implementations produce
// the same pixels (within one level of 255 per channel; exactly on Mesa
// llvmpipe).
type Renderer interface {
	// Grid draws a batch of images as a grid of tiles, of size g.Size().
	Grid(g Grid) (*image.RGBA, error)
	// Plot draws a line chart of size p.Width×p.Height.
	Plot(p Plot) (*image.RGBA, error)
	// Name describes the renderer: "CPU", or "OpenGL <GL_VERSION> — <GL_RENDERER>".
	Name() string
	// Close releases the renderer's resources. Further calls fail with ErrClosed.
	Close() error
}

var (
	// ErrTooLarge is wrapped by the errors of the OpenGL renderer when a picture
	// or its data does not fit the GL implementation's limits
	// (GL_MAX_TEXTURE_SIZE, GL_MAX_RENDERBUFFER_SIZE). Callers may fall back to
	// the CPU renderer: errors.Is(err, shaders.ErrTooLarge).
	ErrTooLarge = errors.New("shaders: too large for the GL implementation")
	// ErrClosed is returned by a renderer's methods after Close.
	ErrClosed = errors.New("shaders: renderer is closed")
)

// WithAlpha returns c (taken as opaque) made translucent: its premultiplied
// form at opacity alpha in [0,1]. Use it for a faint raw-loss line, e.g.
// WithAlpha(blue, 0.3).
func WithAlpha(c color.RGBA, alpha float64) color.RGBA {
	alpha = math.Max(0, math.Min(1, alpha))
	m := func(v uint8) uint8 { return uint8(math.Round(float64(v) * alpha)) }
	return color.RGBA{m(c.R), m(c.G), m(c.B), uint8(math.Round(255 * alpha))}
}

// rgba is a premultiplied colour with float32 channels in [0,1], the form in
// which colours reach the shaders.
type rgba [4]float32

// unorm returns the float32 k/255 for each channel of c: exactly what the
// shaders receive as colour uniforms.
func unorm(c color.RGBA) rgba {
	return rgba{float32(c.R) / 255, float32(c.G) / 255, float32(c.B) / 255, float32(c.A) / 255}
}

// clampf is GLSL's clamp(x, lo, hi) = min(max(x, lo), hi).
func clampf(x, lo, hi float32) float32 {
	if x < lo {
		x = lo
	}
	if x > hi {
		x = hi
	}
	return x
}

// quantize is the shaders' roundEven(v*255) followed by the UNORM8 store of
// k/255: the 8-bit level of a channel value.
func quantize(v float32) uint8 {
	k := math.RoundToEven(float64(float32(v * 255)))
	if k < 0 {
		return 0
	}
	if k > 255 {
		return 255
	}
	return uint8(k)
}
