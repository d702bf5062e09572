package shaders

import (
	"image"
	"sync/atomic"
)

// cpuRenderer is the pure-Go Renderer: the reference implementation.
type cpuRenderer struct{ closed atomic.Bool }

// NewCPU returns the pure-Go renderer. It needs no GL, may be used from any
// goroutine (also concurrently) and defines the pixels the OpenGL renderer
// reproduces.
func NewCPU() Renderer { return &cpuRenderer{} }

// Grid draws g as a grid of tiles.
func (r *cpuRenderer) Grid(g Grid) (*image.RGBA, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	p, err := prepareGrid(g)
	if err != nil {
		return nil, err
	}
	return renderGridCPU(g, p), nil
}

// Plot draws the line chart p.
func (r *cpuRenderer) Plot(p Plot) (*image.RGBA, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	q, err := preparePlot(p)
	if err != nil {
		return nil, err
	}
	return renderPlotCPU(q), nil
}

// Name returns "CPU".
func (r *cpuRenderer) Name() string { return "CPU" }

// Close marks the renderer closed; it holds no resources.
func (r *cpuRenderer) Close() error {
	r.closed.Store(true)
	return nil
}
