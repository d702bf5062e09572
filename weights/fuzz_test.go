package weights

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds are small valid files of each format: torch's own (zip and
// legacy), ours, and a safetensors file.
func fuzzSeeds(f *testing.F) {
	for _, name := range []string{"small-legacy.pt", "small-zip.pt"} {
		b, err := os.ReadFile(filepath.Join("testdata", "torch", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var buf bytes.Buffer
	ts := []namedData{{"conv_in.weight", []int{2, 1, 1, 1}, []float32{1, 2}}, {"ema_conv_in.weight", []int{2}, []float32{3, 4}}}
	if err := writeTorchZip(&buf, ts); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("\x2d\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\x00\x00\x80\x3f"))
}

// FuzzOpen: any bytes give a model or an error; never a panic, a hang or an
// allocation beyond the bounds (each read tensor is at most 2^20 values here).
func FuzzOpen(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := openReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		byName := map[string]*namedTensor{}
		for i := range src.tensors {
			byName[src.tensors[i].name] = &src.tensors[i]
		}
		for _, nt := range src.tensors {
			tt, err := src.tensor(nt.name, byName)
			if err != nil || tt.numel() > 1<<20 {
				continue
			}
			tt.read(make([]float32, tt.numel()))
		}
		build(src, "fuzz.ckpt", nil, Options{})
	})
}

// FuzzUnpickle: the restricted unpickler on any bytes, with storages resolved as the zip reader does.
func FuzzUnpickle(f *testing.F) {
	f.Add([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u."))
	f.Add(statePickle([]namedData{{"x", []int{2, 3}, make([]float32, 6)}}))
	f.Add([]byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94]\x94(h\x00h\x01e."))
	f.Fuzz(func(t *testing.T, b []byte) {
		u := &unpickler{buf: b, persistent: func(pid pyTuple) (any, error) {
			if len(pid) != 5 {
				return nil, nil
			}
			dt, key, loc, numel, err := storageID(pid)
			if err != nil {
				return nil, err
			}
			return &storageRef{dtype: dt, key: key, location: loc, numel: numel}, nil
		}}
		v, err := u.load()
		if err == nil {
			collectTensors(v)
		}
	})
}
