package ui

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// galleryScreen lists the sample grids a run saved during training, newest first.
type galleryScreen struct {
	s       *Studio
	content fyne.CanvasObject
	run     *runPicker
	info    *widget.Label
	grid    *fyne.Container
}

func newGalleryScreen(s *Studio) *galleryScreen {
	g := &galleryScreen{s: s}
	g.run = newRunPicker(nil, func(string) { g.load() })
	g.run.sel.PlaceHolder = "(no runs yet)"
	g.info = widget.NewLabel("Sample grids are saved during training (DDIM, EMA weights) and appear here, newest first. Click one to enlarge or export it.")
	g.info.Wrapping = fyne.TextWrapWord
	g.grid = container.NewGridWrap(fyne.NewSize(200, 230))
	refresh := widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), g.refresh)
	top := container.NewVBox(container.NewBorder(nil, nil, widget.NewLabel("Run"), refresh, g.run.sel), g.info)
	g.content = container.NewBorder(top, nil, nil, nil, container.NewVScroll(g.grid))
	return g
}

// refresh reloads the run list and the selected run's grids.
func (g *galleryScreen) refresh() {
	g.run.reload(g.s, func(changed bool) {
		if !changed { // a new selection has loaded already
			g.load()
		}
	})
}

// load shows the selected run's grids.
func (g *galleryScreen) load() {
	run, ok := g.run.selected()
	if !ok {
		return
	}
	go func() {
		items, err := g.s.backend.Gallery(run.Dir)
		if err != nil {
			g.s.fail("Gallery", err)
			return
		}
		g.s.do(func() {
			g.grid.RemoveAll()
			for _, it := range items {
				g.grid.Add(g.card(it))
			}
			if len(items) == 0 {
				g.grid.Add(widget.NewLabel("No sample grids yet."))
			}
			g.grid.Refresh()
		})
	}()
}

// card is one grid: the picture and its step; tapping it opens the large view.
func (g *galleryScreen) card(it GalleryItem) fyne.CanvasObject {
	img := canvas.NewImageFromFile(it.Path)
	img.FillMode = canvas.ImageFillContain
	img.ScaleMode = canvas.ImageScalePixels
	img.SetMinSize(fyne.NewSize(190, 190))
	label := fmt.Sprintf("step %d", it.Step)
	open := widget.NewButton(label, func() { g.enlarge(it) })
	return container.NewBorder(nil, open, nil, nil, img)
}

// enlarge shows a grid large, with an Export button.
func (g *galleryScreen) enlarge(it GalleryItem) {
	img := canvas.NewImageFromFile(it.Path)
	img.FillMode = canvas.ImageFillContain
	img.ScaleMode = canvas.ImageScalePixels
	img.SetMinSize(fyne.NewSize(560, 560))
	var d dialog.Dialog
	export := widget.NewButtonWithIcon("Export…", theme.DocumentSaveIcon(), func() { g.export(it) })
	content := container.NewBorder(nil, export, nil, nil, img)
	d = dialog.NewCustom(fmt.Sprintf("Samples at step %d — %s", it.Step, filepath.Base(it.Path)), "Close", content, g.s.win)
	d.Show()
}

// export copies a grid to a file the user picks.
func (g *galleryScreen) export(it GalleryItem) {
	g.s.saveDialog(filepath.Base(it.Path), func(w io.Writer) error { return copyFile(w, it.Path) })
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
