package weights

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nlpodyssey/safetensors"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// EMA says whether weights are the exponential moving average of training.
type EMA int

const (
	EMAUnknown EMA = iota // the file does not say
	EMAWeights            // averaged weights (what the paper samples from)
	RawWeights            // the trained weights themselves
)

// Model is a U-Net read from a file or folder, in DDPM Studio's terms.
type Model struct {
	Config   compute.Config
	Preset   string // the preset Config is (apart from dropout), or ""
	Dataset  string // what the model was trained on, when a name or the preset tells ("CIFAR-10", "LSUN church"), or ""
	Schedule Schedule
	// Tensors holds every parameter of Config under its interchange name (the
	// PyTorch port's state_dict keys), float32, in the shapes spec gives.
	Tensors  map[string][]float32
	EMA      EMA
	EMAWhy   string   // how EMA was found out ("by its name", "under \"ema\"", …), or ""
	Format   string   // "PyTorch checkpoint", "diffusers folder (safetensors)", …
	Source   string   // the path opened
	Warnings []string // what was guessed or will differ, in words
}

// Options tune Open.
type Options struct {
	// Raw takes the raw weights where a file holds both raw and EMA weights
	// (by default the EMA ones, which the paper samples from).
	Raw bool
	// Resolution is the image side to assume where the file does not store it
	// (PyTorch checkpoints); 0 infers it (see inferConfig).
	Resolution int
}

// Open reads the U-Net in path: a PyTorch checkpoint (.ckpt, .pt, .pth, .bin;
// the zip format of torch ≥ 1.6 or the legacy one), a safetensors file, or a
// diffusers folder (the pipeline folder with model_index.json, or its unet
// folder with config.json). The format is found from the content, not the
// name. Files are untrusted: anything unexpected is an error naming what.
func Open(path string) (*Model, error) { return OpenOptions(path, Options{}) }

// OpenOptions is Open with options.
func OpenOptions(path string, opt Options) (*Model, error) {
	m, err := open(path, opt)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return m, nil
}

// NumParams is the number of scalar parameters.
func (m *Model) NumParams() int {
	n := 0
	for _, t := range m.Tensors {
		n += len(t)
	}
	return n
}

// Describe says in words what was found, e.g. "CIFAR-10 model (preset
// cifar10), 35,746,307 parameters, EMA weights (by its name), diffusers folder (safetensors)".
func (m *Model) Describe() string {
	what := fmt.Sprintf("%d×%d model", m.Config.Resolution, m.Config.Resolution)
	if m.Dataset != "" {
		what = m.Dataset + " model"
	}
	if m.Preset != "" {
		what += fmt.Sprintf(" (preset %s)", m.Preset)
	} else {
		what += fmt.Sprintf(" (%s)", m.Config)
	}
	ema := "EMA or raw weights (not recorded)"
	switch m.EMA {
	case EMAWeights:
		ema = "EMA weights"
	case RawWeights:
		ema = "raw weights, not EMA"
	}
	if m.EMAWhy != "" && m.EMA != EMAUnknown {
		ema += " (" + m.EMAWhy + ")"
	}
	return fmt.Sprintf("%s, %s parameters, %s, %s", what, thousands(m.NumParams()), ema, m.Format)
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// UNet builds the network with the model's weights.
func (m *Model) UNet() (*compute.UNet, error) {
	u, err := compute.NewUNet(m.Config, 0)
	if err != nil {
		return nil, err
	}
	for _, p := range u.Params {
		t, ok := m.Tensors[p.Name]
		if !ok || len(t) != len(p.Data) {
			return nil, fmt.Errorf("model has no tensor %s of %d values", p.Name, len(p.Data))
		}
		copy(p.Data, t)
	}
	return u, nil
}

// FromUNet is a model of u's architecture with the weights data (one slice
// per parameter of u, in order: u's own, or a trainer's EMA), to export. The
// slices are shared, not copied.
func FromUNet(u *compute.UNet, data [][]float32, s Schedule, ema EMA) (*Model, error) {
	if len(data) != len(u.Params) {
		return nil, fmt.Errorf("%d weight slices for %d parameters", len(data), len(u.Params))
	}
	m := &Model{Config: u.Config, Schedule: s, EMA: ema, Tensors: make(map[string][]float32, len(data)), Format: "DDPM Studio run"}
	for i, p := range u.Params {
		if len(data[i]) != len(p.Data) {
			return nil, fmt.Errorf("%s: %d values, want %d", p.Name, len(data[i]), len(p.Data))
		}
		m.Tensors[p.Name] = data[i]
	}
	m.Preset = matchPreset(m.Config, "")
	return m, nil
}

// source is the tensors of one file, not read yet.
type source struct {
	format  string
	size    int64         // bytes of the file
	tensors []namedTensor // in file order
	meta    map[string]string
	closer  io.Closer
	// pending holds torch tensors whose layout is checked only if they are used.
	pending map[string]*tensorMeta
}

type namedTensor struct {
	name string
	t    *tensor
}

// openFile reads the table of tensors of a checkpoint or safetensors file.
func openFile(path string) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, errors.New("is a folder")
	}
	src, err := openReader(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	src.closer = f
	return src, nil
}

