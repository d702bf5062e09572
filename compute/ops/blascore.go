package ops

import (
	"fmt"
	"strings"

	"github.com/klauspost/cpuid/v2"
)

// Which OpenBLAS kernels run.
//
// A DYNAMIC_ARCH OpenBLAS (Debian's) carries kernels for many CPUs and picks
// one set, its "core", in a library constructor that runs when the shared
// library is loaded, before Go's main. Where it does not know the CPU it can
// fall back to generic SSE kernels: Debian bookworm's OpenBLAS 0.3.21 runs its
// Prescott (SSE3) kernels on Intel family 6 model 207 (Emerald Rapids) and
// 13th-generation Core CPUs, because its model switch has no case for them
// and falls through to the Pentium 4 branch. The only public way to choose
// the core is OPENBLAS_CORETYPE, read by that constructor, so where the
// library fell back the program runs itself again (UseBestBLASCore) with
// OPENBLAS_CORETYPE set: exactly what a user setting it by hand gets.

// Environment variables of the core choice.
const (
	// EnvCoreType is OpenBLAS's own: the core a user (or we) ask for.
	EnvCoreType = "OPENBLAS_CORETYPE"
	// EnvReexec marks a process that UseBestBLASCore re-executed; its value
	// is "picked:set", the core OpenBLAS picked and the one we set. A process
	// with the mark never re-executes again.
	EnvReexec = "DDPM_STUDIO_BLAS_REEXEC"
	// EnvTestFallback, for tests only, makes an OPENBLAS_CORETYPE in the
	// environment count as the library's own choice rather than the user's,
	// so that a test can make OpenBLAS really run a generic core on a CPU it
	// knows and watch the program replace it.
	EnvTestFallback = "DDPM_STUDIO_TEST_BLAS_FALLBACK"
)

// Who chose the core (BLASInfo.ChosenBy).
const (
	ChosenByLibrary     = "library"     // the BLAS library's own detection
	ChosenByEnvironment = "environment" // the user's OPENBLAS_CORETYPE
	ChosenByUs          = "ddpm-studio" // UseBestBLASCore
)

// CPUFeatures are the instruction-set extensions (with operating-system
// support) that decide which OpenBLAS kernels a CPU can run.
type CPUFeatures struct {
	AVX2, FMA bool // Haswell kernels
	// AVX512 is F, CD, BW, DQ and VL together, what -march=skylake-avx512
	// compiles for: SkylakeX kernels.
	AVX512 bool
	// AVX512BF16 and AVX512VNNI, with AVX512, are -march=cooperlake:
	// Cooperlake kernels.
	AVX512BF16, AVX512VNNI bool
}

// String names the extensions that matter here: "AVX-512 BF16", "AVX2 FMA", "no AVX2", ….
func (f CPUFeatures) String() string {
	switch {
	case f.AVX512 && f.AVX512BF16 && f.AVX512VNNI:
		return "AVX-512 BF16"
	case f.AVX512:
		return "AVX-512"
	case f.AVX2 && f.FMA:
		return "AVX2 FMA"
	case f.AVX2:
		return "AVX2 (no FMA)"
	}
	return "no AVX2"
}

// isaLevel orders kernel sets by the instructions they use.
type isaLevel int

const (
	levelUnknown isaLevel = iota // a core name this table does not know
	levelSSE
	levelAVX
	levelAVX2
	levelAVX512
)

// coreLevels are the x86-64 core names of OpenBLAS 0.3.21's
// driver/others/dynamic.c (corename[], compared case-insensitively, as
// OpenBLAS does) by the instructions their kernels use.
var coreLevels = map[string]isaLevel{
	"unknown": levelSSE, "katmai": levelSSE, "coppermine": levelSSE, "northwood": levelSSE,
	"prescott": levelSSE, "banias": levelSSE, "atom": levelSSE, "core2": levelSSE,
	"penryn": levelSSE, "dunnington": levelSSE, "nehalem": levelSSE, "athlon": levelSSE,
	"opteron": levelSSE, "opteron_sse3": levelSSE, "barcelona": levelSSE, "nano": levelSSE,
	"bobcat":      levelSSE,
	"sandybridge": levelAVX, "bulldozer": levelAVX, "piledriver": levelAVX, "steamroller": levelAVX,
	"haswell": levelAVX2, "excavator": levelAVX2, "zen": levelAVX2,
	"skylakex": levelAVX512, "cooperlake": levelAVX512, "sapphirerapids": levelAVX512,
}

