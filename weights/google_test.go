package weights

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nlpodyssey/safetensors"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/internal/pyref"
)

// The google/ddpm-* folders cannot be downloaded here. testdata/google-ddpm-*
// holds their model_index.json, unet/config.json and
// scheduler/scheduler_config.json as published (diffusers 0.0.4 / 0.1.1), and
// names.txt: every tensor of unet/diffusion_pytorch_model.bin with its shape,
// under the attention names of those files (query, key, value, proj_attn).
// The lists were derived from diffusers' model source by
// bench/torchref/diffusers_unet.py (`diffusers_ref.py names --attn-names old`),
// and their sizes add up to the paper's parameter counts.

type googleModel struct {
	dir     string
	preset  string
	params  int
	variant string // the schedule's variance
	dataset string
}

var googleModels = []googleModel{
	{"google-ddpm-cifar10-32", "cifar10", 35_746_307, "fixedlarge", "CIFAR-10"},
	{"google-ddpm-church-256", "lsun256", 113_673_219, "fixedsmall", "LSUN church"},
}

// nameList reads testdata/DIR/names.txt.
func nameList(t *testing.T, dir string) map[string][]int {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", dir, "names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, shape, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("names.txt line %q", sc.Text())
		}
		var dims []int
		for _, d := range strings.Split(strings.Trim(shape, "[]"), ",") {
			n, err := strconv.Atoi(d)
			if err != nil {
				t.Fatalf("names.txt line %q", sc.Text())
			}
			dims = append(dims, n)
		}
		out[name] = dims
	}
	return out
}

// exportNames is what our exporter names the tensors of cfg (old: with the published attention names).
func exportNames(t *testing.T, cfg compute.Config, old bool) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, p := range spec(cfg) {
		d, linear, err := toDiffusers(p.name, len(cfg.ChMult), old)
		if err != nil {
			t.Fatal(err)
		}
		s := p.shape
		if linear && len(s) == 4 {
			s = s[:2]
		}
		out[d] = s
	}
	return out
}

func sameShapes(t *testing.T, what string, got, want map[string][]int) {
	t.Helper()
	for n, s := range want {
		if g, ok := got[n]; !ok {
			t.Errorf("%s: no %s", what, n)
		} else if fmt.Sprint(g) != fmt.Sprint(s) {
			t.Errorf("%s: %s has shape %v, want %v", what, n, g, s)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s: %s is not in the list", what, n)
		}
	}
}

// TestGoogleNameLists: the published configs read as the paper's models, and
// our exporter names their tensors exactly as the published files do (old
// attention names) and as current diffusers does (new names).
func TestGoogleNameLists(t *testing.T) {
	for _, g := range googleModels {
		t.Run(g.dir, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", g.dir, "unet", "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, warn, err := configFromDiffusers(b)
			if err != nil || len(warn) != 0 {
				t.Fatalf("config.json: %v %q", err, warn)
			}
			want := preset(t, g.preset)
			if cfg.Dropout != -1 {
				t.Errorf("config.json without dropout: dropout %g, want −1 (decided by the caller)", cfg.Dropout)
			}
			cfg.Dropout = want.Dropout
			if cfg.String() != want.String() {
				t.Errorf("config.json reads as %v, want %s: %v", cfg, g.preset, want)
			}
			list := nameList(t, g.dir)
			total := 0
			for _, s := range list {
				n := 1
				for _, d := range s {
					n *= d
				}
				total += n
			}
			if total != g.params {
				t.Errorf("names.txt adds up to %d parameters, want %d", total, g.params)
			}
			sameShapes(t, "exporter, old names", exportNames(t, cfg, true), list)
			current := map[string][]int{}
			for n, s := range list {
				for old, new := range map[string]string{".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."} {
					n = strings.Replace(n, old, new, 1)
				}
				current[n] = s
			}
			sameShapes(t, "exporter, current names", exportNames(t, cfg, false), current)
		})
	}
}

