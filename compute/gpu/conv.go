package gpu

import "fmt"

// Conv is the geometry of a convolution (ops.Conv2d): x [N, Cin, H, W], weights
// [Cout, Cin, K, K], the given stride and zero padding.
type Conv struct {
	N, Cin, H, W, Cout, K, Stride int
	Top, Bottom, Left, Right      int
}

// OH and OW are the output's height and width.
func (c Conv) OH() int { return (c.H+c.Top+c.Bottom-c.K)/c.Stride + 1 }
func (c Conv) OW() int { return (c.W+c.Left+c.Right-c.K)/c.Stride + 1 }

func (c Conv) ohw() int { return c.OH() * c.OW() }
func (c Conv) kk() int  { return c.Cin * c.K * c.K }

// Pointwise reports a 1×1, stride 1, unpadded convolution: a product with the image
// itself, with no column matrix.
func (c Conv) Pointwise() bool {
	return c.K == 1 && c.Stride == 1 && c.Top == 0 && c.Bottom == 0 && c.Left == 0 && c.Right == 0
}

// Check reports a geometry that does not describe a convolution.
func (c Conv) Check() error {
	if min(c.N, c.Cin, c.H, c.W, c.Cout, c.K, c.Stride) < 1 || min(c.Top, c.Bottom, c.Left, c.Right) < 0 ||
		c.H+c.Top+c.Bottom < c.K || c.W+c.Left+c.Right < c.K {
		return fmt.Errorf("convolution %+v: bad geometry", c)
	}
	return nil
}

// ConvPass is what a convolution call computes.
type ConvPass int

// The passes of a convolution.
const (
	ConvForward ConvPass = iota // y = conv(x, w) + b
	ConvGradX                   // dL/dx from w and dy
	ConvGradW                   // dL/dw from x and dy
)

// perImage is the scratch floats one image of a chunk needs.
func (c Conv) perImage(p ConvPass) int {
	switch {
	case p == ConvGradW && c.Pointwise():
		return (c.Cin + c.Cout) * c.ohw() // both operands laid out [channels, imgs·hw]
	case p == ConvGradW:
		return (c.kk() + c.Cout) * c.ohw() // the column matrix and dy laid out [cout, imgs·ohw]
	case c.Pointwise():
		return 0
	default:
		return c.kk() * c.ohw() // the column matrix, per image
	}
}

// Chunk returns the images per chunk of pass p whose scratch fits in budget bytes (at
// least 1, at most N) and the scratch bytes a chunk of that many needs.
func (c Conv) Chunk(p ConvPass, budget int64) (imgs int, bytes int64) {
	per := int64(c.perImage(p)) * 4
	if per == 0 {
		return c.N, 0
	}
	imgs = int(max(1, min(int64(c.N), budget/per)))
	return imgs, int64(imgs) * per
}

// Forward computes y = conv(x, w) + b with chunks of imgs images (Chunk), using scratch.
func (c Conv) Forward(be Backend, y, x, w, b, scratch Ptr, imgs int) error {
	oh, ow, ohw, kk := c.OH(), c.OW(), c.ohw(), c.kk()
	if c.Pointwise() {
		err := be.Gemm(Gemm{M: c.Cout, N: ohw, K: c.Cin, Alpha: 1, A: w, LDA: c.Cin,
			B: x, LDB: ohw, SB: c.Cin * ohw, C: y, LDC: ohw, SC: c.Cout * ohw, Batch: c.N})
		if err != nil {
			return err
		}
	} else {
		for n0 := 0; n0 < c.N; n0 += imgs {
			m := min(imgs, c.N-n0)
			if err := c.im2col(be, scratch, x, n0, m, ohw, kk*ohw); err != nil {
				return err
			}
			err := be.Gemm(Gemm{M: c.Cout, N: ohw, K: kk, Alpha: 1, A: w, LDA: kk,
				B: scratch, LDB: ohw, SB: kk * ohw, C: y.Add(n0 * c.Cout * ohw), LDC: ohw, SC: c.Cout * ohw, Batch: m})
			if err != nil {
				return err
			}
		}
	}
	n := c.N * c.Cout * oh * ow
	return kAddBias(be, grid1(n), threads1, y, b, n, c.Cout, ohw)
}

