package shaders

import (
	"image"
	"math"
	"runtime"
	"sync"
)

// parallelRows calls f(y) for y in [0, n) (rows, or tiles), spread over GOMAXPROCS
// goroutines in interleaved bands of rows. Every pixel is computed on its own,
// so the result does not depend on the split.
func parallelRows(n int, f func(y int)) {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/16))
	if workers <= 1 {
		for y := 0; y < n; y++ {
			f(y)
		}
		return
	}
	const band = 8
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for y0 := w * band; y0 < n; y0 += workers * band {
				for y := y0; y < min(y0+band, n); y++ {
					f(y)
				}
			}
		}()
	}
	wg.Wait()
}

// This file mirrors plot.frag operation by operation, in float32. Explicit
// float32(...) conversions around products keep the Go compiler from fusing
// a*b+c into an FMA (the Go specification guarantees that a conversion
// rounds), matching the shader's precise qualifiers.

// over mirrors over() in plot.frag: src (premultiplied) with coverage cov
// over dst.
func over(dst, src rgba, cov float32) rgba {
	k := 1 - float32(src[3]*cov)
	for i := range dst {
		dst[i] = float32(dst[i]*k) + float32(src[i]*cov)
	}
	return dst
}

// dist2 mirrors dist2() in plot.frag: the squared distance from (qx, qy) to
// column j's chord a and span b.
func dist2(qx, qy float32, j int, a, b []float32) float32 {
	wx := qx - a[0]
	wy := qy - a[1]
	t := clampf(float32(float32(wx*a[2])+float32(wy*a[3]))*b[0], 0, 1)
	ex := wx - float32(t*a[2])
	ey := wy - float32(t*a[3])
	d := float32(ex*ex) + float32(ey*ey)
	if b[1] <= b[2] {
		sx := qx - (float32(j) + 0.5)
		sy := qy - clampf(qy, b[1], b[2])
		e := float32(sx*sx) + float32(sy*sy)
		d = min(d, e)
	}
	return d
}

// coverage mirrors the series loop of plot.frag for one series and pixel.
func coverage(g *seriesGeom, lx, ly, pw int) float32 {
	qx, qy := float32(lx)+0.5, float32(ly)+0.5
	best := float32(1e30)
	j0, j1 := max(lx-g.reach, 0), min(lx+g.reach, pw-1)
	for j := j0; j <= j1; j++ {
		b := g.b[4*j : 4*j+4]
		if b[3] == 0 {
			continue
		}
		best = min(best, dist2(qx, qy, j, g.a[4*j:4*j+4], b))
	}
	return clampf(g.halfW+0.5-float32(math.Sqrt(float64(best))), 0, 1)
}

// bands returns, per column, the rows [lo, hi] outside which series g has
// coverage 0 for sure (the margin of 2 px beyond the half width dwarfs any
// float32 rounding), so that both renderers can skip them. Skipping changes
// nothing: coverage 0 would leave the pixel as it is.
func bands(g *seriesGeom, pw, ph int) (lo, hi []int32) {
	ext := make([][2]float32, pw)
	for j := range ext {
		ext[j] = [2]float32{float32(math.Inf(1)), float32(math.Inf(-1))}
		a, b := g.a[4*j:4*j+4], g.b[4*j:4*j+4]
		if b[3] == 0 {
			continue
		}
		e0, e1 := min(a[1], a[1]+a[3]), max(a[1], a[1]+a[3])
		if b[1] <= b[2] {
			e0, e1 = min(e0, b[1]), max(e1, b[2])
		}
		ext[j] = [2]float32{e0, e1}
	}
	lo, hi = make([]int32, pw), make([]int32, pw)
	m := float64(g.halfW) + 2
	for lx := range lo {
		e0, e1 := math.Inf(1), math.Inf(-1)
		for j := max(lx-g.reach, 0); j <= min(lx+g.reach, pw-1); j++ {
			e0, e1 = min(e0, float64(ext[j][0])), max(e1, float64(ext[j][1]))
		}
		if e0 > e1 {
			lo[lx], hi[lx] = 1, 0
			continue
		}
		lo[lx] = int32(max(0, math.Floor(e0-m)))
		hi[lx] = int32(min(float64(ph-1), math.Ceil(e1+m)))
	}
	return lo, hi
}

// lookups computes the integer lookups of plot.frag's uInfo: the grid line
// kind of every plot column and row (major wins over minor) and every
// series' bands.
func (p *plotPrep) lookups() {
	p.xk, p.yk = make([]int32, p.pw), make([]int32, p.ph)
	for _, t := range p.xTicks {
		if p.xk[t.pos] == 0 || t.kind == 1 {
			p.xk[t.pos] = int32(t.kind)
		}
	}
	for _, t := range p.yTicks {
		if p.yk[t.pos] == 0 || t.kind == 1 {
			p.yk[t.pos] = int32(t.kind)
		}
	}
	for s := range p.series {
		g := &p.series[s]
		g.bandLo, g.bandHi = bands(g, p.pw, p.ph)
	}
}

// quant4 quantises the four channels of a colour.
func quant4(c rgba) [4]uint8 {
	return [4]uint8{quantize(c[0]), quantize(c[1]), quantize(c[2]), quantize(c[3])}
}

// renderPlotCPU mirrors main() of plot.frag for every pixel, then draws the
// text overlay.
func renderPlotCPU(p *plotPrep) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, p.w, p.h))
	left, bottom := p.left-1, p.top+p.ph
	// Pixels that no series touches depend only on their grid line kind and
	// whether they are part of an axis: their colours are computed once, by
	// the same operations.
	var base [3]rgba
	base[0] = p.bg
	base[1] = over(p.bg, p.gridMajor, 1)
	base[2] = over(p.bg, p.gridMin, 1)
	var plain [3][2][4]uint8
	for k := range base {
		plain[k][0] = quant4(base[k])
		plain[k][1] = quant4(over(base[k], p.axis, 1))
	}
	parallelRows(p.h, func(y int) {
		row := img.Pix[y*img.Stride:]
		ly := y - p.top
		for x := 0; x < p.w; x++ {
			lx := x - p.left
			inside := lx >= 0 && ly >= 0 && lx < p.pw && ly < p.ph
			kind := 0
			if inside {
				xk, yk := p.xk[lx], p.yk[ly]
				if xk == 1 || yk == 1 {
					kind = 1
				} else if xk == 2 || yk == 2 {
					kind = 2
				}
			}
			axis := (x == left && y >= p.top && y <= bottom) ||
				(y == bottom && x >= left && x < p.left+p.pw)
			if !axis && y > bottom && y <= bottom+p.tick && lx >= 0 && lx < p.pw {
				axis = p.xk[lx] == 1
			}
			if !axis && x < left && x >= left-p.tick && ly >= 0 && ly < p.ph {
				axis = p.yk[ly] == 1
			}
			ai := 0
			if axis {
				ai = 1
			}
			q := plain[kind][ai]
			if inside {
				c, touched := base[kind], false
				for s := range p.series {
					g := &p.series[s]
					if int32(ly) < g.bandLo[lx] || int32(ly) > g.bandHi[lx] {
						continue
					}
					if cov := coverage(g, lx, ly, p.pw); cov > 0 {
						c = over(c, g.color, cov)
						touched = true
					}
				}
				if touched {
					if axis {
						c = over(c, p.axis, 1)
					}
					q = quant4(c)
				}
			}
			copy(row[4*x:4*x+4], q[:])
		}
	})
	drawOverlay(img, p)
	return img
}
