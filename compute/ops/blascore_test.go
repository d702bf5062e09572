package ops

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestMain runs the package's tests on the kernels the program itself would
// run: where OpenBLAS fell back to generic ones, UseBestBLASCore runs the
// test binary again with better ones.
func TestMain(m *testing.M) {
	if err := UseBestBLASCore(); err != nil {
		fmt.Fprintln(os.Stderr, "ops tests:", err)
	}
	os.Exit(m.Run())
}

// CPUs by the features OpenBLAS 0.3.21's dynamic.c checks (support_avx2,
// support_avx512, support_avx512_bf16). Emerald Rapids is Intel family 6
// model 207 of the issue; Raptor Lake is a 13th-generation Core (AVX2, FMA,
// no AVX-512); Westmere has SSE4.2 only.
var (
	emeraldRapids = CPUFeatures{AVX2: true, FMA: true, AVX512: true, AVX512BF16: true, AVX512VNNI: true}
	iceLakeSP     = CPUFeatures{AVX2: true, FMA: true, AVX512: true, AVX512VNNI: true}
	raptorLake    = CPUFeatures{AVX2: true, FMA: true}
	westmere      = CPUFeatures{}
)

// has0321 reports the kernel tables Debian's OpenBLAS 0.3.21 exports
// (nm -D libopenblas.so.0 | grep gotoblas_).
func has0321(core string) bool {
	return slices.Contains([]string{"Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "Zen",
		"SkylakeX", "Cooperlake", "Excavator", "Piledriver", "Steamroller", "Bulldozer", "Barcelona"}, core)
}

func hasAllBut(missing string) func(string) bool {
	return func(core string) bool { return core != missing && has0321(core) }
}

