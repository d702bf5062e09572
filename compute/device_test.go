package compute

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/ddpm-studio/ddpm-studio/compute/gpu"
	"github.com/ddpm-studio/ddpm-studio/compute/gpu/kernels"
	"github.com/ddpm-studio/ddpm-studio/compute/ops"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// The device tests run every op's kernels, and the whole training step, on a device
// and compare them with the CPU ops of this package and of compute/ops. Without a GPU
// the device is the emulator of compute/gpu/kernels, which runs the very kernel sources
// that the GPU runs, compiled for the CPU: it catches wrong indices, missing barriers and
// wrong formulas, not the GPU's own rounding or timing. testDevices (device_cuda_test.go,
// in builds with -tags cuda) adds the GPU where one can be used.

// Tolerances: the largest |device − CPU| / max|CPU| of a tensor (normwise: elementwise
// ratios are meaningless where a value is near zero by cancellation). The products sum
// in another order than the CPU's (which uses Winograd for 3×3 convolutions), in
// float32 everywhere: no TF32 tensor cores are used.
const (
	opTol  = 1e-5 // one op, forward and gradients
	netTol = 1e-4 // the whole network (the bound): ε̂, the loss and every gradient
)

// smallScratch makes the emulated convolutions split their batches into chunks of one
// or two images, so that the chunked paths run too.
const smallScratch = 40 << 10

// emulatedDevice is the CPU emulator as a device.
func emulatedDevice(t testing.TB, scratch int64) *Device {
	e := kernels.NewEmulator()
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return newBackendDevice("emulator", e, scratch)
}

// deviceCase is a device to test on, and whether its kernels are the GPU's.
type deviceCase struct {
	name string
	dev  func(t testing.TB) *Device
}

// testDevices lists the emulator and, in builds with -tags cuda on a machine with a GPU,
// the GPU (extraDevices).
func testDevices() []deviceCase {
	return append([]deviceCase{{"emulator", func(t testing.TB) *Device { return emulatedDevice(t, smallScratch) }}}, extraDevices...)
}

// extraDevices is set by device_cuda_test.go.
var extraDevices []deviceCase

// row reports one compared quantity: an error above tol fails the test. With
// DDPM_GPU_TABLE set (scripts/gpu-check.sh) it also prints a GPUCHECK line for the
// script's table: section, device, what, error, tolerance, verdict.
func row(t *testing.T, section, device, what string, err, tol float64) {
	t.Helper()
	ok := err <= tol && !math.IsNaN(err)
	verdict := "ok"
	if !ok {
		verdict = "FAIL"
		t.Errorf("%s %s %s: max rel err %.2e > %.0e", section, device, what, err, tol)
	}
	if os.Getenv("DDPM_GPU_TABLE") != "" {
		fmt.Printf("GPUCHECK|%s|%s|%s|%.2e|%.0e|%s\n", section, device, what, err, tol, verdict)
	} else if testing.Verbose() {
		t.Logf("%-8s %-10s %-48s max rel err %.2e (tol %.0e)", section, device, what, err, tol)
	}
}

