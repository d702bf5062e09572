package weights

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ddpm-studio/ddpm-studio/compute"
)

// Damaged and hostile files: each gives an error that says what is wrong,
// never a panic, a hang or a huge allocation (the fuzz tests look further).

type zipEntry struct {
	name   string
	data   []byte
	method uint16
	size   uint64 // declared uncompressed size, if not len(data)
}

// makeZip builds a zip of raw entries (sizes as given, so they may lie).
func makeZip(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		if e.method == zip.Deflate {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(e.data)
			continue
		}
		size := uint64(len(e.data))
		if e.size != 0 {
			size = e.size
		}
		w, err := zw.CreateRaw(&zip.FileHeader{Name: e.name, Method: zip.Store, CompressedSize64: uint64(len(e.data)), UncompressedSize64: size})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tinyCkpt is a valid checkpoint of the tiny preset, written by WriteTorch.
func tinyCkpt(t *testing.T) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.ckpt")
	if err := WriteTorch(p, randomModel(preset(t, "tiny"), 1)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openBytes writes b to a file and opens it.
func openBytes(t *testing.T, name string, b []byte) (*Model, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Open(p)
}

// mustFail opens b and fails unless the error mentions every one of want.
func mustFail(t *testing.T, what string, b []byte, want ...string) {
	t.Helper()
	start := time.Now()
	m, err := openBytes(t, "x.ckpt", b)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: took %v", what, d)
	}
	if err == nil {
		t.Errorf("%s: opened as %s", what, m.Describe())
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not mention %q", what, err, w)
		}
	}
}

// pickleOf is a protocol-2 pickle of a dict of one tensor with the given
// persistent id fields and view.
func pickleOf(storageType, key string, numel int, offset int, shape, stride []int) []byte {
	var p []byte
	str := func(s string) {
		p = append(p, 'X')
		p = binary.LittleEndian.AppendUint32(p, uint32(len(s)))
		p = append(p, s...)
	}
	num := func(n int) {
		p = append(p, 0x8a, 8)
		p = binary.LittleEndian.AppendUint64(p, uint64(n))
	}
	p = append(p, 0x80, 2, '}', '(')
	str("conv_in.weight")
	p = append(p, "ctorch._utils\n_rebuild_tensor_v2\n(("...)
	str("storage")
	p = append(p, "ctorch\n"+storageType+"\n"...)
	str(key)
	str("cpu")
	num(numel)
	p = append(p, 't', 'Q')
	num(offset)
	p = append(p, '(')
	for _, d := range shape {
		num(d)
	}
	p = append(p, 't', '(')
	for _, d := range stride {
		num(d)
	}
	p = append(p, 't', 0x89, '}', 't', 'R', 'u', '.')
	return p
}

