//go:build cgo

package ops

// #cgo LDFLAGS: -lm
// #include "gn_kernels.h"
import "C"

import "unsafe"

// The float32 GroupNorm(+swish) kernels run in C (gn_kernels.c), where the
// compiler vectorises the swish's exponential 8 floats at a time with AVX2;
// Go's compiler does not vectorise, and these loops were a quarter of a
// training step. Float64 data, used by the gradient tests, stays in Go.
const cKernels = true

func bf(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func fp(s []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }

func gnForwardC(y, x, gamma, beta []float32, d gnDims, eps float64, act bool, lo, hi int) {
	C.gn_forward_f32(fp(y), fp(x), fp(gamma), fp(beta), C.long(lo), C.long(hi), C.long(d.groups), C.long(d.cg), C.long(d.hw), C.double(eps), bf(act))
}

func gnStatsC(st, x, gamma, beta, dy []float32, d gnDims, eps float64, act bool, lo, hi int) {
	C.gn_stats_f32(fp(st), fp(x), fp(gamma), fp(beta), fp(dy), C.long(lo), C.long(hi), C.long(d.groups), C.long(d.c), C.long(d.cg), C.long(d.hw), C.double(eps), bf(act))
}

func gnDxC(dx, x, gamma, beta, dy, st []float32, d gnDims, act bool, lo, hi int) {
	C.gn_dx_f32(fp(dx), fp(x), fp(gamma), fp(beta), fp(dy), fp(st), C.long(lo), C.long(hi), C.long(d.groups), C.long(d.c), C.long(d.cg), C.long(d.hw), bf(act))
}
