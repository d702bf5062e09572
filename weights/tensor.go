package weights

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// dtype is the element type of a stored tensor.
type dtype int

const (
	f32 dtype = iota
	f64
	f16
	bf16
	i64
	i32
	i16
	i8
	u8
	boolean
)

var dtypeInfo = [...]struct {
	name string
	size int
}{
	f32: {"float32", 4}, f64: {"float64", 8}, f16: {"float16", 2}, bf16: {"bfloat16", 2},
	i64: {"int64", 8}, i32: {"int32", 4}, i16: {"int16", 2}, i8: {"int8", 1}, u8: {"uint8", 1},
	boolean: {"bool", 1},
}

func (d dtype) String() string { return dtypeInfo[d].name }
func (d dtype) size() int      { return dtypeInfo[d].size }
func (d dtype) float() bool    { return d <= bf16 }

// tensor is a stored tensor that has not been read yet.
type tensor struct {
	shape []int
	dtype dtype
	// read fills dst (numel(shape) values) from the file.
	read func(dst []float32) error
}

func (t *tensor) numel() int {
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	return n
}

// decodeFloats converts little-endian elements of type d into dst.
func decodeFloats(dst []float32, raw []byte, d dtype) error {
	if len(raw) != len(dst)*d.size() {
		return fmt.Errorf("%d bytes for %d %s values", len(raw), len(dst), d)
	}
	switch d {
	case f32:
		if hostLittleEndian {
			copy(dst, unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(raw))), len(dst)))
			return nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case f64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	case f16:
		for i := range dst {
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		}
	case bf16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
	default:
		return fmt.Errorf("elements of type %s are not weights", d)
	}
	return nil
}

// f32Bytes is the little-endian byte view of float32 data (a copy on big-endian hosts).
func f32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	if hostLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
	}
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// readStorage returns a reader for a tensor view of a torch storage: the view
// must be contiguous in C order (dimensions of size 1 may have any stride).
func readStorage(name string, m *tensorMeta) (*tensor, error) {
	shape := make([]int, len(m.shape))
	for i, d := range m.shape {
		shape[i] = int(d)
	}
	want := int64(1)
	for i := len(m.shape) - 1; i >= 0; i-- {
		if m.shape[i] != 1 && m.stride[i] != want {
			return nil, fmt.Errorf("%s: size %v with stride %v is not a contiguous tensor (save it after .contiguous())",
				name, m.shape, m.stride)
		}
		want *= m.shape[i]
	}
	s := m.storage
	t := &tensor{shape: shape, dtype: s.dtype}
	t.read = func(dst []float32) error {
		if !s.dtype.float() {
			return fmt.Errorf("%s holds %s values, not floating-point weights", name, s.dtype)
		}
		raw := make([]byte, len(dst)*s.dtype.size())
		if s.dtype == f32 && hostLittleEndian {
			raw = f32Bytes(dst) // read straight into dst
		}
		if err := s.read(m.offset*int64(s.dtype.size()), raw); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if s.dtype == f32 && hostLittleEndian {
			return nil
		}
		return decodeFloats(dst, raw, s.dtype)
	}
	return t, nil
}
