package weights

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// param is one parameter of the U-Net: its interchange name and shape.
type param struct {
	name  string
	shape []int
}

// spec lists the parameters of the U-Net of cfg under the interchange names
// (the PyTorch port's state_dict keys), in compute's declaration order,
// without allocating them. TestSpecMatchesCompute holds it to compute.NewUNet.
func spec(cfg compute.Config) []param {
	var ps []param
	add := func(name string, shape ...int) { ps = append(ps, param{name, shape}) }
	dense := func(name string, in, out int) { add(name+".weight", out, in); add(name+".bias", out) }
	conv := func(name string, in, out, k int) { add(name+".weight", out, in, k, k); add(name+".bias", out) }
	norm := func(name string, c int) { add(name+".weight", c); add(name+".bias", c) }
	ch := cfg.Ch
	resnet := func(name string, in, out int) {
		norm(name+".norm1", in)
		conv(name+".conv1", in, out, 3)
		dense(name+".temb_proj", 4*ch, out)
		norm(name+".norm2", out)
		conv(name+".conv2", out, out, 3)
		if in != out {
			conv(name+".nin_shortcut", in, out, 1)
		}
	}
	attn := func(name string, c int) {
		norm(name+".norm", c)
		for _, p := range []string{"q", "k", "v", "proj_out"} {
			conv(name+"."+p, c, c, 1)
		}
	}
	dense("temb.dense.0", ch, 4*ch)
	dense("temb.dense.1", 4*ch, 4*ch)
	conv("conv_in", cfg.InChannels, ch, 3)
	skips := []int{ch}
	res, cin := cfg.Resolution, ch
	L := len(cfg.ChMult)
	for i, m := range cfg.ChMult {
		cout := ch * m
		for j := 0; j < cfg.NumResBlocks; j++ {
			resnet(fmt.Sprintf("down.%d.block.%d", i, j), cin, cout)
			cin = cout
			if slices.Contains(cfg.AttnResolutions, res) {
				attn(fmt.Sprintf("down.%d.attn.%d", i, j), cout)
			}
			skips = append(skips, cout)
		}
		if i != L-1 {
			conv(fmt.Sprintf("down.%d.downsample.conv", i), cin, cin, 3)
			skips = append(skips, cin)
			res /= 2
		}
	}
	resnet("mid.block_1", cin, cin)
	attn("mid.attn_1", cin)
	resnet("mid.block_2", cin, cin)
	for i := L - 1; i >= 0; i-- {
		cout := ch * cfg.ChMult[i]
		for j := 0; j < cfg.NumResBlocks+1; j++ {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			resnet(fmt.Sprintf("up.%d.block.%d", i, j), cin+skip, cout)
			cin = cout
			if slices.Contains(cfg.AttnResolutions, res) {
				attn(fmt.Sprintf("up.%d.attn.%d", i, j), cout)
			}
		}
		if i != 0 {
			conv(fmt.Sprintf("up.%d.upsample.conv", i), cin, cin, 3)
			res *= 2
		}
	}
	norm("norm_out", cin)
	conv("conv_out", cin, cfg.OutCh, 3)
	return ps
}

