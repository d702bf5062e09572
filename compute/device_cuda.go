//go:build ddpmcuda

package compute

import (
	"github.com/ddpm-studio/ddpm-studio/compute/cuda"
	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// In builds with -tags cuda, OpenDevice can open the GPU.
func init() {
	gpuOpener = func() (gpu.Backend, string, func() error, error) {
		b, desc, err := cuda.Open()
		if err != nil {
			return nil, "", nil, err
		}
		return b, desc, b.Close, nil
	}
}
