package imgio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"

	"codeberg.org/sbinet/npyio"

	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
)

// WriteNPY writes data as a NumPy .npy file of dtype float32 with the given
// shape in C order, atomically (see SavePNG). Every dimension must be
// positive and their product must equal len(data).
func WriteNPY(path string, data []float32, shape []int) error {
	if len(shape) == 0 {
		return fmt.Errorf("write %s: empty shape", path)
	}
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return fmt.Errorf("write %s: shape %v has a non-positive dimension", path, shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("write %s: shape %v holds %d values, data has %d", path, shape, n, len(data))
	}
	err := atomicfile.WriteFile(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		if err := npyio.Write(bw, nest(data, shape)); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("save npy: %w", err)
	}
	return nil
}

// nest returns data viewed as nested slices ([][]...[]float32) of the given
// shape, sharing data's memory, which is how npyio learns a shape.
func nest(data []float32, shape []int) any {
	if len(shape) == 1 {
		return data
	}
	typ := reflect.TypeFor[[]float32]()
	for range shape[2:] {
		typ = reflect.SliceOf(typ)
	}
	stride := len(data) / shape[0]
	s := reflect.MakeSlice(reflect.SliceOf(typ), shape[0], shape[0])
	for i := range shape[0] {
		s.Index(i).Set(reflect.ValueOf(nest(data[i*stride:(i+1)*stride], shape[1:])))
	}
	return s.Interface()
}

// maxNPYBytes is the largest .npy file ReadNPY reads: 1 GiB, 268 million float32
// values (4,000 RGB images of 256×256).
const maxNPYBytes = 1 << 30

// maxNPYHeader is the longest header ReadNPY accepts: NumPy's own default limit
// (max_header_size in numpy.lib.format, 10,000 bytes).
const maxNPYHeader = 10000

// ReadNPY reads a NumPy .npy file of dtype float32 or float64 (converted to
// float32), little-endian and in C order, and returns its values and shape.
// The header is checked before anything else is read: the file must be at
// most 1 GiB, the header a dictionary of exactly 'descr', 'fortran_order' and
// 'shape' (NumPy's format, numpy.lib.format), the shape's dimensions positive,
// and the data exactly as long as the shape and dtype say. Anything else is
// refused with an error that names the file and says what is wrong.
//
// It does not use npyio, whose reader (v0.14.0) panics on headers NumPy
// accepts (keys in another order: slice bounds out of range), refuses others
// (double quotes, Python 2's 3L), and allocates from the shape before checking
// it against the file (a negative dimension panics, a huge one exhausts memory).
func ReadNPY(path string) (data []float32, shape []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read npy: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("read npy: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("read %s: not a regular file", path)
	}
	if info.Size() > maxNPYBytes {
		return nil, nil, fmt.Errorf("read %s: file of %s is larger than the limit of %s for a .npy file",
			path, bytesize.Format(info.Size()), bytesize.Format(maxNPYBytes))
	}
	hdr, err := readNPYHeader(f, info.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	n := 1
	for _, d := range hdr.shape {
		n *= d
	}
	data, err = readNPYData(io.NewSectionReader(f, hdr.offset, info.Size()-hdr.offset), hdr.descr, n)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, hdr.shape, nil
}

// readNPYData reads the values of a checked .npy file from r, where they start:
// n little-endian float32 or float64 values.
func readNPYData(r io.Reader, descr string, n int) ([]float32, error) {
	size := 4
	if descr == "<f8" {
		size = 8
	}
	data := make([]float32, n)
	buf := make([]byte, 64<<10)
	for i := 0; i < n; {
		m := min(n-i, len(buf)/size)
		chunk := buf[:m*size]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, err
		}
		for k := range m {
			if size == 4 {
				data[i+k] = math.Float32frombits(binary.LittleEndian.Uint32(chunk[4*k:]))
			} else {
				data[i+k] = float32(math.Float64frombits(binary.LittleEndian.Uint64(chunk[8*k:])))
			}
		}
		i += m
	}
	return data, nil
}

// npyHeader is what ReadNPY needs of a .npy header.
type npyHeader struct {
	descr   string // "<f4" or "<f8"
	fortran bool
	shape   []int
	offset  int64 // where the data starts
}