func TestHostileTorchZip(t *testing.T) {
	valid := tinyCkpt(t)
	if _, err := openBytes(t, "ok.ckpt", valid); err != nil {
		t.Fatalf("the valid checkpoint: %v", err)
	}
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 3, 100, 1000, len(valid) / 3, len(valid) / 2, len(valid) - 23, len(valid) - 1} {
			mustFail(t, "truncated", valid[:n])
		}
	})
	t.Run("damaged data", func(t *testing.T) {
		b := bytes.Clone(valid)
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if f.Name == "archive/data/3" {
				off, _ := f.DataOffset()
				b[off+5] ^= 0x40
			}
		}
		mustFail(t, "a flipped bit", b, "archive/data/3", "CRC-32")
	})
	t.Run("no pickle", func(t *testing.T) {
		mustFail(t, "no data.pkl", makeZip(t, zipEntry{name: "archive/version", data: []byte("3\n")}), "data.pkl")
	})
	t.Run("TorchScript", func(t *testing.T) {
		mustFail(t, "TorchScript", makeZip(t, zipEntry{name: "m/data.pkl", data: []byte{0x80, 2, '}', '.'}},
			zipEntry{name: "m/constants.pkl", data: []byte{0x80, 2, ')', '.'}}), "TorchScript")
	})
	t.Run("os.system", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		cmd := "touch " + marker
		p := append([]byte("\x80\x02cos\nsystem\nX"), binary.LittleEndian.AppendUint32(nil, uint32(len(cmd)))...)
		p = append(append(p, cmd...), 0x85, 'R', '.')
		mustFail(t, "GLOBAL os.system", makeZip(t, zipEntry{name: "a/data.pkl", data: p}), "os.system", "never runs code")
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("the pickle ran its command")
		}
		// The same through STACK_GLOBAL, and a whole pickled module object.
		p2 := []byte("\x80\x04\x8c\x08builtins\x8c\x04eval\x93.")
		mustFail(t, "STACK_GLOBAL builtins.eval", makeZip(t, zipEntry{name: "a/data.pkl", data: p2}), "builtins.eval")
		p3 := []byte("\x80\x02cpytorch_diffusion.model\nModel\n)\x81.")
		mustFail(t, "a pickled nn.Module", makeZip(t, zipEntry{name: "a/data.pkl", data: p3}), "pytorch_diffusion.model.Model", "state_dict")
	})
	t.Run("absurd storage", func(t *testing.T) {
		rec := zipEntry{name: "a/data/0", data: make([]byte, 16)}
		mustFail(t, "storage of 2^30 floats in a 16-byte record",
			makeZip(t, zipEntry{name: "a/data.pkl", data: pickleOf("FloatStorage", "0", 1<<30, 0, []int{1 << 15, 1 << 15}, []int{1 << 15, 1})}, rec),
			"a/data/0", "needs")
		mustFail(t, "storage of 2^62 floats",
			makeZip(t, zipEntry{name: "a/data.pkl", data: pickleOf("FloatStorage", "0", 1<<62, 0, []int{4}, []int{1})}, rec), "storage id")
		mustFail(t, "storage key with a path", makeZip(t, zipEntry{name: "a/data.pkl", data: pickleOf("FloatStorage", "../../etc/passwd", 4, 0, []int{4}, []int{1})}, rec), "storage id")
		mustFail(t, "storage type torch.Tensor", makeZip(t, zipEntry{name: "a/data.pkl", data: pickleOf("Tensor", "0", 4, 0, []int{4}, []int{1})}, rec), "torch.Tensor")
	})
	t.Run("absurd views", func(t *testing.T) {
		rec := zipEntry{name: "a/data/0", data: make([]byte, 16)}
		for _, c := range []struct {
			what          string
			off           int
			shape, stride []int
			want          string
		}{
			{"offset past the end", 3, []int{4}, []int{1}, "needs 7 elements"},
			{"huge offset", 1 << 62, []int{4}, []int{1}, "needs"},
			{"huge stride", 0, []int{1 << 31, 2}, []int{1 << 40, 1}, "overflows"},
			{"stride past the end", 0, []int{2, 2}, []int{100, 1}, "needs 102 elements"},
			{"negative stride", 0, []int{2, 2}, []int{-1, 1}, "negative"},
			{"negative size", 0, []int{-4}, []int{1}, "impossible dimension"},
			{"size overflow", 0, []int{1 << 31, 1 << 31, 1 << 31}, []int{0, 0, 0}, "more than"},
			{"sizes and strides", 0, []int{4}, []int{1, 1}, "differ in length"},
		} {
			mustFail(t, c.what, makeZip(t, zipEntry{name: "a/data.pkl", data: pickleOf("FloatStorage", "0", 4, c.off, c.shape, c.stride)}, rec), c.want)
		}
	})
	t.Run("zip bomb", func(t *testing.T) {
		// data.pkl declared as 1 TiB, and a storage record declared as 1 TiB that holds 16 bytes.
		mustFail(t, "1 TiB data.pkl", makeZip(t, zipEntry{name: "a/data.pkl", data: []byte{0x80, 2, '}', '.'}, size: 1 << 40}), "more than")
		ok := pickleOf("FloatStorage", "0", 1<<30, 0, []int{32, 3, 3, 3}, []int{27, 9, 3, 1})
		mustFail(t, "1 TiB storage record", makeZip(t, zipEntry{name: "a/data.pkl", data: ok}, zipEntry{name: "a/data/0", data: make([]byte, 16), size: 1 << 40}), "past the end")
		// A deflated storage record (torch never compresses; a bomb would).
		small := pickleOf("FloatStorage", "0", 250, 0, []int{250}, []int{1})
		mustFail(t, "deflated record", makeZip(t, zipEntry{name: "a/data.pkl", data: small}, zipEntry{name: "a/data/0", data: make([]byte, 1000), method: zip.Deflate}), "compressed")
	})
}