// relErr is max|got − want| / max|want| (0 when both are zero; +Inf for NaN).
func relErr(got, want []float32) float64 {
	var d, m float64
	for i := range want {
		diff := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(diff) {
			return math.Inf(1)
		}
		d = max(d, diff)
		m = max(m, math.Abs(float64(want[i])))
	}
	if m == 0 {
		if d == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return d / m
}

// opCase is a small graph with one op of the network: build returns its output from
// inputs made by input().
type opCase struct {
	name  string
	build func(b *opBuilder) *G.Node
}

// opBuilder makes the random inputs of an opCase.
type opBuilder struct {
	g      *G.ExprGraph
	rng    *rand.Rand
	inputs []*G.Node
	vals   map[*G.Node][]float32
}

func (b *opBuilder) input(name string, shape ...int) *G.Node {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(b.rng.NormFloat64())
	}
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	node := G.NewTensor(b.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	b.inputs = append(b.inputs, node)
	b.vals[node] = v
	return node
}

func must(n *G.Node, err error) *G.Node {
	if err != nil {
		panic(err)
	}
	return n
}

// opCases covers every op the U-Net's training graph runs, at sizes that are not
// multiples of the kernels' blocks and tiles, with batches of 3.
func opCases() []opCase {
	conv := func(name string, cin, cout, h, k, stride int, pad ops.Pads) opCase {
		return opCase{name, func(b *opBuilder) *G.Node {
			x, w, bias := b.input("x", 3, cin, h, h), b.input("w", cout, cin, k, k), b.input("b", cout)
			return must(ops.Conv2d(x, w, bias, stride, pad))
		}}
	}
	return []opCase{
		conv("conv 3×3 stride 1 pad 1", 5, 7, 9, 3, 1, ops.Pads{Top: 1, Bottom: 1, Left: 1, Right: 1}),
		conv("conv 1×1", 6, 5, 7, 1, 1, ops.Pads{}),
		conv("conv 3×3 stride 2 pad (0,1,0,1)", 4, 4, 10, 3, 2, ops.Pads{Bottom: 1, Right: 1}),
		{"group norm", func(b *opBuilder) *G.Node {
			x, g, be := b.input("x", 3, 8, 5, 7), b.input("gamma", 8), b.input("beta", 8)
			return must(ops.GroupNorm(x, g, be, 4, 1e-6))
		}},
		{"group norm + swish", func(b *opBuilder) *G.Node {
			x, g, be := b.input("x", 3, 8, 17, 19), b.input("gamma", 8), b.input("beta", 8)
			return must(ops.GroupNormSwish(x, g, be, 2, 1e-6))
		}},
		{"swish", func(b *opBuilder) *G.Node { return must(ops.Swish(b.input("x", 3, 300))) }},
		{"upsample ×2", func(b *opBuilder) *G.Node { return must(ops.Upsample2x(b.input("x", 3, 2, 5, 3))) }},
		{"softmax (scaled)", func(b *opBuilder) *G.Node {
			return must(ops.Softmax(b.input("x", 3, 7, 300), 1/math.Sqrt(17)))
		}},
		{"batched matmul", func(b *opBuilder) *G.Node {
			return must(ops.BatchedMatMul(b.input("a", 3, 6, 70), b.input("b", 3, 70, 5), false, false))
		}},
		{"batched matmul aᵀ", func(b *opBuilder) *G.Node {
			return must(ops.BatchedMatMul(b.input("a", 3, 9, 66), b.input("b", 3, 9, 66), true, false))
		}},
		{"batched matmul bᵀ", func(b *opBuilder) *G.Node {
			return must(ops.BatchedMatMul(b.input("a", 3, 5, 9), b.input("b", 3, 67, 9), false, true))
		}},
		{"concat", func(b *opBuilder) *G.Node {
			return must(ops.ConcatChannels(b.input("a", 3, 2, 4, 5), b.input("b", 3, 3, 4, 5)))
		}},
		{"add", func(b *opBuilder) *G.Node { return must(ops.Add(b.input("a", 3, 5, 7), b.input("b", 3, 5, 7))) }},
		{"add channels", func(b *opBuilder) *G.Node {
			return must(ops.AddChannels(b.input("h", 3, 5, 4, 7), b.input("t", 3, 5)))
		}},
		{"dense (x·Wᵀ + b)", func(b *opBuilder) *G.Node {
			x, w, bias := b.input("x", 3, 70), b.input("w", 65, 70), b.input("b", 65)
			y := must(G.Mul(x, must(G.Transpose(w, 1, 0))))
			return must(G.BroadcastAdd(y, must(G.Reshape(bias, tensor.Shape{1, 65})), nil, []byte{0}))
		}},
		{"dropout product", func(b *opBuilder) *G.Node {
			return must(G.HadamardProd(b.input("x", 3, 4, 5, 6), b.input("mask", 3, 4, 5, 6)))
		}},
		{"loss mean((ε̂ − ε)²)", func(b *opBuilder) *G.Node {
			d := must(G.Sub(b.input("out", 3, 2, 5, 5), b.input("eps", 3, 2, 5, 5)))
			return must(G.Mean(must(G.Square(d))))
		}},
	}
}

// opResult is one compared tensor of an op case.
type opResult struct {
	what string
	err  float64
}

// runOpCase builds case c, computes y and the gradient of Σ y⊙r for every input (r a
// random tensor, so that the backward ops see a random dy) on the CPU with the
// program and on dev, and returns the relative error of each.
func runOpCase(t *testing.T, c opCase, dev *Device) []opResult {
	b := &opBuilder{g: G.NewGraph(), rng: rand.New(rand.NewPCG(11, 12)), vals: map[*G.Node][]float32{}}
	y := c.build(b)
	inputs := slices.Clone(b.inputs)
	var loss *G.Node
	if y.IsScalar() {
		loss = y
	} else {
		r := b.input("r", y.Shape()...)
		loss = must(G.Sum(must(G.HadamardProd(y, r))))
	}
	grads, err := G.Grad(loss, inputs...)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	keep := append([]*G.Node{y}, grads...)
	prog, err := compile(b.g, keep...)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	if err := prog.run(); err != nil {
		t.Fatalf("%s on the CPU: %v", c.name, err)
	}
	dg, err := bindGraph(dev, b.g, nil, 0, b.inputs, keep)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer dg.free()
	for _, n := range b.inputs {
		if err := gpu.Upload(dev.be, dg.input(n), b.vals[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := dg.run(nil); err != nil {
		t.Fatalf("%s on %s: %v", c.name, dev.kind, err)
	}
	var res []opResult
	for k, n := range keep {
		want := valueFloat32s(t, prog.value(n))
		got := make([]float32, len(want))
		if err := gpu.Download(dev.be, got, dg.ptr(n)); err != nil {
			t.Fatalf("%s on %s: %v", c.name, dev.kind, err)
		}
		what := "forward"
		if k > 0 {
			what = "d/d" + inputs[k-1].Name()
		}
		res = append(res, opResult{what, relErr(got, want)})
	}
	return res
}

// TestDeviceOpsMatchCPU runs every op of the training graph, forward and gradients, on
// each test device against the CPU, and fails above opTol.
func TestDeviceOpsMatchCPU(t *testing.T) {
	for _, dc := range testDevices() {
		t.Run(dc.name, func(t *testing.T) {
			dev := dc.dev(t)
			for _, c := range opCases() {
				for _, r := range runOpCase(t, c, dev) {
					row(t, "op", dc.name, c.name+": "+r.what, r.err, opTol)
				}
			}
		})
	}
}

// randomizeWeights gives every parameter random values of the scale a trained network
// has: weights N(0, 1/fan-in), biases and GroupNorm β N(0, 0.1²), γ 1 + N(0, 0.1²). At
// the official initialisation the zero-initialised layers (each block's conv2,
// proj_out, conv_out) pass almost nothing back, and most gradients are 1e-10 of the
// largest: a comparison of them would test rounding noise.
func randomizeWeights(net *UNet, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	for _, p := range net.Params {
		fanIn := 1
		for _, d := range p.Shape[1:] {
			fanIn *= d
		}
		for j := range p.Data {
			z := rng.NormFloat64()
			switch {
			case len(p.Shape) > 1:
				p.Data[j] = float32(z / math.Sqrt(float64(fanIn)))
			case strings.HasSuffix(p.Name, ".weight"): // GroupNorm γ
				p.Data[j] = float32(1 + 0.1*z)
			default:
				p.Data[j] = float32(0.1 * z)
			}
		}
	}
}

// trainPair is a trainer on the CPU and its copy on a device, from the same seeds and
// random weights (randomizeWeights).
func trainPair(t *testing.T, dev *Device, cfg Config) (cpu, gpuT *Trainer) {
	mk := func() *Trainer {
		net, err := NewUNet(cfg, 1)
		if err != nil {
			t.Fatal(err)
		}
		randomizeWeights(net, 2)
		opt := DefaultOptim()
		opt.Warmup = 1 // full learning rate from the first step, so the update is not tiny
		tr := NewTrainer(net, opt, 5)
		return tr
	}
	cpu, gpuT = mk(), mk()
	t.Cleanup(cpu.Close)
	t.Cleanup(gpuT.Close)
	if err := gpuT.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	return cpu, gpuT
}

// deviceGrads returns the gradients of the last device step, per parameter.
func deviceGrads(t *testing.T, tr *Trainer) [][]float32 {
	out := make([][]float32, len(tr.Net.Params))
	for i, p := range tr.Net.Params {
		out[i] = make([]float32, len(p.Data))
	}
	if err := tr.dev.layout.download(tr.dev.dev.be, out, tr.dev.g); err != nil {
		t.Fatal(err)
	}
	return out
}

// deviceMasks returns the dropout masks of the last device step on batches of n.
func deviceMasks(t *testing.T, tr *Trainer, n int) [][]float32 {
	g := tr.dev.train[n]
	var out [][]float32
	for _, m := range g.f.masks {
		v := make([]float32, m.Shape().TotalSize())
		if err := gpu.Download(g.be, v, g.input(m)); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestDeviceTrainStepMatchesCPU takes two training steps of the tiny U-Net (dropout on)
// on the CPU and on each test device from the same weights, data and seeds, and
// compares: the dropout masks bit for bit, the loss, the gradient norm and every
// gradient within netTol, the updates of the weights, Adam's moments and the EMA (copied
// back by SyncHost), and ε̂ of a forward pass after the steps. Catches any kernel or
// lowering error, a mask stream that differs from the CPU's, and an optimizer that does.
func TestDeviceTrainStepMatchesCPU(t *testing.T) {
	cfg, _ := PresetConfig("tiny")
	for _, dc := range testDevices() {
		t.Run(dc.name, func(t *testing.T) { checkTrainStep(t, dc.name, dc.dev(t), cfg, 3) })
	}
}

// significant is the size, relative to the largest gradient value of the network,
// below which a gradient is rounding noise. Some gradients are zero by the
// architecture: the bias of a convolution (and of the time projection) followed by a
// GroupNorm whose groups hold one channel (levels of 32 channels), or the bias of
// attention's k (softmax does not change when the same q·b is added to every logit).
// Both sides then hold noise, about 1e-8 of the largest gradient in the tiny U-Net with
// random weights, while every other gradient's largest value is above 1e-3 of it. Such
// gradients are checked to be noise on the device too (below significant), the others
// relative to their own largest value.
const significant = 1e-6

// gradErr compares two gradients of a network whose largest gradient value is scale: a
// real one (above significant·scale) by relErr, one that is zero by the architecture by
// its largest |difference| over significant·scale.
func gradErr(got, want []float32, scale float64) float64 {
	if maxAbs([][]float32{want}) >= significant*scale {
		return relErr(got, want)
	}
	d := 0.0
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i])))
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / (significant * scale) * netTol // within netTol when the difference is below the noise bound
}

// moveErr compares weights (or EMA values) after Adam steps that move each value by
// at most move in all: the largest difference beyond four float32 ulps of the value
// (each side rounds w − update once a step, by up to an ulp of the larger of the
// values before and after), over move, at the values that track marks. Adam's first
// steps move a value by ±lr whatever the size of its gradient where √v ≫ ε, and in
// proportion to the gradient where √v ≲ ε: a gradient near zero (relative to its
// tensor, where its rounding error is large) or below ε makes the two sides move
// differently. Only values whose gradient was above 1e-3 of their tensor's largest and
// √v above 1000·ε at every step are tracked.
func moveErr(got, want []float32, track []bool, move float64) float64 {
	d := 0.0
	for i := range want {
		if !track[i] {
			continue
		}
		w := float64(want[i])
		ulp := math.Abs(float64(math.Nextafter32(want[i], float32(math.Inf(1)))) - w)
		d = max(d, math.Abs(float64(got[i])-w)-4*ulp)
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	return d / move
}

func maxAbs(v [][]float32) float64 {
	m := 0.0
	for _, s := range v {
		for _, x := range s {
			m = max(m, math.Abs(float64(x)))
		}
	}
	return m
}

func cloneAll(v [][]float32) [][]float32 {
	out := make([][]float32, len(v))
	for i := range v {
		out[i] = slices.Clone(v[i])
	}
	return out
}

// minus returns a − b, tensor by tensor.
func minus(a, b [][]float32) [][]float32 {
	out := cloneAll(a)
	for i := range out {
		for j := range out[i] {
			out[i][j] -= b[i][j]
		}
	}
	return out
}

func checkTrainStep(t *testing.T, name string, dev *Device, cfg Config, n int) {
	cpu, dt := trainPair(t, dev, cfg)
	shape := shapeFor(cfg, n)
	report := func(what string, err, tol float64) {
		row(t, "net", name, fmt.Sprintf("%dx%dx%d ch%d b%d: %s", cfg.Resolution, cfg.Resolution, cfg.InChannels, cfg.Ch, n, what), err, tol)
	}
	real := make([]bool, len(cpu.Net.Params)) // gradient above rounding noise at every step
	track := make([][]bool, len(cpu.Net.Params))
	for i, p := range cpu.Net.Params {
		real[i] = true
		track[i] = make([]bool, len(p.Data))
		for j := range track[i] {
			track[i][j] = true
		}
	}
	for step := range 2 {
		x, eps := randn(shape.Size(), uint64(10+step)), randn(shape.Size(), uint64(20+step))
		ts := make([]int, n)
		for i := range ts {
			ts[i] = (137*i + 400*step) % 1000
		}
		sc, err := cpu.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := dt.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cm, dm := cpu.LastDropoutMasks(n), deviceMasks(t, dt, n)
		for i := range cm {
			if !slices.Equal(cm[i], dm[i]) {
				t.Fatalf("%s step %d: dropout mask %d differs from the CPU's", name, step, i)
			}
		}
		report(fmt.Sprintf("step %d loss", step), math.Abs(sd.Loss-sc.Loss)/sc.Loss, netTol)
		report(fmt.Sprintf("step %d gradient norm", step), math.Abs(sd.GradNorm-sc.GradNorm)/sc.GradNorm, netTol)
		cg, dg := cpu.LastGradients(n), deviceGrads(t, dt)
		scale := maxAbs(cg)
		worst, which := 0.0, ""
		for i := range cg {
			if e := gradErr(dg[i], cg[i], scale); e > worst || math.IsNaN(e) {
				worst, which = e, cpu.Net.Params[i].Name
			}
			m := maxAbs(cg[i : i+1])
			if m < significant*scale {
				real[i] = false
			}
			clip := 1.0 // tf.clip_by_global_norm's factor, as TrainStep
			if c := cpu.Optim.GradClip; c > 0 && sc.GradNorm > c {
				clip = c / sc.GradNorm
			}
			for j, g := range cg[i] {
				a := math.Abs(float64(g))
				if a < 1e-3*m || math.Sqrt(1-cpu.Optim.Beta2)*a*clip < 1e3*cpu.Optim.Eps {
					track[i][j] = false
				}
			}
		}
		report(fmt.Sprintf("step %d gradients (worst: %s)", step, which), worst, netTol)
	}
	if err := dt.SyncHost(); err != nil {
		t.Fatal(err)
	}
	skipped := 0
	move := 2 * cpu.Optim.LR // two steps at the full rate (Warmup 1)
	for _, c := range []struct {
		what     string
		got, ref [][]float32
		moved    bool
	}{
		{"weights", dt.Net.data(), cpu.Net.data(), true},
		{"Adam m", dt.M, cpu.M, false},
		{"Adam v", dt.V, cpu.V, false},
		{"EMA", dt.EMA, cpu.EMA, true},
	} {
		worst := 0.0
		skipped = 0
		for i := range c.ref {
			if !real[i] {
				skipped++
				continue
			}
			if c.moved {
				worst = max(worst, moveErr(c.got[i], c.ref[i], track[i], move))
			} else {
				worst = max(worst, relErr(c.got[i], c.ref[i]))
			}
		}
		report("after 2 steps: "+c.what, worst, netTol)
	}
	t.Logf("%s: %d of %d parameters have gradients that are zero up to rounding; their updates are not compared", name, skipped, len(real))
	x := randn(shape.Size(), 30)
	ts := make([]int, n)
	for i := range ts {
		ts[i] = 999 - 300*i
	}
	want, err := cpu.PredictEps(t.Context(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dt.PredictEps(t.Context(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	report("ε̂ after 2 steps", relErr(got, want), netTol)
}

// TestDeviceAdamMatchesCPUBitForBit feeds the device's Adam+EMA kernel and the CPU
// trainer's the same gradients, moments, weights and EMA, and requires the same bits:
// the kernel spells out the CPU's rounding (no fused multiply-adds), so a run can move
// between devices without its optimizer state drifting.
func TestDeviceAdamMatchesCPUBitForBit(t *testing.T) {
	dev := emulatedDevice(t, smallScratch)
	mk := func() *Trainer {
		net, err := NewUNet(mustPreset(t, "tiny"), 1)
		if err != nil {
			t.Fatal(err)
		}
		tr := NewTrainer(net, DefaultOptim(), 5)
		t.Cleanup(tr.Close)
		return tr
	}
	cpu, dt := mk(), mk()
	rng := rand.New(rand.NewPCG(3, 4))
	grads := make([][]float32, len(cpu.Net.Params))
	for i, p := range cpu.Net.Params {
		grads[i] = make([]float32, len(p.Data))
		for j := range p.Data {
			grads[i][j] = float32(rng.NormFloat64())
			cpu.M[i][j] = float32(rng.NormFloat64() * 0.1)
			cpu.V[i][j] = float32(rng.Float64() * 0.01)
			cpu.EMA[i][j] = p.Data[j] + float32(rng.NormFloat64()*0.01)
		}
	}
	cpu.Step = 41
	// The device trainer takes the CPU trainer's state.
	for i := range cpu.Net.Params {
		copy(dt.Net.Params[i].Data, cpu.Net.Params[i].Data)
		copy(dt.M[i], cpu.M[i])
		copy(dt.V[i], cpu.V[i])
		copy(dt.EMA[i], cpu.EMA[i])
	}
	dt.Step = cpu.Step
	if err := dt.SetDevice(dev); err != nil { // uploads the state
		t.Fatal(err)
	}
	l := dt.dev.layout
	if err := l.upload(dev.be, dt.dev.g, grads); err != nil {
		t.Fatal(err)
	}
	const scale, lr = 0.37, 2e-4
	o := cpu.Optim
	step := float64(cpu.Step + 1)
	a := gpu.Adam{Beta1: float32(o.Beta1), Beta2: float32(o.Beta2), Scale: scale,
		LRT: lr * math.Sqrt(1-math.Pow(o.Beta2, step)) / (1 - math.Pow(o.Beta1, step)), Eps: o.Eps,
		EMA: true, Decay: float32(o.EMADecayAt(cpu.Step))}
	if err := gpu.AdamEMA(dev.be, dt.dev.w, dt.dev.m, dt.dev.v, dt.dev.e, dt.dev.g, l.n, a, true, dt.dev.small); err != nil {
		t.Fatal(err)
	}
	cpu.newUpdate(scale, lr).commit(cpu, grads)
	cpu.Step++
	if err := dt.SyncHost(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what     string
		got, ref [][]float32
	}{{"weights", dt.Net.data(), cpu.Net.data()}, {"m", dt.M, cpu.M}, {"v", dt.V, cpu.V}, {"EMA", dt.EMA, cpu.EMA}} {
		for i := range c.ref {
			for j := range c.ref[i] {
				if math.Float32bits(c.got[i][j]) != math.Float32bits(c.ref[i][j]) {
					t.Fatalf("%s of %s [%d]: device %v, CPU %v", c.what, cpu.Net.Params[i].Name, j, c.got[i][j], c.ref[i][j])
				}
			}
		}
	}
}

func mustPreset(t *testing.T, name string) Config {
	cfg, err := PresetConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func shapeFor(cfg Config, n int) diffusion.Shape {
	return diffusion.Shape{N: n, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
}

// TestDevicePlanNeverOverlaps checks the device plan of the tiny U-Net's training graph
// (and a forward graph): every value's span in the arena covers the steps that read it
// (through views too) and each step's scratch covers its step; no two spans alive at the
// same step share a float; every span lies inside the arena; a reshape's slot is the
// memory of the value it views. It also reports the arena next
// to the CPU program's: the device plan reuses its lifetime placement.
func TestDevicePlanNeverOverlaps(t *testing.T) {
	net := tinyNet(t, 0.1)
	for _, train := range []bool{true, false} {
		f, err := net.buildGraph(4, train, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		inputs := append([]*G.Node{f.x, f.temb}, f.masks...)
		keep := []*G.Node{f.out}
		if train {
			inputs = append(inputs, f.eps)
			keep = append(append(keep, f.loss), f.grads...)
		}
		p, err := newDevPlan(f.g, net.Params, inputs, keep, smallScratch)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range p.spans {
			ea := p.offs[i] + (a.size+arenaAlign-1)/arenaAlign*arenaAlign
			if ea > p.arena {
				t.Fatalf("span %d ends at %d, past the arena of %d", i, ea, p.arena)
			}
			for j := i + 1; j < len(p.spans); j++ {
				b := p.spans[j]
				if a.hi < b.lo || b.hi < a.lo {
					continue
				}
				if p.offs[i] < p.offs[j]+b.size && p.offs[j] < p.offs[i]+a.size {
					t.Fatalf("spans %d [%d,%d] and %d [%d,%d] are alive together and overlap", i, a.lo, a.hi, j, b.lo, b.hi)
				}
			}
		}
		spanOf := map[int]span{}
		for k, o := range p.owner {
			spanOf[o] = p.spans[k]
		}
		scratch := 0
		for k, st := range p.steps {
			if st.scratch > 0 {
				scratch++
				if sp := spanOf[-(k + 1)]; sp.lo > st.node || sp.hi < st.node {
					t.Fatalf("the scratch of step %d (node %d) lives over [%d,%d]", k, st.node, sp.lo, sp.hi)
				}
			}
			for _, c := range append([]int{st.node}, st.in...) {
				r := p.viewRoot(c)
				if p.slots[r].kind != slotArena {
					continue
				}
				if sp, ok := spanOf[r]; !ok || sp.lo > st.node || sp.hi < st.node {
					t.Fatalf("node %v, used at step %d (node %d), lives over [%d,%d]", p.nodes[r], k, st.node, sp.lo, sp.hi)
				}
			}
		}
		for i, s := range p.slots {
			if s.kind == slotView {
				r := p.viewRoot(i)
				if p.slots[r].kind == slotView || p.nodes[i].Shape().TotalSize() != p.nodes[r].Shape().TotalSize() {
					t.Fatalf("view %v of %v", p.nodes[i], p.nodes[r])
				}
			}
		}
		t.Logf("train %v: device arena %.2f MB (%d steps with scratch), CPU program's arena %.2f MB, constants %d floats",
			train, 4*float64(p.arena)/1e6, scratch, float64(f.prog.arena)/1e6, len(p.consts))
		if train && scratch == 0 {
			t.Error("no step has scratch: the convolutions' column matrices are not planned")
		}

	}
}

// TestDeviceTrainBytesIsWhatIsAllocated compares DeviceTrainBytes, computed without
// allocating, with the memory a device trainer holds once its graph for that batch is
// built (the emulator rounds every allocation up to 256 bytes).
func TestDeviceTrainBytesIsWhatIsAllocated(t *testing.T) {
	e := kernels.NewEmulator()
	defer e.Close()
	dev := newBackendDevice("emulator", e, smallScratch)
	net := tinyNet(t, 0.1)
	want, err := net.DeviceTrainBytes(dev, 3)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTrainer(net, DefaultOptim(), 1)
	defer tr.Close()
	if err := tr.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	prep, err := tr.Prepare(3)
	if err != nil {
		t.Fatal(err)
	}
	allocs := 20 + 3 + len(tr.dev.train[3].inputs) // upper bound on the number of buffers
	if e.Bytes < want || e.Bytes > want+256*int64(allocs) || prep != want {
		t.Errorf("DeviceTrainBytes %d, Prepare %d, allocated %d", want, prep, e.Bytes)
	}
}

// TestDeviceInterruptLeavesStateUntouched interrupts device training steps before they
// start and in the middle of their launches, and checks that the interrupted steps left
// no trace: the trainer then takes the same steps, bit for bit on the emulator, as one
// that was never interrupted (weights, moments, EMA, step count and dropout stream).
func TestDeviceInterruptLeavesStateUntouched(t *testing.T) {
	cfg := mustPreset(t, "tiny")
	dev := emulatedDevice(t, smallScratch)
	_, ref := trainPair(t, dev, cfg)
	_, tr := trainPair(t, dev, cfg)
	shape := shapeFor(cfg, 2)
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 900}
	if _, err := ref.TrainStep(x, ts, eps, shape); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
		t.Fatal(err)
	}
	tr.Interrupt()
	if _, err := tr.TrainStep(x, ts, eps, shape); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted before the step: %v", err)
	}
	interrupted := 1
	for _, after := range []time.Duration{300 * time.Millisecond, 900 * time.Millisecond} {
		timer := time.AfterFunc(after, tr.Interrupt)
		_, err := tr.TrainStep(x, ts, eps, shape)
		timer.Stop()
		switch {
		case errors.Is(err, ErrInterrupted):
			interrupted++
		case err != nil:
			t.Fatal(err)
		default:
			if _, err := ref.TrainStep(x, ts, eps, shape); err != nil {
				t.Fatal(err)
			}
		}
		tr.stop.Store(false)
	}
	for range 2 {
		a, err := ref.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatal(err)
		}
		b, err := tr.TrainStep(x, ts, eps, shape)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("after interrupted steps: %+v, uninterrupted %+v", b, a)
		}
	}
	t.Logf("%d of 3 steps interrupted", interrupted)
	if interrupted < 2 {
		t.Error("no step was interrupted in the middle")
	}
	sameState(t, ref, tr)
}

// sameState requires two trainers' weights, moments, EMA, step and dropout stream to be
// identical.
func sameState(t *testing.T, a, b *Trainer) {
	t.Helper()
	if err := a.SyncHost(); err != nil {
		t.Fatal(err)
	}
	if err := b.SyncHost(); err != nil {
		t.Fatal(err)
	}
	if a.Step != b.Step || *a.rng != *b.rng {
		t.Fatalf("step %d vs %d, or the dropout streams differ", a.Step, b.Step)
	}
	for _, c := range []struct {
		what string
		x, y [][]float32
	}{{"weights", a.Net.data(), b.Net.data()}, {"m", a.M, b.M}, {"v", a.V, b.V}, {"EMA", a.EMA, b.EMA}} {
		for i := range c.x {
			for j := range c.x[i] {
				if math.Float32bits(c.x[i][j]) != math.Float32bits(c.y[i][j]) {
					t.Fatalf("%s of %s differ", c.what, a.Net.Params[i].Name)
				}
			}
		}
	}
}

// TestDeviceRefusesNonFiniteStep: a NaN weight (the loss is NaN) and a learning rate
// that makes the update overflow are refused by the device trainer with an error that
// says so, and leave its state and dropout stream as they were.
func TestDeviceRefusesNonFiniteStep(t *testing.T) {
	cfg := mustPreset(t, "tiny")
	dev := emulatedDevice(t, smallScratch)
	shape := shapeFor(cfg, 2)
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 900}
	for _, c := range []struct {
		name  string
		spoil func(tr *Trainer)
		want  string
	}{
		{"NaN weight", func(tr *Trainer) { tr.Net.Params[0].Data[0] = float32(math.NaN()) }, "loss is NaN"},
		{"overflowing update", func(tr *Trainer) { tr.Optim.LR = 1e39 }, "overflow to Inf or NaN"}, // a step beyond float32
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ref := trainPair(t, dev, cfg)
			_, tr := trainPair(t, dev, cfg)
			for _, r := range []*Trainer{ref, tr} {
				if err := r.SetDevice(nil); err != nil {
					t.Fatal(err)
				}
				c.spoil(r)
				if err := r.SetDevice(dev); err != nil {
					t.Fatal(err)
				}
			}
			_, err := tr.TrainStep(x, ts, eps, shape)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
			t.Log(err)
			sameState(t, ref, tr)
		})
	}
}

// TestDeviceCheckpointsMoveBetweenDevices: a trainer on the device saves a checkpoint
// (SaveCheckpoint copies its state back first); loaded on the CPU it holds exactly the
// device's state; moved to the device again it takes the next step exactly as the
// trainer that never left it; and moving a CPU trainer to the device and back changes
// nothing.
func TestDeviceCheckpointsMoveBetweenDevices(t *testing.T) {
	cfg := mustPreset(t, "tiny")
	dev := emulatedDevice(t, smallScratch)
	_, tr := trainPair(t, dev, cfg)
	shape := shapeFor(cfg, 2)
	x, eps, ts := randn(shape.Size(), 1), randn(shape.Size(), 2), []int{10, 900}
	if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path, _, err := SaveCheckpoint(dir, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, _, err := LoadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	sameState(t, tr, loaded) // loaded is on the CPU
	cpuCopy, _, err := LoadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cpuCopy.Close()
	if err := cpuCopy.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	if err := cpuCopy.SetDevice(nil); err != nil {
		t.Fatal(err)
	}
	sameState(t, loaded, cpuCopy)
	if err := loaded.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	a, err := tr.TrainStep(x, ts, eps, shape)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loaded.TrainStep(x, ts, eps, shape)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("step after the round trip: %+v, without it %+v", b, a)
	}
	sameState(t, tr, loaded)
}

// TestDevicePredictEpsInChunks runs PredictEps for more images than MaxBatch on the
// device (chunks of 2, 2 and 1) against the CPU, and stops at a cancelled context.
func TestDevicePredictEpsInChunks(t *testing.T) {
	cfg := mustPreset(t, "tiny")
	cpu, err := NewUNet(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	randomizeWeights(cpu, 4)
	dn := cpu.WithWeights(cpu.data())
	cpu.MaxBatch, dn.MaxBatch = 2, 2
	if err := dn.SetDevice(emulatedDevice(t, smallScratch)); err != nil {
		t.Fatal(err)
	}
	defer dn.Close()
	shape := shapeFor(cfg, 5)
	x, ts := randn(shape.Size(), 8), []int{0, 250, 500, 750, 999}
	want, err := cpu.PredictEps(t.Context(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dn.PredictEps(t.Context(), x, ts, shape)
	if err != nil {
		t.Fatal(err)
	}
	row(t, "net", "emulator", "PredictEps in chunks of 2", relErr(got, want), netTol)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := dn.PredictEps(ctx, x, ts, shape); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}
