//go:build cgo && !noopenblas

package ops

// #cgo LDFLAGS: -lopenblas
// void openblas_set_num_threads(int);
import "C"

import (
	"gonum.org/v1/netlib/blas/netlib"
	"gorgonia.org/gorgonia"
)

// BLAS is the matrix-multiply library behind Conv2d: OpenBLAS through cgo
// (Debian's libopenblas-dev), 8× faster than gonum's pure-Go BLAS here
// (100 vs 12 GFLOP/s on a 64×50176×576 SGEMM). Build with -tags noopenblas,
// or CGO_ENABLED=0, for the pure-Go fallback.
var BLAS gorgonia.BLAS = netlib.Implementation{}

// OpenBLAS runs single-threaded: gemm splits large products across
// goroutines itself. OpenBLAS's own worker threads spin (sched_yield) between
// calls and then compete with the Go code around them for the same cores.
func init() { C.openblas_set_num_threads(1) }
