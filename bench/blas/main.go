// Command blas times single-threaded SGEMM, the way compute/ops calls it, in
// OpenBLAS with several core types and in BLIS, on the shapes of an mnist
// training step: the Winograd per-ξ products and im2col products that make
// most of its FLOPs (traced from `bench --preset mnist --batch 64`), and one
// large im2col product.
//
// Each round runs one child process per OpenBLAS core type
// (OPENBLAS_CORETYPE is read when the library loads); each child loads
// OpenBLAS and BLIS with dlopen and, shape by shape, lets them take turns,
// timed by the thread's CPU clock so that a busy machine's preemptions do not
// count. Figures are medians over rounds; ratios are taken within a child
// and then their median.
//
//	go run ./bench/blas -blis /usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4 -cores Zen,Haswell,Prescott
//
// Debian packages: libopenblas0 (installed with the program) and libblis4-serial
// (its libblas.so.3 alternative has priority 70, below OpenBLAS's 100, so
// installing it does not change what other programs load).
// Never give a core the CPU cannot run: OpenBLAS accepts SkylakeX on a CPU
// without AVX-512 and then dies of an illegal instruction.
package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef char *(*str_fn)(void);
typedef void (*int_fn)(int);
typedef int (*arch_fn)(void);
typedef const char *(*arch_str_fn)(int);

static void *open_lib(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static void *sym(void *h, const char *name) { return dlsym(h, name); }
static const char *last_error(void) { const char *e = dlerror(); return e ? e : ""; }

// CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
static void call_sgemm(void *f, int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
	((sgemm_fn)f)(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
static long long thread_cpu_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static void call_int(void *f, int v) { ((int_fn)f)(v); }
static const char *call_str(void *f) { return ((str_fn)f)(); }
static const char *blis_arch(void *query, void *name) { return ((arch_str_fn)name)(((arch_fn)query)()); }
*/
import "C"

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unsafe"
)

// shape is one product C[m×n] = op(A)·op(B) with inner dimension k.
type shape struct {
	TA, TB  bool
	M, N, K int
	Share   float64 // of the GEMM FLOPs of an mnist batch-64 training step; 0 if not from the trace
}

func (s shape) String() string {
	t := func(b bool) string {
		if b {
			return "ᵀ"
		}
		return ""
	}
	return fmt.Sprintf("%d×%d×%d A%s B%s", s.M, s.N, s.K, t(s.TA), t(s.TB))
}

// shapes are the 16 largest (by FLOPs) of the 69 SGEMM shapes of one mnist
// batch-64 training step, 75% of its GEMM FLOPs (a trace of gemmSerial on
// 2 cores, so n is half a chunk), and the im2col product of a 64→64 3×3
// convolution over a whole batch of 28×28 images.
var shapes = []shape{
	{false, false, 64, 196, 64, 0.101},
	{false, false, 64, 98, 64, 0.097},
	{false, false, 32, 196, 32, 0.097},
	{true, false, 196, 196, 64, 0.053},
	{false, true, 64, 196, 196, 0.053},
	{false, false, 64, 64, 64, 0.050},
	{false, true, 64, 64, 196, 0.041},
	{false, false, 32, 196, 64, 0.037},
	{false, false, 64, 98, 128, 0.037},
	{false, false, 64, 196, 196, 0.035},
	{false, true, 64, 64, 98, 0.032},
	{false, true, 32, 32, 196, 0.032},
	{false, false, 32, 196, 96, 0.028},
	{true, false, 64, 196, 64, 0.023},
	{false, false, 64, 196, 32, 0.020},
	{false, true, 64, 128, 98, 0.018},
	{false, false, 64, 50176, 576, 0},
}

// lib is a loaded BLAS.
type lib struct {
	name  string
	sgemm unsafe.Pointer
}

func open(path string) (unsafe.Pointer, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	h := C.open_lib(p)
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(C.last_error()))
	}
	return h, nil
}

func symbol(h unsafe.Pointer, name string) unsafe.Pointer {
	p := C.CString(name)
	defer C.free(unsafe.Pointer(p))
	return C.sym(h, p)
}

// loadOpenBLAS loads OpenBLAS single-threaded and names it with its core.
func loadOpenBLAS(path string) (lib, error) {
	h, err := open(path)
	if err != nil {
		return lib{}, err
	}
	set, core, sgemm := symbol(h, "openblas_set_num_threads"), symbol(h, "openblas_get_corename"), symbol(h, "cblas_sgemm")
	if set == nil || core == nil || sgemm == nil {
		return lib{}, fmt.Errorf("%s is not OpenBLAS", path)
	}
	C.call_int(set, 1)
	return lib{"OpenBLAS " + C.GoString(C.call_str(core)), sgemm}, nil
}

