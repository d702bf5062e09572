package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/diffusion"
)

// runState is the application's part of a checkpoint: what the model was trained on
// and the state of the stream that draws batches, timesteps and noise.
type runState struct {
	Data      string   `json:"data"`                 // dataset: a folder or "mnist" (or a description of DataFiles)
	DataFiles []string `json:"data_files,omitempty"` // image files trained on, when not a folder
	Preset    string   `json:"preset,omitempty"`     // the model preset the run started from
	Schedule  string   `json:"schedule"`             // "linear" or "cosine"
	T         int      `json:"T"`                    // diffusion steps
	Variance  string   `json:"variance"`             // "fixedlarge" or "fixedsmall", for sampling and the bound
	Batch     int      `json:"batch"`                // images per step
	Flip      bool     `json:"hflip"`                // random horizontal flips
	Seed      uint64   `json:"seed"`                 // seed the run started from
	DataRNG   []byte   `json:"data_rng"`             // PCG state of the batch/timestep/noise stream
	Steps     int64    `json:"steps"`                // the step count asked for
}

// openRun is a run loaded from its newest intact checkpoint.
type openRun struct {
	dir      string
	ckpt     string
	trainer  *compute.Trainer // loadRun only
	sampler  *compute.UNet    // loadSampler only: the weights it was asked for
	state    compute.State
	app      runState
	sched    *diffusion.Schedule
	warnings []string // newer checkpoints passed over as damaged, in words
}

// loadRun opens the newest intact checkpoint of dir for training.
func loadRun(dir string) (*openRun, error) {
	return openLatest(dir, func() (compute.Loaded, error) { return compute.LoadLatest(dir) })
}

// loadSampler opens the newest checkpoint of dir whose state and EMA (ema) or raw weights
// are intact, reading nothing else.
func loadSampler(dir string, ema bool) (*openRun, error) {
	return openLatest(dir, func() (compute.Loaded, error) { return compute.LoadLatestForSampling(dir, ema) })
}

func openLatest(dir string, load func() (compute.Loaded, error)) (*openRun, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	l, err := load()
	if errors.Is(err, compute.ErrNoCheckpoint) {
		return nil, fmt.Errorf("run %s has no checkpoint yet (train first, or import weights)", dir)
	}
	if err != nil {
		return nil, err
	}
	ckpt, st := l.Dir, l.State
	r := &openRun{dir: dir, ckpt: ckpt, trainer: l.Trainer, state: st, warnings: l.Warnings}
	if l.Trainer == nil {
		r.sampler = l.Net
	}
	if len(st.Extra) > 0 {
		if err := json.Unmarshal(st.Extra, &r.app); err != nil {
			return nil, fmt.Errorf("checkpoint %s: run state: %w", ckpt, err)
		}
	}
	if r.app.Schedule == "" {
		r.app.Schedule, r.app.T, r.app.Variance = "linear", 1000, "fixedlarge"
	}
	r.sched, err = diffusion.NewSchedule(r.app.Schedule, r.app.T)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", ckpt, err)
	}
	return r, nil
}

// warn prints warnings on w, one a line.
func warn(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

// net returns the EMA or the raw network of the run (loadSampler: the one it loaded).
func (r *openRun) net(ema bool) *compute.UNet {
	if r.sampler != nil {
		return r.sampler
	}
	if ema {
		return r.trainer.EMANet()
	}
	return r.trainer.Net
}

// imageShape is the shape of n images of the run's model.
func (r *openRun) imageShape(n int) diffusion.Shape {
	c := r.state.Config
	return diffusion.Shape{N: n, C: c.InChannels, H: c.Resolution, W: c.Resolution}
}
