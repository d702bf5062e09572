//go:build ddpmcuda

package compute

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute/cuda"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// The tests of this file are scripts/gpu-check.sh's parts 2–4 on the GPU. They run only
// with DDPM_GPU_CHECK set (they need a GPU and minutes), and print GPUCHECK lines for the
// script's table.

func gpuCheck(t *testing.T) *Device {
	if os.Getenv("DDPM_GPU_CHECK") == "" {
		t.Skip("set DDPM_GPU_CHECK=1 (scripts/gpu-check.sh) to run the checks on the GPU")
	}
	d := cudaTestDevice(t)
	d.be.(*cuda.Backend).UseCuBLAS(true) // where none was found, the sgemm kernel (the device line says so)
	return d
}

// perf prints a GPUCHECK line of a measurement (no tolerance).
func perf(section, device, what string, value float64, unit string) {
	fmt.Printf("GPUCHECK|%s|%s|%s|%.4g %s||\n", section, device, what, value, unit)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	return s[len(s)/2]
}

// TestGPUNetworkMatchesCPU is part 2: two training steps of the mnist and cifar10
// presets with the same random weights, data, timesteps and dropout stream on the GPU
// and the CPU: masks bit for bit; loss, gradient norm, every gradient, Adam's moments,
// the weights and the EMA, and ε̂ within 1e-4 (checkTrainStep).
func TestGPUNetworkMatchesCPU(t *testing.T) {
	dev := gpuCheck(t)
	for _, c := range []struct {
		preset string
		n      int
	}{{"mnist", 4}, {"cifar10", 2}} {
		t.Run(c.preset, func(t *testing.T) { checkTrainStep(t, "cuda", dev, mustPreset(t, c.preset), c.n) })
	}
}

// TestGPUSpeed is part 3: the cifar10 training step at batch 128 and the forward pass
// at batch 256 on the GPU, medians of 5 after 2 untimed, and the device memory each
// allocated (arena, weights, optimizer state: what the program asked the driver for).
func TestGPUSpeed(t *testing.T) {
	dev := gpuCheck(t)
	be := dev.be.(*cuda.Backend)
	cfg := mustPreset(t, "cifar10")
	const trainN, fwdN, warm, timed = 128, 256, 2, 5
	rng := rand.New(rand.NewPCG(1, 1))
	data := func(n int) ([]float32, []float32, []int) {
		x, e, ts := make([]float32, n*3*32*32), make([]float32, n*3*32*32), make([]int, n)
		for i := range x {
			x[i], e[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		for i := range ts {
			ts[i] = rng.IntN(1000)
		}
		return x, e, ts
	}
	net, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTrainer(net, DefaultOptim(), 0)
	be.ResetPeak()
	if err := tr.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	x, eps, ts := data(trainN)
	shape := shapeFor(cfg, trainN)
	var times []float64
	for i := range warm + timed {
		start := time.Now()
		if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
			t.Fatal(err)
		}
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
		if i >= warm {
			times = append(times, time.Since(start).Seconds())
		}
	}
	perf("speed", "ours", "cifar10 training step, batch 128", median(times), "s")
	perf("speed", "ours", "cifar10 training step, peak device memory", float64(be.PeakBytes())/(1<<30), "GiB")
	tr.Close()

	fnet, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	fnet.MaxBatch = fwdN
	be.ResetPeak()
	if err := fnet.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	defer fnet.Close()
	x, _, ts = data(fwdN)
	shape = shapeFor(cfg, fwdN)
	times = times[:0]
	for i := range warm + timed {
		start := time.Now()
		if _, err := fnet.PredictEps(t.Context(), x, ts, shape); err != nil {
			t.Fatal(err)
		}
		if i >= warm {
			times = append(times, time.Since(start).Seconds())
		}
	}
	perf("speed", "ours", "cifar10 forward, batch 256", median(times), "s")
	perf("speed", "ours", "cifar10 forward, peak device memory", float64(be.PeakBytes())/(1<<30), "GiB")
}

// TestGPUSampleDDPM is part 4a: 1000-step DDPM sampling (σ² = β) of 64 cifar10 images
// on the GPU, timed end to end; PredictEps copies x_t up and ε̂ down at every step.
func TestGPUSampleDDPM(t *testing.T) {
	dev := gpuCheck(t)
	cfg := mustPreset(t, "cifar10")
	net, err := NewUNet(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	sched, err := diffusion.NewSchedule("linear", 1000)
	if err != nil {
		t.Fatal(err)
	}
	shape := shapeFor(cfg, 64)
	rng := rand.New(rand.NewPCG(5, 5))
	xT := make([]float32, shape.Size())
	for i := range xT {
		xT[i] = float32(rng.NormFloat64())
	}
	start := time.Now()
	out, err := sched.SampleDDPM(t.Context(), net, xT, shape, "fixedlarge", rng, nil)
	if err != nil {
		t.Fatal(err)
	}
	perf("sample", "ours", "DDPM 1000 steps, 64 cifar10 images", time.Since(start).Seconds(), "s")
	for _, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("the samples hold non-finite values")
		}
	}
}