// openReader reads the table of tensors of a checkpoint or safetensors file of size bytes.
func openReader(r io.ReaderAt, size int64) (*source, error) {
	head := make([]byte, 512)
	n, _ := r.ReadAt(head, 0)
	head = head[:n]
	src := &source{size: size}
	var pts []pathTensor
	var err error
	switch {
	case len(head) >= 4 && string(head[:4]) == "PK\x03\x04":
		src.format = "PyTorch checkpoint"
		pts, err = readTorchZip(r, size)
	case isLegacyTorch(head):
		src.format = "PyTorch checkpoint (legacy format)"
		pts, err = readTorchLegacy(r, size)
	case isTar(head):
		err = errors.New("a PyTorch checkpoint in the tar format of torch < 0.4, which DDPM Studio does not read: load it in Python and save it again with torch.save")
	case isSafetensors(head, size):
		src.format = "safetensors file"
		src.tensors, src.meta, err = readSafetensors(r, size)
	case len(head) == 0:
		err = errors.New("the file is empty")
	default:
		err = fmt.Errorf("not a PyTorch checkpoint, safetensors file or diffusers folder (it starts with %q)", printable(head[:min(len(head), 8)]))
	}
	if err != nil {
		return nil, err
	}
	if pts != nil {
		src.pending = map[string]*tensorMeta{}
		for _, pt := range pts {
			if _, dup := src.pending[pt.path]; dup {
				continue
			}
			src.tensors = append(src.tensors, namedTensor{name: pt.path})
			src.pending[pt.path] = pt.meta
		}
	}
	return src, nil
}

func (s *source) close() {
	if s.closer != nil {
		s.closer.Close()
		s.closer = nil
	}
}

func printable(b []byte) string {
	out := []rune{}
	for _, c := range b {
		if c >= 32 && c < 127 {
			out = append(out, rune(c))
		} else {
			out = append(out, '·')
		}
	}
	return string(out)
}

