package main

import (
	"fmt"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// modelFlags pick a preset and override any of its fields.
type modelFlags struct {
	Preset    string   `default:"mnist" help:"Model preset: tiny, mnist, cifar32, cifar10, celebahq256."`
	ImageSize int      `help:"Image side in pixels (default: the preset's)."`
	Channels  int      `help:"Image channels, 1 (gray) or 3 (RGB) (default: from the data, else the preset's)."`
	Ch        int      `help:"Base channel count, a multiple of 32 (default: the preset's)."`
	ChMult    []int    `sep:"," help:"Channel multiplier per level, e.g. 1,2,2 (default: the preset's)."`
	ResBlocks int      `help:"ResnetBlocks per level (default: the preset's)."`
	Attn      []int    `sep:"," help:"Resolutions with attention, e.g. 16 (default: the preset's)."`
	Dropout   *float64 `help:"Dropout rate while training (default: the preset's)."`
}

// config returns the preset with the flags applied.
func (f modelFlags) config() (compute.Config, error) {
	c, err := compute.PresetConfig(f.Preset)
	if err != nil {
		return c, err
	}
	if f.ImageSize > 0 {
		c.Resolution = f.ImageSize
	}
	if f.Channels != 0 {
		if f.Channels != 1 && f.Channels != 3 {
			return c, fmt.Errorf("--channels %d: must be 1 or 3", f.Channels)
		}
		c.InChannels, c.OutCh = f.Channels, f.Channels
	}
	if f.Ch > 0 {
		c.Ch = f.Ch
	}
	if len(f.ChMult) > 0 {
		c.ChMult = f.ChMult
	}
	if f.ResBlocks > 0 {
		c.NumResBlocks = f.ResBlocks
	}
	if f.Attn != nil {
		c.AttnResolutions = f.Attn
	}
	if f.Dropout != nil {
		c.Dropout = *f.Dropout
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
