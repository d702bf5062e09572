package weights

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// The diffusers UNet2DModel (src/diffusers/models/unets/unet_2d.py) with the
// blocks DownBlock2D/AttnDownBlock2D, UNetMidBlock2D and UpBlock2D/AttnUpBlock2D
// computes the DDPM U-Net when configured as the google/ddpm-* models are:
// block_out_channels = ch·ch_mult, layers_per_block = num_res_blocks,
// attention_head_dim null (one head), norm_num_groups 32, norm_eps 1e-6,
// act_fn silu, time_embedding_type positional with flip_sin_to_cos false and
// freq_shift 1 (embeddings.get_timestep_embedding: exponent
// −ln(10000)·i/(half − freq_shift) and [sin, cos], which is the paper's
// 10000^(−i/(half−1)) and order), downsample_padding 0 (Downsample2D then pads
// (0, 1, 0, 1) before its stride-2 convolution, as the official model does),
// resnet_time_scale_shift default, mid_block_scale_factor 1, center_input_sample
// false. Tensor names map one to one:
//
//	temb.dense.0 / .1                time_embedding.linear_1 / linear_2
//	conv_in, conv_out, norm_out      conv_in, conv_out, conv_norm_out
//	down.i.block.j.X                 down_blocks.i.resnets.j.X   (temb_proj → time_emb_proj, nin_shortcut → conv_shortcut)
//	down.i.attn.j.{norm,q,k,v,proj_out}
//	                                 down_blocks.i.attentions.j.{group_norm,to_q,to_k,to_v,to_out.0}
//	                                 (older files: query, key, value, proj_attn; 1×1 convs become [C, C] linear weights)
//	down.i.downsample.conv           down_blocks.i.downsamplers.0.conv
//	mid.block_1, mid.attn_1, mid.block_2
//	                                 mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1
//	up.i.block.j, up.i.attn.j, up.i.upsample.conv
//	                                 up_blocks.(L−1−i).resnets.j, .attentions.j, .upsamplers.0.conv
//
// (the port indexes its up path by resolution level, diffusers in the order it runs).

