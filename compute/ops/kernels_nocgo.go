//go:build !cgo

package ops

// Without cgo every kernel runs in Go.
const cKernels = false

func gnForwardC(y, x, gamma, beta []float32, d gnDims, eps float64, act bool, lo, hi int) {
	panic("no C kernels")
}

func gnStatsC(st, x, gamma, beta, dy []float32, d gnDims, eps float64, act bool, lo, hi int) {
	panic("no C kernels")
}

func gnDxC(dx, x, gamma, beta, dy, st []float32, d gnDims, act bool, lo, hi int) {
	panic("no C kernels")
}

func im2colC(p convPlan, x, col []float32, n0, n1 int) { panic("no C kernels") }

func col2imC(p convPlan, col, dx []float32, n0, n1 int) { panic("no C kernels") }

func softmaxRowsC(y, x []float32, w int, scale float64, lo, hi int) { panic("no C kernels") }

func softmaxGradRowsC(dx, y, dy []float32, w int, scale float64, lo, hi int) {
	panic("no C kernels")
}

func winoInputC(v, x []float32, n0, n1, cin, h, w, th, tw, ld, plane int) { panic("no C kernels") }

func winoOutputC(y, m, bias []float32, n0, n1, cout, h, w, th, tw, ld, plane int) {
	panic("no C kernels")
}

func winoGradOutputC(m, dy []float32, n0, n1, cout, h, w, th, tw, ld, plane int) {
	panic("no C kernels")
}
