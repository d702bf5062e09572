package compute

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"unsafe"

	"github.com/nlpodyssey/safetensors"

	bsize "github.com/ddpm-studio/ddpm-studio/internal/bytesize"
)

// Safetensors files are read through stFile rather than safetensors.Deserialize, which
// needs the whole file in memory (os.ReadFile of a size nobody checked) and answers a
// damaged file with its own jargon ("metadata incomplete buffer"). stFile reads the
// 8-byte header length and the JSON header only (parsed by the library's
// safetensors.Metadata), checks the header's offsets against the file's size, the
// tensors' names and shapes against the model, and only then reads each tensor with
// ReadAt straight into the slice it belongs in. Nothing is allocated from a size the
// file claims before that size has been checked against the file and the model.

// maxHeader bounds the JSON header of a safetensors file: a header takes a few hundred
// bytes per tensor, so 16 MiB is far more than any model's.
const maxHeader = 16 << 20

// DamagedError is a file whose contents are not what its format promises: truncated,
// padded, garbage, an inconsistent header, or values that are not finite numbers.
type DamagedError struct {
	Path   string // the file
	Reason string // what is wrong with it, in words
}

func (e *DamagedError) Error() string { return e.Path + " is damaged: " + e.Reason }

func damaged(path, format string, args ...any) error {
	return &DamagedError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// stFile is an open safetensors file whose header has been read and checked against its size.
type stFile struct {
	f       *os.File
	path    string // for messages
	data    int64  // offset of the first tensor's bytes
	tensors map[string]*safetensors.TensorInfo
}

// tensorSpec is a tensor a file must hold: its name, its shape and where its values go.
type tensorSpec struct {
	name  string
	shape []int
	dst   []float32
}

// readHeader reads and checks the header of the safetensors file f (named path in messages).
func readHeader(f *os.File, path string) (*stFile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, damaged(path, "it is not a regular file")
	}
	size := uint64(fi.Size())
	if size < 8 {
		return nil, damaged(path, "it is %s long, too short to hold a safetensors header (empty or truncated?)", bytesize(size))
	}
	var nb [8]byte
	if err := readAt(f, path, nb[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > maxHeader {
		return nil, damaged(path, "its first 8 bytes announce a header of %s, more than any safetensors header takes (not a safetensors file?)", bytesize(n))
	}
	if n > size-8 {
		return nil, damaged(path, "it ends after %s, inside the %s header it announces (truncated?)", bytesize(size), bytesize(n+8))
	}
	hdr := make([]byte, n)
	if err := readAt(f, path, hdr, 8); err != nil {
		return nil, err
	}
	var md safetensors.Metadata
	if err := json.Unmarshal(hdr, &md); err != nil {
		return nil, damaged(path, "its header cannot be read (%v)", err)
	}
	s := &stFile{f: f, path: path, data: int64(8 + n), tensors: md.Tensors()}
	names := make([]string, 0, len(s.tensors))
	for name := range s.tensors {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := s.tensors[names[i]].DataOffsets, s.tensors[names[j]].DataOffsets
		return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1])
	})
	end := uint64(0) // the tensors must tile the data section in order, as the format requires
	for _, name := range names {
		ti := s.tensors[name]
		start, stop := ti.DataOffsets[0], ti.DataOffsets[1]
		if start != end || stop < start {
			return nil, damaged(path, "its header is inconsistent: tensor %q spans bytes %d to %d of the data, expected to start at %d", name, start, stop, end)
		}
		if bytes, ok := tensorBytes(ti); !ok || stop-start != bytes {
			return nil, damaged(path, "its header is inconsistent: tensor %q of shape %v and type %v spans %s", name, ti.Shape, ti.DType, bytesize(stop-start))
		}
		end = stop
	}
	switch have := size - 8 - n; {
	case end > have:
		return nil, damaged(path, "it ends after %s of the %s its header promises (truncated?)", bytesize(size), bytesize(sat(8+n, end)))
	case end < have:
		return nil, damaged(path, "it is %s long, %s more than its header accounts for (data appended, or two files run together?)", bytesize(size), bytesize(have-end))
	}
	return s, nil
}

