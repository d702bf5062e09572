package imgio

import (
	"fmt"
	"image"
	"io"
	"math"

	"github.com/ddpm-studio/ddpm-studio/internal/atomicfile"
)

// PadGray is the gray level of the padding between and around tiles in Grid
// and Strip: dark enough not to distract, light enough to separate tiles
// with black backgrounds.
const PadGray = 48

// Grid tiles n model-space images (x holds n×c×h×w values, c = 1 or 3) into
// one RGBA image with cols tiles per row (0 means ceil(sqrt(n))) in row-major
// order. Tiles are separated and surrounded by pad pixels of gray PadGray,
// which also fills unused cells of the last row. Values are clamped to
// [−1, 1] and mapped as by ToPixel.
//
// It panics if n, h or w is not positive, c is not 1 or 3, cols or pad is
// negative, or len(x) is not n·c·h·w.
func Grid(x []float32, n, c, h, w, cols, pad int) *image.RGBA {
	checkShape("Grid", len(x), n, c, h, w, pad)
	if cols < 0 {
		panic(fmt.Sprintf("imgio.Grid: cols = %d is negative", cols))
	}
	if cols == 0 {
		cols = int(math.Ceil(math.Sqrt(float64(n))))
	}
	rows := (n + cols - 1) / cols
	dst := padded(rows, cols, h, w, pad)
	size := c * h * w
	for i := range n {
		drawTile(dst, x[i*size:(i+1)*size], c, h, w, pad+(i%cols)*(w+pad), pad+(i/cols)*(h+pad))
	}
	return dst
}

// Strip lays out a denoising progression as in Figure 6 of the DDPM paper:
// one row per image and one column per frame, where frames[k] holds the whole
// batch of n×c×h×w model-space values at step k. Padding and value mapping
// are as in Grid.
//
// It panics on the same invalid shapes as Grid, if frames is empty, or if a
// frame does not hold n·c·h·w values.
func Strip(frames [][]float32, n, c, h, w, pad int) *image.RGBA {
	if len(frames) == 0 {
		panic("imgio.Strip: no frames")
	}
	for _, f := range frames {
		checkShape("Strip", len(f), n, c, h, w, pad)
	}
	dst := padded(n, len(frames), h, w, pad)
	size := c * h * w
	for k, f := range frames {
		for i := range n {
			drawTile(dst, f[i*size:(i+1)*size], c, h, w, pad+k*(w+pad), pad+i*(h+pad))
		}
	}
	return dst
}

// checkShape panics unless length matches a valid n×c×h×w batch and pad is
// not negative.
func checkShape(fn string, length, n, c, h, w, pad int) {
	switch {
	case n <= 0 || h <= 0 || w <= 0:
		panic(fmt.Sprintf("imgio.%s: n, h, w = %d, %d, %d must be positive", fn, n, h, w))
	case c != 1 && c != 3:
		panic(fmt.Sprintf("imgio.%s: c = %d, want 1 or 3", fn, c))
	case pad < 0:
		panic(fmt.Sprintf("imgio.%s: pad = %d is negative", fn, pad))
	case length != n*c*h*w:
		panic(fmt.Sprintf("imgio.%s: %d values, want %d×%d×%d×%d = %d", fn, length, n, c, h, w, n*c*h*w))
	}
}

// padded returns an image for rows×cols tiles of h×w with pad pixels between
// and around them, filled with the padding colour.
func padded(rows, cols, h, w, pad int) *image.RGBA {
	dst := image.NewRGBA(image.Rect(0, 0, cols*w+(cols+1)*pad, rows*h+(rows+1)*pad))
	for i := 0; i < len(dst.Pix); i += 4 {
		dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = PadGray, PadGray, PadGray, 255
	}
	return dst
}

// drawTile draws one c×h×w model-space image with its top-left corner at
// (x0, y0).
func drawTile(dst *image.RGBA, src []float32, c, h, w, x0, y0 int) {
	plane := h * w
	for y := range h {
		for x := range w {
			i := y*w + x
			r := ToPixel(src[i])
			g, b := r, r
			if c == 3 {
				g, b = ToPixel(src[plane+i]), ToPixel(src[2*plane+i])
			}
			o := dst.PixOffset(x0+x, y0+y)
			dst.Pix[o], dst.Pix[o+1], dst.Pix[o+2], dst.Pix[o+3] = r, g, b, 255
		}
	}
}

// SavePNG writes img to path as PNG, atomically: on error any previous file
// at path is left unchanged.
func SavePNG(path string, img image.Image) error {
	err := atomicfile.WriteFile(path, func(w io.Writer) error {
		return EncodePNG(w, img)
	})
	if err != nil {
		return fmt.Errorf("save png: %w", err)
	}
	return nil
}
