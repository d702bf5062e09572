//go:build cgo

package ops

// #include "winograd_kernels.h"
import "C"

func winoInputC(v, x []float32, n0, n1, cin, h, w, th, tw, ld, plane int) {
	C.wino_input_f32(fp(v), fp(x), C.long(n0), C.long(n1), C.long(cin), C.long(h), C.long(w), C.long(th), C.long(tw), C.long(ld), C.long(plane))
}

func winoOutputC(y, m, bias []float32, n0, n1, cout, h, w, th, tw, ld, plane int) {
	C.wino_output_f32(fp(y), fp(m), fp(bias), C.long(n0), C.long(n1), C.long(cout), C.long(h), C.long(w), C.long(th), C.long(tw), C.long(ld), C.long(plane))
}

func winoGradOutputC(m, dy []float32, n0, n1, cout, h, w, th, tw, ld, plane int) {
	C.wino_grad_output_f32(fp(m), fp(dy), C.long(n0), C.long(n1), C.long(cout), C.long(h), C.long(w), C.long(th), C.long(tw), C.long(ld), C.long(plane))
}
