package weights

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

func preset(t testing.TB, name string) compute.Config {
	t.Helper()
	c, err := compute.PresetConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSpecMatchesCompute: the parameter list weights checks files against is
// the one compute.NewUNet builds, name for name, shape for shape, in order.
func TestSpecMatchesCompute(t *testing.T) {
	for _, name := range compute.PresetNames() {
		t.Run(name, func(t *testing.T) {
			cfg := preset(t, name)
			if cfg.Resolution >= 256 && testing.Short() {
				t.Skip("allocates the 256×256 model; skipped with -short")
			}
			u, err := compute.NewUNet(cfg, 0)
			if err != nil {
				t.Fatal(err)
			}
			ps := spec(cfg)
			if len(ps) != len(u.Params) {
				t.Fatalf("spec has %d parameters, compute %d", len(ps), len(u.Params))
			}
			for i, p := range u.Params {
				if ps[i].name != p.Name || !slices.Equal(ps[i].shape, p.Shape) {
					t.Fatalf("parameter %d: spec %s %v, compute %s %v", i, ps[i].name, ps[i].shape, p.Name, p.Shape)
				}
			}
			if got, want := numParams(cfg), int64(u.NumParams()); got != want {
				t.Errorf("numParams = %d, compute %d", got, want)
			}
			u = nil
			runtime.GC()
		})
	}
}

// TestPaperParamCounts: the paper's models (ddpm-reference.md: CIFAR-10
// 35,746,307; 256×256 113,673,219), lsun256 included.
func TestPaperParamCounts(t *testing.T) {
	for name, want := range map[string]int64{"cifar10": 35_746_307, "celebahq256": 113_673_219, "lsun256": 113_673_219} {
		if got := numParams(preset(t, name)); got != want {
			t.Errorf("%s: %d parameters, want %d", name, got, want)
		}
	}
	a, b := preset(t, "lsun256"), preset(t, "celebahq256")
	if fmt.Sprint(a) != fmt.Sprint(b) || a.Dropout != 0 {
		t.Errorf("lsun256 %v and celebahq256 %v should be the same 256×256 architecture with dropout 0", a, b)
	}
}

// TestInferConfig: the architecture read back from the shapes of every preset
// is the preset, with the image size from the matching preset; an unknown
// architecture gets the 16×16-attention size and a warning.
func TestInferConfig(t *testing.T) {
	for _, name := range compute.PresetNames() {
		cfg := preset(t, name)
		got, warn, err := inferConfig(shapesOf(cfg), 0, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := cfg
		if m := matchPreset(cfg, ""); m != name { // lsun256 is found as celebahq256: same architecture
			want = preset(t, m)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || got.Dropout != want.Dropout || len(warn) != 0 {
			t.Errorf("%s: inferred %v (dropout %g, warnings %q), want %v", name, got, got.Dropout, warn, want)
		}
	}
	odd := compute.Config{Resolution: 64, InChannels: 3, OutCh: 3, Ch: 64, ChMult: []int{1, 2, 2}, NumResBlocks: 1, AttnResolutions: []int{16}, Dropout: 0.1}
	got, warn, err := inferConfig(shapesOf(odd), 0, "")
	if err != nil || fmt.Sprint(got) != fmt.Sprint(odd) || len(warn) != 1 || !strings.Contains(warn[0], "64×64") {
		t.Errorf("odd: %v %q %v, want %v and a warning about the size", got, warn, err, odd)
	}
	got, _, err = inferConfig(shapesOf(odd), 128, "")
	if err != nil || got.Resolution != 128 || !slices.Equal(got.AttnResolutions, []int{32}) {
		t.Errorf("odd at 128: %v %v", got, err)
	}
}

func shapesOf(cfg compute.Config) map[string][]int {
	m := map[string][]int{}
	for _, p := range spec(cfg) {
		m[p.name] = p.shape
	}
	return m
}

// TestDiffusersNames: every interchange name of every preset has a diffusers
// name (both attention namings) that maps back to it, and no two collide.
func TestDiffusersNames(t *testing.T) {
	for _, name := range compute.PresetNames() {
		cfg := preset(t, name)
		L := len(cfg.ChMult)
		for _, old := range []bool{false, true} {
			seen := map[string]string{}
			for _, p := range spec(cfg) {
				d, lin, err := toDiffusers(p.name, L, old)
				if err != nil {
					t.Fatal(err)
				}
				if prev, ok := seen[d]; ok {
					t.Fatalf("%s and %s both map to %s", prev, p.name, d)
				}
				seen[d] = p.name
				back, lin2, err := fromDiffusers(d, L)
				if err != nil || back != p.name || lin != lin2 {
					t.Fatalf("%s → %s → %s (%v), linear %v/%v", p.name, d, back, err, lin, lin2)
				}
				if lin != (strings.Contains(p.name, "attn") && !strings.Contains(p.name, ".norm.")) {
					t.Errorf("%s: linear %v", p.name, lin)
				}
			}
		}
	}
}

// randomModel is a model of cfg with random weights.
func randomModel(cfg compute.Config, seed uint64) *Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := &Model{Config: cfg, Tensors: map[string][]float32{}, Schedule: PaperSchedule(cfg.Resolution), EMA: EMAWeights}
	m.Schedule.Known = true
	for _, p := range spec(cfg) {
		n := 1
		for _, d := range p.shape {
			n *= d
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		m.Tensors[p.name] = x
	}
	return m
}

// TestWeightSets: the sets of a checkpoint are found by their conv_in.weight,
// and EMA is told from the set's key.
func TestWeightSets(t *testing.T) {
	for _, c := range []struct {
		names   []string
		raw     bool
		prefix  string
		ema     EMA
		why     string
		warning bool
	}{
		{[]string{"conv_in.weight", "conv_in.bias"}, false, "", EMAUnknown, "", false},
		{[]string{"ema.conv_in.weight", "step"}, false, "ema.", EMAWeights, `under "ema"`, false},
		{[]string{"conv_in.weight", "ema_conv_in.weight"}, false, "ema_", EMAWeights, `under "ema"; the file also holds raw weights`, false},
		{[]string{"conv_in.weight", "ema_conv_in.weight"}, true, "", RawWeights, `under the plain keys; the file also holds EMA weights`, false},
		{[]string{"model.conv_in.weight", "model_ema.conv_in.weight", "optimizer.state.0.exp_avg"}, false, "model_ema.", EMAWeights, `under "model_ema"; the file also holds raw weights`, false},
		{[]string{"a.conv_in.weight", "b.conv_in.weight"}, false, "a.", EMAUnknown, "", true},
		{[]string{"xconv_in.weight"}, false, "", EMAUnknown, "", false},
	} {
		sets := weightSets(c.names)
		if len(sets) == 0 {
			if c.names[0] != "xconv_in.weight" {
				t.Errorf("%q: no sets", c.names)
			}
			continue
		}
		s, why, warn := choose(sets, Options{Raw: c.raw})
		if s.prefix != c.prefix || s.ema != c.ema || why != c.why || (len(warn) > 0) != c.warning {
			t.Errorf("%q raw=%v: took %q %v %q %q", c.names, c.raw, s.prefix, s.ema, why, warn)
		}
	}
}