// GenericCore reports whether core is one of OpenBLAS's SSE-only kernel sets
// (Prescott, Nehalem, Core2, …), which use neither AVX nor FMA.
func GenericCore(core string) bool {
	return coreLevels[strings.ToLower(core)] == levelSSE
}

// bestCore is the fastest kernel set that cpu can run among those has reports
// the library has: Cooperlake, SkylakeX or Haswell; "" if none fits.
func bestCore(cpu CPUFeatures, has func(core string) bool) string {
	switch {
	case cpu.AVX512 && cpu.AVX512BF16 && cpu.AVX512VNNI && has("Cooperlake"):
		return "Cooperlake"
	case cpu.AVX512 && has("SkylakeX"):
		return "SkylakeX"
	case cpu.AVX2 && cpu.FMA && has("Haswell"):
		return "Haswell"
	}
	return ""
}

// blasLibrary is what the loaded library says about itself.
type blasLibrary struct {
	Core      string                 // openblas_get_corename()
	Dynamic   bool                   // built with DYNAMIC_ARCH (openblas_get_config())
	Available func(core string) bool // whether it has a core's kernels
}

// blasEnv is the part of the environment the choice reads.
type blasEnv struct {
	CoreType     string // OPENBLAS_CORETYPE, "" if unset
	Reexec       string // EnvReexec, "" if unset
	TestFallback bool   // EnvTestFallback=1
}

// coreDecision is what to do about the running kernels, and why.
type coreDecision struct {
	Set      string // the OPENBLAS_CORETYPE to re-execute with; "" to keep the kernels
	ChosenBy string // who chose the running core: ChosenByLibrary, …
	Picked   string // where ChosenBy is ChosenByUs, the core OpenBLAS had picked
	Reason   string // one sentence for people
}

// decideCore decides whether the program should re-execute itself with
// another OPENBLAS_CORETYPE. Only a core that OpenBLAS picked by itself, that
// is a generic SSE or AVX-only one on a CPU with AVX2 and FMA, is replaced,
// by the best kernels the library has for the CPU; a user's own
// OPENBLAS_CORETYPE, a known AVX2 or AVX-512 core, a library built for one
// CPU, and a process that was already re-executed are left as they are.
func decideCore(lib blasLibrary, cpu CPUFeatures, env blasEnv) coreDecision {
	if env.Reexec != "" {
		picked, set, _ := strings.Cut(env.Reexec, ":")
		if env.CoreType == set && set != "" {
			d := coreDecision{ChosenBy: ChosenByUs, Picked: picked,
				Reason: fmt.Sprintf("OpenBLAS picked %s for this CPU (%s); ddpm-studio ran itself again with %s=%s", picked, cpu, EnvCoreType, set)}
			if !strings.EqualFold(lib.Core, set) {
				d.Reason += fmt.Sprintf(", and OpenBLAS runs %s", lib.Core)
			}
			return d
		}
		if env.CoreType != "" {
			return coreDecision{ChosenBy: ChosenByEnvironment,
				Reason: fmt.Sprintf("%s=%s is set in the environment; left as it is", EnvCoreType, env.CoreType)}
		}
		// Someone removed our OPENBLAS_CORETYPE but kept the mark: never re-execute twice.
		return coreDecision{ChosenBy: ChosenByLibrary,
			Reason: fmt.Sprintf("OpenBLAS picked %s; not run again (%s=%s is set)", lib.Core, EnvReexec, env.Reexec)}
	}
	if env.CoreType != "" && !env.TestFallback {
		d := coreDecision{ChosenBy: ChosenByEnvironment,
			Reason: fmt.Sprintf("%s=%s is set in the environment; left as it is", EnvCoreType, env.CoreType)}
		if level := coreLevels[strings.ToLower(lib.Core)]; level != levelUnknown && level < levelAVX2 && cpu.AVX2 && cpu.FMA {
			if best := bestCore(cpu, lib.Available); best != "" {
				d.Reason += fmt.Sprintf(" (this CPU, %s, can run %s)", cpu, best)
			}
		}
		return d
	}
	keep := func(why string) coreDecision {
		return coreDecision{ChosenBy: ChosenByLibrary, Reason: fmt.Sprintf("OpenBLAS picked %s for this CPU (%s)%s", lib.Core, cpu, why)}
	}
	switch level := coreLevels[strings.ToLower(lib.Core)]; {
	case !lib.Dynamic:
		return keep("; the library is built for one CPU (no DYNAMIC_ARCH), so it cannot change")
	case level == levelUnknown, level >= levelAVX2:
		return keep("")
	case !cpu.AVX2 || !cpu.FMA:
		return keep("")
	}
	best := bestCore(cpu, lib.Available)
	if best == "" {
		return keep("; the library has no AVX2 kernels")
	}
	return coreDecision{Set: best, ChosenBy: ChosenByLibrary,
		Reason: fmt.Sprintf("OpenBLAS picked %s for this CPU (%s), which can run %s", lib.Core, cpu, best)}
}

