package run

import (
	"errors"
	"fmt"
	"os"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// checkpoint is a run's newest intact checkpoint, opened for training.
type checkpoint struct {
	compute.Loaded
	Meta Meta
}

// openCheckpoint opens the newest intact checkpoint of the run in dir for training.
func openCheckpoint(dir string) (*checkpoint, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	l, err := compute.LoadLatest(dir)
	if err != nil {
		return nil, noCheckpoint(dir, err)
	}
	m, err := readMeta(l.State, l.Dir)
	if err != nil {
		l.Trainer.Close()
		return nil, err
	}
	return &checkpoint{Loaded: l, Meta: m}, nil
}

// noCheckpoint says in words that a run has nothing to load.
func noCheckpoint(dir string, err error) error {
	if errors.Is(err, compute.ErrNoCheckpoint) {
		return fmt.Errorf("run %s has no checkpoint yet (train first, or import weights)", dir)
	}
	return err
}

// Model is a run's network opened for sampling: the EMA or the raw weights of its
// newest intact checkpoint (read without the optimizer's state, which sampling does not
// need), and its schedule.
type Model struct {
	Dir        string
	Checkpoint string
	Step       int64
	EMA        bool
	Net        *compute.UNet
	Meta       Meta
	Sched      *diffusion.Schedule
	Warnings   []string        // damaged newer checkpoints that were passed over
	Device     *compute.Device // where the network runs (the CPU until Use)
}

// OpenModel opens the run in dir for sampling with the EMA (ema) or the raw weights.
func OpenModel(dir string, ema bool) (*Model, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	l, err := compute.LoadLatestForSampling(dir, ema)
	if err != nil {
		return nil, noCheckpoint(dir, err)
	}
	meta, err := readMeta(l.State, l.Dir)
	if err != nil {
		l.Net.Close()
		return nil, err
	}
	sched, err := diffusion.NewSchedule(meta.Schedule, meta.T)
	if err != nil {
		l.Net.Close()
		return nil, fmt.Errorf("checkpoint %s: %w", l.Dir, err)
	}
	return &Model{Dir: dir, Checkpoint: l.Dir, Step: l.State.Step, EMA: ema, Net: l.Net, Meta: meta, Sched: sched,
		Warnings: l.Warnings, Device: compute.CPU()}, nil
}

// Use moves the network to the device named device ("auto", "cpu", "cuda"); note says
// why "auto" stays on the CPU where it does.
func (m *Model) Use(device string) (note string, err error) {
	d, note, err := OpenDevice(device)
	if err != nil {
		return "", err
	}
	if d.IsGPU() {
		if err := m.Net.SetDevice(d); err != nil {
			d.Close()
			return "", fmt.Errorf("moving the model to %s: %w", d, err)
		}
	}
	m.Device = d
	return note, nil
}

// Close releases the network and its device.
func (m *Model) Close() {
	m.Net.Close()
	m.Device.Close()
}

// Shape is the shape of n images of the model.
func (m *Model) Shape(n int) diffusion.Shape {
	c := m.Net.Config
	return diffusion.Shape{N: n, C: c.InChannels, H: c.Resolution, W: c.Resolution}
}
