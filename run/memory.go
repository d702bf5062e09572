package run

import (
	"fmt"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
	"github.com/ddpm-studio/ddpm-studio/internal/sysmem"
)

// available is the memory a job may plan to use: 90% of what the kernel says is
// available, leaving the rest to the process itself (runtime, libraries, scratch) and
// to the machine. 0 means unknown (then nothing is refused). Tests replace it.
var available = func() int64 { return sysmem.Available() * 9 / 10 }

// checkParamMemory refuses, before anything is allocated, a model whose parameters
// alone (weights, gradients, Adam's two moments, the EMA: five float32 copies) do not
// fit: running out of memory ends the process with no checkpoint and no explanation.
func checkParamMemory(cfg compute.Config) error {
	n, err := compute.ParamCount(cfg)
	if err != nil {
		return err
	}
	need, avail := 5*4*n, available()
	if avail > 0 && need > avail {
		return fmt.Errorf("the model (%s) has %s parameters and training it needs at least %s of memory, but %s is available: choose a smaller model (--ch, --ch-mult, --res-blocks)",
			cfg, thousands(n), bytesize.Format(need), bytesize.Format(avail))
	}
	return nil
}

// checkTrainMemory refuses a training step that would not fit, and says which batch would.
func checkTrainMemory(net *compute.UNet, batch int) error {
	avail := available()
	if avail <= 0 {
		return nil
	}
	need, err := net.TrainBytes(batch)
	if err != nil {
		return err
	}
	if need <= avail {
		return nil
	}
	fits, err := net.MaxTrainBatch(batch, avail)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("training %s at batch %d needs about %s of memory, and %s is available", net.Config, batch, bytesize.Format(need), bytesize.Format(avail))
	if fits == 0 {
		return fmt.Errorf("%s; not even batch 1 fits: choose a smaller model or image size", msg)
	}
	return fmt.Errorf("%s: use --batch %d or less", msg, fits)
}

// checkSampleMemory refuses to sample n images when they would not fit: the sampler
// keeps about six float32 copies of the batch (x_T, x_t, the next x_t, x̂0, ε̂ and the
// result), and the network runs at most MaxBatch images at a time.
func checkSampleMemory(net *compute.UNet, n int) error {
	avail := available()
	if avail <= 0 {
		return nil
	}
	cfg := net.Config
	per := 6 * 4 * int64(cfg.InChannels) * int64(cfg.Resolution) * int64(cfg.Resolution)
	pass, err := net.EvalBytes(min(n, net.MaxBatch))
	if err != nil {
		return err
	}
	need := float64(pass) + float64(per)*float64(n) // float: n may be absurd
	if need <= float64(avail) {
		return nil
	}
	fits := int64(0)
	if avail > pass {
		fits = (avail - pass) / per
	}
	return fmt.Errorf("%d images of %d×%d×%d need about %s of memory, and %s is available: ask for at most %d",
		n, cfg.Resolution, cfg.Resolution, cfg.InChannels, bytesize.Format(int64(min(need, 9e18))), bytesize.Format(avail), fits)
}

// CheckEval refuses to run the network on n images at once (as the denoise command does)
// when that would not fit in memory.
func CheckEval(net *compute.UNet, n int) error { return checkSampleMemory(net, n) }

// NewNet builds a model of cfg from seed once it is known to fit: its parameters with
// the optimizer's state, and, for batch > 0, a training step at that batch. Commands
// that build a model (bench, import) use it, so a model or a batch too big for the
// machine is refused in words instead of ending the program.
func NewNet(cfg compute.Config, seed uint64, batch int) (*compute.UNet, error) {
	if err := checkParamMemory(cfg); err != nil {
		return nil, err
	}
	net, err := compute.NewUNet(cfg, seed)
	if err != nil {
		return nil, err
	}
	if batch > 0 {
		if err := checkTrainMemory(net, batch); err != nil {
			return nil, err
		}
	}
	return net, nil
}
