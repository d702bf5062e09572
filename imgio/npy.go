package imgio

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"

	"codeberg.org/sbinet/npyio"

	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
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

// ReadNPY reads a NumPy .npy file of dtype float32 or float64 (converted to
// float32) in C order and returns its values and shape.
func ReadNPY(path string) (data []float32, shape []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read npy: %w", err)
	}
	defer f.Close()
	r, err := npyio.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	hdr := r.Header.Descr
	if hdr.Fortran {
		return nil, nil, fmt.Errorf("read %s: Fortran-order arrays are not supported", path)
	}
	switch npyio.TypeFrom(hdr.Type) {
	case reflect.TypeFor[float32]():
		err = r.Read(&data)
	case reflect.TypeFor[float64]():
		var d64 []float64
		err = r.Read(&d64)
		data = make([]float32, len(d64))
		for i, v := range d64 {
			data[i] = float32(v)
		}
	default:
		return nil, nil, fmt.Errorf("read %s: unsupported dtype %s (want float32 or float64)", path, hdr.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, append([]int{}, hdr.Shape...), nil
}
