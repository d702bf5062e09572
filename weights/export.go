package weights

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/nlpodyssey/safetensors"

	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
)

// ordered lists the model's tensors in the order of the PyTorch port's
// state_dict (each level's blocks, then its attention, then its resampling;
// the up path by level), checking that every parameter is there.
func (m *Model) ordered() ([]param, error) {
	if err := m.Config.Validate(); err != nil {
		return nil, err
	}
	ps := spec(m.Config)
	for _, p := range ps {
		n := 1
		for _, d := range p.shape {
			n *= d
		}
		if t, ok := m.Tensors[p.name]; !ok || len(t) != n {
			return nil, fmt.Errorf("model has no tensor %s of %d values", p.name, n)
		}
	}
	if len(m.Tensors) != len(ps) {
		return nil, fmt.Errorf("model has %d tensors, its configuration %d", len(m.Tensors), len(ps))
	}
	sort.SliceStable(ps, func(i, j int) bool { return portRank(ps[i].name).less(portRank(ps[j].name)) })
	return ps, nil
}

type rank [4]int

func (a rank) less(b rank) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

var levelRe = regexp.MustCompile(`^(down|up)\.(\d+)\.(block|attn|downsample|upsample)(?:\.(\d+))?\.`)

// portRank orders names as the port's modules register them.
func portRank(name string) rank {
	switch {
	case len(name) > 5 && name[:5] == "temb.":
		return rank{0}
	case len(name) > 8 && name[:8] == "conv_in.":
		return rank{1}
	case len(name) > 4 && name[:4] == "mid.":
		return rank{3}
	case len(name) > 9 && name[:9] == "norm_out.":
		return rank{5}
	case len(name) > 9 && name[:9] == "conv_out.":
		return rank{6}
	}
	m := levelRe.FindStringSubmatch(name)
	if m == nil {
		return rank{7}
	}
	sec := 2
	if m[1] == "up" {
		sec = 4
	}
	lvl, _ := strconv.Atoi(m[2])
	kind := map[string]int{"block": 0, "attn": 1, "downsample": 2, "upsample": 2}[m[3]]
	j, _ := strconv.Atoi(m[4])
	return rank{sec, lvl, kind, j}
}

// WriteTorch writes the model as a PyTorch checkpoint: the state_dict of the
// port's Model (pesser/pytorch_diffusion), float32, in the zip format of
// torch ≥ 1.6, with a pickle that uses only OrderedDict,
// torch._utils._rebuild_tensor_v2 and torch.FloatStorage, so that
// torch.load(path, weights_only=True) reads it and
// Model.load_state_dict(…, strict=True) takes it. The file is written atomically.
func WriteTorch(path string, m *Model) error {
	ps, err := m.ordered()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tensors := make([]namedData, len(ps))
	for i, p := range ps {
		tensors[i] = namedData{p.name, p.shape, m.Tensors[p.name]}
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		return writeTorchZip(w, tensors)
	})
}

type namedData struct {
	name  string
	shape []int
	data  []float32
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeTorchZip writes a torch ≥ 1.6 checkpoint of a state dict, as torch.save
// lays it out: archive/data.pkl, archive/byteorder, archive/data/KEY (stored,
// each starting on a 64-byte boundary, as torch aligns them), archive/version.
func writeTorchZip(w io.Writer, tensors []namedData) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	zw := zip.NewWriter(cw)
	record := func(name string, data []byte) error {
		if err := zw.Flush(); err != nil {
			return err
		}
		const align = 64
		pad := (align - int(cw.n+30+int64(len(name))+4)%align) % align
		extra := make([]byte, 4+pad) // a padding field as torch writes it: id "FB", length, 'Z'…
		copy(extra, "FB")
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		for i := 4; i < len(extra); i++ {
			extra[i] = 'Z'
		}
		fw, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, CRC32: crc32.ChecksumIEEE(data),
			CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data)), Extra: extra})
		if err != nil {
			return err
		}
		_, err = fw.Write(data)
		return err
	}
	const dir = "archive/"
	if err := record(dir+"data.pkl", statePickle(tensors)); err != nil {
		return err
	}
	if err := record(dir+"byteorder", []byte("little")); err != nil {
		return err
	}
	for i, t := range tensors {
		if err := record(dir+"data/"+strconv.Itoa(i), f32Bytes(t.data)); err != nil {
			return err
		}
	}
	if err := record(dir+"version", []byte("3\n")); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// statePickle is the protocol-2 pickle torch.save writes for an OrderedDict
