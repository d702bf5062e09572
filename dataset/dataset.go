// Package dataset loads training images into memory.
//
// A Dataset holds N images of C×H×W bytes (C = 1 gray or 3 RGB) and converts
// them to model space [−1, 1] only when a batch is made, which keeps memory
// use at one byte per value.
package dataset

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/ddpm-studio/ddpm-studio/imgio"
	"github.com/ddpm-studio/ddpm-studio/internal/bytesize"
	"github.com/ddpm-studio/ddpm-studio/internal/sysmem"
)

// Dataset is a set of equally sized images held in memory.
type Dataset struct {
	// N, C, H and W are the number of images, channels (1 or 3), height and
	// width.
	N, C, H, W int
	// Pixels holds the images as N×C×H×W bytes, planar per image.
	Pixels []uint8
	// Files names the source file of each image, relative to Source, or is
	// nil for the built-in MNIST set.
	Files []string
	// Labels holds the class (0–9) of each MNIST image; nil for folders.
	Labels []uint8
	// Skipped lists files that could not be used.
	Skipped []Skip
	// Source is the folder the images came from, or "mnist".
	Source string
}

// Skip records a file that was not loaded and why.
type Skip struct {
	// Path is the file's path relative to the dataset's Source.
	Path string
	// Reason is a short plain explanation, such as "not an image".
	Reason string
}

// MaxSize is the largest Options.Size, imgio.MaxSize (1024 pixels): four times
// the side of the largest model. The dataset alone holds N·C·Size² bytes.
const MaxSize = imgio.MaxSize

// Options controls how images are loaded.
type Options struct {
	// Size is the side of the square images, in pixels, from 1 to MaxSize.
	Size int
	// Channels is 1 (gray) or 3 (RGB). 0 chooses from the data: 1 if every
	// usable image is gray (every pixel has R = G = B), else 3.
	Channels int
	// Progress, if not nil, is called after each image is decoded with the
	// number of images done and the total: the files whose headers show an
	// image within imgio's limits. Calls come from one goroutine at a time.
	Progress func(done, total int)
}

// check reports invalid options.
func (o Options) check() error {
	if o.Size <= 0 {
		return fmt.Errorf("image size %d must be positive", o.Size)
	}
	if o.Size > MaxSize {
		return fmt.Errorf("image size %d is larger than the maximum of %d", o.Size, MaxSize)
	}
	if o.Channels != 0 && o.Channels != 1 && o.Channels != 3 {
		return fmt.Errorf("channels %d must be 0 (automatic), 1 or 3", o.Channels)
	}
	return nil
}

// Load loads the built-in MNIST training set if spec is "mnist" and the
// images below the folder spec otherwise. It stops soon after ctx is done and
// returns an error that wraps ctx.Err().
func Load(ctx context.Context, spec string, opt Options) (*Dataset, error) {
	if spec == "mnist" {
		return MNIST(ctx, opt)
	}
	return LoadFolder(ctx, spec, opt)
}

// available reports the memory, in bytes, that the machine can give a
// dataset, or 0 where that is unknown; tests replace it.
var available = sysmem.Available

// checkFits refuses a dataset of n images of c×size×size bytes when the
// memory loading it needs (need bytes at the peak) is more than 90% of avail,
// the memory available, and names the largest size that fits. what names the
// images ("MNIST", "a dataset of 1000 images"). avail 0 (unknown) allows anything.
func checkFits(what string, c, size int, need, avail int64) error {
	if avail <= 0 || need <= avail/10*9 {
		return nil
	}
	advice := "use fewer images"
	// need grows with size².
	if s := int(math.Sqrt(float64(avail) * 0.9 / (float64(need) / float64(size) / float64(size)))); s >= 1 {
		advice = fmt.Sprintf("choose an image size of at most %d", s)
	}
	return fmt.Errorf("%s at %d×%d×%d needs %s of memory, %s is available: %s",
		what, size, size, c, bytesize.Format(need), bytesize.Format(avail), advice)
}

// Batch fills out with the images idx[i] in model space [−1, 1], one after
// another, each mirrored left to right where flip[i] is true. flip may be
// nil for no flipping. It panics if len(out) is not len(idx)·C·H·W or flip
// is neither nil nor as long as idx.
func (d *Dataset) Batch(idx []int, flip []bool, out []float32) {
	size := d.C * d.H * d.W
	if len(out) != len(idx)*size {
		panic(fmt.Sprintf("dataset.Batch: len(out) = %d, want %d×%d = %d", len(out), len(idx), size, len(idx)*size))
	}
	if flip != nil && len(flip) != len(idx) {
		panic(fmt.Sprintf("dataset.Batch: len(flip) = %d, want %d", len(flip), len(idx)))
	}
	for i, j := range idx {
		src := d.Pixels[j*size : (j+1)*size]
		dst := out[i*size : (i+1)*size]
		if flip == nil || !flip[i] {
			for k, v := range src {
				dst[k] = imgio.ToModel(v)
			}
			continue
		}
		for row := 0; row < len(src); row += d.W {
			s, o := src[row:row+d.W], dst[row:row+d.W]
			for x, v := range s {
				o[d.W-1-x] = imgio.ToModel(v)
			}
		}
	}
}

// SkippedSummary returns a one-line summary of the skipped files: their count
// and the first n of them with reasons, for example
// "3 files skipped: a.txt: not an image; b.png: corrupt png: unexpected EOF; and 1 more".
func (d *Dataset) SkippedSummary(n int) string {
	return skippedSummary(d.Skipped, n)
}

// skippedSummary implements SkippedSummary for a list of skips.
func skippedSummary(skipped []Skip, n int) string {
	var b strings.Builder
	switch len(skipped) {
	case 0:
		return "no files skipped"
	case 1:
		b.WriteString("1 file skipped")
	default:
		fmt.Fprintf(&b, "%d files skipped", len(skipped))
	}
	shown := max(0, min(n, len(skipped)))
	for i, s := range skipped[:shown] {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", s.Path, s.Reason)
	}
	if rest := len(skipped) - shown; rest > 0 && shown > 0 {
		fmt.Fprintf(&b, "; and %d more", rest)
	}
	return b.String()
}
