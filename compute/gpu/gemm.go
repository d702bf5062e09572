package gpu

import "fmt"

// Gemm is a batch of matrix products C = α·op(A)·op(B) + β·C of row-major float32
// matrices: op(A) is [M, K] (A itself, or Aᵀ with TA), op(B) [K, N], C [M, N], with
// leading dimensions LDA, LDB, LDC. Product z of the batch reads A+z·SA, B+z·SB and
// writes C+z·SC (strides in floats; 0 shares a matrix). With β = 0, C is not read.
type Gemm struct {
	TA, TB      bool
	M, N, K     int
	Alpha, Beta float32
	A           Ptr
	LDA         int
	SA          int
	B           Ptr
	LDB         int
	SB          int
	C           Ptr
	LDC         int
	SC          int
	Batch       int
}

// Check reports dimensions that do not fit their leading dimensions.
func (g Gemm) Check() error {
	ra, ca := g.M, g.K
	if g.TA {
		ra, ca = ca, ra
	}
	rb, cb := g.K, g.N
	if g.TB {
		rb, cb = cb, rb
	}
	switch {
	case g.M < 1 || g.N < 1 || g.K < 1 || g.Batch < 1:
		return fmt.Errorf("gemm %d×%d×%d, batch %d: sizes must be positive", g.M, g.N, g.K, g.Batch)
	case g.LDA < ca || g.LDB < cb || g.LDC < g.N:
		return fmt.Errorf("gemm %d×%d×%d: leading dimensions %d, %d, %d are too small", g.M, g.N, g.K, g.LDA, g.LDB, g.LDC)
	case ra < 1 || rb < 1:
		return fmt.Errorf("gemm: empty matrix")
	}
	return nil
}

// GemmKernel computes g with this package's own kernel (sgemm in gemm.cu).
func GemmKernel(be Backend, g Gemm) error {
	if err := g.Check(); err != nil {
		return err
	}
	if g.Batch > 65535 {
		return fmt.Errorf("gemm: batch %d, at most 65535 in one launch", g.Batch)
	}
	grid := Dim3{(g.N + GemmTile - 1) / GemmTile, (g.M + GemmTile - 1) / GemmTile, g.Batch}
	if grid.Y > 65535 {
		return fmt.Errorf("gemm: %d rows, at most %d", g.M, 65535*GemmTile)
	}
	return kSgemm(be, grid, Dim3{16, 16, 1}, g.C, g.A, g.B, g.M, g.N, g.K, g.LDA, g.LDB, g.LDC,
		b2i(g.TA), b2i(g.TB), float64(g.Alpha), float64(g.Beta), g.SA, g.SB, g.SC)
}
