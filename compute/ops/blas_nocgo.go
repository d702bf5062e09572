//go:build !cgo || noopenblas

package ops

import (
	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"
)

// BLAS is the matrix-multiply library behind Conv2d: gonum's pure-Go BLAS in
// builds without cgo or with -tags noopenblas.
var BLAS gorgonia.BLAS = gonum.Implementation{}