func TestDecideCore(t *testing.T) {
	lib := func(core string) blasLibrary { return blasLibrary{Core: core, Dynamic: true, Available: has0321} }
	for _, c := range []struct {
		name     string
		lib      blasLibrary
		cpu      CPUFeatures
		env      blasEnv
		set      string // expected OPENBLAS_CORETYPE to re-execute with, "" for none
		chosenBy string
		reason   string // a part of the expected reason
	}{
		{"issue 9: family 6 model 207, Prescott", lib("Prescott"), emeraldRapids, blasEnv{}, "Cooperlake", ChosenByLibrary, "can run Cooperlake"},
		{"AVX-512 BF16, library without Cooperlake", blasLibrary{Core: "Prescott", Dynamic: true, Available: hasAllBut("Cooperlake")}, emeraldRapids, blasEnv{}, "SkylakeX", ChosenByLibrary, ""},
		{"AVX-512 without BF16", lib("Prescott"), iceLakeSP, blasEnv{}, "SkylakeX", ChosenByLibrary, ""},
		{"13th-gen Core, Prescott", lib("Prescott"), raptorLake, blasEnv{}, "Haswell", ChosenByLibrary, "can run Haswell"},
		{"AVX2 FMA, Nehalem", lib("Nehalem"), raptorLake, blasEnv{}, "Haswell", ChosenByLibrary, ""},
		{"AVX2 FMA, AVX-only Sandybridge", lib("Sandybridge"), raptorLake, blasEnv{}, "Haswell", ChosenByLibrary, ""},
		{"library without AVX2 kernels", blasLibrary{Core: "Prescott", Dynamic: true, Available: func(string) bool { return false }}, raptorLake, blasEnv{}, "", ChosenByLibrary, "no AVX2 kernels"},
		{"user's OPENBLAS_CORETYPE", lib("Prescott"), emeraldRapids, blasEnv{CoreType: "Prescott"}, "", ChosenByEnvironment, "can run Cooperlake"},
		{"user's OPENBLAS_CORETYPE, good core", lib("Haswell"), emeraldRapids, blasEnv{CoreType: "haswell"}, "", ChosenByEnvironment, "OPENBLAS_CORETYPE=haswell is set"},
		{"known core Zen", lib("Zen"), raptorLake, blasEnv{}, "", ChosenByLibrary, "picked Zen"},
		{"known core Haswell on AVX-512", lib("Haswell"), emeraldRapids, blasEnv{}, "", ChosenByLibrary, ""},
		{"known core SkylakeX", lib("SkylakeX"), emeraldRapids, blasEnv{}, "", ChosenByLibrary, ""},
		{"core this table does not know", lib("GraniteRapids"), emeraldRapids, blasEnv{}, "", ChosenByLibrary, ""},
		{"no AVX2, Prescott", lib("Prescott"), westmere, blasEnv{}, "", ChosenByLibrary, ""},
		{"no AVX2, Nehalem", lib("Nehalem"), westmere, blasEnv{}, "", ChosenByLibrary, ""},
		{"AVX2 without FMA", lib("Prescott"), CPUFeatures{AVX2: true}, blasEnv{}, "", ChosenByLibrary, ""},
		{"built for one CPU", blasLibrary{Core: "Prescott", Available: has0321}, emeraldRapids, blasEnv{}, "", ChosenByLibrary, "no DYNAMIC_ARCH"},
		{"re-executed, took effect", lib("Cooperlake"), emeraldRapids,
			blasEnv{CoreType: "Cooperlake", Reexec: "Prescott:Cooperlake"}, "", ChosenByUs, "picked Prescott"},
		{"re-executed, did not take effect: not again", lib("Prescott"), emeraldRapids,
			blasEnv{CoreType: "Cooperlake", Reexec: "Prescott:Cooperlake"}, "", ChosenByUs, "OpenBLAS runs Prescott"},
		{"mark kept, OPENBLAS_CORETYPE removed: not again", lib("Prescott"), emeraldRapids,
			blasEnv{Reexec: "Prescott:Cooperlake"}, "", ChosenByLibrary, "not run again"},
		{"mark kept, user changed OPENBLAS_CORETYPE", lib("Nehalem"), emeraldRapids,
			blasEnv{CoreType: "Nehalem", Reexec: "Prescott:Cooperlake"}, "", ChosenByEnvironment, ""},
		{"test hook: forced Prescott counts as the library's", lib("Prescott"), raptorLake,
			blasEnv{CoreType: "Prescott", TestFallback: true}, "Haswell", ChosenByLibrary, ""},
	} {
		d := decideCore(c.lib, c.cpu, c.env)
		if d.Set != c.set || d.ChosenBy != c.chosenBy || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: got set %q, chosen by %q, reason %q; want set %q, chosen by %q, reason containing %q",
				c.name, d.Set, d.ChosenBy, d.Reason, c.set, c.chosenBy, c.reason)
		}
	}
}

func TestReexecEnv(t *testing.T) {
	got := reexecEnv([]string{"PATH=/bin", "OPENBLAS_CORETYPE=Prescott", "HOME=/h", EnvReexec + "=old:old", "OPENBLAS_CORETYPEX=1"}, "Prescott", "Haswell")
	want := []string{"PATH=/bin", "HOME=/h", "OPENBLAS_CORETYPEX=1", "OPENBLAS_CORETYPE=Haswell", EnvReexec + "=Prescott:Haswell"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestBLASCoreNotGeneric is issue 9's test: on a CPU with AVX2 and FMA the
// kernels this process runs (after TestMain's UseBestBLASCore) must use them,
// not OpenBLAS's generic SSE (or AVX-only) ones. Debian's OpenBLAS 0.3.21
// falls back to Prescott on Intel family 6 model 207.
func TestBLASCoreNotGeneric(t *testing.T) {
	info := RunningBLAS()
	t.Log(info)
	if info.Core == "" {
		t.Skipf("%s has no kernel sets to choose from", info.Library)
	}
	if info.ChosenBy == ChosenByEnvironment {
		t.Skipf("the environment chooses the kernels: %s", info.Reason)
	}
	cpu, name := hostCPU()
	if !cpu.AVX2 || !cpu.FMA {
		t.Skipf("CPU %s has no AVX2 and FMA", name)
	}
	if level := coreLevels[strings.ToLower(info.Core)]; level != levelUnknown && level < levelAVX2 {
		t.Errorf("OpenBLAS runs its %s kernels on CPU %s, which can run %s: %s", info.Core, name, bestCore(cpu, openBLASHas), info.Reason)
	}
}