var (
	resnetRenames = map[string]string{"norm1": "norm1", "conv1": "conv1", "temb_proj": "time_emb_proj", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
	attnNew       = map[string]string{"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
	attnOld       = map[string]string{"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}
	portTop       = map[string]string{"temb.dense.0": "time_embedding.linear_1", "temb.dense.1": "time_embedding.linear_2", "conv_in": "conv_in", "conv_out": "conv_out", "norm_out": "conv_norm_out"}
	portMid       = map[string]string{"block_1": "resnets.0", "attn_1": "attentions.0", "block_2": "resnets.1"}

	portBlockRe = regexp.MustCompile(`^(down|up)\.(\d+)\.(block|attn)\.(\d+)\.(\w+)\.(weight|bias)$`)
	portMidRe   = regexp.MustCompile(`^mid\.(block_1|attn_1|block_2)\.(\w+)\.(weight|bias)$`)
	portResamp  = regexp.MustCompile(`^(down|up)\.(\d+)\.(downsample|upsample)\.conv\.(weight|bias)$`)
)

// toDiffusers names an interchange tensor in diffusers (old: the attention
// names of diffusers < 0.14 that the published google/ddpm-* files carry).
// It reports whether the tensor is an attention projection, whose 1×1
// convolution weight [C, C, 1, 1] is a linear weight [C, C] in diffusers.
func toDiffusers(name string, levels int, old bool) (string, bool, error) {
	bad := fmt.Errorf("tensor %s has no diffusers name", name)
	attn := attnNew
	if old {
		attn = attnOld
	}
	for p, d := range portTop {
		if strings.HasPrefix(name, p+".") {
			return d + name[len(p):], false, nil
		}
	}
	if m := portBlockRe.FindStringSubmatch(name); m != nil {
		i, _ := strconv.Atoi(m[2])
		if i >= levels {
			return "", false, bad
		}
		dir := "down_blocks"
		if m[1] == "up" {
			dir, i = "up_blocks", levels-1-i
		}
		if m[3] == "block" {
			r, ok := resnetRenames[m[5]]
			if !ok {
				return "", false, bad
			}
			return fmt.Sprintf("%s.%d.resnets.%s.%s.%s", dir, i, m[4], r, m[6]), false, nil
		}
		r, ok := attn[m[5]]
		if !ok {
			return "", false, bad
		}
		return fmt.Sprintf("%s.%d.attentions.%s.%s.%s", dir, i, m[4], r, m[6]), m[5] != "norm", nil
	}
	if m := portMidRe.FindStringSubmatch(name); m != nil {
		r := resnetRenames
		if m[1] == "attn_1" {
			r = attn
		}
		n, ok := r[m[2]]
		if !ok {
			return "", false, bad
		}
		return fmt.Sprintf("mid_block.%s.%s.%s", portMid[m[1]], n, m[3]), m[1] == "attn_1" && m[2] != "norm", nil
	}
	if m := portResamp.FindStringSubmatch(name); m != nil {
		i, _ := strconv.Atoi(m[2])
		if i >= levels {
			return "", false, bad
		}
		if m[1] == "down" {
			return fmt.Sprintf("down_blocks.%d.downsamplers.0.conv.%s", i, m[4]), false, nil
		}
		return fmt.Sprintf("up_blocks.%d.upsamplers.0.conv.%s", levels-1-i, m[4]), false, nil
	}
	return "", false, bad
}

var (
	diffBlockRe  = regexp.MustCompile(`^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)\.(weight|bias)$`)
	diffMidRe    = regexp.MustCompile(`^mid_block\.(resnets|attentions)\.(\d+)\.(.+)\.(weight|bias)$`)
	diffResampRe = regexp.MustCompile(`^(down_blocks|up_blocks)\.(\d+)\.(downsamplers|upsamplers)\.0\.conv\.(weight|bias)$`)
	diffLevelRe  = regexp.MustCompile(`^down_blocks\.(\d+)\.`)
	invResnet    = invert(resnetRenames)
	invAttn      = func() map[string]string {
		m := invert(attnNew)
		for k, v := range invert(attnOld) {
			m[k] = v
		}
		return m
	}()
	invTop = invert(portTop)
)

func invert(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// fromDiffusers is the inverse of toDiffusers, for both attention namings.
func fromDiffusers(name string, levels int) (string, bool, error) {
	bad := fmt.Errorf("tensor %s is not part of a DDPM UNet2DModel", name)
	for d, p := range invTop {
		if strings.HasPrefix(name, d+".") && (name == d+".weight" || name == d+".bias") {
			return p + name[len(d):], false, nil
		}
	}
	if m := diffBlockRe.FindStringSubmatch(name); m != nil {
		i, err := strconv.Atoi(m[2])
		if err != nil || i >= levels {
			return "", false, bad
		}
		dir := "down"
		if m[1] == "up_blocks" {
			dir, i = "up", levels-1-i
		}
		if m[3] == "resnets" {
			r, ok := invResnet[m[5]]
			if !ok {
				return "", false, bad
			}
			return fmt.Sprintf("%s.%d.block.%s.%s.%s", dir, i, m[4], r, m[6]), false, nil
		}
		r, ok := invAttn[m[5]]
		if !ok {
			return "", false, bad
		}
		return fmt.Sprintf("%s.%d.attn.%s.%s.%s", dir, i, m[4], r, m[6]), r != "norm", nil
	}
	if m := diffMidRe.FindStringSubmatch(name); m != nil {
		var mid string
		for p, d := range portMid {
			if d == m[1]+"."+m[2] {
				mid = p
			}
		}
		if mid == "" {
			return "", false, bad
		}
		inv := invResnet
		if m[1] == "attentions" {
			inv = invAttn
		}
		r, ok := inv[m[3]]
		if !ok {
			return "", false, bad
		}
		return fmt.Sprintf("mid.%s.%s.%s", mid, r, m[4]), m[1] == "attentions" && r != "norm", nil
	}
	if m := diffResampRe.FindStringSubmatch(name); m != nil {
		i, err := strconv.Atoi(m[2])
		if err != nil || i >= levels {
			return "", false, bad
		}
		if m[1] == "down_blocks" {
			if m[3] != "downsamplers" {
				return "", false, bad
			}
			return fmt.Sprintf("down.%d.downsample.conv.%s", i, m[4]), false, nil
		}
		if m[3] != "upsamplers" {
			return "", false, bad
		}
		return fmt.Sprintf("up.%d.upsample.conv.%s", levels-1-i, m[4]), false, nil
	}
	return "", false, bad
}

// diffusersLevels counts the down blocks of diffusers-named tensors.
func diffusersLevels(names []string) int {
	levels := 0
	for _, n := range names {
		if m := diffLevelRe.FindStringSubmatch(n); m != nil {
			if i, err := strconv.Atoi(m[1]); err == nil && i < 64 {
				levels = max(levels, i+1)
			}
		}
	}
	return levels
}

// unetConfig is the part of a diffusers UNet2DModel config.json that DDPM Studio reads.
// Pointers tell a missing key (the class default applies) from a given one.
type unetConfig struct {
	ClassName            string          `json:"_class_name"`
	SampleSize           json.RawMessage `json:"sample_size"`
	InChannels           *int            `json:"in_channels"`
	OutChannels          *int            `json:"out_channels"`
	CenterInputSample    *bool           `json:"center_input_sample"`
	TimeEmbeddingType    *string         `json:"time_embedding_type"`
	TimeEmbeddingDim     *int            `json:"time_embedding_dim"`
	FreqShift            *float64        `json:"freq_shift"`
	FlipSinToCos         *bool           `json:"flip_sin_to_cos"`
	DownBlockTypes       []string        `json:"down_block_types"`
	MidBlockType         json.RawMessage `json:"mid_block_type"`
	UpBlockTypes         []string        `json:"up_block_types"`
	BlockOutChannels     []int           `json:"block_out_channels"`
	LayersPerBlock       *int            `json:"layers_per_block"`
	MidBlockScaleFactor  *float64        `json:"mid_block_scale_factor"`
	DownsamplePadding    *int            `json:"downsample_padding"`
	DownsampleType       *string         `json:"downsample_type"`
	UpsampleType         *string         `json:"upsample_type"`
	Dropout              *float64        `json:"dropout"`
	ActFn                *string         `json:"act_fn"`
	AttentionHeadDim     json.RawMessage `json:"attention_head_dim"`
	NormNumGroups        *int            `json:"norm_num_groups"`
	AttnNormNumGroups    *int            `json:"attn_norm_num_groups"`
	NormEps              *float64        `json:"norm_eps"`
	ResnetTimeScaleShift *string         `json:"resnet_time_scale_shift"`
	AddAttention         *bool           `json:"add_attention"`
	ClassEmbedType       *string         `json:"class_embed_type"`
	NumClassEmbeds       *int            `json:"num_class_embeds"`
}

// configFromDiffusers turns a UNet2DModel config.json into our configuration,
// or says which setting DDPM Studio's U-Net does not compute. The defaults of
// missing keys are those of UNet2DModel.__init__, except attention_head_dim:
// a config without it (as some google/ddpm-* copies circulate) would get
// diffusers' default of 8-channel heads; it is read as one head, the paper's,
// with a warning.
func configFromDiffusers(b []byte) (compute.Config, []string, error) {
	var c unetConfig
	var warn []string
	if err := json.Unmarshal(b, &c); err != nil {
		return compute.Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	if c.ClassName != "" && c.ClassName != "UNet2DModel" {
		return compute.Config{}, nil, fmt.Errorf("config.json describes a %s; DDPM Studio reads UNet2DModel folders", c.ClassName)
	}
	or := func(p *int, d int) int {
		if p == nil {
			return d
		}
		return *p
	}
	orS := func(p *string, d string) string {
		if p == nil {
			return d
		}
		return *p
	}
	orF := func(p *float64, d float64) float64 {
		if p == nil {
			return d
		}
		return *p
	}
	orB := func(p *bool, d bool) bool {
		if p == nil {
			return d
		}
		return *p
	}
	unsupported := func(key string, got any, want string) error {
		return fmt.Errorf("config.json: %s is %v; DDPM Studio's U-Net is the DDPM one (%s), so it cannot run this model", key, got, want)
	}
	boc := c.BlockOutChannels
	if boc == nil {
		boc = []int{224, 448, 672, 896}
	}
	if len(boc) == 0 || len(boc) > 16 {
		return compute.Config{}, nil, fmt.Errorf("config.json: block_out_channels %v", boc)
	}
	down, up := c.DownBlockTypes, c.UpBlockTypes
	if down == nil {
		down = []string{"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"}
	}
	if up == nil {
		up = []string{"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}
	}
	L := len(boc)
	if len(down) != L || len(up) != L {
		return compute.Config{}, nil, fmt.Errorf("config.json: %d block_out_channels, %d down_block_types, %d up_block_types", L, len(down), len(up))
	}
	cfg := compute.Config{Ch: boc[0], InChannels: or(c.InChannels, 3), OutCh: or(c.OutChannels, 3), NumResBlocks: or(c.LayersPerBlock, 2)}
	for _, b := range boc {
		if cfg.Ch <= 0 || b <= 0 || b%cfg.Ch != 0 {
			return compute.Config{}, nil, unsupported("block_out_channels", boc, "multiples of the first")
		}
		cfg.ChMult = append(cfg.ChMult, b/cfg.Ch)
	}
	var res int
	if len(c.SampleSize) > 0 && string(c.SampleSize) != "null" {
		var hw []int
		if err := json.Unmarshal(c.SampleSize, &res); err != nil {
			if err := json.Unmarshal(c.SampleSize, &hw); err != nil || len(hw) != 2 {
				return compute.Config{}, nil, fmt.Errorf("config.json: sample_size %s", c.SampleSize)
			}
			if hw[0] != hw[1] {
				return compute.Config{}, nil, unsupported("sample_size", string(c.SampleSize), "square images")
			}
			res = hw[0]
		}
	}
	attnLevels := []int{}
	for i, d := range down {
		u := up[L-1-i]
		switch {
		case d == "DownBlock2D" && u == "UpBlock2D":
		case d == "AttnDownBlock2D" && u == "AttnUpBlock2D":
			attnLevels = append(attnLevels, i)
		case d != "DownBlock2D" && d != "AttnDownBlock2D":
			return compute.Config{}, nil, unsupported("down_block_types", down, "DownBlock2D and AttnDownBlock2D")
		case u != "UpBlock2D" && u != "AttnUpBlock2D":
			return compute.Config{}, nil, unsupported("up_block_types", up, "UpBlock2D and AttnUpBlock2D")
		default:
			return compute.Config{}, nil, unsupported("down_block_types and up_block_types", fmt.Sprint(down, up), "attention at the same levels on the way down and up")
		}
	}
	if res == 0 {
		if len(attnLevels) > 0 {
			res = 16 << attnLevels[0]
		} else {
			res = 32
		}
		warn = append(warn, fmt.Sprintf("config.json has no sample_size: took %d×%d", res, res))
	}
	cfg.Resolution = res
	cfg.AttnResolutions = []int{}
	for _, i := range attnLevels {
		cfg.AttnResolutions = append(cfg.AttnResolutions, res>>i)
	}
	if err := cfg.Validate(); err != nil {
		return compute.Config{}, nil, fmt.Errorf("config.json: %w", err)
	}
	checks := []struct {
		key  string
		got  any
		ok   bool
		want string
	}{
		{"center_input_sample", orB(c.CenterInputSample, false), !orB(c.CenterInputSample, false), "false"},
		{"time_embedding_type", orS(c.TimeEmbeddingType, "positional"), orS(c.TimeEmbeddingType, "positional") == "positional", "positional"},
		{"time_embedding_dim", or(c.TimeEmbeddingDim, 4*cfg.Ch), or(c.TimeEmbeddingDim, 4*cfg.Ch) == 4*cfg.Ch, "4·ch"},
		{"flip_sin_to_cos", orB(c.FlipSinToCos, true), !orB(c.FlipSinToCos, true), "false: [sin, cos]"},
		{"freq_shift", orF(c.FreqShift, 0), orF(c.FreqShift, 0) == 1, "1: frequencies 10000^(−i/(half−1))"},
		{"mid_block_scale_factor", orF(c.MidBlockScaleFactor, 1), orF(c.MidBlockScaleFactor, 1) == 1, "1"},
		{"downsample_padding", or(c.DownsamplePadding, 1), or(c.DownsamplePadding, 1) == 0, "0: pad right and bottom before the stride-2 convolution"},
		{"downsample_type", orS(c.DownsampleType, "conv"), orS(c.DownsampleType, "conv") == "conv", "conv"},
		{"upsample_type", orS(c.UpsampleType, "conv"), orS(c.UpsampleType, "conv") == "conv", "conv"},
		{"act_fn", orS(c.ActFn, "silu"), orS(c.ActFn, "silu") == "silu" || orS(c.ActFn, "silu") == "swish", "silu"},
		{"norm_num_groups", or(c.NormNumGroups, 32), or(c.NormNumGroups, 32) == compute.Groups, "32"},
		{"attn_norm_num_groups", or(c.AttnNormNumGroups, 32), or(c.AttnNormNumGroups, 32) == compute.Groups, "32"},
		{"norm_eps", orF(c.NormEps, 1e-5), math.Abs(orF(c.NormEps, 1e-5)-1e-6) < 1e-12, "1e-6"},
		{"resnet_time_scale_shift", orS(c.ResnetTimeScaleShift, "default"), orS(c.ResnetTimeScaleShift, "default") == "default", "default"},
		{"add_attention", orB(c.AddAttention, true), orB(c.AddAttention, true), "true"},
		{"class_embed_type", orS(c.ClassEmbedType, "null"), c.ClassEmbedType == nil, "null"},
		{"num_class_embeds", or(c.NumClassEmbeds, 0), c.NumClassEmbeds == nil, "null"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return compute.Config{}, nil, unsupported(ch.key, ch.got, ch.want)
		}
	}
	if len(c.MidBlockType) > 0 && string(c.MidBlockType) != `"UNetMidBlock2D"` {
		return compute.Config{}, nil, unsupported("mid_block_type", string(c.MidBlockType), `"UNetMidBlock2D"`)
	}
	// One attention head: attention_head_dim null, or equal to the channels of every attention block.
	switch hd := strings.TrimSpace(string(c.AttentionHeadDim)); hd {
	case "null":
	case "":
		warn = append(warn, "config.json has no attention_head_dim (diffusers would split attention into 8-channel heads): read as one head, as in DDPM")
	default:
		d, err := strconv.Atoi(hd)
		if err != nil || d <= 0 {
			return compute.Config{}, nil, fmt.Errorf("config.json: attention_head_dim %s", hd)
		}
		chans := []int{boc[L-1]}
		for _, i := range attnLevels {
			chans = append(chans, boc[i])
		}
		for _, c := range chans {
			if c != d {
				return compute.Config{}, nil, unsupported("attention_head_dim", d, fmt.Sprintf("null: one head of all %d channels", c))
			}
		}
	}
	cfg.Dropout = -1 // decided by the caller: the config's, else the preset's
	if c.Dropout != nil {
		cfg.Dropout = *c.Dropout
	}
	return cfg, warn, nil
}

// diffusersVersion is the diffusers release whose UNet2DModel and DDPMScheduler
// config keys WriteDiffusers writes (older releases ignore the newer keys).
const diffusersVersion = "0.25.0"

// diffusersConfig is the UNet2DModel config.json of cfg.
func diffusersConfig(cfg compute.Config) map[string]any {
	L := len(cfg.ChMult)
	boc := make([]int, L)
	down, up := make([]string, L), make([]string, L)
	for i, m := range cfg.ChMult {
		boc[i] = cfg.Ch * m
		down[i], up[L-1-i] = "DownBlock2D", "UpBlock2D"
		if slices.Contains(cfg.AttnResolutions, cfg.Resolution>>i) {
			down[i], up[L-1-i] = "AttnDownBlock2D", "AttnUpBlock2D"
		}
	}
	return map[string]any{
		"_class_name":             "UNet2DModel",
		"_diffusers_version":      diffusersVersion,
		"act_fn":                  "silu",
		"add_attention":           true,
		"attention_head_dim":      nil,
		"attn_norm_num_groups":    nil,
		"block_out_channels":      boc,
		"center_input_sample":     false,
		"class_embed_type":        nil,
		"down_block_types":        down,
		"downsample_padding":      0,
		"downsample_type":         "conv",
		"dropout":                 cfg.Dropout,
		"flip_sin_to_cos":         false,
		"freq_shift":              1,
		"in_channels":             cfg.InChannels,
		"layers_per_block":        cfg.NumResBlocks,
		"mid_block_scale_factor":  1,
		"mid_block_type":          "UNetMidBlock2D",
		"norm_eps":                1e-6,
		"norm_num_groups":         compute.Groups,
		"num_class_embeds":        nil,
		"num_train_timesteps":     nil,
		"out_channels":            cfg.OutCh,
		"resnet_time_scale_shift": "default",
		"sample_size":             cfg.Resolution,
		"time_embedding_dim":      nil,
		"time_embedding_type":     "positional",
		"up_block_types":          up,
		"upsample_type":           "conv",
	}
}
