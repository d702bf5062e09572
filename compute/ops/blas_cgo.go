//go:build cgo && !noopenblas

package ops

// #cgo LDFLAGS: -lopenblas -ldl
// #include <dlfcn.h>
// #include <stdlib.h>
// void openblas_set_num_threads(int);
// int openblas_get_num_threads(void);
// char *openblas_get_config(void);
// char *openblas_get_corename(void);
// // hasSymbol reports whether the loaded libraries define name.
// static int hasSymbol(const char *name) { return dlsym(RTLD_DEFAULT, name) != NULL; }
import "C"

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"unsafe"

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

// openBLAS is what the loaded OpenBLAS says about itself.
func openBLAS() blasLibrary {
	return blasLibrary{
		Core:      C.GoString(C.openblas_get_corename()),
		Dynamic:   strings.Contains(" "+C.GoString(C.openblas_get_config())+" ", " DYNAMIC_ARCH "),
		Available: openBLASHas,
	}
}

// openBLASHas reports whether the loaded OpenBLAS has a core's kernels: a
// DYNAMIC_ARCH library exports each kernel table as gotoblas_<CORE>.
func openBLASHas(core string) bool {
	name := C.CString("gotoblas_" + strings.ToUpper(core))
	defer C.free(unsafe.Pointer(name))
	return C.hasSymbol(name) != 0
}

// startDecision is the core decision taken on the environment and library
// state at the first call, before any re-execution could change them.
var startDecision = sync.OnceValue(func() coreDecision {
	cpu, _ := hostCPU()
	return decideCore(openBLAS(), cpu, blasEnv{
		CoreType:     os.Getenv(EnvCoreType),
		Reexec:       os.Getenv(EnvReexec),
		TestFallback: os.Getenv(EnvTestFallback) == "1",
	})
})

// reexecErr is why UseBestBLASCore could not re-execute, if it tried.
var reexecErr error

// UseBestBLASCore makes OpenBLAS run the best kernels this CPU has where the
// library fell back to generic ones: it runs the program again, in the same
// process (execve of /proc/self/exe with the same arguments), with
// OPENBLAS_CORETYPE set, at most once, and does not return then. It leaves a
// user's own OPENBLAS_CORETYPE alone. Call it first thing in main, before any
// work: whatever the process did before is lost. It returns an error only if
// the re-execution failed; the program then runs on with the library's choice.
func UseBestBLASCore() error {
	d := startDecision()
	if d.Set == "" {
		return nil
	}
	exe := "/proc/self/exe" // this very file, even if it was replaced since
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			reexecErr = err
			return fmt.Errorf("use OpenBLAS's %s kernels: %w", d.Set, err)
		}
	}
	err := syscall.Exec(exe, os.Args, reexecEnv(os.Environ(), openBLAS().Core, d.Set))
	reexecErr = err
	return fmt.Errorf("use OpenBLAS's %s kernels: re-execute %s: %w", d.Set, exe, err)
}

// RunningBLAS says which BLAS and kernels this process runs, who chose them and why.
func RunningBLAS() BLASInfo {
	d := startDecision()
	lib := openBLAS()
	config := C.GoString(C.openblas_get_config())
	library := "OpenBLAS"
	if f := strings.Fields(config); len(f) >= 2 && f[0] == "OpenBLAS" {
		library += " " + f[1]
	}
	reason := d.Reason
	switch {
	case d.Set != "" && reexecErr != nil:
		reason += "; running it again failed: " + reexecErr.Error()
	case d.Set != "":
		reason += " (UseBestBLASCore was not called)"
	}
	_, cpu := hostCPU()
	info := BLASInfo{Library: library, Config: config, Core: lib.Core, ChosenBy: d.ChosenBy,
		Reason: reason, Threads: int(C.openblas_get_num_threads()), CPU: cpu}
	if d.ChosenBy == ChosenByUs {
		info.Fallback = d.Picked
	}
	return info
}
