package compute

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkHostMasksCIFAR10 times drawing on the host, as Trainer.fillMasks does, the
// dropout masks of one cifar10 training step at batch 128 (about 140 M values): what a
// device trainer would pay per step, besides copying 560 MB of float32 masks (or 17.5 MB
// of bits) to the GPU, if the masks were not drawn on the device (gpu.DropoutMask draws
// the same bits there).
func BenchmarkHostMasksCIFAR10(b *testing.B) {
	cfg, _ := PresetConfig("cifar10")
	net, err := NewUNet(cfg, 0)
	if err != nil {
		b.Fatal(err)
	}
	f, err := net.buildGraph(128, true, nil, true)
	if err != nil {
		b.Fatal(err)
	}
	var masks [][]float32
	total := 0
	for _, m := range f.masks {
		masks = append(masks, make([]float32, m.Shape().TotalSize()))
		total += m.Shape().TotalSize()
	}
	b.Logf("%d masks, %d values (%.0f MB as float32), %d threads", len(masks), total, 4*float64(total)/1e6, runtime.GOMAXPROCS(0))
	rng := rand.NewPCG(1, 2)
	b.SetBytes(4 * int64(total))
	for b.Loop() {
		drawMasks(masks, cfg.Dropout, rng) // what a CPU training step does
	}
}
