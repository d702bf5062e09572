package imgio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"os"

	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
	"github.com/ddpm-studio/ddpm-studio/internal/ctxio"
)

// Limits on the image files Open accepts and the squares Square makes. Anything larger is
// refused with an error that names the size and the limit, before any pixel is decoded.
const (
	// MaxPixels is the most pixels (width × height) an image may have: 2^27 = 134,217,728,
	// about 134 megapixels (11,585 pixels square). That takes photos from phone cameras up to
	// their 108-megapixel sensors (12,032×9,024), full-frame and 100-megapixel medium-format
	// cameras and 600-dpi A3 scans; 200-megapixel phone modes (16,320×12,240) are refused.
	// It bounds what a decoder allocates: the largest decoded image is 1 GiB (16-bit RGBA,
	// 8 bytes a pixel), and a progressive CMYK JPEG, the worst case, needs about 3.6 GB with
	// its coefficients (see File.SquareBytes). The dataset loader runs decodes at once only
	// as far as the machine's free memory allows, so that several such images are never
	// decoded together on a machine without room for them. It also bounds the time one
	// decode takes, which a cancelled load does not wait for.
	MaxPixels = 1 << 27
	// MaxFileBytes is the largest image file Open accepts: 1.5 GiB. The largest uncompressed
	// image within MaxPixels (16-bit RGBA) is 1 GiB; the rest is room for metadata,
	// thumbnails and further pages. Larger files are refused from their size alone, unread.
	MaxFileBytes = 3 << 29
	// MaxSize is the largest side of the squares Square, File.Square and LoadImage make, and
	// of dataset images: 1024 pixels, four times the side of the largest model (256). A
	// dataset of square images S pixels on a side holds N·C·S² bytes (60,000 MNIST digits
	// at 1024 in RGB: 189 GB) and resizing one photo to S needs 32·S bytes per row of the
	// source, so larger sides serve no model and only risk running out of memory.
	MaxSize = 1024
)

// File is an open image file whose header has been read and checked against MaxFileBytes and
// MaxPixels. Reads from it fail with the context's error once the context given to Open is
// done, so a decode stops soon after.
type File struct {
	// Format is the format's name as the image package registers it: "png", "jpeg", "gif",
	// "bmp", "tiff" or "webp".
	Format string
	// Width and Height are the image's dimensions as stored, before Orientation is applied.
	Width, Height int
	// Orientation is the EXIF orientation of a JPEG or TIFF, 1 (upright) to 8 as in the
	// TIFF 6.0 Orientation tag; 1 where the file has none or it cannot be read.
	Orientation int
	// Bytes is the size of the file.
	Bytes int64

	model color.Model
	f     *os.File
	ctx   context.Context
}

// Open opens the image file at path and reads its header (image.DecodeConfig, through the
// formats imgio registers) and, for JPEG and TIFF, its EXIF orientation. It refuses, with an
// error in words, anything that is not a regular file, a file of more than MaxFileBytes, a
// file that is not an image in a registered format (the error wraps image.ErrFormat), a
// corrupt header, and an image that is empty or has more than MaxPixels pixels. Errors from
// the file system name path; the others describe the file's content and leave naming it to
// the caller.
func Open(ctx context.Context, path string) (*File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Stat before opening: opening a named pipe would wait for a writer.
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	file := &File{f: f, ctx: ctx}
	if err := file.readHeader(); err != nil {
		f.Close()
		return nil, err
	}
	return file, nil
}

// readHeader fills in the File from the open file's size, header and EXIF orientation.
func (f *File) readHeader() error {
	info, err := f.f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	f.Bytes = info.Size()
	if f.Bytes > MaxFileBytes {
		return fmt.Errorf("file of %s is larger than the limit of %s for an image", bytesize.Format(f.Bytes), bytesize.Format(MaxFileBytes))
	}
	cfg, format, err := decodeConfig(f.reader())
	switch {
	case errors.Is(err, image.ErrFormat):
		return fmt.Errorf("not an image: %w", err)
	case err != nil:
		return fmt.Errorf("corrupt %s: %w", format, err)
	case cfg.Width <= 0 || cfg.Height <= 0:
		return fmt.Errorf("empty %s image (%d×%d)", format, cfg.Width, cfg.Height)
	case int64(cfg.Width)*int64(cfg.Height) > MaxPixels:
		return fmt.Errorf("%s image of %d×%d pixels (%.0f megapixels) is larger than the limit of %.0f megapixels",
			format, cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxPixels/1e6)
	}
	f.Format, f.Width, f.Height, f.model = format, cfg.Width, cfg.Height, cfg.ColorModel
	f.Orientation = 1
	switch format {
	case "jpeg":
		f.Orientation = jpegOrientation(f.f, f.Bytes)
	case "tiff":
		f.Orientation = tiffOrientation(io.NewSectionReader(f.f, 0, f.Bytes))
	}
	return nil
}

