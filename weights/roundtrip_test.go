package weights

import (
	"archive/zip"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// sameTensors fails unless a and b hold the same tensors bit for bit.
func sameTensors(t *testing.T, what string, a, b map[string][]float32) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d tensors, want %d", what, len(a), len(b))
	}
	for name, x := range a {
		y, ok := b[name]
		if !ok || len(x) != len(y) {
			t.Fatalf("%s: tensor %s missing or of another size", what, name)
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("%s: %s[%d] = %g, want %g", what, name, i, y[i], x[i])
			}
		}
	}
}

// TestRoundTrip: export → import gives the same tensors bit for bit, the same
// configuration (dropout included, for diffusers), schedule and EMA flag, in
// both formats, for a small model, the CIFAR-10 one and a cosine schedule.
func TestRoundTrip(t *testing.T) {
	cases := []struct {
		preset   string
		schedule string
		T        int
		variance string
		ema      EMA
	}{
		{"tiny", diffusion.ScheduleCosine, 500, diffusion.VarianceFixedSmall, RawWeights},
		{"cifar10", diffusion.ScheduleLinear, 1000, diffusion.VarianceFixedLarge, EMAWeights},
	}
	for _, c := range cases {
		t.Run(c.preset, func(t *testing.T) {
			cfg := preset(t, c.preset)
			m := randomModel(cfg, 7)
			m.EMA = c.ema
			var err error
			if m.Schedule, err = ScheduleOf(c.schedule, c.T, c.variance); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			folder := filepath.Join(dir, "pipe")
			if err := WriteDiffusers(folder, m); err != nil {
				t.Fatal(err)
			}
			got, err := Open(folder)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, "diffusers", m.Tensors, got.Tensors)
			if got.Config.String() != cfg.String() || got.Config.Dropout != cfg.Dropout {
				t.Errorf("diffusers config %v dropout %g, want %v dropout %g", got.Config, got.Config.Dropout, cfg, cfg.Dropout)
			}
			if got.Schedule != m.Schedule {
				t.Errorf("diffusers schedule %+v, want %+v", got.Schedule, m.Schedule)
			}
			if got.EMA != c.ema || got.EMAWhy != "recorded in the file" {
				t.Errorf("diffusers EMA %v (%s), want %v", got.EMA, got.EMAWhy, c.ema)
			}
			if kind, T, v, err := got.Schedule.Run(); err != nil || kind != c.schedule || T != c.T || v != c.variance {
				t.Errorf("Run() = %s %d %s %v", kind, T, v, err)
			}
			if len(got.Warnings) != 0 {
				t.Errorf("warnings %q", got.Warnings)
			}
			t.Log(got.Describe())
			// The weights file alone: inside its unet folder it takes the folder's config;
			// elsewhere the architecture is read from the diffusers names and shapes.
			wfile := filepath.Join(folder, "unet", weightsBase+".safetensors")
			for _, p := range []string{wfile, filepath.Join(dir, "alone.safetensors")} {
				if p != wfile {
					b, err := os.ReadFile(wfile)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				alone, err := Open(p)
				if err != nil {
					t.Fatal(err)
				}
				sameTensors(t, p, m.Tensors, alone.Tensors)
				if alone.Config.String() != cfg.String() {
					t.Errorf("%s: config %v, want %v", p, alone.Config, cfg)
				}
			}

			ckpt := filepath.Join(dir, "model.ckpt")
			if err := WriteTorch(ckpt, m); err != nil {
				t.Fatal(err)
			}
			got, err = Open(ckpt)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, "ckpt", m.Tensors, got.Tensors)
			if got.Config.String() != cfg.String() {
				t.Errorf("ckpt config %v, want %v", got.Config, cfg)
			}
			t.Log(got.Describe())
			checkTorchLayout(t, ckpt)
		})
	}
}

// checkTorchLayout: records as torch.save lays them out, data 64-byte aligned.
func checkTorchLayout(t *testing.T, path string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
		if f.Method != zip.Store {
			t.Errorf("%s is compressed", f.Name)
		}
		if strings.HasPrefix(f.Name, "archive/data/") {
			off, err := f.DataOffset()
			if err != nil || off%64 != 0 {
				t.Errorf("%s starts at byte %d (%v), not on a 64-byte boundary", f.Name, off, err)
			}
		}
	}
	for _, n := range []string{"archive/data.pkl", "archive/version", "archive/byteorder", "archive/data/0"} {
		if !names[n] {
			t.Errorf("no record %s", n)
		}
	}
}

// TestUNetFromModel: Model.UNet has the tensors, FromUNet shares them back.
func TestUNetFromModel(t *testing.T) {
	m := randomModel(preset(t, "tiny"), 3)
	u, err := m.UNet()
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]float32, len(u.Params))
	for i, p := range u.Params {
		data[i] = p.Data
	}
	back, err := FromUNet(u, data, m.Schedule, RawWeights)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, "FromUNet", m.Tensors, back.Tensors)
	if back.Preset != "tiny" {
		t.Errorf("preset %q", back.Preset)
	}
}

// TestWriteDiffusersKeepsFolder: a folder that is not empty is not replaced,
// and a failed export leaves nothing behind.
func TestWriteDiffusersKeepsFolder(t *testing.T) {
	m := randomModel(preset(t, "tiny"), 3)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(out, "mine.txt")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteDiffusers(out, m); err == nil {
		t.Fatal("WriteDiffusers replaced a folder that was not empty")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal(err)
	}
	delete(m.Tensors, "conv_in.weight")
	if err := WriteDiffusers(filepath.Join(dir, "new"), m); err == nil || !strings.Contains(err.Error(), "conv_in.weight") {
		t.Fatalf("incomplete model: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