// TestShapeMismatchNamesTensor: a checkpoint whose tensors do not fit the
// architecture they describe is refused, naming the tensor.
func TestShapeMismatchNamesTensor(t *testing.T) {
	m := randomModel(preset(t, "tiny"), 2)
	tensors := func(edit func(name string, shape []int) (string, []int)) []namedData {
		var out []namedData
		for _, p := range spec(m.Config) {
			name, shape := edit(p.name, p.shape)
			if name == "" {
				continue
			}
			n := 1
			for _, d := range shape {
				n *= d
			}
			out = append(out, namedData{name, shape, make([]float32, n)})
		}
		return out
	}
	write := func(ts []namedData) []byte {
		var buf bytes.Buffer
		if err := writeTorchZip(&buf, ts); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	mustFail(t, "transposed", write(tensors(func(n string, s []int) (string, []int) {
		if n == "mid.attn_1.q.weight" {
			return n, []int{s[0], s[1], 1, 2}
		}
		return n, s
	})), "mid.attn_1.q.weight has shape [64 64 1 2], the model needs [64 64 1 1]")
	mustFail(t, "missing", write(tensors(func(n string, s []int) (string, []int) {
		if n == "up.1.attn.1.proj_out.bias" {
			return "", nil
		}
		return n, s
	})), "missing up.1.attn.1.proj_out.bias")
	mustFail(t, "extra", write(append(tensors(func(n string, s []int) (string, []int) { return n, s }), namedData{"mid.extra.weight", []int{1}, []float32{0}})),
		"not part of the model: mid.extra.weight")
	mustFail(t, "ch_mult that does not divide", write(tensors(func(n string, s []int) (string, []int) {
		if n == "down.1.block.0.conv1.weight" {
			return n, []int{48, s[1], 3, 3}
		}
		return n, s
	})), "down.1.block.0.conv1.weight", "not a multiple of ch 32")
	// A model too large to read is refused from its shapes, before any data is read.
	huge := shapesOf(preset(t, "cifar10"))
	for n, s := range huge {
		for i := range s {
			if s[i] > 16 {
				s[i] *= 64
			}
		}
		huge[n] = s
	}
	if _, _, err := inferConfig(huge, 0, ""); err == nil || !strings.Contains(err.Error(), "parameters") {
		t.Errorf("a 64× wider CIFAR-10 model: %v", err)
	}
	mustFail(t, "not a U-Net", write([]namedData{{"fc.weight", []int{2, 2}, make([]float32, 4)}}), "no tensor named conv_in.weight")
	mustFail(t, "ints as weights", func() []byte {
		ts := tensors(func(n string, s []int) (string, []int) { return n, s })
		entries := []zipEntry{{name: "a/data.pkl", data: bytes.Replace(statePickle(ts), []byte("torch\nFloatStorage\n"), []byte("torch\nIntStorage\n"), 1)}}
		for i, x := range ts {
			entries = append(entries, zipEntry{name: "a/data/" + strconv.Itoa(i), data: f32Bytes(x.data)})
		}
		return makeZip(t, entries...)
	}(), "temb.dense.0.weight holds int32 values")
}

// TestSharedStorage: tensors that all view one storage cannot make the reader
// allocate more than the file holds.
func TestSharedStorage(t *testing.T) {
	ps := spec(preset(t, "tiny"))
	largest := 0
	for _, p := range ps {
		n := 1
		for _, d := range p.shape {
			n *= d
		}
		largest = max(largest, n)
	}
	var p []byte
	str := func(s string) {
		p = append(p, 'X')
		p = binary.LittleEndian.AppendUint32(p, uint32(len(s)))
		p = append(p, s...)
	}
	tuple := func(xs []int) {
		p = append(p, '(')
		for _, x := range xs {
			p = append(p, 'J')
			p = binary.LittleEndian.AppendUint32(p, uint32(x))
		}
		p = append(p, 't')
	}
	p = append(p, 0x80, 2, '}', '(')
	for _, q := range ps {
		str(q.name)
		p = append(p, "ctorch._utils\n_rebuild_tensor_v2\n(("...)
		str("storage")
		p = append(p, "ctorch\nFloatStorage\n"...)
		str("0")
		str("cpu")
		p = append(p, 'J')
		p = binary.LittleEndian.AppendUint32(p, uint32(largest))
		p = append(p, 't', 'Q', 'K', 0)
		tuple(q.shape)
		stride := make([]int, len(q.shape))
		s := 1
		for k := len(q.shape) - 1; k >= 0; k-- {
			stride[k] = s
			s *= q.shape[k]
		}
		tuple(stride)
		p = append(p, 0x89, '}', 't', 'R')
	}
	p = append(p, 'u', '.')
	mustFail(t, "one storage for every tensor", makeZip(t, zipEntry{name: "a/data.pkl", data: p}, zipEntry{name: "a/data/0", data: make([]byte, 4*largest)}),
		"storages shared")
}

// legacyFile is a checkpoint torch 1.13 wrote with _use_new_zipfile_serialization=False
// (testdata/torch/small-legacy.pt: a.weight float32 [2,3] = 0..5, b float64 [1.5, −2], h float16 [0.25, 65504]).
func legacyFile(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "torch", "small-legacy.pt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll reads every tensor of a checkpoint as float32.
func readAll(t *testing.T, b []byte) (map[string][]float32, error) {
	t.Helper()
	src, err := openReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	out := map[string][]float32{}
	byName := map[string]*namedTensor{}
	for i := range src.tensors {
		byName[src.tensors[i].name] = &src.tensors[i]
	}
	for _, nt := range src.tensors {
		tt, err := src.tensor(nt.name, byName)
		if err != nil {
			return nil, err
		}
		dst := make([]float32, tt.numel())
		if err := tt.read(dst); err != nil {
			return nil, err
		}
		out[nt.name] = dst
	}
	return out, nil
}

// TestSmallCheckpoints: torch's own small files read to torch's values, in both formats.
func TestSmallCheckpoints(t *testing.T) {
	for _, f := range []string{"small-legacy.pt", "small-zip.pt"} {
		b, err := os.ReadFile(filepath.Join("testdata", "torch", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want := map[string][]float32{"a.weight": {0, 1, 2, 3, 4, 5}, "b": {1.5, -2}, "h": {0.25, 65504}}
		for k, w := range want {
			if !slicesEqual(got[k], w) {
				t.Errorf("%s: %s = %v, want %v", f, k, got[k], w)
			}
		}
	}
}

func slicesEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestHostileLegacy(t *testing.T) {
	valid := legacyFile(t)
	for n := 0; n < len(valid); n += 13 {
		if _, err := readAll(t, valid[:n]); err == nil {
			t.Errorf("truncated at %d of %d bytes: read", n, len(valid))
		}
	}
	edit := func(old, new string) []byte {
		if len(old) != len(new) || !bytes.Contains(valid, []byte(old)) {
			t.Fatalf("edit %q → %q", old, new)
		}
		return bytes.Replace(valid, []byte(old), []byte(new), 1)
	}
	for _, c := range []struct {
		what string
		b    []byte
		want string
	}{
		{"protocol version", edit("\x4d\xe9\x03\x2e", "\x4d\xe8\x03\x2e"), "protocol 1000"},
		{"big-endian", edit("little_endianq\x02\x88", "little_endianq\x02\x89"), "big-endian"},
		{"element count", func() []byte {
			b := bytes.Clone(valid)
			// The first storage's int64 element count follows the storage key list.
			i := bytes.LastIndex(b, []byte("e.")) + 2
			b[i] = 99
			return b
		}(), "elements in the file"},
		{"a view", edit("K\x06Ntq", "K\x06\x89tq"), "a view"},
	} {
		if _, err := readAll(t, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.what, err, c.want)
		}
	}
	// The tar format of torch < 0.4.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "sys_info", Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	mustFail(t, "tar", tb.Bytes(), "tar format")
	mustFail(t, "empty", nil, "empty")
	mustFail(t, "text", []byte("hello, world, this is not a model"), "not a PyTorch checkpoint", "hello, w")
}

func TestHostileSafetensors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ok.safetensors")
	m := randomModel(preset(t, "tiny"), 4)
	u, err := m.UNet()
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]float32, len(u.Params))
	for i, q := range u.Params {
		data[i] = q.Data
	}
	if err := compute.SaveWeights(p, u, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	valid, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openBytes(t, "ok.safetensors", valid); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{9, 100, len(valid) / 2, len(valid) - 1} {
		mustFail(t, "truncated safetensors", valid[:n])
	}
	hdr := func(json string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(json)))
		return append(append(b, json...), make([]byte, 16)...)
	}
	mustFail(t, "offsets past the end", hdr(`{"conv_in.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,1600]}}`), "safetensors")
	mustFail(t, "huge shape", hdr(`{"conv_in.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}`), "safetensors")
	b := binary.LittleEndian.AppendUint64(nil, 1<<50)
	mustFail(t, "header longer than the file", append(b, '{', '}'), "not a PyTorch checkpoint")
}

