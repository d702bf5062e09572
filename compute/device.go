package compute

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// Device is where the network runs: the CPU, or a GPU through a gpu.Backend (the CUDA
// backend of builds with -tags cuda). A UNet or Trainer runs on the CPU until
// SetDevice moves it; checkpoints are the same either way.
type Device struct {
	kind string      // "cpu", "cuda", or a test backend's name
	desc string      // one line: the device and what drives it
	be   gpu.Backend // nil for the CPU
	// mu makes one training step or forward pass at a time use the device.
	mu sync.Mutex
	// scratchBudget bounds the scratch memory of one step (a convolution's column
	// matrices, split into chunks of images to fit), in bytes.
	scratchBudget int64
	close         func() error
}

// Device names for OpenDevice.
const (
	DeviceAuto = "auto" // the GPU where one can be used, else the CPU
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// DeviceNames lists the names OpenDevice takes.
func DeviceNames() []string { return []string{DeviceAuto, DeviceCPU, DeviceCUDA} }

// gpuOpener opens a GPU backend and describes it in one line; device_cuda.go sets it in
// builds with -tags cuda.
var gpuOpener func() (be gpu.Backend, desc string, close func() error, err error)

// CUDABuilt reports whether this binary was built with the CUDA backend.
func CUDABuilt() bool { return gpuOpener != nil }

// defaultScratch is the scratch budget of a GPU step: column matrices of this size keep
// the matrix products large (thousands of columns) at the paper's batch of 128.
const defaultScratch = 512 << 20

var cpuDevice = &Device{kind: DeviceCPU}

// CPU returns the CPU device.
func CPU() *Device { return cpuDevice }

// OpenDevice opens the device named name: "cpu", "cuda" (an error, in words, where this
// build has no CUDA backend or no GPU can be used) or "auto" (the GPU if one can be
// used, else the CPU, with a one-line note saying why the GPU is not used; no note in
// builds without CUDA).
func OpenDevice(name string) (d *Device, note string, err error) {
	switch name {
	case DeviceCPU:
		return CPU(), "", nil
	case DeviceCUDA, DeviceAuto, "":
	default:
		return nil, "", fmt.Errorf("unknown device %q (have %s)", name, strings.Join(DeviceNames(), ", "))
	}
	if gpuOpener == nil {
		if name == DeviceCUDA {
			return nil, "", errors.New("this build of ddpm-studio has no CUDA support (build it with make build-cuda)")
		}
		return CPU(), "", nil
	}
	be, desc, closeFn, err := gpuOpener()
	if err != nil {
		if name == DeviceCUDA {
			return nil, "", fmt.Errorf("cannot use the GPU: %w", err)
		}
		return CPU(), fmt.Sprintf("no GPU: %v; running on the CPU", err), nil
	}
	return &Device{kind: DeviceCUDA, desc: desc, be: be, scratchBudget: defaultScratch, close: closeFn}, "", nil
}

// newBackendDevice wraps a backend (the tests' emulator) as a device.
func newBackendDevice(kind string, be gpu.Backend, scratch int64) *Device {
	return &Device{kind: kind, desc: kind, be: be, scratchBudget: scratch}
}

// Kind is "cpu" or "cuda".
func (d *Device) Kind() string { return d.kind }

// IsGPU reports whether the device is not the CPU.
func (d *Device) IsGPU() bool { return d != nil && d.be != nil }

// String describes the device in one line, for the CLI's first line and the status bar:
// "CPU: AMD EPYC 7B13, 2 threads" or "CUDA: NVIDIA H200 (sm_90, 139.8 GiB), driver 13.0, cuBLAS 13.1".
func (d *Device) String() string {
	if !d.IsGPU() {
		return "CPU: " + cpuName() + fmt.Sprintf(", %d threads", runtime.GOMAXPROCS(0))
	}
	return d.desc
}

// MemInfo returns the free and total memory of a GPU, where its backend reports them.
func (d *Device) MemInfo() (free, total int64, err error) {
	if m, ok := d.be.(interface{ MemInfo() (int64, int64, error) }); ok {
		return m.MemInfo()
	}
	return 0, 0, errors.New("device memory is not known")
}

// Close releases the GPU. Nets and trainers moved to it must be closed first.
func (d *Device) Close() error {
	if d == nil || d.close == nil {
		return nil
	}
	err := d.close()
	d.close = nil
	return err
}

// cpuName is the processor's model name from /proc/cpuinfo, or GOARCH.
func cpuName() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return runtime.GOARCH
}
