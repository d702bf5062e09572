package compute

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Groups is the number of GroupNorm groups of the official model.
const Groups = 32

// Config describes a U-Net. Its JSON keys are the PyTorch port's Model arguments.
type Config struct {
	Resolution      int     `json:"resolution"`       // image side in pixels
	InChannels      int     `json:"in_channels"`      // channels of x_t
	OutCh           int     `json:"out_ch"`           // channels of ε̂
	Ch              int     `json:"ch"`               // base channel count
	ChMult          []int   `json:"ch_mult"`          // channel multiplier per resolution level
	NumResBlocks    int     `json:"num_res_blocks"`   // ResnetBlocks per level on the way down
	AttnResolutions []int   `json:"attn_resolutions"` // resolutions that get an AttnBlock after each ResnetBlock
	Dropout         float64 `json:"dropout"`          // dropout rate inside ResnetBlocks, training only
}

var presets = map[string]Config{
	// tiny is for tests: two levels, attention at 8×8, a few hundred thousand parameters.
	"tiny": {Resolution: 16, InChannels: 1, OutCh: 1, Ch: 32, ChMult: []int{1, 2}, NumResBlocks: 1, AttnResolutions: []int{8}, Dropout: 0.1},
	// mnist is 28×28 gray: 1,623,169 parameters.
	"mnist": {Resolution: 28, InChannels: 1, OutCh: 1, Ch: 32, ChMult: []int{1, 2, 2}, NumResBlocks: 2, AttnResolutions: []int{14}, Dropout: 0.1},
	// cifar32 is a 32×32 RGB model at a quarter of the paper's width: 6.47 M parameters.
	"cifar32": {Resolution: 32, InChannels: 3, OutCh: 3, Ch: 64, ChMult: []int{1, 2, 2}, NumResBlocks: 2, AttnResolutions: []int{16}, Dropout: 0.1},
	// cifar10 is the paper's CIFAR-10 model: 35,746,307 parameters.
	"cifar10": {Resolution: 32, InChannels: 3, OutCh: 3, Ch: 128, ChMult: []int{1, 2, 2, 2}, NumResBlocks: 2, AttnResolutions: []int{16}, Dropout: 0.1},
	// celebahq256 is the paper's 256×256 CelebA-HQ model: 113,673,219 parameters.
	"celebahq256": {Resolution: 256, InChannels: 3, OutCh: 3, Ch: 128, ChMult: []int{1, 1, 2, 2, 4, 4}, NumResBlocks: 2, AttnResolutions: []int{16}, Dropout: 0},
	// lsun256 is the paper's LSUN church, bedroom and cat model: the same architecture as celebahq256
	// (one name for the three LSUN sets, as they share it; it sorts after celebahq256, which
	// therefore stays the name found for that architecture by a search in PresetNames order).
	"lsun256": {Resolution: 256, InChannels: 3, OutCh: 3, Ch: 128, ChMult: []int{1, 1, 2, 2, 4, 4}, NumResBlocks: 2, AttnResolutions: []int{16}, Dropout: 0},
}

// PresetNames lists the named presets in alphabetical order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PresetConfig returns a copy of the named preset.
func PresetConfig(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
	}
	c.ChMult = slices.Clone(c.ChMult)
	c.AttnResolutions = slices.Clone(c.AttnResolutions)
	return c, nil
}

// Validate reports the first reason the configuration cannot be built.
func (c Config) Validate() error {
	switch {
	case c.Resolution < 1:
		return fmt.Errorf("resolution %d: must be positive", c.Resolution)
	case c.InChannels < 1 || c.OutCh < 1:
		return fmt.Errorf("in_channels %d, out_ch %d: must be positive", c.InChannels, c.OutCh)
	case c.Ch < Groups || c.Ch%Groups != 0:
		return fmt.Errorf("ch %d: must be a positive multiple of %d (GroupNorm groups)", c.Ch, Groups)
	case len(c.ChMult) == 0:
		return fmt.Errorf("ch_mult is empty")
	case c.NumResBlocks < 1:
		return fmt.Errorf("num_res_blocks %d: must be at least 1", c.NumResBlocks)
	case !(c.Dropout >= 0 && c.Dropout < 1): // NaN fails too
		return fmt.Errorf("dropout %g: must be in [0, 1)", c.Dropout)
	}
	if err := c.checkBounds(); err != nil {
		return err
	}
	for _, m := range c.ChMult {
		if m < 1 {
			return fmt.Errorf("ch_mult %v: multipliers must be positive", c.ChMult)
		}
	}
	if div := 1 << (len(c.ChMult) - 1); c.Resolution%div != 0 {
		return fmt.Errorf("resolution %d: must be divisible by %d for %d levels", c.Resolution, div, len(c.ChMult))
	}
	have := c.levelResolutions()
	for _, r := range c.AttnResolutions {
		if !slices.Contains(have, r) {
			return fmt.Errorf("attention at %d: the model has no level of that resolution (its levels are %s)", r, joinInts(have))
		}
	}
	return nil
}

// Bounds on a configuration, far above any model that fits in a computer's memory,
// so that sizes computed from them cannot overflow; whether a model fits is decided
// by its memory estimate (Footprint), not by these.
const (
	MaxResolution = 4096
	maxChannels   = 1 << 16 // Ch × the largest multiplier
	maxLevels     = 12
	maxResBlocks  = 64
)

// checkBounds reports a configuration beyond the bounds above.
func (c Config) checkBounds() error {
	switch {
	case c.Resolution > MaxResolution:
		return fmt.Errorf("resolution %d: at most %d", c.Resolution, MaxResolution)
	case c.InChannels > 4 || c.OutCh > 4:
		return fmt.Errorf("in_channels %d, out_ch %d: at most 4", c.InChannels, c.OutCh)
	case len(c.ChMult) > maxLevels:
		return fmt.Errorf("ch_mult %v: at most %d levels", c.ChMult, maxLevels)
	case c.NumResBlocks > maxResBlocks:
		return fmt.Errorf("num_res_blocks %d: at most %d", c.NumResBlocks, maxResBlocks)
	}
	for _, m := range c.ChMult {
		if c.Ch > maxChannels || m > maxChannels/c.Ch {
			return fmt.Errorf("ch %d with multiplier %d: at most %d channels in a level", c.Ch, m, maxChannels)
		}
	}
	return nil
}

// levelResolutions is the image side at each level of the U-Net, largest first.
func (c Config) levelResolutions() []int {
	out := make([]int, len(c.ChMult))
	for i := range out {
		out[i] = c.Resolution >> i
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// String is a one-line summary of the configuration.
func (c Config) String() string {
	return fmt.Sprintf("%d×%d×%d, ch %d, ch_mult %v, %d res blocks, attention at %v, dropout %g",
		c.Resolution, c.Resolution, c.InChannels, c.Ch, c.ChMult, c.NumResBlocks, c.AttnResolutions, c.Dropout)
}
