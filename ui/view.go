package ui

import (
	"image"
	"image/color"
	"io"
	"math"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"

	"github.com/ddpm-studio/ddpm-studio/shaders"
)

// gridWidth is the width in pixels that grids are rendered at before the window
// scales them to fit.
const gridWidth = 480

// padColor is the colour between tiles.
var padColor = color.RGBA{R: 40, G: 40, B: 48, A: 255}

// newView returns an image area that keeps its aspect ratio and scales pixel art
// without blurring, at least minW×minH.
func newView(minW, minH float32, smooth bool) *canvas.Image {
	img := canvas.NewImageFromImage(image.NewRGBA(image.Rect(0, 0, 1, 1)))
	img.FillMode = canvas.ImageFillContain
	if !smooth {
		img.ScaleMode = canvas.ImageScalePixels
	}
	img.SetMinSize(fyne.NewSize(minW, minH))
	return img
}

// setImage shows m in v; safe from any goroutine.
func (s *Studio) setImage(v *canvas.Image, m image.Image) {
	s.do(func() {
		v.Image = m
		v.Refresh()
	})
}

// gridSpec lays im out cols wide (0: square), upscaled to about width pixels.
func gridSpec(im Images, cols, width int) shaders.Grid {
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(im.N))))
	}
	const pad = 2
	scale := max(1, (width-pad)/(cols*(im.W+pad)))
	return shaders.Grid{Data: im.Data, N: im.N, C: im.C, H: im.H, W: im.W, Cols: cols, Scale: scale, Pad: pad, Background: padColor}
}

// renderGrid renders im with the studio's renderer, falling back to the CPU renderer
// if the GL one refuses (a grid larger than its textures, say).
func (s *Studio) renderGrid(g shaders.Grid) (*image.RGBA, error) {
	m, err := s.Renderer().Grid(g)
	if err != nil {
		if err := g.Validate(); err != nil {
			return nil, err
		}
		return shaders.NewCPU().Grid(g)
	}
	return m, nil
}

// saveDialog asks where to save a PNG (suggesting name) and runs write on the chosen file
// off the UI goroutine, reporting the outcome on the status line (and errors in a dialog).
func (s *Studio) saveDialog(name string, write func(io.Writer) error) {
	d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
		if err != nil {
			s.fail("Saving", err)
			return
		}
		if w == nil {
			return // cancelled
		}
		go func() {
			err := write(w)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				s.fail("Saving "+w.URI().Path(), err)
				return
			}
			s.say("Saved %s", w.URI().Path())
		}()
	}, s.win)
	d.SetFileName(name)
	d.SetFilter(storage.NewExtensionFileFilter([]string{".png"}))
	d.Resize(fyne.NewSize(900, 600))
	d.Show()
}
