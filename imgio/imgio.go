// Package imgio converts between image files and the model's tensor layout.
//
// Images in model space are float32 values in [−1, 1], stored C×H×W per image
// (C = 1 for gray, 3 for RGB) and N×C×H×W for batches. A pixel byte v maps to
// v/127.5 − 1 and back with rounding.
//
// Importing imgio registers the PNG, JPEG, GIF, BMP, TIFF and WebP decoders
// with the image package. Image files are read through Open, which checks a
// file's size and its header's dimensions against MaxFileBytes and MaxPixels
// before anything is decoded, so that no file can make a decoder allocate more
// than an image within those limits needs; File.Square shows JPEG and TIFF
// images upright, as their EXIF orientation says.
package imgio

import (
	"context"
	"fmt"
	"image"
	"image/color"

	_ "image/gif"  // register GIF
	_ "image/jpeg" // register JPEG
	_ "image/png"  // register PNG

	_ "golang.org/x/image/bmp"  // register BMP
	_ "golang.org/x/image/tiff" // register TIFF
	_ "golang.org/x/image/webp" // register WebP

	"golang.org/x/image/draw"
)

// ToModel maps a pixel byte to model space: 0 → −1, 255 → 1.
func ToModel(v uint8) float32 {
	return float32(v)/127.5 - 1
}

// ToPixel maps a model-space value to a pixel byte, round((v+1)·127.5),
// clamping to [0, 255]. NaN maps to 0.
func ToPixel(v float32) uint8 {
	f := (v + 1) * 127.5
	switch {
	case !(f >= 0): // also catches NaN
		return 0
	case f >= 255:
		return 255
	}
	return uint8(f + 0.5)
}

// Square centre-crops img to the largest centred square, resizes that to
// size×size and composites it over a white background, so transparent areas
// become white. Resizing uses Catmull-Rom, whose support widens when
// shrinking so that large reductions are antialiased; a crop that is already
// size×size is copied unchanged. The result is opaque. size must be positive;
// the memory used grows with size² and with size times the image's side (see
// MaxSize).
func Square(img image.Image, size int) *image.RGBA {
	b := img.Bounds()
	side := min(b.Dx(), b.Dy())
	x0 := b.Min.X + (b.Dx()-side)/2
	y0 := b.Min.Y + (b.Dy()-side)/2
	return squareCrop(img, image.Rect(x0, y0, x0+side, y0+side), size)
}

// squareCrop resizes the square crop of img to size×size over white, as Square does.
func squareCrop(img image.Image, crop image.Rectangle, size int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, size, size))
	draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	if crop.Dx() == size {
		draw.Draw(dst, dst.Bounds(), img, crop.Min, draw.Over)
	} else {
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, crop, draw.Over, nil)
	}
	return dst
}

// IsGray reports whether every pixel of m has equal red, green and blue.
func IsGray(m *image.RGBA) bool {
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := m.Pix[m.PixOffset(b.Min.X, y):m.PixOffset(b.Max.X, y)]
		for i := 0; i < len(row); i += 4 {
			if row[i] != row[i+1] || row[i] != row[i+2] {
				return false
			}
		}
	}
	return true
}

// Planes writes the opaque image m into dst as channels planes of H×W bytes:
// channels 3 gives the red, green and blue planes, channels 1 the BT.601 luma
// (the weights of color.GrayModel), which equals the value of gray pixels
// exactly. It panics if channels is not 1 or 3 or if len(dst) is not
// channels·H·W.
func Planes(dst []uint8, m *image.RGBA, channels int) {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	if channels != 1 && channels != 3 {
		panic(fmt.Sprintf("imgio.Planes: channels = %d, want 1 or 3", channels))
	}
	if len(dst) != channels*w*h {
		panic(fmt.Sprintf("imgio.Planes: len(dst) = %d, want %d", len(dst), channels*w*h))
	}
	plane := w * h
	for y := range h {
		row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
		for x := range w {
			r, g, bl := uint32(row[4*x]), uint32(row[4*x+1]), uint32(row[4*x+2])
			i := y*w + x
			if channels == 1 {
				dst[i] = uint8((19595*r + 38470*g + 7471*bl + 1<<15) >> 16)
				continue
			}
			dst[i], dst[plane+i], dst[2*plane+i] = uint8(r), uint8(g), uint8(bl)
		}
	}
}

// LoadImage reads the image file at path and returns it in model space as
// channels×size×size values, upright, cropped and resized as by File.Square.
// Channels must be 1 (gray) or 3 (RGB) and size in [1, MaxSize]; the file is
// refused as Open refuses it.
func LoadImage(path string, size, channels int) ([]float32, error) {
	if size <= 0 || size > MaxSize {
		return nil, fmt.Errorf("load %s: size %d is outside [1, %d]", path, size, MaxSize)
	}
	if channels != 1 && channels != 3 {
		return nil, fmt.Errorf("load %s: channels %d must be 1 or 3", path, channels)
	}
	f, err := Open(context.Background(), path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer f.Close()
	m, err := f.Square(size)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	pix := make([]uint8, channels*size*size)
	Planes(pix, m, channels)
	out := make([]float32, len(pix))
	for i, v := range pix {
		out[i] = ToModel(v)
	}
	return out, nil
}
