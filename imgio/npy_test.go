package imgio

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
)

func TestNPYRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, shape := range [][]int{{5}, {2, 3, 4}, {2, 1, 3, 2}} {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i)*0.25 - 1
		}
		path := filepath.Join(dir, "x.npy")
		if err := WriteNPY(path, data, shape); err != nil {
			t.Fatal(err)
		}
		got, gotShape, err := ReadNPY(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gotShape, shape) {
			t.Errorf("shape = %v, want %v", gotShape, shape)
		}
		if !slices.Equal(got, data) {
			t.Errorf("shape %v: data = %v, want %v", shape, got, data)
		}
	}
}

// TestNPYHeader checks the file against the NumPy format itself, so that a
// reader and writer that agree on something wrong cannot pass.
func TestNPYHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	if err := WriteNPY(path, []float32{1, 2, 3, 4, 5, 6}, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "\x93NUMPY") {
		t.Fatalf("missing NumPy magic: %q", raw[:min(len(raw), 10)])
	}
	hdr := string(raw)
	for _, want := range []string{"'descr': '<f4'", "'fortran_order': False", "'shape': (2, 3)"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %s", want)
		}
	}
	// The last value, 6.0 as little-endian float32, ends the file.
	if tail := raw[len(raw)-4:]; string(tail) != "\x00\x00\xc0\x40" {
		t.Errorf("last 4 bytes = % x, want 00 00 c0 40", tail)
	}
}

func TestReadNPYFloat64(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f64.npy")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := npyio.Write(f, []float64{-1, 0.5, 3}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	data, shape, err := ReadNPY(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(data, []float32{-1, 0.5, 3}) || !slices.Equal(shape, []int{3}) {
		t.Errorf("got %v shape %v, want [-1 0.5 3] shape [3]", data, shape)
	}
}

func TestReadNPYErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.npy")
	if _, _, err := ReadNPY(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want it to name %s", err, missing)
	}

	ints := filepath.Join(dir, "ints.npy")
	f, err := os.Create(ints)
	if err != nil {
		t.Fatal(err)
	}
	if err := npyio.Write(f, []int32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadNPY(ints); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Errorf("int32 file: err = %v, want an unsupported dtype error", err)
	}

	text := filepath.Join(dir, "text.npy")
	if err := os.WriteFile(text, []byte("not numpy"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadNPY(text); err == nil {
		t.Error("text file read without error")
	}
}

func TestWriteNPYShapeMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.npy")
	for _, shape := range [][]int{{2, 2}, {}, {0, 4}} {
		if err := WriteNPY(path, []float32{1, 2, 3}, shape); err == nil {
			t.Errorf("shape %v for 3 values accepted", shape)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("rejected write left a file behind (stat err = %v)", err)
	}
}

// npyBytes returns a .npy file (numpy.lib.format) of format version 1.0 or 2.0 with the
// header dict (padded with spaces and ended with a newline) and the data that follows.
func npyBytes(version byte, dict string, data []byte) []byte {
	pre := 10
	if version >= 2 {
		pre = 12
	}
	hdr := dict + strings.Repeat(" ", 63-(pre+len(dict))%64) + "\n"
	b := append([]byte("\x93NUMPY"), version, 0)
	if version >= 2 {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	}
	return append(append(b, hdr...), data...)
}

// f32s returns values as little-endian float32 bytes.
func f32s(values ...float32) []byte {
	var b []byte
	for _, v := range values {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func TestReadNPYHostile(t *testing.T) {
	six := f32s(1, 2, 3, 4, 5, 6)
	dict := func(descr, order, shape string) string {
		return "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }"
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"zero leading dimension", npyBytes(1, dict("<f4", "False", "(0, 3)"), nil), "not positive"},
		{"zero dimension with data", npyBytes(1, dict("<f4", "False", "(2, 0)"), six), "not positive"},
		{"negative leading dimension", npyBytes(1, dict("<f4", "False", "(-1, 3)"), six), "not positive"},
		{"huge leading dimension", npyBytes(1, dict("<f4", "False", "(1000000000000, 3)"), six), "needs more than the 24 bytes"},
		{"dimensions whose product overflows", npyBytes(1, dict("<f4", "False", "(4294967296, 4294967296, 4294967296)"), six), "needs more than"},
		{"dimension past 2^53", npyBytes(1, dict("<f4", "False", "(99999999999999999999,)"), six), "not a number"},
		{"truncated data", npyBytes(1, dict("<f4", "False", "(2, 3)"), six[:20]), "needs more than the 20 bytes of data the file has"},
		{"trailing data", npyBytes(1, dict("<f4", "False", "(2, 2)"), six), "needs 16 bytes of data, the file has 24"},
		{"int32", npyBytes(1, dict("<i4", "False", "(2, 3)"), six), "unsupported dtype \"<i4\""},
		{"big-endian float32", npyBytes(1, dict(">f4", "False", "(2, 3)"), six), "unsupported dtype \">f4\""},
		{"float16", npyBytes(1, dict("<f2", "False", "(2, 6)"), six), "unsupported dtype"},
		{"structured dtype", npyBytes(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }", six), "a string was expected"},
		{"Fortran order", npyBytes(1, dict("<f4", "True", "(2, 3)"), six), "Fortran-order"},
		{"scalar", npyBytes(1, dict("<f4", "False", "()"), six[:4]), "single value"},
		{"no newline", bytes.Replace(npyBytes(1, dict("<f4", "False", "(6,)"), six), []byte(" \n"), []byte("  "), 1), "newline"},
		{"no dictionary", npyBytes(1, "[1, 2]", six), "no dictionary"},
		{"unclosed dictionary", npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", six), "no ','"},
		{"unclosed string", npyBytes(1, "{'descr: <f4}", six), "not closed"},
		{"missing key", npyBytes(1, "{'descr': '<f4', 'shape': (6,), }", six), "keys"},
		{"extra key", npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", six), "unknown key"},
		{"repeated key", npyBytes(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", six), "twice"},
		{"fortran_order 1", npyBytes(1, dict("<f4", "1", "(6,)"), six), "neither True nor False"},
		{"shape a list", npyBytes(1, dict("<f4", "False", "[6]"), six), "not a tuple"},
		{"garbage after dict", npyBytes(1, dict("<f4", "False", "(6,)")+"x", six), "newline alone"},
		{"header past the end", npyBytes(1, dict("<f4", "False", "(6,)"), nil)[:40], "ends inside its"},
		{"header of 4 GB", append([]byte("\x93NUMPY\x02\x00\xff\xff\xff\xff{"), six...), "longer than the limit"},
		{"version 9", append([]byte("\x93NUMPY\x09\x00\x10\x00"), six...), "version 9.0"},
		{"only the magic", []byte("\x93NUMPY"), "magic"},
		{"empty", nil, "magic"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.npy")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			data, shape, err := ReadNPY(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("ReadNPY = %d values of shape %v, %v; want an error naming the file and saying %q", len(data), shape, err, tc.want)
			}
		})
	}
}

func TestReadNPYHeaders(t *testing.T) {
	// Forms NumPy writes or has written: version 2.0, double quotes, Python 2's longs,
	// keys in another order, no trailing comma.
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"version 2", npyBytes(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32s(1, 2, 3, 4, 5, 6))},
		{"double quotes", npyBytes(1, `{"descr": "<f4", "fortran_order": False, "shape": (2, 3)}`, f32s(1, 2, 3, 4, 5, 6))},
		{"longs", npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", f32s(1, 2, 3, 4, 5, 6))},
		{"order", npyBytes(1, "{'shape': (2,3), 'fortran_order': False, 'descr': '<f4'}", f32s(1, 2, 3, 4, 5, 6))},
	} {
		path := filepath.Join(t.TempDir(), "x.npy")
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		data, shape, err := ReadNPY(path)
		if err != nil || !slices.Equal(shape, []int{2, 3}) || !slices.Equal(data, []float32{1, 2, 3, 4, 5, 6}) {
			t.Errorf("%s: ReadNPY = %v %v, %v", tc.name, data, shape, err)
		}
	}
}

func TestReadNPYByteLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.npy")
	if err := os.WriteFile(path, npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (268435457,), }", nil), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 1<<30+64+4); err != nil { // sparse
		t.Fatal(err)
	}
	if _, _, err := ReadNPY(path); err == nil || !strings.Contains(err.Error(), "larger than the limit of 1.1 GB") {
		t.Errorf("ReadNPY(1 GiB + 68 bytes) = %v, want it refused for its size", err)
	}
}

// TestReadNPYNumPy reads files written by NumPy itself (Debian's python3-numpy, which
// make test installs), where it is installed.
func TestReadNPYNumPy(t *testing.T) {
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Skip("no python3 that can import numpy")
	}
	dir := t.TempDir()
	script := `
import numpy as np, sys
d = sys.argv[1]
x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8
np.save(d + '/c32.npy', x)
np.save(d + '/c64.npy', x.astype(np.float64))
np.save(d + '/fortran.npy', np.asfortranarray(x))
np.save(d + '/big.npy', x.astype('>f4'))
np.save(d + '/int.npy', x.astype(np.int32))
np.save(d + '/empty.npy', np.zeros((0, 3), np.float32))
np.save(d + '/scalar.npy', np.float32(1.5))
`
	if out, err := exec.Command(python, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("NumPy could not write the files: %v\n%s", err, out)
	}
	want := make([]float32, 24)
	for i := range want {
		want[i] = float32(i) / 8
	}
	for _, name := range []string{"c32", "c64"} {
		data, shape, err := ReadNPY(filepath.Join(dir, name+".npy"))
		if err != nil || !slices.Equal(shape, []int{2, 3, 4}) || !slices.Equal(data, want) {
			t.Errorf("%s: ReadNPY = %v %v, %v", name, data, shape, err)
		}
	}
	for name, msg := range map[string]string{"fortran": "Fortran", "big": "dtype", "int": "dtype", "empty": "not positive", "scalar": "single value"} {
		if _, _, err := ReadNPY(filepath.Join(dir, name+".npy")); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: ReadNPY = %v, want an error saying %q", name, err, msg)
		}
	}
}