// reexecEnv is env (KEY=value entries) with OPENBLAS_CORETYPE=set and the
// re-execution mark, any earlier values of both removed.
func reexecEnv(env []string, picked, set string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == EnvCoreType || k == EnvReexec {
			continue
		}
		out = append(out, kv)
	}
	return append(out, EnvCoreType+"="+set, EnvReexec+"="+picked+":"+set)
}

// BLASInfo says which matrix-multiply library and kernels run, and why.
type BLASInfo struct {
	Library  string `json:"library"`            // "OpenBLAS 0.3.21" or "gonum (pure Go)"
	Config   string `json:"config,omitempty"`   // openblas_get_config()
	Core     string `json:"core"`               // the kernel set in use: openblas_get_corename()
	ChosenBy string `json:"chosen_by"`          // ChosenByLibrary, ChosenByEnvironment or ChosenByUs
	Fallback string `json:"fallback,omitempty"` // where ChosenBy is ChosenByUs: the generic core OpenBLAS picked
	Reason   string `json:"reason"`             // one sentence
	Threads  int    `json:"threads"`            // threads of one BLAS call
	CPU      string `json:"cpu"`                // brand, family and model, vector extensions
}

// String is one line for people: library, core and who chose it, threads, CPU.
func (b BLASInfo) String() string {
	var who string
	switch b.ChosenBy {
	case ChosenByEnvironment:
		who = "set by " + EnvCoreType
	case ChosenByUs:
		who = "set by ddpm-studio; OpenBLAS picked " + b.Fallback
	default:
		who = "chosen by OpenBLAS"
	}
	if b.Core == "" {
		return fmt.Sprintf("%s, %d thread(s) per call, CPU %s", b.Library, b.Threads, b.CPU)
	}
	return fmt.Sprintf("%s, core %s (%s), %d thread(s) per call, CPU %s", b.Library, b.Core, who, b.Threads, b.CPU)
}

// hostCPU is this CPU's extensions and a description of it: brand, family
// and model (as OpenBLAS's detection reads them), extensions.
func hostCPU() (CPUFeatures, string) {
	c := cpuid.CPU
	f := CPUFeatures{
		AVX2:       c.Supports(cpuid.AVX2),
		FMA:        c.Supports(cpuid.FMA3),
		AVX512:     c.Supports(cpuid.AVX512F, cpuid.AVX512CD, cpuid.AVX512BW, cpuid.AVX512DQ, cpuid.AVX512VL),
		AVX512BF16: c.Supports(cpuid.AVX512BF16),
		AVX512VNNI: c.Supports(cpuid.AVX512VNNI),
	}
	name := strings.TrimSpace(c.BrandName)
	if name == "" {
		name = "unknown CPU"
	}
	return f, fmt.Sprintf("%s (family %d model %d, %s)", name, c.Family, c.Model, f)
}
