package run

import (
	"fmt"
	"os"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// checkpoint is a run's newest intact checkpoint, opened.
type checkpoint struct {
	Path     string
	Trainer  *compute.Trainer
	State    compute.State
	Meta     Meta
	Warnings []string // damaged newer checkpoints that were passed over
}

// openCheckpoint opens the newest intact checkpoint of the run in dir: for training
// everything, else only what sampling reads.
func openCheckpoint(dir string, training bool) (*checkpoint, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	path := compute.LatestCheckpoint(dir)
	if path == "" {
		return nil, fmt.Errorf("run %s has no checkpoint yet (train first, or import weights)", dir)
	}
	tr, st, err := compute.LoadCheckpoint(path)
	if err != nil {
		return nil, err
	}
	m, err := readMeta(st, path)
	if err != nil {
		tr.Close()
		return nil, err
	}
	return &checkpoint{Path: path, Trainer: tr, State: st, Meta: m}, nil
}

// Model is a run's network opened for sampling: the EMA or the raw weights of its
// newest intact checkpoint, and its schedule.
type Model struct {
	Dir        string
	Checkpoint string
	Step       int64
	EMA        bool
	Net        *compute.UNet
	Meta       Meta
	Sched      *diffusion.Schedule
	Warnings   []string
	trainer    *compute.Trainer
}

// OpenModel opens the run in dir for sampling with the EMA (ema) or the raw weights.
func OpenModel(dir string, ema bool) (*Model, error) {
	ck, err := openCheckpoint(dir, false)
	if err != nil {
		return nil, err
	}
	sched, err := diffusion.NewSchedule(ck.Meta.Schedule, ck.Meta.T)
	if err != nil {
		ck.Trainer.Close()
		return nil, fmt.Errorf("checkpoint %s: %w", ck.Path, err)
	}
	m := &Model{Dir: dir, Checkpoint: ck.Path, Step: ck.State.Step, EMA: ema, Meta: ck.Meta, Sched: sched,
		Warnings: ck.Warnings, trainer: ck.Trainer, Net: ck.Trainer.Net}
	if ema {
		m.Net = ck.Trainer.EMANet()
	}
	return m, nil
}

// Close releases the network.
func (m *Model) Close() {
	if m.Net != m.trainer.Net {
		m.Net.Close()
	}
	m.trainer.Close()
}

// Shape is the shape of n images of the model.
func (m *Model) Shape(n int) diffusion.Shape {
	c := m.Net.Config
	return diffusion.Shape{N: n, C: c.InChannels, H: c.Resolution, W: c.Resolution}
}
