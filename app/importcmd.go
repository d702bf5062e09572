package main

import (
	"github.com/ddpm-studio/ddpm-studio/run"
)

// importCmd is `ddpm-studio import`.
type importCmd struct {
	Weights   string `required:"" help:"A PyTorch checkpoint (.ckpt, .pt, .pth, .bin), a .safetensors file or a diffusers folder (google/ddpm-cifar10-32, …); the architecture is read from it."`
	RunDir    string `name:"run" required:"" help:"Run directory to create."`
	Raw       bool   `help:"Take the raw weights where the file holds raw and EMA ones (default: the EMA)."`
	ImageSize int    `help:"Image side, for a checkpoint that does not say and matches no preset (default: inferred)."`
	Preset    string `help:"If given, refuse weights of any other architecture."`
	Schedule  string `enum:",linear,cosine" default:"" help:"Noise schedule the weights were trained with, where the file does not say (default: the paper's)."`
	T         int    `name:"timesteps" help:"Diffusion steps T the weights were trained with, where the file does not say (default: 1000)."`
	Variance  string `enum:",fixedlarge,fixedsmall" default:"" help:"σ² for sampling, where the file does not say (default: the paper's: fixedlarge for 32×32, fixedsmall for 256×256)."`
	Data      string `help:"Dataset to remember for later training or eval (a folder or mnist)."`
}

type importResult struct {
	Run         string `json:"run"`
	Checkpoint  string `json:"checkpoint"`
	Params      int    `json:"params"`
	Description string `json:"description"`
}

// Run imports.
func (c *importCmd) Run(e *env) error {
	im, err := run.Import(c.Weights, c.RunDir, run.ImportOptions{Raw: c.Raw, Resolution: c.ImageSize, Preset: c.Preset,
		Data: c.Data, Schedule: c.Schedule, T: c.T, Variance: c.Variance})
	if err != nil {
		return err
	}
	for _, w := range im.Warnings {
		e.warn("%s", w)
	}
	e.say("imported %s from %s into %s", im.Description, c.Weights, im.Checkpoint)
	return e.result(importResult{Run: c.RunDir, Checkpoint: im.Checkpoint, Params: im.Params, Description: im.Description})
}

// exportCmd is `ddpm-studio export`.
type exportCmd struct {
	RunDir string `name:"run" required:"" help:"Run directory to export (its newest checkpoint)."`
	Format string `required:"" enum:"diffusers,pytorch" help:"diffusers: a folder DDPMPipeline.from_pretrained loads; pytorch: a state dict (.ckpt) in the PyTorch port's naming."`
	Out    string `required:"" help:"The folder (diffusers; new or empty) or file (pytorch) to write."`
	EMA    bool   `default:"true" negatable:"" help:"Export the EMA weights (--no-ema: the raw weights)."`
}

type exportResult struct {
	Run        string `json:"run"`
	Checkpoint string `json:"checkpoint"`
	Format     string `json:"format"`
	Out        string `json:"out"`
	EMA        bool   `json:"ema"`
}

// Run exports.
func (c *exportCmd) Run(e *env) error {
	ckpt, err := run.Export(c.RunDir, c.Format, c.Out, c.EMA)
	if err != nil {
		return err
	}
	which := "raw"
	if c.EMA {
		which = "EMA"
	}
	e.say("exported the %s weights of %s to %s (%s)", which, ckpt, c.Out, c.Format)
	return e.result(exportResult{Run: c.RunDir, Checkpoint: ckpt, Format: c.Format, Out: c.Out, EMA: c.EMA})
}