// tensorBytes is the size of a tensor's data, false if it overflows.
func tensorBytes(ti *safetensors.TensorInfo) (uint64, bool) {
	n := ti.DType.Size()
	for _, d := range ti.Shape {
		if d != 0 && n > math.MaxUint64/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// sat is a + b, saturating at the largest uint64.
func sat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// readAt fills buf from offset off of f; a file that ends early is damaged (it was
// checked to be long enough, so it shrank while being read).
func readAt(f *os.File, path string, buf []byte, off int64) error {
	_, err := f.ReadAt(buf, off)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return damaged(path, "it ended early while being read (truncated meanwhile?)")
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// match checks that the file holds exactly the tensors of specs, with their shapes and a
// float type. It reads no tensor data.
func (s *stFile) match(specs []tensorSpec, what string) error {
	var missing, extra []string
	want := make(map[string]bool, len(specs))
	for _, sp := range specs {
		want[sp.name] = true
		ti, ok := s.tensors[sp.name]
		if !ok {
			missing = append(missing, sp.name)
			continue
		}
		if !slices.Equal(ti.Shape, shape64(sp.shape)) {
			return fmt.Errorf("load %s %s: %s: shape %v in file, the model needs %v", what, s.path, sp.name, ti.Shape, sp.shape)
		}
		if ti.DType != safetensors.F32 && ti.DType != safetensors.F64 {
			return fmt.Errorf("load %s %s: %s: dtype %v, want F32 or F64", what, s.path, sp.name, ti.DType)
		}
	}
	for name := range s.tensors {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("load %s %s: names do not match the model: missing %s; unexpected %s",
			what, s.path, listSome(missing), listSome(extra))
	}
	return nil
}

// read copies every tensor of specs (checked by match) into its dst and checks that every
// value is a finite number.
func (s *stFile) read(specs []tensorSpec) error {
	for _, sp := range specs {
		ti := s.tensors[sp.name]
		off := s.data + int64(ti.DataOffsets[0])
		switch ti.DType {
		case safetensors.F32: // little-endian on amd64/arm64, as the file
			if len(sp.dst) > 0 {
				if err := readAt(s.f, s.path, unsafe.Slice((*byte)(unsafe.Pointer(&sp.dst[0])), 4*len(sp.dst)), off); err != nil {
					return err
				}
			}
		case safetensors.F64:
			const chunk = 1 << 16
			buf := make([]float64, min(chunk, len(sp.dst)))
			for i := 0; i < len(sp.dst); i += chunk {
				b := buf[:min(chunk, len(sp.dst)-i)]
				if err := readAt(s.f, s.path, unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 8*len(b)), off+8*int64(i)); err != nil {
					return err
				}
				for j, v := range b {
					sp.dst[i+j] = float32(v)
				}
			}
		}
		if n, first := countNonFinite(sp.dst); n > 0 {
			return damaged(s.path, "tensor %q holds %s", sp.name, nonFiniteWords(n, first))
		}
	}
	return nil
}

// countNonFinite counts the Inf and NaN values of d and returns the index of the first.
func countNonFinite(d []float32) (n, first int) {
	first = -1
	for i, x := range d {
		if !finite32(x) {
			if n == 0 {
				first = i
			}
			n++
		}
	}
	return n, first
}

// nonFiniteWords says that n values, the first at index first, are Inf or NaN.
func nonFiniteWords(n, first int) string {
	if n == 1 {
		return fmt.Sprintf("a value that is not a finite number (Inf or NaN) at index %d", first)
	}
	return fmt.Sprintf("%d values that are not finite numbers (Inf or NaN), the first at index %d", n, first)
}

// bytesize writes a size for people (see package bytesize).
func bytesize(n uint64) string { return bsize.Format(int64(min(n, math.MaxInt64))) }

// finite32 reports whether x is neither Inf nor NaN (its exponent is not all ones).
func finite32(x float32) bool { return math.Float32bits(x)&0x7f800000 != 0x7f800000 }

// readSafetensorsFile opens path, checks it against specs and reads it into their dst.
func readSafetensorsFile(path string, specs []tensorSpec, what string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	defer f.Close()
	s, err := readHeader(f, path)
	if err != nil {
		return err
	}
	if err := s.match(specs, what); err != nil {
		return err
	}
	return s.read(specs)
}
