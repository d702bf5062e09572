//go:build ddpmcuda

package compute

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/compute/cuda"
)

// The GPU, where this machine has one the driver can use, joins the test devices: with
// its matrix products in cuBLAS (where a cuBLAS is found) and in the sgemm kernel.
func init() {
	extraDevices = append(extraDevices,
		deviceCase{"cuda", func(t testing.TB) *Device { return cudaGEMM(t, true) }},
		deviceCase{"cuda-sgemm", func(t testing.TB) *Device { return cudaGEMM(t, false) }})
}

// cudaGEMM is the GPU with its matrix products in cuBLAS or in the sgemm kernel; the
// test is skipped where cuBLAS is asked for and was not found.
func cudaGEMM(t testing.TB, cublas bool) *Device {
	d := cudaTestDevice(t)
	b := d.be.(*cuda.Backend)
	if b.UseCuBLAS(cublas) != cublas {
		t.Skip("no cuBLAS on this machine")
	}
	t.Cleanup(func() { b.UseCuBLAS(true) })
	return d
}

var (
	cudaOnce sync.Once
	cudaDev  *Device
	cudaErr  error
)

// cudaTestDevice opens the GPU once for all tests, or skips the test with the reason.
func cudaTestDevice(t testing.TB) *Device {
	cudaOnce.Do(func() {
		cudaDev, _, cudaErr = OpenDevice(DeviceCUDA)
	})
	if cudaErr != nil {
		if os.Getenv("DDPM_REQUIRE_GPU") != "" {
			t.Fatalf("DDPM_REQUIRE_GPU is set but the GPU cannot be used: %v", cudaErr)
		}
		t.Skipf("no GPU test: %v", cudaErr)
	}
	return cudaDev
}

// TestOpenDeviceSaysWhy checks OpenDevice in a CUDA build: "auto" gives the GPU where
// one can be used and otherwise the CPU with a one-line note; "cuda" then fails with
// the same reason in one line. Run without a GPU (CI), it checks the messages the
// program starts with there.
func TestOpenDeviceSaysWhy(t *testing.T) {
	if !CUDABuilt() {
		t.Fatal("a ddpmcuda build without the CUDA backend")
	}
	d, note, err := OpenDevice(DeviceAuto)
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	_, _, cerr := OpenDevice(DeviceCUDA)
	if os.Getenv("DDPM_GPU_TABLE") != "" { // the device line of scripts/gpu-check.sh
		if d.IsGPU() {
			fmt.Printf("DEVICE|GPU: %s\n", d)
		} else {
			fmt.Printf("DEVICE|%s\n", note)
		}
	}
	if d.IsGPU() {
		t.Logf("GPU: %s", d)
		if !strings.HasPrefix(d.String(), "CUDA: ") || strings.Contains(d.String(), "\n") || note != "" {
			t.Errorf("auto on a GPU: description %q, note %q", d.String(), note)
		}
		if cerr != nil {
			t.Errorf("cuda after auto found a GPU: %v", cerr)
		}
		return
	}
	t.Log(note)
	if note == "" || strings.Contains(note, "\n") || !strings.Contains(note, "running on the CPU") {
		t.Errorf("auto without a GPU: note %q", note)
	}
	if cerr == nil || strings.Contains(cerr.Error(), "\n") || !strings.Contains(cerr.Error(), "cannot use the GPU") {
		t.Errorf("cuda without a GPU: %v", cerr)
	}
}

// TestNoDriverMessage runs this test binary again with DDPM_LIBCUDA pointing nowhere, as
// on a machine without the NVIDIA driver: the program must start (no loader error for
// libcuda.so.1) and OpenDevice("cuda") must say that there is no driver.
func TestNoDriverMessage(t *testing.T) {
	if os.Getenv("DDPM_NO_DRIVER_CHILD") != "" {
		_, _, err := OpenDevice(DeviceCUDA)
		if err == nil || !strings.Contains(err.Error(), "no NVIDIA driver") {
			t.Fatalf("with no driver: %v", err)
		}
		t.Log(err)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoDriverMessage$", "-test.v")
	cmd.Env = append(os.Environ(), "DDPM_NO_DRIVER_CHILD=1", "DDPM_LIBCUDA=/nonexistent/libcuda.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
