package compute

import (
	"fmt"
	"os"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
)

// TestMain runs the tests on the BLAS kernels the program itself would run (see
// ops.UseBestBLASCore): on a CPU that OpenBLAS does not know, its generic kernels would
// make the heaviest tests several times slower.
func TestMain(m *testing.M) {
	if err := ops.UseBestBLASCore(); err != nil {
		fmt.Fprintln(os.Stderr, "compute tests:", err)
	}
	os.Exit(m.Run())
}
