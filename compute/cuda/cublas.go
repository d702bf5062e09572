//go:build ddpmcuda

package cuda

/*
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// cuBLAS, found at run time: no header of it is needed, and the binary has no link-time
// dependency on it. The handle and stream types are pointers; the enums are ints whose
// values have not changed since cuBLAS 11 (CUBLAS_OP_N 0, CUBLAS_OP_T 1,
// CUBLAS_DEFAULT_MATH 0).
typedef int (*create_fn)(void **);
typedef int (*destroy_fn)(void *);
typedef int (*set_stream_fn)(void *, void *);
typedef int (*set_math_fn)(void *, int);
typedef int (*version_fn)(void *, int *);
typedef int (*sgemm_fn)(void *, int, int, int, int, int, const float *, const void *, int, const void *, int,
                        const float *, void *, int);
typedef int (*sgemm_batched_fn)(void *, int, int, int, int, int, const float *, const void *, int, long long,
                                const void *, int, long long, const float *, void *, int, long long, int);

typedef struct {
	void *lib, *handle;
	destroy_fn destroy;
	sgemm_fn sgemm;
	sgemm_batched_fn batched;
	int version;
} ddpm_cublas;

// ddpm_cublas_open dlopens name and makes a handle on stream; it returns 0, or a status
// and a message in err.
static int ddpm_cublas_open(ddpm_cublas *b, const char *name, void *stream, char *err, int len) {
	b->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!b->lib) {
		snprintf(err, len, "%s", dlerror());
		return -1;
	}
	create_fn create = (create_fn)dlsym(b->lib, "cublasCreate_v2");
	set_stream_fn set_stream = (set_stream_fn)dlsym(b->lib, "cublasSetStream_v2");
	set_math_fn set_math = (set_math_fn)dlsym(b->lib, "cublasSetMathMode");
	version_fn version = (version_fn)dlsym(b->lib, "cublasGetVersion_v2");
	b->destroy = (destroy_fn)dlsym(b->lib, "cublasDestroy_v2");
	b->sgemm = (sgemm_fn)dlsym(b->lib, "cublasSgemm_v2");
	b->batched = (sgemm_batched_fn)dlsym(b->lib, "cublasSgemmStridedBatched");
	if (!create || !set_stream || !set_math || !version || !b->destroy || !b->sgemm || !b->batched) {
		snprintf(err, len, "%s lacks a function this program calls", name);
		return -2;
	}
	int s = create(&b->handle);
	if (s != 0) {
		snprintf(err, len, "%s: cublasCreate failed (status %d)", name, s);
		return s;
	}
	// Plain float32 arithmetic: no TF32 tensor cores (CUBLAS_DEFAULT_MATH).
	if ((s = set_stream(b->handle, stream)) != 0 || (s = set_math(b->handle, 0)) != 0) {
		snprintf(err, len, "%s: setting up the handle failed (status %d)", name, s);
		return s;
	}
	version(b->handle, &b->version);
	return 0;
}

static void ddpm_cublas_close(ddpm_cublas *b) {
	if (b->handle) b->destroy(b->handle);
	b->handle = NULL;
}

// ddpm_cublas_gemm computes the row-major product C = α·op(A)·op(B) + β·C as the
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, which is what cuBLAS sees in row-major memory.
static int ddpm_cublas_gemm(ddpm_cublas *b, int ta, int tb, int m, int n, int k, float alpha, unsigned long long a,
                            int lda, long long sa, unsigned long long bb, int ldb, long long sb, float beta,
                            unsigned long long c, int ldc, long long sc, int batch) {
	if (batch == 1)
		return b->sgemm(b->handle, tb, ta, n, m, k, &alpha, (const void *)bb, ldb, (const void *)a, lda, &beta,
		                (void *)c, ldc);
	return b->batched(b->handle, tb, ta, n, m, k, &alpha, (const void *)bb, ldb, sb, (const void *)a, lda, sa, &beta,
	                  (void *)c, ldc, sc, batch);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
)

// cuBLASNames are the sonames tried, newest first: one of CUDA 13, 12 or 11, whichever
// the machine has (a driver of CUDA 13 runs the cuBLAS of any of them).
var cuBLASNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

type cublas struct {
	c    C.ddpm_cublas
	name string // "cuBLAS 13.0 (libcublas.so.13)"
}

// openCuBLAS finds cuBLAS ($DDPM_LIBCUBLAS, or the sonames in order) and makes a
// handle on the stream; the current context must be the GPU's.
func openCuBLAS(stream cu.Stream) (*cublas, error) {
	names := cuBLASNames
	if env := os.Getenv("DDPM_LIBCUBLAS"); env != "" {
		names = []string{env}
	}
	var tried []string
	for _, name := range names {
		b := &cublas{}
		cname := C.CString(name)
		var msg [512]C.char
		s := C.ddpm_cublas_open(&b.c, cname, unsafe.Pointer(stream.C()), &msg[0], C.int(len(msg)))
		C.free(unsafe.Pointer(cname))
		if s == 0 {
			v := int(b.c.version)
			b.name = fmt.Sprintf("cuBLAS %d.%d.%d (%s)", v/10000, v%10000/100, v%100, name)
			return b, nil
		}
		tried = append(tried, C.GoString(&msg[0]))
		if s != -1 { // the library is there but does not work: say so rather than try older ones
			break
		}
	}
	return nil, errors.New("no cuBLAS: " + strings.Join(tried, "; "))
}

// gemm queues g; the context must be current.
func (b *cublas) gemm(g gpu.Gemm) error {
	s := C.ddpm_cublas_gemm(&b.c, C.int(b2i(g.TA)), C.int(b2i(g.TB)), C.int(g.M), C.int(g.N), C.int(g.K),
		C.float(g.Alpha), C.ulonglong(g.A), C.int(g.LDA), C.longlong(g.SA), C.ulonglong(g.B), C.int(g.LDB),
		C.longlong(g.SB), C.float(g.Beta), C.ulonglong(g.C), C.int(g.LDC), C.longlong(g.SC), C.int(g.Batch))
	if s != 0 {
		return fmt.Errorf("%s: sgemm %d×%d×%d (batch %d) failed with status %d", b.name, g.M, g.N, g.K, g.Batch, int(s))
	}
	return nil
}

func (b *cublas) close() { C.ddpm_cublas_close(&b.c) }

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
