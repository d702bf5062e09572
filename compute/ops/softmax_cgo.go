//go:build cgo

package ops

// #include "softmax_kernels.h"
import "C"

func softmaxRowsC(y, x []float32, w int, scale float64, lo, hi int) {
	C.softmax_rows_f32(fp(y), fp(x), C.long(lo), C.long(hi), C.long(w), C.float(scale))
}

func softmaxGradRowsC(dx, y, dy []float32, w int, scale float64, lo, hi int) {
	C.softmax_grad_rows_f32(fp(dx), fp(y), fp(dy), C.long(lo), C.long(hi), C.long(w), C.float(scale))
}
