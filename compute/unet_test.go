package compute

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

func tinyNet(t *testing.T, dropout float64) *UNet {
	t.Helper()
	cfg, err := PresetConfig("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dropout = dropout
	net, err := NewUNet(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	return net
}

// wake adds noise to every parameter, so the zero-initialised layers carry signal and gradient.
func wake(net *UNet, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	for _, p := range net.Params {
		for i := range p.Data {
			p.Data[i] += float32(0.05 * r.NormFloat64())
		}
	}
}

func randn(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func TestTimestepEmbedding(t *testing.T) {
	out := make([]float32, 2*8)
	timestepEmbedding([]int{0, 999}, 8, out)
	// t = 0: sin terms 0, cos terms 1.
	if !slices.Equal(out[:8], []float32{0, 0, 0, 0, 1, 1, 1, 1}) {
		t.Errorf("t=0: %v", out[:8])
	}
	// t = 999, i = 1 of half 4: f = exp(−ln(10000)/3).
	f := math.Exp(-math.Log(10000) / 3)
	if got, want := float64(out[8+1]), math.Sin(999*f); math.Abs(got-want) > 1e-6 {
		t.Errorf("sin(999 f1) = %v, want %v", got, want)
	}
	if got, want := float64(out[8+4+3]), math.Cos(999*1e-4); math.Abs(got-want) > 1e-6 {
		t.Errorf("cos(999 f3) = %v, want %v", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	c, _ := PresetConfig("mnist")
	for _, bad := range []func(*Config){
		func(c *Config) { c.Ch = 48 },
		func(c *Config) { c.Resolution = 30 },
		func(c *Config) { c.ChMult = nil },
		func(c *Config) { c.Dropout = 1 },
		func(c *Config) { c.NumResBlocks = 0 },
	} {
		d := c
		bad(&d)
		if d.Validate() == nil {
			t.Errorf("%s: no error", d)
		}
	}
	if _, err := PresetConfig("nope"); err == nil {
		t.Error("unknown preset: no error")
	}
}

func TestInitialisation(t *testing.T) {
	net := tinyNet(t, 0.1)
	// The official code zero-initialises (scale 1e-10) conv2 of each ResnetBlock,
	// proj_out and conv_out; GroupNorm γ is 1 and every bias 0.
	for _, p := range net.Params {
		maxAbs := 0.0
		for _, v := range p.Data {
			maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
		}
		switch {
		case filepath.Ext(p.Name) == ".bias":
			if maxAbs != 0 {
				t.Errorf("%s: max |b| = %g, want 0", p.Name, maxAbs)
			}
		case slices.Contains([]string{"conv2", "proj_out", "conv_out"}, layerKind(p.Name)):
			if maxAbs > 1e-4 || maxAbs == 0 {
				t.Errorf("%s: max |w| = %g, want tiny but not zero", p.Name, maxAbs)
			}
		case len(p.Shape) == 1: // GroupNorm γ
			if maxAbs != 1 {
				t.Errorf("%s: γ max %g, want 1", p.Name, maxAbs)
			}
		default:
			fanIn, fanOut := p.Shape[1], p.Shape[0]
			if len(p.Shape) == 4 {
				fanIn *= p.Shape[2] * p.Shape[3]
				fanOut *= p.Shape[2] * p.Shape[3]
			}
			limit := math.Sqrt(3 / (float64(fanIn+fanOut) / 2))
			if maxAbs > limit || maxAbs < 0.5*limit {
				t.Errorf("%s: max |w| = %g, want just under %g", p.Name, maxAbs, limit)
			}
		}
	}
}

// TestGradientDirectional checks the whole network's backward pass against a central
// difference of the loss along a random direction in parameter space.
func TestGradientDirectional(t *testing.T) {
	net := tinyNet(t, 0)
	wake(net, 3)
	tr := NewTrainer(net, DefaultOptim(), 0)
	shape := diffusion.Shape{N: 2, C: 1, H: 16, W: 16}
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{5, 700}
	f, err := net.build(shape.N, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.train[shape.N] = f
	copy(backing(f.eps), eps)
	if err := f.run(x, ts, net.Config.Ch); err != nil {
		t.Fatal(err)
	}
	dir := make([][]float32, len(net.Params))
	analytic := 0.0
	for i, p := range net.Params {
		dir[i] = randn(len(p.Data), uint64(100+i))
		for j, g := range f.prog.float32s(f.grads[i]) {
			analytic += float64(g) * float64(dir[i][j])
		}
	}
	loss := func(h float64) float64 {
		orig := make([][]float32, len(net.Params))
		for i, p := range net.Params {
			orig[i] = slices.Clone(p.Data)
			for j := range p.Data {
				p.Data[j] += float32(h) * dir[i][j]
			}
		}
		defer func() {
			for i, p := range net.Params {
				copy(p.Data, orig[i])
			}
		}()
		if err := f.run(x, ts, net.Config.Ch); err != nil {
			t.Fatal(err)
		}
		return float64(f.prog.value(f.loss).Data().(float32))
	}
	h := 1e-3
	numeric := (loss(h) - loss(-h)) / (2 * h)
	if rel := math.Abs(numeric-analytic) / math.Abs(numeric); rel > 2e-2 {
		t.Fatalf("directional derivative: backward %g, central difference %g (rel %.2g)", analytic, numeric, rel)
	}
	t.Logf("directional derivative: backward %g, central difference %g", analytic, numeric)
}

// TestOverfit: a few Adam steps on one batch must lower the loss clearly.
func TestOverfit(t *testing.T) {
	net := tinyNet(t, 0)
	opt := DefaultOptim()
	opt.LR, opt.Warmup = 2e-3, 1
	tr := NewTrainer(net, opt, 0)
	defer tr.Close()
	shape := diffusion.Shape{N: 4, C: 1, H: 16, W: 16}
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 200, 500, 900}
	var first, last diffusion.StepStats
	for i := 0; i < 30; i++ {
		st, err := tr.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = st
		}
		last = st
	}
	if last.Loss > 0.7*first.Loss {
		t.Fatalf("loss %g → %g after 30 steps on one batch", first.Loss, last.Loss)
	}
	if tr.Step != 30 {
		t.Errorf("step %d", tr.Step)
	}
}

func TestPredictEpsChunks(t *testing.T) {
	net := tinyNet(t, 0.1)
	wake(net, 9)
	shape := diffusion.Shape{N: 5, C: 1, H: 16, W: 16}
	x, ts := randn(shape.Size(), 4), []int{0, 1, 2, 3, 999}
	whole, err := net.PredictEps(context.Background(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	net.MaxBatch = 2
	parts, err := net.PredictEps(context.Background(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	for i := range whole {
		if math.Abs(float64(whole[i]-parts[i])) > 1e-5 {
			t.Fatalf("value %d: %g in one batch, %g in chunks", i, whole[i], parts[i])
		}
	}
	if _, err := net.PredictEps(context.Background(), x[:10], ts, shape); err == nil {
		t.Error("short input: no error")
	}
}

// TestGlobalNormClip checks the clip as TrainStep applies it (tf.clip_by_global_norm):
// when the norm of all gradients together exceeds GradClip, every gradient is scaled by
// GradClip/norm, else none is. After the first Adam step m = (1−β1)·g_c, so m/(1−β1)
// must equal the raw gradients times min(1, clip/norm): with the clip at a third of the
// norm its global norm is the clip (most tensors are then below the clip on their own,
// so clipping per tensor fails), and with the clip above the norm or 0 it is the raw
// gradient. Also: globalNorm, the warm-up and the EMA decay against closed forms.
func TestGlobalNormClip(t *testing.T) {
	g := [][]float32{{3, 0}, {4}}
	if n := globalNorm(g); n != 5 {
		t.Fatalf("norm %g", n)
	}
	o := DefaultOptim()
	if o.LRAt(0) != o.LR/5000 || o.LRAt(4999) != o.LR || o.LRAt(2499) != o.LR/2 {
		t.Errorf("warm-up: %g %g %g", o.LRAt(0), o.LRAt(2499), o.LRAt(4999))
	}
	if d := o.EMADecayAt(0); math.Abs(d-0.1) > 1e-12 {
		t.Errorf("EMA decay at step 0: %g", d)
	}
	if d := o.EMADecayAt(1e9); d != 0.9999 {
		t.Errorf("EMA decay late: %g", d)
	}

	shape := diffusion.Shape{N: 2, C: 1, H: 16, W: 16}
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{40, 600}
	// step returns the raw gradients, their norm and m/(1−β1) after one step with clip.
	step := func(clip float64) (grads, gc [][]float32, norm float64) {
		net := tinyNet(t, 0)
		wake(net, 4)
		opt := DefaultOptim()
		opt.GradClip = clip
		tr := NewTrainer(net, opt, 0)
		defer tr.Close()
		st, err := tr.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatal(err)
		}
		f := tr.train[shape.N]
		for i, gn := range f.grads {
			grads = append(grads, slices.Clone(f.prog.float32s(gn)))
			c := make([]float32, len(tr.M[i]))
			for j, m := range tr.M[i] {
				c[j] = m / float32(1-opt.Beta1)
			}
			gc = append(gc, c)
		}
		if n := globalNorm(grads); math.Abs(n-st.GradNorm) > 1e-9*n {
			t.Fatalf("reported norm %v, gradients' norm %v", st.GradNorm, n)
		}
		return grads, gc, st.GradNorm
	}
	same := func(what string, got, want [][]float32, scale float64) {
		t.Helper()
		for i := range want {
			for j, w := range want[i] {
				exp := float64(w) * scale
				if d := math.Abs(float64(got[i][j]) - exp); d > 1e-6*math.Abs(exp)+1e-12 {
					t.Fatalf("%s: tensor %d [%d] = %g after the step, want %g", what, i, j, got[i][j], exp)
				}
			}
		}
	}
	_, gc, norm := step(0)
	raw, _, _ := step(2 * norm)
	same("clip 0 (off)", gc, raw, 1)
	_, gc, _ = step(2 * norm)
	same("clip above the norm", gc, raw, 1)
	clip := norm / 3
	_, gc, _ = step(clip)
	same("clip at a third of the norm", gc, raw, clip/norm)
	if n := globalNorm(gc); math.Abs(n-clip) > 1e-5*clip {
		t.Errorf("clipped gradients have norm %g, want the clip %g", n, clip)
	}
	below := 0
	for _, r := range raw {
		if globalNorm([][]float32{r}) < clip {
			below++
		}
	}
	if below == 0 {
		t.Fatal("test setup: every tensor's norm is above the clip; clipping per tensor would pass")
	}
}

// layerKind is the last part of a parameter's layer name: "conv2" for "down.0.block.1.conv2.weight".
func layerKind(name string) string {
	layer := strings.TrimSuffix(name, ".weight")
	return layer[strings.LastIndex(layer, ".")+1:]
}

// TestForwardFLOPs checks the count against a hand count for a 1-level model and, for
// the presets, against a count from the parameter list. It catches a layer left out of
// the count or counted at the wrong resolution.
func TestForwardFLOPs(t *testing.T) {
	cfg := Config{Resolution: 4, InChannels: 1, OutCh: 1, Ch: 32, ChMult: []int{1}, NumResBlocks: 1, AttnResolutions: nil}
	net, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := net.ForwardFLOPs(2)
	if err != nil {
		t.Fatal(err)
	}
	const n, hw, c = 2, 16, 32
	conv := func(cin, cout, k int) float64 { return 2 * float64(n*hw*cin*cout*k*k) }
	dense := func(in, out int) float64 { return 2 * float64(n*in*out) }
	attn := conv(c, c, 1)*4 + 2*2*float64(n*hw*hw*c)
	want := dense(c, 4*c) + dense(4*c, 4*c) + // time embedding
		conv(1, c, 3) + // conv_in
		2*conv(c, c, 3) + dense(4*c, c) + // down block
		2*(2*conv(c, c, 3)+dense(4*c, c)) + attn + // middle
		2*(conv(2*c, c, 3)+conv(c, c, 3)+dense(4*c, c)+conv(2*c, c, 1)) + // two up blocks on concatenations
		conv(c, 1, 3) // conv_out
	if got != want {
		t.Errorf("ForwardFLOPs = %g, want %g", got, want)
	}
	// The presets, against a count from the parameter list: every conv weight [O,I,k,k]
	// costs 2·O·I·k² per pixel of its output, whose resolution follows from the layer's
	// name; every dense weight [out,in] 2·out·in; every attention block two products
	// of 2·(H·W)²·C. The builder counts from the graph's shapes instead.
	for _, preset := range []string{"tiny", "mnist", "cifar32"} {
		cfg, _ := PresetConfig(preset)
		m, err := NewUNet(cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		const n = 3
		got, err := m.ForwardFLOPs(n)
		if err != nil {
			t.Fatal(err)
		}
		if want := flopsFromParams(t, m, n); got != want {
			t.Errorf("%s: ForwardFLOPs(%d) = %g, count from the parameters %g", preset, n, got, want)
		}
	}
}

// flopsFromParams counts the forward FLOPs of n images from the parameters' names and shapes.
func flopsFromParams(t *testing.T, m *UNet, n int) float64 {
	t.Helper()
	c := m.Config
	last := len(c.ChMult) - 1
	res := func(name string) int { // output resolution of the layer
		var i int
		switch {
		case strings.HasPrefix(name, "conv_in.") || strings.HasPrefix(name, "conv_out."):
			return c.Resolution
		case strings.HasPrefix(name, "mid."):
			return c.Resolution >> last
		case strings.Contains(name, ".downsample."):
			fmt.Sscanf(name, "down.%d.", &i)
			return c.Resolution >> (i + 1)
		case strings.Contains(name, ".upsample."):
			fmt.Sscanf(name, "up.%d.", &i)
			return c.Resolution >> (i - 1)
		case strings.HasPrefix(name, "down."):
			fmt.Sscanf(name, "down.%d.", &i)
		case strings.HasPrefix(name, "up."):
			fmt.Sscanf(name, "up.%d.", &i)
		default:
			t.Fatalf("layer %s: no resolution", name)
		}
		return c.Resolution >> i
	}
	var f float64
	for _, p := range m.Params {
		if !strings.HasSuffix(p.Name, ".weight") {
			continue
		}
		s := p.Shape
		switch len(s) {
		case 4: // conv
			r := res(p.Name)
			f += 2 * float64(n*s[0]*s[1]*s[2]*s[3]*r*r)
			if strings.HasSuffix(p.Name, ".q.weight") { // one attention block: w = qᵀk, h = v wᵀ
				hw := r * r
				f += 2 * 2 * float64(n*hw*hw*s[0])
			}
		case 2: // dense
			f += 2 * float64(n*s[0]*s[1])
		}
	}
	return f
}