// numParams is the parameter count of cfg.
func numParams(cfg compute.Config) int64 {
	var n int64
	for _, p := range spec(cfg) {
		k := int64(1)
		for _, d := range p.shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}

// maxParams bounds the models read (2^30 float32, 4 GiB; the paper's largest has 114 M).
const maxParams = 1 << 30

var (
	downKey  = regexp.MustCompile(`^down\.(\d+)\.`)
	blockKey = regexp.MustCompile(`^down\.0\.block\.(\d+)\.`)
	attnKey  = regexp.MustCompile(`^down\.(\d+)\.attn\.0\.`)
)

// inferConfig reads the architecture from the shapes of interchange-named
// tensors. The image size is not in the weights: res gives it when known
// (non-zero); otherwise it is taken from the preset the rest matches, or
// else chosen so that the first level with attention works at 16×16 (where
// the paper puts it), with a warning. Dropout, a training setting, is the
// matched preset's, else 0.1 (the paper's CIFAR-10 value).
func inferConfig(shapes map[string][]int, res int, hint string) (compute.Config, []string, error) {
	var warn []string
	get := func(name string, dims int) ([]int, error) {
		s, ok := shapes[name]
		if !ok {
			return nil, fmt.Errorf("no tensor %s: not the weights of a DDPM U-Net", name)
		}
		if len(s) != dims {
			return nil, fmt.Errorf("tensor %s has shape %v; a DDPM U-Net has %d dimensions there", name, s, dims)
		}
		for _, d := range s {
			if d < 1 {
				return nil, fmt.Errorf("tensor %s has shape %v", name, s)
			}
		}
		return s, nil
	}
	cin, err := get("conv_in.weight", 4)
	if err != nil {
		return compute.Config{}, nil, err
	}
	cout, err := get("conv_out.weight", 4)
	if err != nil {
		return compute.Config{}, nil, err
	}
	cfg := compute.Config{Ch: cin[0], InChannels: cin[1], OutCh: cout[0]}
	levels, blocks := map[int]bool{}, map[int]bool{}
	attnLevels := map[int]bool{}
	for name := range shapes {
		if m := downKey.FindStringSubmatch(name); m != nil {
			i, err := strconv.Atoi(m[1])
			if err != nil || i > 64 {
				return compute.Config{}, nil, fmt.Errorf("tensor %s: level out of range", name)
			}
			levels[i] = true
		}
		if m := blockKey.FindStringSubmatch(name); m != nil {
			j, err := strconv.Atoi(m[1])
			if err != nil || j > 64 {
				return compute.Config{}, nil, fmt.Errorf("tensor %s: block out of range", name)
			}
			blocks[j] = true
		}
		if m := attnKey.FindStringSubmatch(name); m != nil {
			i, _ := strconv.Atoi(m[1])
			attnLevels[i] = true
		}
	}
	L, nrb := len(levels), len(blocks)
	if L == 0 || nrb == 0 {
		return compute.Config{}, nil, fmt.Errorf("no down.0.block.0 tensors: not the weights of a DDPM U-Net")
	}
	for i := range L {
		if !levels[i] {
			return compute.Config{}, nil, fmt.Errorf("levels %v: level %d has no tensors", sortedKeys(levels), i)
		}
	}
	for j := range nrb {
		if !blocks[j] {
			return compute.Config{}, nil, fmt.Errorf("down.0 has blocks %v: block %d is missing", sortedKeys(blocks), j)
		}
	}
	cfg.NumResBlocks = nrb
	for i := range L {
		name := fmt.Sprintf("down.%d.block.0.conv1.weight", i)
		s, err := get(name, 4)
		if err != nil {
			return compute.Config{}, nil, err
		}
		if s[0]%cfg.Ch != 0 {
			return compute.Config{}, nil, fmt.Errorf("tensor %s has %d output channels, not a multiple of ch %d (conv_in.weight)", name, s[0], cfg.Ch)
		}
		cfg.ChMult = append(cfg.ChMult, s[0]/cfg.Ch)
	}
	attn := sortedKeys(attnLevels)
	first := -1
	if len(attn) > 0 {
		first = attn[0]
	}
	// The resolution: given, or a preset's, or the paper's 16×16 rule.
	preset := ""
	if res == 0 {
		for _, name := range presetOrder(hint) {
			p, _ := compute.PresetConfig(name)
			if p.Ch == cfg.Ch && p.InChannels == cfg.InChannels && p.OutCh == cfg.OutCh &&
				p.NumResBlocks == cfg.NumResBlocks && slices.Equal(p.ChMult, cfg.ChMult) &&
				slices.Equal(attnLevelsOf(p), attn) {
				res, preset = p.Resolution, name
				break
			}
		}
	}
	if res == 0 {
		if first >= 0 {
			res = 16 << first
			warn = append(warn, fmt.Sprintf("the image size is not stored with the weights: took %d×%d, which puts the first attention at 16×16 as in the paper", res, res))
		} else {
			res = 32 << max(0, L-4)
			warn = append(warn, fmt.Sprintf("the image size is not stored with the weights: took %d×%d", res, res))
		}
	}
	cfg.Resolution = res
	for _, i := range attn {
		if res%(1<<i) != 0 {
			return compute.Config{}, nil, fmt.Errorf("image size %d does not halve %d times", res, i)
		}
		cfg.AttnResolutions = append(cfg.AttnResolutions, res>>i)
	}
	if cfg.AttnResolutions == nil {
		cfg.AttnResolutions = []int{}
	}
	cfg.Dropout = 0.1
	if preset == "" {
		preset = matchPreset(cfg, hint)
	}
	if preset != "" {
		p, _ := compute.PresetConfig(preset)
		cfg.Dropout = p.Dropout
	}
	if err := cfg.Validate(); err != nil {
		return compute.Config{}, nil, fmt.Errorf("the tensors describe an impossible model: %w", err)
	}
	if n := numParams(cfg); n > maxParams {
		return compute.Config{}, nil, fmt.Errorf("the tensors describe a model of %d parameters; DDPM Studio reads at most %d", n, maxParams)
	}
	return cfg, warn, nil
}

// attnLevelsOf lists the levels of cfg that have attention.
func attnLevelsOf(cfg compute.Config) []int {
	var out []int
	for i := range cfg.ChMult {
		if slices.Contains(cfg.AttnResolutions, cfg.Resolution>>i) {
			out = append(out, i)
		}
	}
	return out
}

func sortedKeys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// presetOrder lists the presets, the one the hint names first.
func presetOrder(hint string) []string {
	names := compute.PresetNames()
	if p := hintPreset[hint]; p != "" {
		names = append([]string{p}, slices.DeleteFunc(names, func(n string) bool { return n == p })...)
	}
	return names
}

// matchPreset names the preset cfg is, apart from dropout, or "".
func matchPreset(cfg compute.Config, hint string) string {
	for _, name := range presetOrder(hint) {
		p, _ := compute.PresetConfig(name)
		p.Dropout = cfg.Dropout
		if p.Resolution == cfg.Resolution && p.Ch == cfg.Ch && p.InChannels == cfg.InChannels &&
			p.OutCh == cfg.OutCh && p.NumResBlocks == cfg.NumResBlocks && slices.Equal(p.ChMult, cfg.ChMult) &&
			slices.Equal(sortedCopy(p.AttnResolutions), sortedCopy(cfg.AttnResolutions)) {
			return name
		}
	}
	return ""
}

func sortedCopy(x []int) []int {
	y := slices.Clone(x)
	sort.Ints(y)
	return y
}

// Datasets a file or folder name may point to (hints), and the preset for each.
var (
	hintPatterns = []struct {
		re   *regexp.Regexp
		name string
	}{
		{regexp.MustCompile(`cifar`), "CIFAR-10"},
		{regexp.MustCompile(`celeba`), "CelebA-HQ"},
		{regexp.MustCompile(`church`), "LSUN church"},
		{regexp.MustCompile(`bedroom`), "LSUN bedroom"},
		{regexp.MustCompile(`(^|[^a-z])cats?([^a-z]|$)`), "LSUN cat"},
	}
	hintPreset = map[string]string{
		"CIFAR-10": "cifar10", "CelebA-HQ": "celebahq256",
		"LSUN church": "lsun256", "LSUN bedroom": "lsun256", "LSUN cat": "lsun256",
	}
	// presetDataset is what a preset's model was trained on, for Describe.
	presetDataset = map[string]string{"cifar10": "CIFAR-10", "celebahq256": "CelebA-HQ", "lsun256": "LSUN"}
)

// datasetHint reads a dataset name from a path (google/ddpm-church-256,
// diffusion_lsun_church_model/model-4432000.ckpt, …), or "".
func datasetHint(p string) string {
	p = strings.ToLower(p)
	for _, h := range hintPatterns {
		if h.re.MatchString(p) {
			return h.name
		}
	}
	return ""
}

// checkShapes compares the tensors with the parameters of cfg and names what does not fit.
func checkShapes(cfg compute.Config, shapes map[string][]int, what func(string) string) error {
	want := spec(cfg)
	var missing, wrong []string
	known := make(map[string]bool, len(want))
	for _, p := range want {
		known[p.name] = true
		s, ok := shapes[p.name]
		if !ok {
			missing = append(missing, what(p.name))
			continue
		}
		if !slices.Equal(s, p.shape) {
			wrong = append(wrong, fmt.Sprintf("%s has shape %v, the model needs %v", what(p.name), s, p.shape))
		}
	}
	var extra []string
	for n := range shapes {
		if !known[n] {
			extra = append(extra, what(n))
		}
	}
	sort.Strings(extra)
	if len(missing)+len(wrong)+len(extra) == 0 {
		return nil
	}
	var parts []string
	if len(wrong) > 0 {
		parts = append(parts, "tensor "+listSome(wrong))
	}
	if len(missing) > 0 {
		parts = append(parts, "missing "+listSome(missing))
	}
	if len(extra) > 0 {
		parts = append(parts, "not part of the model: "+listSome(extra))
	}
	return fmt.Errorf("the tensors do not fit a U-Net of %s: %s", cfg, strings.Join(parts, "; "))
}

func listSome(names []string) string {
	if len(names) > 4 {
		return fmt.Sprintf("%s, … (%d in all)", strings.Join(names[:4], ", "), len(names))
	}
	return strings.Join(names, ", ")
}
