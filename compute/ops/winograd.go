package ops

import "sync"

// Winograd F(2×2, 3×3) (Lavin & Gray 2016) computes a 3×3, stride-1, pad-1 convolution
// from 4×4 input tiles with 16 products of K = Cin where im2col needs one with
// K = 9·Cin per pixel: 2.25× fewer multiplications, and no 9-fold column matrix. Float32
// convolutions use it for the forward pass (sampling, and the first half of a training
// step) and for both gradients: of the input, which is itself such a convolution
// (winogradGradX), and of the weights, by the same transforms run backwards
// (winogradGradW). Float64 stays on im2col, so the finite-difference tests check the
// definition while TestWinogradMatchesIm2col and its two siblings check these against it.

// winogradOK reports whether the convolution is one the Winograd path computes.
func winogradOK(p convPlan) bool {
	return cKernels && p.k == 3 && p.stride == 1 && p.Pads == (Pads{1, 1, 1, 1})
}

// winogradFilters returns U[ξ] = (G g Gᵀ)[ξ] as 16 matrices [cout, cin] of the weights w [cout, cin, 3, 3].
func winogradFilters(w []float32, cout, cin int) []float32 {
	u := make([]float32, 16*cout*cin)
	parallelFor(cout, func(lo, hi int) { winogradFilterRows(u, w, cout, cin, lo, hi) })
	return u
}

// winogradFilterRows fills the part of U that output channels [lo, hi) own.
func winogradFilterRows(u, w []float32, cout, cin, lo, hi int) {
	for o := lo; o < hi; o++ {
		for c := range cin {
			g := w[(o*cin+c)*9:][:9]
			var t [4][3]float32 // G g
			for s := range 3 {
				t[0][s] = g[s]
				t[1][s] = 0.5 * (g[s] + g[3+s] + g[6+s])
				t[2][s] = 0.5 * (g[s] - g[3+s] + g[6+s])
				t[3][s] = g[6+s]
			}
			for r := range 4 { // (G g) Gᵀ
				row := [4]float32{t[r][0], 0.5 * (t[r][0] + t[r][1] + t[r][2]), 0.5 * (t[r][0] - t[r][1] + t[r][2]), t[r][2]}
				for s, v := range row {
					u[((4*r+s)*cout+o)*cin+c] = v
				}
			}
		}
	}
}

// winoChunks is how a winogradOK plan's tiles are laid out and its images split into
// chunks: th×tw tiles per image, imgs images per chunk. The 16 matrices are planeV
// (planeM) floats apart and their rows ld: neither stride may be a multiple of 4 KiB, or
// the 16 streams that the transforms read and write fall into the same cache sets and
// evict each other (offsetPlane).
type winoChunks struct {
	th, tw, tiles, imgs, chunks, ld, planeV, planeM int
}

func newWinoChunks(p convPlan) winoChunks {
	c := winoChunks{th: (p.oh + 1) / 2, tw: (p.ow + 1) / 2}
	c.tiles = c.th * c.tw
	c.imgs = winoImages(c.tiles, p.cin, p.cout)
	c.chunks = (p.n + c.imgs - 1) / c.imgs
	c.ld = c.imgs*c.tiles + 16
	c.planeV, c.planeM = offsetPlane(p.cin*c.ld), offsetPlane(p.cout*c.ld)
	return c
}

// images returns chunk i's first image, one past its last, and its number of tiles.
func (c winoChunks) images(i, n int) (n0, n1, tiles int) {
	n0 = i * c.imgs
	n1 = min(n0+c.imgs, n)
	return n0, n1, (n1 - n0) * c.tiles
}

// winogradForward computes y = conv(x, w) + b for a winogradOK plan.
func winogradForward(p convPlan, x, w, b, y []float32) {
	k := newWinoChunks(p)
	u := winogradFilters(w, p.cout, p.cin)
	parallelFor(k.chunks, func(lo, hi int) {
		v, m := scratch[float32](16*k.planeV), scratch[float32](16*k.planeM)
		defer release(v, m)
		for c := lo; c < hi; c++ {
			n0, n1, pp := k.images(c, p.n)
			winoInputC(v, x, n0, n1, p.cin, p.h, p.w, k.th, k.tw, k.ld, k.planeV)
			for xi := range 16 {
				gemmSerial(false, false, p.cout, pp, p.cin, 1, u[xi*p.cout*p.cin:], p.cin, v[xi*k.planeV:], k.ld, 0, m[xi*k.planeM:], k.ld)
			}
			winoOutputC(y, m, b, n0, n1, p.cout, p.oh, p.ow, k.th, k.tw, k.ld, k.planeM)
		}
	})
}

