package imgio

import (
	"os"
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