// isSafetensors checks the safetensors layout: a little-endian header length, then JSON.
func isSafetensors(head []byte, size int64) bool {
	if len(head) < 9 {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n > 0 && n <= uint64(size-8) && head[8] == '{'
}

// maxFileBytes bounds the safetensors files read into memory.
const maxFileBytes = 4*maxParams + 256<<20

func readSafetensors(r io.ReaderAt, size int64) ([]namedTensor, map[string]string, error) {
	if size > maxFileBytes {
		return nil, nil, fmt.Errorf("%d bytes: larger than any U-Net DDPM Studio reads", size)
	}
	buf := make([]byte, size)
	if n, err := r.ReadAt(buf, 0); n < len(buf) {
		return nil, nil, err
	}
	n, md, err := safetensors.ReadMetadata(buf)
	if err != nil {
		return nil, nil, fmt.Errorf("not a valid safetensors file (truncated or damaged?): %w", err)
	}
	data := buf[8+n:]
	dtypes := map[safetensors.DType]dtype{safetensors.F32: f32, safetensors.F64: f64, safetensors.F16: f16, safetensors.BF16: bf16,
		safetensors.I64: i64, safetensors.I32: i32, safetensors.I16: i16, safetensors.I8: i8, safetensors.U8: u8, safetensors.BOOL: boolean}
	var out []namedTensor
	infos := md.Tensors()
	for name, info := range infos {
		dt, ok := dtypes[info.DType]
		if !ok {
			return nil, nil, fmt.Errorf("tensor %s has element type %s", name, info.DType)
		}
		shape := make([]int, len(info.Shape))
		s64 := make([]int64, len(info.Shape))
		for i, d := range info.Shape {
			if d > maxDim {
				return nil, nil, fmt.Errorf("tensor %s has shape %v", name, info.Shape)
			}
			shape[i], s64[i] = int(d), int64(d)
		}
		if _, err := checkedNumel(s64); err != nil {
			return nil, nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		raw := data[info.DataOffsets[0]:info.DataOffsets[1]]
		out = append(out, namedTensor{name, &tensor{shape: shape, dtype: dt, read: func(dst []float32) error {
			if !dt.float() {
				return fmt.Errorf("%s holds %s values, not floating-point weights", name, dt)
			}
			return decodeFloats(dst, raw, dt)
		}}})
	}
	sort.Slice(out, func(i, j int) bool {
		return infos[out[i].name].DataOffsets[0] < infos[out[j].name].DataOffsets[0]
	})
	return out, md.Metadata(), nil
}

// A weight set of a file: the tensors under one prefix (none, "ema_",
// "state_dict.", "module.", …), found by where conv_in.weight is.
type weightSet struct {
	prefix string
	names  []string // full names, in file order
	ema    EMA
}

var emaWord = regexp.MustCompile(`(^|[^a-z])ema([^a-z]|$)`)

// weightSets splits the names of a file into weight sets. A name belongs to
// the longest prefix it starts with.
func weightSets(names []string) []*weightSet {
	var prefixes []string
	for _, n := range names {
		if p, ok := strings.CutSuffix(n, "conv_in.weight"); ok && (p == "" || strings.HasSuffix(p, ".") || strings.HasSuffix(p, "_")) {
			prefixes = append(prefixes, p)
		}
	}
	byLen := append([]string(nil), prefixes...)
	sort.SliceStable(byLen, func(i, j int) bool { return len(byLen[i]) > len(byLen[j]) })
	sets := map[string]*weightSet{}
	var order []*weightSet
	for _, p := range prefixes {
		if sets[p] == nil {
			sets[p] = &weightSet{prefix: p}
			order = append(order, sets[p])
		}
	}
	for _, n := range names {
		for _, p := range byLen {
			if strings.HasPrefix(n, p) {
				sets[p].names = append(sets[p].names, n)
				break
			}
		}
	}
	anyEMA := false
	for _, s := range order {
		if emaWord.MatchString(strings.ToLower(s.prefix)) {
			s.ema, anyEMA = EMAWeights, true
		}
	}
	if anyEMA {
		for _, s := range order {
			if s.ema == EMAUnknown {
				s.ema = RawWeights
			}
		}
	}
	return order
}

// choose picks the weight set Options ask for, and says why in words.
func choose(sets []*weightSet, opt Options) (*weightSet, string, []string) {
	var pick *weightSet
	for _, s := range sets {
		if (opt.Raw && s.ema != EMAWeights) || (!opt.Raw && s.ema == EMAWeights) {
			pick = s
			break
		}
	}
	if pick == nil {
		pick = sets[0]
	}
	var why string
	var warn []string
	label := func(s *weightSet) string {
		if s.prefix == "" {
			return "the plain keys"
		}
		return fmt.Sprintf("%q", strings.TrimRight(s.prefix, "._"))
	}
	if pick.ema != EMAUnknown {
		other, otherEMA := "raw", RawWeights
		if pick.ema == RawWeights {
			other, otherEMA = "EMA", EMAWeights
		}
		why = fmt.Sprintf("under %s", label(pick))
		if countEMA(sets, otherEMA) > 0 {
			why += fmt.Sprintf("; the file also holds %s weights", other)
		}
	}
	if len(sets) > 1 {
		var all []string
		for _, s := range sets {
			all = append(all, label(s))
		}
		if pick.ema == EMAUnknown || countEMA(sets, pick.ema) > 1 {
			warn = append(warn, fmt.Sprintf("the file holds %d sets of weights (%s); took %s", len(sets), strings.Join(all, ", "), label(pick)))
		}
	}
	return pick, why, warn
}

func countEMA(sets []*weightSet, e EMA) int {
	n := 0
	for _, s := range sets {
		if s.ema == e {
			n++
		}
	}
	return n
}

// open reads path into a Model.
func open(path string, opt Options) (*Model, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return openFolder(path, opt)
	}
	// A weights file inside a diffusers unet folder takes that folder's config.
	dir := filepath.Dir(path)
	if isUNetFolder(dir) {
		return openFolder(dir, opt, path)
	}
	src, err := openFile(path)
	if err != nil {
		return nil, err
	}
	defer src.close()
	return build(src, path, nil, opt)
}

// build turns the tensors of src into a Model: chooses a weight set, maps
// diffusers names, finds the architecture (from cfgJSON when given, else
// from the shapes), checks every shape and reads the data.
func build(src *source, path string, folder *folderInfo, opt Options) (*Model, error) {
	names := make([]string, len(src.tensors))
	byName := make(map[string]*namedTensor, len(src.tensors))
	for i := range src.tensors {
		names[i] = src.tensors[i].name
		byName[names[i]] = &src.tensors[i]
	}
	sets := weightSets(names)
	if len(sets) == 0 {
		return nil, fmt.Errorf("no U-Net weights in the %s (no tensor named conv_in.weight among %d tensors)", src.format, len(names))
	}
	set, why, warn := choose(sets, opt)
	m := &Model{Source: path, Format: src.format, EMA: set.ema, EMAWhy: why, Warnings: warn}
	hint := datasetHint(path)
	m.Dataset = hint
	local := make([]string, len(set.names))
	for i, n := range set.names {
		local[i] = n[len(set.prefix):]
	}
	// Diffusers names become interchange names.
	diffusers := false
	for _, n := range local {
		if strings.HasPrefix(n, "time_embedding.") || strings.HasPrefix(n, "down_blocks.") {
			diffusers = true
			break
		}
	}
	var cfg compute.Config
	if folder != nil && folder.config != nil {
		var w []string
		var err error
		if cfg, w, err = configFromDiffusers(folder.config); err != nil {
			return nil, err
		}
		m.Warnings = append(m.Warnings, w...)
		if n := numParams(cfg); n > maxParams {
			return nil, fmt.Errorf("config.json describes a model of %d parameters; DDPM Studio reads at most %d", n, maxParams)
		}
	}
	type entry struct {
		full    string
		reshape bool // a diffusers linear weight [C, C] that is a 1×1 convolution here
	}
	entries := make(map[string]entry, len(local))
	shapes := make(map[string][]int, len(local))
	levels := len(cfg.ChMult) // the config's levels index the up path, else the names'
	if levels == 0 {
		levels = diffusersLevels(local)
	}
	for i, n := range local {
		port, reshape := n, false
		if diffusers {
			var err error
			if port, reshape, err = fromDiffusers(n, levels); err != nil {
				return nil, err
			}
		}
		if prev, dup := entries[port]; dup {
			return nil, fmt.Errorf("tensors %s and %s are the same parameter", prev.full, set.names[i])
		}
		entries[port] = entry{set.names[i], reshape}
		s, err := src.shape(set.names[i], byName)
		if err != nil {
			return nil, err
		}
		if reshape && len(s) == 2 {
			s = []int{s[0], s[1], 1, 1}
		}
		shapes[port] = s
	}
	// The architecture, from the shapes when no config gave it.
	if len(cfg.ChMult) == 0 {
		var w []string
		var err error
		if cfg, w, err = inferConfig(shapes, opt.Resolution, hint); err != nil {
			return nil, err
		}
		m.Warnings = append(m.Warnings, w...)
	}
	fileName := func(port string) string {
		if e, ok := entries[port]; ok {
			return e.full
		}
		if !diffusers {
			return set.prefix + port
		}
		d, _, err := toDiffusers(port, len(cfg.ChMult), false)
		if err != nil {
			return port
		}
		return set.prefix + d
	}
	if err := checkShapes(cfg, shapes, fileName); err != nil {
		return nil, err
	}
	m.Preset = matchPreset(cfg, hint)
	if cfg.Dropout < 0 { // a diffusers config without dropout
		cfg.Dropout = 0.1
		if m.Preset != "" {
			p, _ := compute.PresetConfig(m.Preset)
			cfg.Dropout = p.Dropout
		}
	}
	m.Config = cfg
	if m.Dataset == "" {
		m.Dataset = presetDataset[m.Preset]
	}
	// The schedule.
	if folder != nil && folder.scheduler != nil {
		s, w, err := scheduleFromDiffusers(folder.scheduler)
		if err != nil {
			return nil, err
		}
		m.Schedule = s
		m.Warnings = append(m.Warnings, w...)
	} else {
		m.Schedule = PaperSchedule(cfg.Resolution)
	}
	// EMA from the file's own record, else from its name.
	if m.EMA == EMAUnknown {
		switch src.meta[metaWeights] {
		case "ema":
			m.EMA, m.EMAWhy = EMAWeights, "recorded in the file"
		case "raw":
			m.EMA, m.EMAWhy = RawWeights, "recorded in the file"
		default:
			if emaWord.MatchString(strings.ToLower(path)) {
				m.EMA, m.EMAWhy = EMAWeights, "by its name"
			}
		}
	}
	// The data. Each tensor has storage of its own in a real checkpoint, so the
	// float32 copies take at most twice the file (from float16); more means
	// tensors that share storage to claim more memory than the file holds.
	if need := 4 * numParams(cfg); need > 2*src.size+1<<20 {
		return nil, fmt.Errorf("the tensors need %d bytes as float32 but the file has only %d (storages shared between tensors?)", need, src.size)
	}
	m.Tensors = make(map[string][]float32, len(entries))
	for _, p := range spec(cfg) {
		e := entries[p.name]
		t, err := src.tensor(e.full, byName)
		if err != nil {
			return nil, err
		}
		dst := make([]float32, t.numel())
		if err := t.read(dst); err != nil {
			return nil, err
		}
		m.Tensors[p.name] = dst
	}
	return m, nil
}

// shape is a tensor's shape, without reading it.
func (s *source) shape(name string, byName map[string]*namedTensor) ([]int, error) {
	if meta, ok := s.pending[name]; ok {
		out := make([]int, len(meta.shape))
		for i, d := range meta.shape {
			out[i] = int(d)
		}
		return out, nil
	}
	return byName[name].t.shape, nil
}

// tensor returns a tensor ready to read.
func (s *source) tensor(name string, byName map[string]*namedTensor) (*tensor, error) {
	nt := byName[name]
	if nt.t == nil {
		t, err := readStorage(name, s.pending[name])
		if err != nil {
			return nil, err
		}
		nt.t = t
	}
	return nt.t, nil
}
