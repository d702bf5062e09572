package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/klauspost/cpuid/v2"
)

// benchBLAS runs the built binary's `bench --json` on the tiny preset with
// OPENBLAS_VERBOSE=2 and env (KEY=value entries replacing the test's own
// OPENBLAS_CORETYPE and re-execution mark), and returns the reported BLAS and
// the "Core: …" lines OpenBLAS printed on standard error each time it was loaded.
func benchBLAS(t *testing.T, bin string, env ...string) (ops.BLASInfo, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, "bench", "--preset", "tiny", "--batch", "1", "--steps", "1", "--warmup", "0", "--json")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != ops.EnvCoreType && k != ops.EnvReexec && k != ops.EnvTestFallback {
			c.Env = append(c.Env, kv)
		}
	}
	c.Env = append(c.Env, append([]string{"OPENBLAS_VERBOSE=2"}, env...)...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Run(); err != nil {
		t.Fatalf("%v %v: %v\nstdout:\n%s\nstderr:\n%s", env, c.Args, err, out.String(), errOut.String())
	}
	var res benchResult
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %q (%v)", lines[len(lines)-1], err)
	}
	return res.BLAS, regexp.MustCompile(`(?m)^Core: \S+$`).FindAllString(errOut.String(), -1)
}

// TestBLASCoreReexec runs the binary with OpenBLAS really on its generic
// Prescott kernels, the fallback OpenBLAS 0.3.21 takes on Intel family 6
// model 207, but on a CPU it knows: OPENBLAS_CORETYPE=Prescott forces them, and
// the test-only DDPM_STUDIO_TEST_BLAS_FALLBACK=1 makes the program treat that
// as the library's own choice rather than the user's. The program must load
// OpenBLAS exactly twice (two "Core:" lines, the second on the kernels it
// reports), and report kernels that use AVX2 or better, chosen by itself.
// With OPENBLAS_CORETYPE alone, the user's choice, it must keep Prescott and
// load once; with neither, it must not run generic kernels on this CPU.
func TestBLASCoreReexec(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if ops.RunningBLAS().Core == "" {
		t.Skip("built without OpenBLAS")
	}
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3) {
		t.Skip("this CPU has no AVX2 and FMA: no better kernels to switch to")
	}
	bin := buildBinary(t)

	got, cores := benchBLAS(t, bin, ops.EnvCoreType+"=Prescott", ops.EnvTestFallback+"=1")
	t.Logf("forced fallback: %s; OpenBLAS printed %q", got, cores)
	if got.ChosenBy != ops.ChosenByUs || got.Fallback != "Prescott" || ops.GenericCore(got.Core) || !strings.Contains(got.Config, "DYNAMIC_ARCH") {
		t.Errorf("forced Prescott: got %+v, want better kernels set by ddpm-studio", got)
	}
	if want := []string{"Core: Prescott", "Core: " + got.Core}; !slices.Equal(cores, want) {
		t.Errorf("forced Prescott: OpenBLAS was loaded as %q, want %q (once, then once again)", cores, want)
	}

	got, cores = benchBLAS(t, bin, ops.EnvCoreType+"=Prescott")
	t.Logf("user's setting: %s; OpenBLAS printed %q", got, cores)
	if got.ChosenBy != ops.ChosenByEnvironment || got.Core != "Prescott" || !slices.Equal(cores, []string{"Core: Prescott"}) {
		t.Errorf("user's OPENBLAS_CORETYPE=Prescott: got %+v, loaded as %q; want it kept, loaded once", got, cores)
	}

	got, cores = benchBLAS(t, bin)
	t.Logf("no setting: %s; OpenBLAS printed %q", got, cores)
	if ops.GenericCore(got.Core) || len(cores) == 0 || len(cores) > 2 {
		t.Errorf("no OPENBLAS_CORETYPE: got %+v, loaded as %q; want AVX2 kernels or better", got, cores)
	}
}
