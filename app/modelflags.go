package main

import (
	"github.com/ddpm-studio/ddpm-studio/compute"
	"github.com/ddpm-studio/ddpm-studio/run"
)

// modelFlags pick a preset and override any of its fields; an override left out keeps
// the preset's value, and a value given is used as given (zero is an error, not "the
// preset's").
type modelFlags struct {
	Preset    string   `default:"${preset}" help:"Model preset: ${presets}."`
	ImageSize *int     `help:"Image side in pixels (default: the preset's)."`
	Channels  *int     `help:"Image channels, 1 (gray) or 3 (RGB) (default: from the data, else the preset's)."`
	Ch        *int     `help:"Base channel count, a multiple of 32 (default: the preset's)."`
	ChMult    []int    `sep:"," help:"Channel multiplier per level, e.g. 1,2,2 (default: the preset's)."`
	ResBlocks *int     `help:"ResnetBlocks per level (default: the preset's)."`
	Attn      []int    `sep:"," help:"Resolutions with attention, e.g. 16; each must be a level's (default: the preset's)."`
	Dropout   *float64 `help:"Dropout rate while training (default: the preset's)."`
}

func (f modelFlags) options() run.ModelOptions {
	return run.ModelOptions{Preset: f.Preset, ImageSize: f.ImageSize, Channels: f.Channels, Ch: f.Ch, ChMult: f.ChMult,
		ResBlocks: f.ResBlocks, Attn: f.Attn, Dropout: f.Dropout}
}

// config returns the preset with the flags applied, checked.
func (f modelFlags) config() (compute.Config, error) { return f.options().Config(0) }