// TestGoogleNameListsFromSource: the committed lists are what the independent
// UNet2DModel gives for the published configs.
func TestGoogleNameListsFromSource(t *testing.T) {
	pyref.Python(t, "torch, numpy")
	dir := t.TempDir()
	var jobs [][]string
	for _, g := range googleModels {
		jobs = append(jobs, []string{"names", "--unet-config", filepath.Join("testdata", g.dir, "unet", "config.json"),
			"--attn-names", "old", "--out", filepath.Join(dir, g.dir+".txt")})
	}
	runPyJobs(t, "diffusers_ref.py", jobs)
	for _, g := range googleModels {
		got, err := os.ReadFile(filepath.Join(dir, g.dir+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("testdata", g.dir, "names.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: names.txt differs from what diffusers_unet.py gives", g.dir)
		}
	}
}

// fill is a value that depends on the tensor's name (its base) and the index.
func fill(base float32, i int) float32 { return base + float32(i%1000)/1000 }

func base(name string) float32 {
	h := fnv.New32a()
	io.WriteString(h, name)
	return float32(h.Sum32() % 1000)
}

// TestGoogleStandIns: a folder laid out as the published one, with the
// published configs and a diffusion_pytorch_model.bin (torch zip) or
// .safetensors holding exactly the listed tensors, opens as the paper's
// model; every value lands in the parameter the mapping names.
func TestGoogleStandIns(t *testing.T) {
	for _, g := range googleModels {
		for _, format := range []string{"bin", "safetensors"} {
			t.Run(g.dir+"/"+format, func(t *testing.T) {
				if g.params > 50_000_000 && testing.Short() {
					t.Skip("the 256×256 stand-ins take 1 GB; skipped with -short")
				}
				name := strings.Replace(g.dir, "google-", "", 1) // ddpm-cifar10-32, as a download is named
				folder := filepath.Join(t.TempDir(), name)
				for _, f := range []string{"model_index.json", "unet/config.json", "scheduler/scheduler_config.json"} {
					b, err := os.ReadFile(filepath.Join("testdata", g.dir, f))
					if err != nil {
						t.Fatal(err)
					}
					os.MkdirAll(filepath.Dir(filepath.Join(folder, f)), 0o755)
					if err := os.WriteFile(filepath.Join(folder, f), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				list := nameList(t, g.dir)
				var ts []namedData
				views := map[string]f32view{}
				for n, s := range list {
					k := 1
					for _, d := range s {
						k *= d
					}
					x := make([]float32, k)
					b := base(n)
					for i := range x {
						x[i] = fill(b, i)
					}
					ts = append(ts, namedData{n, s, x})
					views[n] = f32view{s, x}
				}
				wpath := filepath.Join(folder, "unet", weightsBase+"."+format)
				err := writeSynced(wpath, func(w io.Writer) error {
					if format == "bin" {
						return writeTorchZip(w, ts)
					}
					return safetensors.SerializeToWriter(views, map[string]string{"format": "pt"}, w)
				})
				if err != nil {
					t.Fatal(err)
				}
				m, err := Open(folder)
				if err != nil {
					t.Fatal(err)
				}
				fmtName := map[string]string{"bin": ".bin", "safetensors": "safetensors"}[format]
				want := fmt.Sprintf("%s model (preset %s), %s parameters, EMA or raw weights (not recorded), diffusers folder (%s)",
					g.dataset, g.preset, thousands(g.params), fmtName)
				if got := m.Describe(); got != want {
					t.Errorf("Describe() = %q\nwant         %q", got, want)
				}
				if p := preset(t, g.preset); m.Config.Dropout != p.Dropout {
					t.Errorf("dropout %g, want the preset's %g (the published config has none)", m.Config.Dropout, p.Dropout)
				}
				if m.Schedule.Variance != g.variant || !m.Schedule.Known || len(m.Warnings) != 0 {
					t.Errorf("schedule %+v, warnings %q", m.Schedule, m.Warnings)
				}
				if kind, T, v, err := m.Schedule.Run(); err != nil || kind != "linear" || T != 1000 || v != g.variant {
					t.Errorf("Run() = %s %d %s %v", kind, T, v, err)
				}
				L := len(m.Config.ChMult)
				for port, x := range m.Tensors {
					d, _, err := toDiffusers(port, L, true)
					if err != nil {
						t.Fatal(err)
					}
					for _, i := range []int{0, len(x) / 2, len(x) - 1} {
						if want := fill(base(d), i); x[i] != want {
							t.Fatalf("%s[%d] = %g, but %s[%d] holds %g", port, i, x[i], d, i, want)
						}
					}
				}
			})
		}
	}
}