// TestHostileDiffusersConfig: settings DDPM Studio's U-Net does not compute are named.
func TestHostileDiffusersConfig(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("testdata", "google-ddpm-cifar10-32", "unet", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := configFromDiffusers(base); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, want string }{
		{`"freq_shift": 1`, `"freq_shift": 0`, "freq_shift"},
		{`"flip_sin_to_cos": false`, `"flip_sin_to_cos": true`, "flip_sin_to_cos"},
		{`"downsample_padding": 0`, `"downsample_padding": 1`, "downsample_padding"},
		{`"attention_head_dim": null`, `"attention_head_dim": 8`, "attention_head_dim"},
		{`"norm_eps": 1e-06`, `"norm_eps": 1e-05`, "norm_eps"},
		{`"norm_num_groups": 32`, `"norm_num_groups": 16`, "norm_num_groups"},
		{`"act_fn": "silu"`, `"act_fn": "gelu"`, "act_fn"},
		{`"center_input_sample": false`, `"center_input_sample": true`, "center_input_sample"},
		{`"UNet2DModel"`, `"VQModel"`, "VQModel"},
		{`"AttnUpBlock2D"`, `"UpBlock2D"`, "attention at the same levels"},
		{`"DownBlock2D",`, `"SkipDownBlock2D",`, "down_block_types"},
		{`"block_out_channels": [`, `"block_out_channels": [100, `, "block_out_channels"},
		{`{`, `[`, "config.json"},
	} {
		if !strings.Contains(string(base), c.old) {
			t.Fatalf("config has no %s", c.old)
		}
		_, _, err := configFromDiffusers([]byte(strings.Replace(string(base), c.old, c.new, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: %v, want an error about %s", c.old, c.new, err, c.want)
		}
	}
	// attention_head_dim equal to the channels is one head; a missing key is read as one head, with a warning.
	if _, _, err := configFromDiffusers([]byte(strings.Replace(string(base), `"attention_head_dim": null`, `"attention_head_dim": 256`, 1))); err != nil {
		t.Errorf("attention_head_dim 256: %v", err)
	}
	if _, w, err := configFromDiffusers([]byte(strings.Replace(string(base), `"attention_head_dim": null,`, ``, 1))); err != nil || len(w) != 1 {
		t.Errorf("no attention_head_dim: %v %q", err, w)
	}
	// Folders without their parts.
	dir := t.TempDir()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a diffusers folder") {
		t.Errorf("empty folder: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "unet"), 0o755)
	os.WriteFile(filepath.Join(dir, "unet", "config.json"), base, 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "diffusion_pytorch_model.safetensors") {
		t.Errorf("no weights: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "unet", "diffusion_pytorch_model.safetensors.index.json"), []byte("{}"), 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "sharded") {
		t.Errorf("sharded: %v", err)
	}
}