// GradX computes dx from w and dy.
func (c Conv) GradX(be Backend, dx, w, dy, scratch Ptr, imgs int) error {
	ohw, kk := c.ohw(), c.kk()
	if c.Pointwise() { // dx_n = wᵀ · dy_n
		return be.Gemm(Gemm{TA: true, M: c.Cin, N: ohw, K: c.Cout, Alpha: 1, A: w, LDA: c.Cin,
			B: dy, LDB: ohw, SB: c.Cout * ohw, C: dx, LDC: ohw, SC: c.Cin * ohw, Batch: c.N})
	}
	for n0 := 0; n0 < c.N; n0 += imgs {
		m := min(imgs, c.N-n0)
		err := be.Gemm(Gemm{TA: true, M: kk, N: ohw, K: c.Cout, Alpha: 1, A: w, LDA: kk,
			B: dy.Add(n0 * c.Cout * ohw), LDB: ohw, SB: c.Cout * ohw, C: scratch, LDC: ohw, SC: kk * ohw, Batch: m})
		if err != nil {
			return err
		}
		if err := c.col2im(be, dx, scratch, n0, m, ohw, kk*ohw); err != nil {
			return err
		}
	}
	return nil
}

// GradW computes dw from x and dy: per chunk, dy laid out [cout, imgs·ohw] times the
// column matrix [kk, imgs·ohw] transposed, summed over the chunks.
func (c Conv) GradW(be Backend, dw, x, dy, scratch Ptr, imgs int) error {
	ohw, kk := c.ohw(), c.kk()
	rows := kk
	if c.Pointwise() {
		rows = c.Cin
	}
	for n0 := 0; n0 < c.N; n0 += imgs {
		m := min(imgs, c.N-n0)
		cols := m * ohw
		col, dyT := scratch, scratch.Add(rows*cols)
		var err error
		if c.Pointwise() {
			err = NCHWToCN(be, col, x.Add(n0*c.Cin*ohw), m, c.Cin, ohw)
		} else {
			err = c.im2col(be, col, x, n0, m, cols, ohw)
		}
		if err != nil {
			return err
		}
		if err := NCHWToCN(be, dyT, dy.Add(n0*c.Cout*ohw), m, c.Cout, ohw); err != nil {
			return err
		}
		beta := float32(1)
		if n0 == 0 {
			beta = 0
		}
		err = be.Gemm(Gemm{TB: true, M: c.Cout, N: rows, K: cols, Alpha: 1, Beta: beta, A: dyT, LDA: cols,
			B: col, LDB: cols, C: dw, LDC: rows, Batch: 1})
		if err != nil {
			return err
		}
	}
	return nil
}

// GradB computes db, the sums of dy over images and pixels.
func (c Conv) GradB(be Backend, db, dy Ptr) error {
	return ChannelSums(be, db, dy, c.N, c.Cout, c.ohw())
}

// im2col fills the column matrix of images n0..n0+imgs−1 (see conv.cu): row stride ld,
// image stride bstride.
func (c Conv) im2col(be Backend, col, x Ptr, n0, imgs, ld, bstride int) error {
	n := imgs * c.kk() * c.ohw()
	return kIm2col(be, grid1(n), threads1, col, x, n0, imgs, c.Cin, c.H, c.W, c.K, c.Stride, c.Top, c.Left, c.OH(), c.OW(), ld, bstride)
}

// col2im writes dx of images n0..n0+imgs−1 from their column matrix.
func (c Conv) col2im(be Backend, dx, col Ptr, n0, imgs, ld, bstride int) error {
	n := imgs * c.Cin * c.H * c.W
	return kCol2im(be, grid1(n), threads1, dx, col, n0, imgs, c.Cin, c.H, c.W, c.K, c.Stride, c.Top, c.Left, c.OH(), c.OW(), ld, bstride)
}
