//go:build cgo

package ops

// #include "conv_kernels.h"
import "C"

// cGeom is the plan's geometry for the C kernels.
func cGeom(p convPlan) C.struct_conv_geom {
	return C.struct_conv_geom{k: C.long(p.k), stride: C.long(p.stride), top: C.long(p.Top), left: C.long(p.Left),
		cin: C.long(p.cin), h: C.long(p.h), w: C.long(p.w), oh: C.long(p.oh), ow: C.long(p.ow), ohw: C.long(p.ohw)}
}

func im2colC(p convPlan, x, col []float32, n0, n1 int) {
	g := cGeom(p)
	C.im2col_f32(fp(col), fp(x), &g, C.long(n0), C.long(n1))
}

func col2imC(p convPlan, col, dx []float32, n0, n1 int) {
	g := cGeom(p)
	C.col2im_f32(fp(dx), fp(col), &g, C.long(n0), C.long(n1))
}
