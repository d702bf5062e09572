package imgio

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzReadNPY checks that no file makes ReadNPY panic, and that what it accepts is
// consistent: as many values as the shape says, every dimension positive.
func FuzzReadNPY(f *testing.F) {
	six := f32s(1, 2, 3, 4, 5, 6)
	for _, seed := range [][]byte{
		npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", six),
		npyBytes(2, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", six),
		npyBytes(1, `{"shape": (1L, 6L), "descr": "<f4", "fortran_order": False}`, six),
		npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }", six),
		npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", six),
		npyBytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", six),
		[]byte("\x93NUMPY\x01\x00\x05\x00{'a'}"),
		[]byte("\x93NUMPY\x03\x00\xff\xff\x00\x00"),
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "x.npy")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		data, shape, err := ReadNPY(path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		n := 1
		for _, d := range shape {
			if d <= 0 {
				t.Fatalf("accepted shape %v", shape)
			}
			n *= d
		}
		if n != len(data) || len(shape) == 0 {
			t.Fatalf("shape %v with %d values", shape, len(data))
		}
		if slices.Contains(shape, 0) {
			t.Fatalf("shape %v", shape)
		}
	})
}