// winogradGradX computes dx for a winogradOK plan. With stride 1 and padding 1 on every
// side, the gradient of the input is the same kind of convolution: of dy, padded by
// 3 − 1 − 1 = 1, with the weights w̃[ci, co] = w[co, ci] turned by 180°, and no bias.
func winogradGradX(p convPlan, w, dy, dx []float32) {
	wt := scratch[float32](len(w))
	defer release(wt)
	for o := range p.cout {
		for c := range p.cin {
			src, dst := w[(o*p.cin+c)*9:][:9], wt[(c*p.cout+o)*9:][:9]
			for k, v := range src {
				dst[8-k] = v
			}
		}
	}
	q := p
	q.cin, q.cout, q.h, q.w, q.oh, q.ow = p.cout, p.cin, p.oh, p.ow, p.h, p.w
	q.kk, q.ohw = 9*q.cin, q.oh*q.ow
	zero := scratch[float32](p.cin)
	defer release(zero)
	clear(zero)
	winogradForward(q, dy, wt, zero, dx)
}

// winogradGradW computes dw for a winogradOK plan. The forward pass is
// Y = Aᵀ[U ⊙ V]A per tile with U = G g Gᵀ and V = Bᵀ d B, so
// dU = Σ_tiles (A dY Aᵀ) ⊙ V, one product per ξ over all tiles: dU[ξ] [cout, cin] =
// M′[ξ] [cout, P] · V[ξ]ᵀ, and then dw = Gᵀ dU G. Each goroutine sums its chunks into
// a dU of its own; the sums are added before the last transform.
func winogradGradW(p convPlan, x, dy, dw []float32) {
	k := newWinoChunks(p)
	size := p.cout * p.cin
	var mu sync.Mutex
	var sums [][]float32
	parallelFor(k.chunks, func(lo, hi int) {
		v, m, du := scratch[float32](16*k.planeV), scratch[float32](16*k.planeM), scratch[float32](16*size)
		defer release(v, m)
		clear(du)
		for c := lo; c < hi; c++ {
			n0, n1, pp := k.images(c, p.n)
			winoInputC(v, x, n0, n1, p.cin, p.h, p.w, k.th, k.tw, k.ld, k.planeV)
			winoGradOutputC(m, dy, n0, n1, p.cout, p.oh, p.ow, k.th, k.tw, k.ld, k.planeM)
			for xi := range 16 {
				gemmSerial(false, true, p.cout, p.cin, pp, 1, m[xi*k.planeM:], k.ld, v[xi*k.planeV:], k.ld, 1, du[xi*size:], p.cin)
			}
		}
		mu.Lock()
		sums = append(sums, du)
		mu.Unlock()
	})
	if len(sums) == 0 { // no images
		clear(dw)
		return
	}
	du := sums[0]
	for _, s := range sums[1:] {
		addSlice(du, s)
		release(s)
	}
	for i := range size { // dw = Gᵀ dU G, G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]
		var t [3][4]float32 // Gᵀ dU
		for s := range 4 {
			d0, d1, d2, d3 := du[(0+s)*size+i], du[(4+s)*size+i], du[(8+s)*size+i], du[(12+s)*size+i]
			t[0][s] = d0 + 0.5*(d1+d2)
			t[1][s] = 0.5 * (d1 - d2)
			t[2][s] = 0.5*(d1+d2) + d3
		}
		g := dw[i*9:][:9]
		for k := range 3 { // (Gᵀ dU) G
			g[3*k+0] = t[k][0] + 0.5*(t[k][1]+t[k][2])
			g[3*k+1] = 0.5 * (t[k][1] - t[k][2])
			g[3*k+2] = 0.5*(t[k][1]+t[k][2]) + t[k][3]
		}
	}
	release(du)
}

// A chunk of the Winograd products holds as many images as keep its 16 input and 16
// output matrices within winoBudget bytes, so that they stay in a core's L2 cache
// (1 MiB on the machines measured) between the transform that writes them and the
// products that read them, but at least winoMinCols tiles, below which the products
// are too narrow to run fast. BenchmarkConv3x3 times the U-Net's shapes.
const (
	winoBudget  = 512 << 10
	winoMinCols = 64
)

// winoImages is the number of images a chunk of the Winograd products holds.
func winoImages(tiles, cin, cout int) int {
	cols := max(winoMinCols, winoBudget/(16*4*(cin+cout)))
	return max(1, cols/tiles, (winoMinCols+tiles-1)/tiles)
}

// offsetPlane rounds n floats up to whole 4 KiB pages plus 128 bytes.
func offsetPlane(n int) int { return (n+1023)/1024*1024 + 32 }
