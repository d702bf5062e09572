package weights

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// TestCheckpointCIFAR10 is the CIFAR-10 model both ways with PyTorch:
//   - a model-790000.ckpt stand-in (torch.save of the reference model's
//     state_dict, random weights, under the port's EMA folder name) opens as the
//     cifar10 preset with EMA weights and gives PyTorch's ε̂;
//   - our .ckpt of it loads in torch with weights_only=True, keys in the
//     port's order, load_state_dict(strict=True), and gives our ε̂;
//   - our diffusers folder of it loads in the independent UNet2DModel
//     (diffusers' names, strict) and gives our ε̂;
//   - both exports open again bit for bit.
func TestCheckpointCIFAR10(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	cfg := preset(t, "cifar10")
	dir := t.TempDir()
	cfgPath := configJSON(t, dir, cfg)
	ts := []int{0, 999}
	x, shape, xPath, tPath := inputs(t, dir, cfg, ts, 1)
	ckpt := filepath.Join(dir, "ema_diffusion_cifar10_model", "model-790000.ckpt")
	if err := os.MkdirAll(filepath.Dir(ckpt), 0o755); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.npy")
	fast := []string{"--fdtype", "float32"} // float32 round-off is ~1e-6, far below torchTol
	runPy(t, "ckpt_ref.py", append([]string{"make", "--config", cfgPath, "--seed", "11", "--out", ckpt, "--x", xPath, "--t", tPath, "--eps", ref}, fast...)...)

	m, err := Open(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	want := "CIFAR-10 model (preset cifar10), 35,746,307 parameters, EMA weights (by its name), PyTorch checkpoint"
	if got := m.Describe(); got != want {
		t.Errorf("Describe() = %q\nwant         %q", got, want)
	}
	if m.Config.Dropout != 0.1 || m.Schedule != PaperSchedule(32) || len(m.Warnings) != 0 {
		t.Errorf("dropout %g, schedule %+v, warnings %q", m.Config.Dropout, m.Schedule, m.Warnings)
	}
	eps := epsOf(t, m, x, ts, shape)
	closeTo(t, "imported .ckpt vs PyTorch", eps, pyref.ReadNPY[float32](t, ref))

	out := filepath.Join(dir, "ours.ckpt")
	if err := WriteTorch(out, m); err != nil {
		t.Fatal(err)
	}
	back, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "our .ckpt", m.Tensors, back.Tensors)

	folder := filepath.Join(dir, "pipeline")
	if err := WriteDiffusers(folder, m); err != nil {
		t.Fatal(err)
	}
	back, err = Open(folder)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "our diffusers folder", m.Tensors, back.Tensors)
	if back.EMA != EMAWeights || back.Config.Dropout != 0.1 {
		t.Errorf("diffusers folder: EMA %v, dropout %g", back.EMA, back.Config.Dropout)
	}

	// Both exports in PyTorch, in one process (diffusers_ref.py runs ckpt_ref.py's jobs too).
	torchEps, diffEps := filepath.Join(dir, "torch.npy"), filepath.Join(dir, "diffusers.npy")
	runPyJobs(t, "diffusers_ref.py", [][]string{
		append([]string{"ckpt", "eps", "--config", cfgPath, "--ckpt", out, "--x", xPath, "--t", tPath, "--out", torchEps}, fast...),
		append([]string{"eps", "--folder", folder, "--x", xPath, "--t", tPath, "--out", diffEps}, fast...),
	})
	closeTo(t, "our .ckpt in PyTorch (weights_only, strict) vs ours", pyref.ReadNPY[float32](t, torchEps), eps)
	closeTo(t, "our diffusers folder in UNet2DModel vs ours", pyref.ReadNPY[float32](t, diffEps), eps)
}

// TestCheckpoint256: the paper's 256×256 architecture (113,673,219
// parameters) from a torch.save checkpoint named as the port's LSUN church
// file opens as lsun256 and gives PyTorch's ε̂ on one 256×256 image (PyTorch in
// float32, whose round-off against float64 is ~1e-6; about 30 s in all on 2
// cores). With -short both sides evaluate the same weights on a 64×64 image
// (attention at the same level, 4×4): every tensor is used, in 1/16 of the time.
func TestCheckpoint256(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	cfg := preset(t, "lsun256")
	dir := t.TempDir()
	cfgPath := configJSON(t, dir, cfg)
	eval := cfg
	if testing.Short() {
		eval.Resolution, eval.AttnResolutions = 64, []int{4}
	}
	ts := []int{500}
	x, shape, xPath, tPath := inputs(t, dir, eval, ts, 2)
	ckpt := filepath.Join(dir, "diffusion_lsun_church_model", "model-4432000.ckpt")
	if err := os.MkdirAll(filepath.Dir(ckpt), 0o755); err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "ref.npy")
	runPy(t, "ckpt_ref.py", "make", "--config", cfgPath, "--seed", "12", "--out", ckpt, "--x", xPath, "--t", tPath,
		"--eps", ref, "--eps-resolution", fmt.Sprint(eval.Resolution), "--fdtype", "float32")
	m, err := Open(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	want := "LSUN church model (preset lsun256), 113,673,219 parameters, EMA or raw weights (not recorded), PyTorch checkpoint"
	if got := m.Describe(); got != want {
		t.Errorf("Describe() = %q\nwant         %q", got, want)
	}
	if m.Config.Dropout != 0 || m.Schedule.Variance != "fixedsmall" {
		t.Errorf("dropout %g, schedule %+v", m.Config.Dropout, m.Schedule)
	}
	m.Config = eval
	closeTo(t, fmt.Sprintf("256×256 model's .ckpt on a %d×%d image vs PyTorch", eval.Resolution, eval.Resolution),
		epsOf(t, m, x, ts, shape), pyref.ReadNPY[float32](t, ref))
}