// of float32 tensors whose storages are the records data/0, data/1, ….
func statePickle(tensors []namedData) []byte {
	var p []byte
	str := func(s string) {
		p = append(p, 'X')
		p = binary.LittleEndian.AppendUint32(p, uint32(len(s)))
		p = append(p, s...)
	}
	num := func(n int) {
		switch {
		case n >= 0 && n < 1<<8:
			p = append(p, 'K', byte(n))
		case n >= 0 && n < 1<<16:
			p = append(p, 'M')
			p = binary.LittleEndian.AppendUint16(p, uint16(n))
		case n >= -1<<31 && n < 1<<31:
			p = append(p, 'J')
			p = binary.LittleEndian.AppendUint32(p, uint32(int32(n)))
		default:
			p = append(p, 0x8a, 8)
			p = binary.LittleEndian.AppendUint64(p, uint64(n))
		}
	}
	tuple := func(xs []int) {
		p = append(p, '(')
		for _, x := range xs {
			num(x)
		}
		p = append(p, 't')
	}
	orderedDict := func() { p = append(p, "ccollections\nOrderedDict\n)R"...) }
	p = append(p, 0x80, 2)
	orderedDict()
	p = append(p, '(')
	for i, t := range tensors {
		str(t.name)
		p = append(p, "ctorch._utils\n_rebuild_tensor_v2\n("...)
		// persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
		p = append(p, '(')
		str("storage")
		p = append(p, "ctorch\nFloatStorage\n"...)
		str(strconv.Itoa(i))
		str("cpu")
		num(len(t.data))
		p = append(p, 't', 'Q')
		num(0) // storage offset
		tuple(t.shape)
		stride := make([]int, len(t.shape))
		s := 1
		for k := len(t.shape) - 1; k >= 0; k-- {
			stride[k] = s
			s *= t.shape[k]
		}
		tuple(stride)
		p = append(p, 0x89) // requires_grad False
		orderedDict()       // backward hooks
		p = append(p, 't', 'R')
	}
	p = append(p, 'u', '.')
	return p
}

// WriteDiffusers writes the model as a diffusers DDPMPipeline folder that
// DDPMPipeline.from_pretrained(dir) loads: model_index.json, unet/config.json,
// unet/diffusion_pytorch_model.safetensors (current diffusers names) and
// scheduler/scheduler_config.json (the model's schedule). The folder is
// filled under a temporary name and renamed, so it exists whole or not at
// all; an existing folder that is not empty is not replaced.
func WriteDiffusers(dir string, m *Model) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", dir, err)
		}
	}()
	ps, err := m.ordered()
	if err != nil {
		return err
	}
	sched, err := schedulerJSON(m.Schedule)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("the folder exists and is not empty")
	}
	L := len(m.Config.ChMult)
	views := make(map[string]f32view, len(ps))
	for _, p := range ps {
		name, linear, err := toDiffusers(p.name, L, false)
		if err != nil {
			return err
		}
		shape := p.shape
		if linear && len(shape) == 4 {
			shape = shape[:2]
		}
		views[name] = f32view{shape, m.Tensors[p.name]}
	}
	meta := map[string]string{"format": "pt"}
	switch m.EMA {
	case EMAWeights:
		meta[metaWeights] = "ema"
	case RawWeights:
		meta[metaWeights] = "raw"
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left
	index := map[string]any{
		"_class_name":        "DDPMPipeline",
		"_diffusers_version": diffusersVersion,
		"scheduler":          []string{"diffusers", "DDPMScheduler"},
		"unet":               []string{"diffusers", "UNet2DModel"},
	}
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{
		{modelIndexFile, jsonWriter(index)},
		{filepath.Join("unet", unetConfigFile), jsonWriter(diffusersConfig(m.Config))},
		{filepath.Join("scheduler", schedulerFile), jsonWriter(sched)},
		{filepath.Join("unet", weightsBase+".safetensors"), func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 1<<20)
			if err := safetensors.SerializeToWriter(views, meta, bw); err != nil {
				return err
			}
			return bw.Flush()
		}},
	} {
		if err := writeSynced(filepath.Join(tmp, f.path), f.write); err != nil {
			return err
		}
	}
	for _, d := range []string{"unet", "scheduler", "."} {
		if err := atomicfile.SyncDir(filepath.Join(tmp, d)); err != nil {
			return err
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) { // an empty folder is replaced
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return atomicfile.SyncDir(parent)
}

func jsonWriter(v any) func(io.Writer) error {
	return func(w io.Writer) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
}

// writeSynced creates path (and its folder) and syncs it to disk.
func writeSynced(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// f32view lets float32 data be written as a safetensors F32 tensor.
type f32view struct {
	shape []int
	data  []float32
}

func (v f32view) DType() safetensors.DType { return safetensors.F32 }
func (v f32view) Shape() []uint64 {
	s := make([]uint64, len(v.shape))
	for i, d := range v.shape {
		s[i] = uint64(d)
	}
	return s
}
func (v f32view) DataLen() uint64 { return uint64(4 * len(v.data)) }
func (v f32view) Data() []byte    { return f32Bytes(v.data) }