// loadBLIS loads BLIS single-threaded and names it with its kernel configuration.
func loadBLIS(path string) (lib, error) {
	h, err := open(path)
	if err != nil {
		return lib{}, err
	}
	set, query, name, version := symbol(h, "bli_thread_set_num_threads"), symbol(h, "bli_arch_query_id"), symbol(h, "bli_arch_string"), symbol(h, "bli_info_get_version_str")
	sgemm := symbol(h, "cblas_sgemm")
	if set == nil || query == nil || name == nil || version == nil || sgemm == nil {
		return lib{}, fmt.Errorf("%s is not BLIS with CBLAS", path)
	}
	C.call_int(set, 1)
	return lib{fmt.Sprintf("BLIS %s %s", C.GoString(C.call_str(version)), C.GoString(C.blis_arch(query, name))), sgemm}, nil
}

// operands are one shape's matrices, filled once.
type operands struct {
	s       shape
	a, b, c []float32
}

func newOperands(s shape, r *rand.Rand) *operands {
	o := &operands{s: s, a: make([]float32, s.M*s.K), b: make([]float32, s.K*s.N), c: make([]float32, s.M*s.N)}
	for _, x := range [][]float32{o.a, o.b} {
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
	}
	return o
}

// run computes C once with l.
func (o *operands) run(l lib) {
	s := o.s
	lda, ldb := s.K, s.N
	if s.TA {
		lda = s.M
	}
	if s.TB {
		ldb = s.K
	}
	b2i := func(b bool) C.int {
		if b {
			return 1
		}
		return 0
	}
	C.call_sgemm(l.sgemm, b2i(s.TA), b2i(s.TB), C.int(s.M), C.int(s.N), C.int(s.K),
		(*C.float)(&o.a[0]), C.int(lda), (*C.float)(&o.b[0]), C.int(ldb), (*C.float)(&o.c[0]), C.int(s.N))
}