// decodeConfig is image.DecodeConfig that turns a decoder's panic into an error.
func decodeConfig(r io.Reader) (cfg image.Config, format string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder failed: %v", p)
		}
	}()
	return image.DecodeConfig(r)
}

// Close closes the file.
func (f *File) Close() error {
	return f.f.Close()
}

// reader returns a buffered reader over the file from its start that fails with the
// context's error once the context is done.
func (f *File) reader() io.Reader {
	return bufio.NewReader(ctxio.Reader(f.ctx, io.NewSectionReader(f.f, 0, f.Bytes)))
}

// Decode decodes the image as stored, without applying Orientation. A decoder's panic
// becomes an error, as does the context given to Open being done; the error names the
// format ("corrupt png: unexpected EOF").
func (f *File) Decode() (img image.Image, err error) {
	defer func() {
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("%s decoder failed: %v", f.Format, p)
		}
	}()
	img, format, err := image.Decode(f.reader())
	if err != nil {
		if ctxErr := f.ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("corrupt %s: %w", format, err)
	}
	if img.Bounds().Empty() {
		return nil, fmt.Errorf("empty %s image", format)
	}
	return img, nil
}

// Square decodes the image, crops it to the largest centred square of the image as people
// see it (after Orientation), and resizes that as Square does. size must be in [1, MaxSize].
func (f *File) Square(size int) (*image.RGBA, error) {
	if size <= 0 || size > MaxSize {
		return nil, fmt.Errorf("square side %d is outside [1, %d]", size, MaxSize)
	}
	img, err := f.Decode()
	if err != nil {
		return nil, err
	}
	return squareOriented(img, size, f.Orientation), nil
}

// SquareBytes estimates the memory, in bytes, that Square(size) needs: the decoded
// image with the decoder's working memory, the resizer's buffer and the square. It is
// meant as an upper bound, for the formats' usual encodings, of all that decoding and
// squaring allocate (TestSquareBytes checks it for the costliest ones).
func (f *File) SquareBytes(size int) int64 {
	px := int64(f.Width) * int64(f.Height)
	var perPixel int64
	switch f.Format {
	case "jpeg":
		// The image (one byte per component at full resolution at most) and, for a
		// progressive JPEG, 64 int32 coefficients per 8×8 block of each component; a
		// four-component (CMYK) JPEG also keeps a black plane and converts to CMYK.
		comps := int64(componentCount(f.model))
		perPixel = comps + 4*comps
		if comps == 4 {
			perPixel += 1 + 4
		}
	case "png":
		// An interlaced PNG decodes its seven passes into images of their own, which
		// together are as large as the image.
		perPixel = 2 * bytesPerPixel(f.model)
	case "webp":
		// Lossless WebP decodes into 32-bit ARGB and then converts to NRGBA; lossy
		// WebP's alpha plane is a lossless image of its own.
		perPixel = 12
	case "tiff":
		// Each compressed strip or tile gets a decompressor and a buffer of its own
		// (16 bytes a pixel covers 64×64 tiles).
		perPixel = bytesPerPixel(f.model) + 16
	default:
		perPixel = bytesPerPixel(f.model)
	}
	// Decoders also keep a row or two (PNG: the current and previous rows, up to 8
	// bytes a pixel each), and tables and buffers of their own; two bytes a pixel
	// more leave a margin of 10% or more over what TestSquareBytes measures.
	n := px*(perPixel+2) + 16*int64(f.Width) + 256<<10
	if f.Format == "tiff" {
		// The TIFF decoder buffers the file as it reads it, growing the buffer by
		// doubling.
		n += 2 * f.Bytes
	}
	side := int64(min(f.Width, f.Height))
	s := int64(size)
	return n + 32*s*side + 2*4*s*s
}

// componentCount is the number of components a JPEG of the color model has.
func componentCount(m color.Model) int {
	switch m {
	case color.GrayModel:
		return 1
	case color.CMYKModel:
		return 4
	}
	return 3
}

// bytesPerPixel is the size of a pixel of the color model's usual image type.
func bytesPerPixel(m color.Model) int64 {
	switch m {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel, color.NYCbCrAModel:
		return 4
	}
	if _, ok := m.(color.Palette); ok {
		return 1
	}
	return 8
}
