package dataset

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed" // MNIST files
	"encoding/binary"
	"fmt"
	"image"
	"io"

	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/internal/ctxio"
)

// The MNIST training set (LeCun, Cortes and Burges), as distributed in the
// IDX format; see mnist/README.md.
var (
	//go:embed mnist/train-images-idx3-ubyte.gz
	mnistImages []byte
	//go:embed mnist/train-labels-idx1-ubyte.gz
	mnistLabels []byte
)

// MNIST returns the MNIST training set built into the program: 60,000
// handwritten digits, 28×28 gray, white on black, with their labels.
// Images are resized to opt.Size×opt.Size if that is not 28, as by
// imgio.Square; opt.Channels 3 replicates the gray value into R, G and B.
// It refuses a size whose dataset (60,000·C·Size² bytes) would not fit in the
// memory available, and stops soon after ctx is done, with an error wrapping
// ctx.Err().
func MNIST(ctx context.Context, opt Options) (*Dataset, error) {
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("load mnist: %w", err)
	}
	dims, pix, err := readIDX(ctx, mnistImages, 3)
	if err != nil {
		return nil, fmt.Errorf("load mnist images: %w", err)
	}
	ldims, labels, err := readIDX(ctx, mnistLabels, 1)
	if err != nil {
		return nil, fmt.Errorf("load mnist labels: %w", err)
	}
	n, h, w := dims[0], dims[1], dims[2]
	if ldims[0] != n {
		return nil, fmt.Errorf("load mnist: %d images but %d labels", n, ldims[0])
	}

	d := &Dataset{N: n, C: max(opt.Channels, 1), H: opt.Size, W: opt.Size, Labels: labels, Source: "mnist"}
	size := d.C * d.H * d.W
	if err := checkFits("MNIST", d.C, opt.Size, int64(n)*int64(size), available()); err != nil {
		return nil, fmt.Errorf("load mnist: %w", err)
	}
	switch {
	case opt.Size == h && opt.Size == w && d.C == 1:
		d.Pixels = pix
	case opt.Size == h && opt.Size == w:
		d.Pixels = make([]uint8, n*size)
		for i := range n {
			src := pix[i*h*w : (i+1)*h*w]
			for c := range d.C {
				copy(d.Pixels[i*size+c*h*w:], src)
			}
		}
	default:
		d.Pixels = make([]uint8, n*size)
		err := parallel(ctx, n, opt.Progress, func(i int) {
			src := &image.Gray{Pix: pix[i*h*w : (i+1)*h*w], Stride: w, Rect: image.Rect(0, 0, w, h)}
			imgio.Planes(d.Pixels[i*size:(i+1)*size], imgio.Square(src, opt.Size), d.C)
		})
		if err != nil {
			return nil, fmt.Errorf("load mnist: %w", err)
		}
		return d, nil
	}
	if opt.Progress != nil {
		opt.Progress(n, n)
	}
	return d, nil
}

// readIDX decompresses a gzip'd IDX file, checks that it holds unsigned
// bytes in ndim dimensions, and returns its dimensions and data. It stops
// with ctx's error once ctx is done.
func readIDX(ctx context.Context, gz []byte, ndim int) (dims []int, data []byte, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, nil, fmt.Errorf("decompress gzip: %w", err)
	}
	raw, err := io.ReadAll(ctxio.Reader(ctx, zr))
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("decompress gzip: %w", err)
	}
	header := 4 + 4*ndim
	if len(raw) < header {
		return nil, nil, fmt.Errorf("IDX file of %d bytes is shorter than its %d-byte header", len(raw), header)
	}
	// Magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
	if magic, want := binary.BigEndian.Uint32(raw), uint32(0x0800|ndim); magic != want {
		return nil, nil, fmt.Errorf("IDX magic number %#08x, want %#08x", magic, want)
	}
	data = raw[header:]
	size := 1
	for i := range ndim {
		d := int(binary.BigEndian.Uint32(raw[4+4*i:]))
		dims = append(dims, d)
		size *= d
		if size > len(data) { // also keeps size from overflowing
			break
		}
	}
	if size != len(data) {
		return nil, nil, fmt.Errorf("IDX header gives dimensions %v but the file has %d data bytes", dims, len(data))
	}
	return dims, data, nil
}