// gflops runs the product for at least d of this thread's CPU time and
// returns GFLOP per CPU-second: on a shared machine, time the process
// spends descheduled does not count.
func (o *operands) gflops(l lib, d time.Duration) float64 {
	calls, start := 0, threadCPU()
	for threadCPU()-start < d {
		o.run(l)
		calls++
	}
	return 2 * float64(o.s.M) * float64(o.s.N) * float64(o.s.K) * float64(calls) / (threadCPU() - start).Seconds() / 1e9
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration { return time.Duration(C.thread_cpu_ns()) }

// measurement is one child's result: GFLOP/s per library name and shape.
type measurement struct {
	Libs   []string    `json:"libs"`
	GFLOPS [][]float64 `json:"gflops"` // [shape][lib]
	MaxRel float64     `json:"max_rel"`
}

// child loads the libraries, checks they agree, and times each shape in each library in turn.
func child(openblasPath, blisPath string, d time.Duration) (measurement, error) {
	var libs []lib
	if openblasPath != "" {
		l, err := loadOpenBLAS(openblasPath)
		if err != nil {
			return measurement{}, err
		}
		libs = append(libs, l)
	}
	if blisPath != "" {
		l, err := loadBLIS(blisPath)
		if err != nil {
			return measurement{}, err
		}
		libs = append(libs, l)
	}
	var m measurement
	for _, l := range libs {
		m.Libs = append(m.Libs, l.name)
	}
	runtime.LockOSThread() // the BLAS calls and the CPU clock on one thread
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range shapes {
		o := newOperands(s, r)
		var first []float32
		for i, l := range libs {
			o.run(l) // warm, and check against the first library
			if i == 0 {
				first = slices.Clone(o.c)
			} else {
				for j, v := range o.c {
					m.MaxRel = max(m.MaxRel, math.Abs(float64(v-first[j]))/(1+math.Abs(float64(first[j]))))
				}
			}
		}
		// The libraries take turns in slices, and each one's figure is its median slice.
		turns := make([][]float64, len(libs))
		for range slicesPerShape {
			for i, l := range libs {
				turns[i] = append(turns[i], o.gflops(l, d/slicesPerShape))
			}
		}
		row := make([]float64, len(libs))
		for i := range libs {
			row[i] = median(turns[i])
		}
		m.GFLOPS = append(m.GFLOPS, row)
	}
	return m, nil
}

// slicesPerShape is how many turns each library takes per shape.
const slicesPerShape = 10

func median(v []float64) float64 {
	v = slices.Sorted(slices.Values(v))
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func main() {
	openblas := flag.String("openblas", "libopenblas.so.0", "OpenBLAS shared library")
	blis := flag.String("blis", "", "BLIS shared library with CBLAS (e.g. /usr/lib/x86_64-linux-gnu/blis-serial/libblis.so.4); none if empty")
	cores := flag.String("cores", "", "OPENBLAS_CORETYPE of each child, comma-separated; empty: OpenBLAS's own choice")
	rounds := flag.Int("rounds", 5, "rounds")
	each := flag.Duration("time", 150*time.Millisecond, "time per shape and library")
	isChild := flag.Bool("child", false, "measure once and print JSON (internal)")
	flag.Parse()

	if *openblas == "" {
		fmt.Fprintln(os.Stderr, "blas: -openblas is needed")
		os.Exit(2)
	}
	if *isChild {
		m, err := child(*openblas, *blis, *each)
		if err != nil {
			fmt.Fprintln(os.Stderr, "blas:", err)
			os.Exit(1)
		}
		if err := json.NewEncoder(os.Stdout).Encode(m); err != nil {
			fmt.Fprintln(os.Stderr, "blas:", err)
			os.Exit(1)
		}
		return
	}

	coreList := strings.Split(*cores, ",")
	// results[core][round]
	results := make([][]measurement, len(coreList))
	for round := range *rounds {
		for i, core := range coreList {
			cmd := exec.Command(os.Args[0], "-child", "-openblas", *openblas, "-blis", *blis, "-time", each.String())
			cmd.Env = os.Environ()
			if core != "" {
				cmd.Env = append(cmd.Env, "OPENBLAS_CORETYPE="+core)
			}
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				fmt.Fprintf(os.Stderr, "blas: child with OPENBLAS_CORETYPE=%q: %v\n", core, err)
				os.Exit(1)
			}
			var m measurement
			if err := json.Unmarshal(out, &m); err != nil {
				fmt.Fprintln(os.Stderr, "blas:", err)
				os.Exit(1)
			}
			if m.MaxRel > 1e-3 {
				fmt.Fprintf(os.Stderr, "blas: %v disagree: largest relative difference %.2g\n", m.Libs, m.MaxRel)
				os.Exit(1)
			}
			results[i] = append(results[i], m)
			fmt.Fprintf(os.Stderr, "round %d/%d: %s\n", round+1, *rounds, strings.Join(m.Libs, ", "))
		}
	}

	// Columns: each OpenBLAS core, then BLIS (from the first child), then the ratios to BLIS.
	hasBLIS := *blis != ""
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "shape\tshare\t"
	for _, rs := range results {
		head += rs[0].Libs[0] + "\t"
	}
	if hasBLIS {
		head += results[0][0].Libs[1] + "\t"
		for _, rs := range results {
			head += rs[0].Libs[0] + "/BLIS\t"
		}
	}
	fmt.Fprintln(tw, head)
	// A step's GEMM time in each library, from the traced shapes' shares, in
	// units of the time of its FLOPs at 1 GFLOP/s.
	stepTime := make([]float64, len(coreList)+1)
	for si, s := range shapes {
		line := fmt.Sprintf("%s\t%.3f\t", s, s.Share)
		var blisAll []float64
		for ci, rs := range results {
			var g []float64
			for _, m := range rs {
				g = append(g, m.GFLOPS[si][0])
				if hasBLIS {
					blisAll = append(blisAll, m.GFLOPS[si][1])
				}
			}
			line += fmt.Sprintf("%.1f\t", median(g))
			stepTime[ci] += s.Share / median(g)
		}
		if hasBLIS {
			line += fmt.Sprintf("%.1f\t", median(blisAll))
			stepTime[len(coreList)] += s.Share / median(blisAll)
			for _, rs := range results {
				var ratio []float64
				for _, m := range rs {
					ratio = append(ratio, m.GFLOPS[si][0]/m.GFLOPS[si][1])
				}
				line += fmt.Sprintf("%.2f\t", median(ratio))
			}
		}
		fmt.Fprintln(tw, line)
	}
	line := "traced mix (GFLOP/s)\t\t"
	for ci := range coreList {
		line += fmt.Sprintf("%.1f\t", traced()/stepTime[ci])
	}
	if hasBLIS {
		line += fmt.Sprintf("%.1f\t", traced()/stepTime[len(coreList)])
	}
	fmt.Fprintln(tw, line)
	tw.Flush()
	fmt.Printf("GFLOP per CPU-second of one thread; %d rounds of one child per core; in each, every shape %v per library in %d turns, median turn; medians over rounds\n", *rounds, *each, slicesPerShape)
}

// traced is the traced shapes' total share.
func traced() float64 {
	t := 0.0
	for _, s := range shapes {
		t += s.Share
	}
	return t
}