// TestCheckpointLayouts: the weight sets people save (plain, nested with raw
// and EMA, "ema_"-prefixed, DataParallel's "module."), the legacy format and
// other float types open to exactly the values torch stored, EMA by default
// and raw on request.
func TestCheckpointLayouts(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	cfg := preset(t, "tiny")
	dir := t.TempDir()
	cfgPath := configJSON(t, dir, cfg)
	cases := []struct {
		layout string
		args   []string
		ema    bool // the file holds raw and EMA sets
	}{
		{"plain", nil, false},
		{"nested", nil, true},
		{"ema-prefix", nil, true},
		{"module", nil, false},
		{"plain", []string{"--legacy"}, false},
		{"nested", []string{"--legacy"}, true},
		{"plain", []string{"--dtype", "float16"}, false},
		{"plain", []string{"--dtype", "bfloat16"}, false},
		{"plain", []string{"--dtype", "float64"}, false},
	}
	var jobs [][]string
	for i, c := range cases {
		jobs = append(jobs, append([]string{"make", "--config", cfgPath, "--seed", fmt.Sprint(i),
			"--out", filepath.Join(dir, fmt.Sprintf("m%d.pt", i)), "--layout", c.layout, "--dump", filepath.Join(dir, fmt.Sprintf("dump%d", i))}, c.args...))
	}
	runPyJobs(t, "ckpt_ref.py", jobs)
	for i, c := range cases {
		name := strings.Join(append([]string{c.layout}, c.args...), " ")
		t.Run(name, func(t *testing.T) {
			ckpt := filepath.Join(dir, fmt.Sprintf("m%d.pt", i))
			dump := filepath.Join(dir, fmt.Sprintf("dump%d", i))
			raw, err := Open(filepath.Join(dump, "raw.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			ema, err := Open(filepath.Join(dump, "ema.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Open(ckpt)
			if err != nil {
				t.Fatal(err)
			}
			wantDefault, wantEMA := raw, EMAUnknown
			if c.ema {
				wantDefault, wantEMA = ema, EMAWeights
			}
			sameTensors(t, "default", wantDefault.Tensors, m.Tensors)
			if m.EMA != wantEMA {
				t.Errorf("EMA %v, want %v (%s)", m.EMA, wantEMA, m.Describe())
			}
			r, err := OpenOptions(ckpt, Options{Raw: true})
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, "raw", raw.Tensors, r.Tensors)
			if c.ema && (r.EMA != RawWeights || !strings.Contains(r.Describe(), "also holds EMA")) {
				t.Errorf("raw: %s", r.Describe())
			}
			legacy := strings.Contains(m.Format, "legacy")
			if legacy != strings.Contains(name, "legacy") {
				t.Errorf("format %q", m.Format)
			}
			t.Log(m.Describe())
		})
	}
}

// TestDiffusersFolders: folders in google/ddpm-cifar10-32's configuration made
// by the independent UNet2DModel, as the published ones (pipeline folder,
// .bin, the old attention names query/key/value/proj_attn) and as current
// diffusers saves them (.safetensors, to_q/to_k/to_v/to_out.0), open as the
// cifar10 preset with the scheduler's schedule and give that model's ε̂.
func TestDiffusersFolders(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	google := filepath.Join("testdata", "google-ddpm-cifar10-32")
	unetCfg := filepath.Join(google, "unet", "config.json")
	schedCfg := filepath.Join(google, "scheduler", "scheduler_config.json")
	cfg := preset(t, "cifar10")
	dir := t.TempDir()
	ts := []int{7, 640}
	x, shape, xPath, tPath := inputs(t, dir, cfg, ts, 3)
	cases := []struct{ name, weights, attn, layout string }{
		{"ddpm-ema-cifar10-32", "bin", "old", "pipeline"},
		{"saved-by-current-diffusers", "safetensors", "new", "pipeline"},
		{"unet-only", "safetensors", "old", "unet"},
	}
	var jobs [][]string
	for i, c := range cases {
		jobs = append(jobs, []string{"make", "--unet-config", unetCfg, "--scheduler-config", schedCfg,
			"--seed", fmt.Sprint(20 + i), "--out", filepath.Join(dir, c.name), "--weights", c.weights, "--attn-names", c.attn,
			"--layout", c.layout, "--x", xPath, "--t", tPath, "--eps", filepath.Join(dir, c.name+".npy"),
			"--fdtype", "float32"})
	}
	runPyJobs(t, "diffusers_ref.py", jobs)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			folder := filepath.Join(dir, c.name)
			ref := filepath.Join(dir, c.name+".npy")
			m, err := Open(folder)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(m.Describe(), m.Warnings)
			if m.Preset != "cifar10" || m.Dataset != "CIFAR-10" || m.Config.Dropout != 0.1 || m.NumParams() != 35_746_307 {
				t.Errorf("%s (dropout %g)", m.Describe(), m.Config.Dropout)
			}
			if c.layout == "pipeline" {
				want := PaperSchedule(32)
				want.Known = true
				if m.Schedule != want {
					t.Errorf("schedule %+v, want %+v", m.Schedule, want)
				}
				if (m.EMA == EMAWeights) != strings.Contains(c.name, "ema") {
					t.Errorf("EMA %v", m.EMA)
				}
			}
			closeTo(t, c.name, epsOf(t, m, x, ts, shape), pyref.ReadNPY[float32](t, ref))
		})
	}
}