// TestGPUTrainResumesOnCPU is part 4b: 200 training steps of the mnist preset on the
// GPU on MNIST digits (read from dataset/mnist in the working tree), a checkpoint, then
// the checkpoint loaded on the CPU: its weights, moments and EMA must be the GPU's bit
// for bit, and three more steps on the CPU must give the losses of the same three steps
// on the GPU within 1e-4 (same batches, timesteps, noise and dropout stream).
func TestGPUTrainResumesOnCPU(t *testing.T) {
	dev := gpuCheck(t)
	cfg := mustPreset(t, "mnist")
	const batch, steps, more = 64, 200, 3
	images := mnistImages(t, 4096)
	sched, err := diffusion.NewSchedule("linear", 1000)
	if err != nil {
		t.Fatal(err)
	}
	net, err := NewUNet(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	opt := DefaultOptim()
	opt.Warmup = 100
	tr := NewTrainer(net, opt, 1)
	defer tr.Close()
	if err := tr.SetDevice(dev); err != nil {
		t.Fatal(err)
	}
	shape := shapeFor(cfg, batch)
	batchAt := func(step int) []float32 {
		x0 := make([]float32, shape.Size())
		for i := range batch {
			j := (step*batch + i) % (len(images) / 784)
			copy(x0[i*784:(i+1)*784], images[j*784:(j+1)*784])
		}
		return x0
	}
	src := rand.NewPCG(9, 9) // the schedule's draws of t and ε
	rng := rand.New(src)
	start := time.Now()
	var first, last float64
	for s := range steps {
		st, err := diffusion.TrainStep(sched, tr, batchAt(s), shape, rng)
		if err != nil {
			t.Fatal(err)
		}
		if s == 0 {
			first = st.Loss
		}
		last = st.Loss
	}
	perf("resume", "ours", "mnist: 200 GPU steps, batch 64", time.Since(start).Seconds(), "s")
	perf("resume", "ours", fmt.Sprintf("mnist: loss at step 1 → 200 (%.4f → %.4f)", first, last), last/first, "ratio")
	dir := t.TempDir()
	ckpt, _, err := SaveCheckpoint(dir, tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	cpu, _, err := LoadCheckpoint(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	for _, c := range []struct {
		what     string
		got, ref [][]float32
	}{{"weights", cpu.Net.data(), tr.Net.data()}, {"Adam m", cpu.M, tr.M}, {"Adam v", cpu.V, tr.V}, {"EMA", cpu.EMA, tr.EMA}} {
		for i := range c.ref {
			if !slices.Equal(c.got[i], c.ref[i]) {
				t.Fatalf("checkpoint: %s of %s differ from the GPU's", c.what, tr.Net.Params[i].Name)
			}
		}
	}
	row(t, "resume", "cuda→cpu", "mnist: checkpoint = GPU state (bit for bit)", 0, 0)
	srcCPU, srcGPU := *src, *src
	rngCPU, rngGPU := rand.New(&srcCPU), rand.New(&srcGPU)
	for s := steps; s < steps+more; s++ {
		sc, err := diffusion.TrainStep(sched, cpu, batchAt(s), shape, rngCPU)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := diffusion.TrainStep(sched, tr, batchAt(s), shape, rngGPU)
		if err != nil {
			t.Fatal(err)
		}
		row(t, "resume", "cuda→cpu", fmt.Sprintf("mnist: step %d loss on the CPU (%.5f) vs GPU (%.5f)", s+1, sc.Loss, sg.Loss),
			math.Abs(sc.Loss-sg.Loss)/sg.Loss, netTol)
	}
}

// mnistImages reads the first n MNIST training images, scaled to [−1, 1], from the IDX
// file in the working tree (the test binary does not embed the data set).
func mnistImages(t *testing.T, n int) []float32 {
	f, err := os.ReadFile(filepath.Join("..", "dataset", "mnist", "train-images-idx3-ubyte.gz"))
	if err != nil {
		t.Fatalf("MNIST (run the test binary in compute/ of the working tree): %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 16)
	if _, err := io.ReadFull(zr, head); err != nil {
		t.Fatal(err)
	}
	pix := make([]byte, n*784)
	if _, err := io.ReadFull(zr, pix); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(pix))
	for i, p := range pix {
		out[i] = float32(p)/127.5 - 1
	}
	return out
}
