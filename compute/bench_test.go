package compute

import (
	"testing"

	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// BenchmarkTrainStepMNIST is one training step of the mnist preset at batch 64.
func BenchmarkTrainStepMNIST(b *testing.B) { benchTrainStep(b, "mnist") }

// BenchmarkTrainStepCIFAR32 is one training step of the cifar32 preset at batch 64.
func BenchmarkTrainStepCIFAR32(b *testing.B) { benchTrainStep(b, "cifar32") }

func benchTrainStep(b *testing.B, preset string) {
	cfg, _ := PresetConfig(preset)
	net, _ := NewUNet(cfg, 0)
	tr := NewTrainer(net, DefaultOptim(), 0)
	defer tr.Close()
	shape := diffusion.Shape{N: 64, C: cfg.InChannels, H: cfg.Resolution, W: cfg.Resolution}
	x, eps := randn(shape.Size(), 1), randn(shape.Size(), 2)
	ts := make([]int, 64)
	for i := range ts {
		ts[i] = i * 15
	}
	if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.TrainStep(x, ts, eps, shape); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardMNIST is one forward pass of the mnist preset at batch 64 (as in sampling).
func BenchmarkForwardMNIST(b *testing.B) {
	cfg, _ := PresetConfig("mnist")
	net, _ := NewUNet(cfg, 0)
	defer net.Close()
	shape := diffusion.Shape{N: 64, C: 1, H: 28, W: 28}
	x := randn(shape.Size(), 1)
	ts := make([]int, 64)
	if _, err := net.PredictEps(b.Context(), x, ts, shape); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := net.PredictEps(b.Context(), x, ts, shape); err != nil {
			b.Fatal(err)
		}
	}
}
