package main

import (
	"fmt"
	"os"

	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// importCmd is `ddpm-studio import`.
type importCmd struct {
	Weights string `required:"" help:"A .safetensors file in the interchange naming (the PyTorch port's state_dict keys)."`
	RunDir  string `name:"run" required:"" help:"Run directory to create."`

	modelFlags `embed:""`

	Schedule string `default:"linear" enum:"linear,cosine" help:"Noise schedule the weights were trained with."`
	T        int    `name:"timesteps" default:"1000" help:"Diffusion steps T the weights were trained with."`
	Variance string `default:"fixedlarge" enum:"fixedlarge,fixedsmall" help:"σ² for sampling: fixedlarge (CIFAR-10) or fixedsmall (LSUN, CelebA-HQ)."`
	Data     string `help:"Dataset to remember for later training or eval (a folder or mnist)."`
}

type importResult struct {
	Run        string `json:"run"`
	Checkpoint string `json:"checkpoint"`
	Params     int    `json:"params"`
}

// Run imports.
func (c *importCmd) Run(e *env) error {
	if compute.LatestCheckpoint(c.RunDir) != "" {
		return fmt.Errorf("run %s already has a checkpoint; import into a new directory", c.RunDir)
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	net, err := run.NewNet(cfg, 0, 0)
	if err != nil {
		return err
	}
	if err := net.LoadSafetensors(c.Weights); err != nil {
		return err
	}
	tr := compute.NewTrainer(net, compute.DefaultOptim(), 0) // EMA starts equal to the weights
	if c.T < 2 || c.T > run.MaxT {
		return fmt.Errorf("--timesteps %d: must be between 2 and %d", c.T, run.MaxT)
	}
	extra, err := run.ImportedMeta(c.Data, c.Schedule, c.T, c.Variance)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.RunDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	ckpt, warnings, err := compute.SaveCheckpoint(c.RunDir, tr, extra)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		e.warn("%s", w)
	}
	e.say("imported %d parameters (%s) from %s into %s", net.NumParams(), cfg, c.Weights, ckpt)
	return e.result(importResult{Run: c.RunDir, Checkpoint: ckpt, Params: net.NumParams()})
}