// readNPYHeader reads and checks the header of the .npy file r of size bytes
// (numpy.lib.format: the magic string, the version, the header's length, and
// the header, a Python dictionary literal ending in a newline).
func readNPYHeader(r io.ReaderAt, size int64) (npyHeader, error) {
	var pre [12]byte
	n, _ := r.ReadAt(pre[:], 0)
	if n < 10 || string(pre[:6]) != "\x93NUMPY" {
		return npyHeader{}, errors.New("not a NumPy .npy file (no \\x93NUMPY magic string)")
	}
	var hlen, start int64
	switch pre[6] {
	case 1:
		hlen, start = int64(binary.LittleEndian.Uint16(pre[8:])), 10
	case 2, 3:
		if n < 12 {
			return npyHeader{}, errors.New("the file ends inside its preamble")
		}
		hlen, start = int64(binary.LittleEndian.Uint32(pre[8:])), 12
	default:
		return npyHeader{}, fmt.Errorf("unknown .npy format version %d.%d", pre[6], pre[7])
	}
	if hlen > maxNPYHeader {
		return npyHeader{}, fmt.Errorf("header of %d bytes is longer than the limit of %d", hlen, maxNPYHeader)
	}
	if start+hlen > size {
		return npyHeader{}, fmt.Errorf("the file (%d bytes) ends inside its %d-byte header", size, hlen)
	}
	buf := make([]byte, hlen)
	if _, err := r.ReadAt(buf, start); err != nil {
		return npyHeader{}, err
	}
	hdr, err := parseNPYDict(buf)
	if err != nil {
		return npyHeader{}, fmt.Errorf("malformed header %q: %w", buf, err)
	}
	switch {
	case hdr.descr != "<f4" && hdr.descr != "<f8":
		return npyHeader{}, fmt.Errorf("unsupported dtype %q (want little-endian float32 '<f4' or float64 '<f8')", hdr.descr)
	case hdr.fortran:
		return npyHeader{}, errors.New("Fortran-order arrays are not supported (save it in C order)")
	case len(hdr.shape) == 0:
		return npyHeader{}, errors.New("shape () is a single value, not an array")
	}
	itemsize := int64(4)
	if hdr.descr == "<f8" {
		itemsize = 8
	}
	have := size - start - hlen
	need := itemsize
	for _, d := range hdr.shape {
		if d <= 0 {
			return npyHeader{}, fmt.Errorf("shape %v has a dimension that is not positive", hdr.shape)
		}
		if need > have/int64(d) {
			return npyHeader{}, fmt.Errorf("shape %v of %s needs more than the %d bytes of data the file has", hdr.shape, hdr.descr, have)
		}
		need *= int64(d)
	}
	if need != have {
		return npyHeader{}, fmt.Errorf("shape %v of %s needs %d bytes of data, the file has %d", hdr.shape, hdr.descr, need, have)
	}
	hdr.offset = start + hlen
	return hdr, nil
}

// parseNPYDict parses a .npy header: a Python dictionary literal with exactly the keys
// 'descr' (a string), 'fortran_order' (True or False) and 'shape' (a tuple of integers),
// followed by spaces and a newline.
func parseNPYDict(b []byte) (npyHeader, error) {
	var hdr npyHeader
	p := &npyParser{b: b}
	if !p.accept('{') {
		return hdr, errors.New("no dictionary")
	}
	seen := map[string]bool{}
	for {
		if p.accept('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return hdr, err
		}
		if seen[key] {
			return hdr, fmt.Errorf("key %q given twice", key)
		}
		seen[key] = true
		if !p.accept(':') {
			return hdr, fmt.Errorf("no ':' after %q", key)
		}
		switch key {
		case "descr":
			if hdr.descr, err = p.str(); err != nil {
				return hdr, err
			}
		case "fortran_order":
			switch {
			case p.word("True"):
				hdr.fortran = true
			case p.word("False"):
			default:
				return hdr, errors.New("fortran_order is neither True nor False")
			}
		case "shape":
			if hdr.shape, err = p.tuple(); err != nil {
				return hdr, err
			}
		default:
			return hdr, fmt.Errorf("unknown key %q", key)
		}
		if p.accept('}') {
			break
		}
		if !p.accept(',') {
			return hdr, errors.New("no ',' between entries")
		}
	}
	if len(seen) != 3 {
		return hdr, errors.New("the keys are not 'descr', 'fortran_order' and 'shape'")
	}
	p.space()
	if p.i != len(b) || len(b) == 0 || b[len(b)-1] != '\n' {
		return hdr, errors.New("the dictionary is not followed by spaces and a newline alone")
	}
	return hdr, nil
}

// npyParser reads the tokens of a .npy header's dictionary.
type npyParser struct {
	b []byte
	i int
}

// space skips spaces, tabs and newlines.
func (p *npyParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n') {
		p.i++
	}
}

// accept skips spaces and then c, reporting whether c was there.
func (p *npyParser) accept(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// word skips spaces and then w, reporting whether w was there.
func (p *npyParser) word(w string) bool {
	p.space()
	if bytes.HasPrefix(p.b[p.i:], []byte(w)) {
		p.i += len(w)
		return true
	}
	return false
}

// str reads a string in single or double quotes, without escapes.
func (p *npyParser) str() (string, error) {
	p.space()
	if p.i >= len(p.b) || (p.b[p.i] != '\'' && p.b[p.i] != '"') {
		return "", errors.New("a string was expected")
	}
	q := p.b[p.i]
	end := bytes.IndexByte(p.b[p.i+1:], q)
	if end < 0 {
		return "", errors.New("a string is not closed")
	}
	s := string(p.b[p.i+1 : p.i+1+end])
	p.i += end + 2
	return s, nil
}

// tuple reads a tuple of integers, such as (2, 3) or (5,); a trailing L (Python 2's
// long) is allowed.
func (p *npyParser) tuple() ([]int, error) {
	if !p.accept('(') {
		return nil, errors.New("shape is not a tuple")
	}
	dims := []int{}
	for {
		if p.accept(')') {
			return dims, nil
		}
		p.space()
		j := p.i
		if j < len(p.b) && p.b[j] == '-' {
			j++
		}
		for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
			j++
		}
		d, err := strconv.ParseInt(string(p.b[p.i:j]), 10, 54)
		if err != nil {
			return nil, fmt.Errorf("shape has a dimension %q that is not a number", p.b[p.i:j])
		}
		dims = append(dims, int(d))
		p.i = j
		if p.i < len(p.b) && p.b[p.i] == 'L' {
			p.i++
		}
		if p.accept(')') {
			return dims, nil
		}
		if !p.accept(',') {
			return nil, errors.New("no ',' between dimensions")
		}
	}
}
