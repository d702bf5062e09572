//go:build !cgo || noopenblas

package ops

import (
	"runtime"

	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"
)

// BLAS is the matrix-multiply library behind Conv2d: gonum's pure-Go BLAS in
// builds without cgo or with -tags noopenblas.
var BLAS gorgonia.BLAS = gonum.Implementation{}

// UseBestBLASCore does nothing without OpenBLAS: gonum's kernels are Go code.
func UseBestBLASCore() error { return nil }

// RunningBLAS says which BLAS this process runs: gonum's, in Go, which
// splits large products across GOMAXPROCS goroutines.
func RunningBLAS() BLASInfo {
	_, cpu := hostCPU()
	return BLASInfo{Library: "gonum (pure Go)", ChosenBy: ChosenByLibrary,
		Reason: "built without cgo or with -tags noopenblas", Threads: runtime.GOMAXPROCS(0), CPU: cpu}
}

// openBLASHas reports that there are no OpenBLAS kernels.
func openBLASHas(string) bool { return false }
