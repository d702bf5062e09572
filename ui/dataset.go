package ui

import (
	"context"
	"fmt"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// thumbs is how many images the Dataset screen shows.
const thumbs = 32

// datasetScreen shows the selected dataset: where it is from, how many images of what
// size, a strip of thumbnails and the files that were skipped.
type datasetScreen struct {
	s        *Studio
	content  fyne.CanvasObject
	source   *widget.Label
	summary  *widget.Label
	progress *widget.ProgressBar
	thumbs   *canvas.Image
	skipped  *widget.List
	skipHead *widget.Label

	mu      sync.Mutex
	cancel  context.CancelFunc
	gen     int         // load generation; results of older loads are dropped
	info    DatasetInfo // the dataset loaded last
	loaded  bool
	skipRow []Skipped
	waiters []func(DatasetInfo)
}

func newDatasetScreen(s *Studio) *datasetScreen {
	d := &datasetScreen{s: s}
	d.source = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	d.source.Wrapping = fyne.TextWrapBreak
	d.summary = widget.NewLabel("")
	d.progress = widget.NewProgressBar()
	d.progress.Hide()
	d.thumbs = newView(960, 124, false)
	d.skipHead = widget.NewLabel("")
	d.skipped = widget.NewList(
		func() int { d.mu.Lock(); defer d.mu.Unlock(); return len(d.skipRow) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			d.mu.Lock()
			defer d.mu.Unlock()
			if i < len(d.skipRow) {
				o.(*widget.Label).SetText(d.skipRow[i].Path + " — " + d.skipRow[i].Reason)
			}
		})
	open := widget.NewButtonWithIcon("Open folder…", theme.FolderOpenIcon(), func() {
		dialog.ShowFolderOpen(func(u fyne.ListableURI, err error) {
			if err != nil {
				s.fail("Open folder", err)
				return
			}
			if u != nil {
				d.load(DataSpec{Folder: u.Path()})
			}
		}, s.win)
	})
	mnist := widget.NewButtonWithIcon("Use MNIST (built-in)", theme.HomeIcon(), func() { d.load(DataSpec{Folder: "mnist"}) })
	hint := widget.NewLabel("Drop a folder of images (PNG, JPEG, GIF, BMP, TIFF, WebP), or image files, anywhere on this window.")
	hint.Wrapping = fyne.TextWrapWord
	top := container.NewVBox(container.NewHBox(open, mnist), hint, d.source, d.summary, d.progress, d.thumbs, d.skipHead)
	d.content = container.NewBorder(top, nil, nil, nil, d.skipped)
	return d
}

// load loads spec at the Train screen's image size in the background, with progress,
// replacing a load in flight.
func (d *datasetScreen) load(spec DataSpec) {
	size := d.s.train.imageSize()
	d.mu.Lock()
	if d.cancel != nil {
		d.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.gen++
	gen := d.gen
	d.mu.Unlock()

	d.source.SetText("Loading " + spec.describe() + "…")
	d.summary.SetText("")
	d.progress.SetValue(0)
	d.progress.Show()
	d.s.say("Loading %s…", spec.describe())
	go func() {
		info, err := d.s.backend.LoadDataset(ctx, spec, size, func(done, total int) {
			if total > 0 {
				d.s.do(func() { d.progress.SetValue(float64(done) / float64(total)) })
			}
		})
		d.mu.Lock()
		stale := gen != d.gen
		d.mu.Unlock()
		if stale {
			return
		}
		if err != nil {
			prev, ok := d.current()
			d.s.do(func() {
				d.progress.Hide()
				if ok {
					d.source.SetText(prev.Source)
				} else {
					d.source.SetText("No dataset")
				}
			})
			d.s.fail("Loading "+spec.describe(), err)
			return
		}
		m, rerr := d.s.renderGrid(gridSpec(info.Thumbs.First(thumbs), 16, 960))
		d.mu.Lock()
		d.info, d.loaded = info, true
		d.skipRow = info.Skipped
		waiters := d.waiters
		d.waiters = nil
		d.mu.Unlock()
		d.s.do(func() {
			d.progress.Hide()
			d.source.SetText(info.Source)
			d.summary.SetText(info.summary())
			if rerr == nil {
				d.thumbs.Image = m
				d.thumbs.Refresh()
			}
			if len(info.Skipped) > 0 {
				d.skipHead.SetText(fmt.Sprintf("%d files skipped:", len(info.Skipped)))
			} else {
				d.skipHead.SetText("No files skipped.")
			}
			d.skipped.Refresh()
			d.s.train.datasetChanged(info)
			d.s.status.SetText(fmt.Sprintf("Dataset: %s — %s", info.Source, info.summary()))
			for _, w := range waiters {
				w(info)
			}
		})
		if rerr != nil {
			d.s.fail("Drawing thumbnails", rerr)
		}
	}()
}

// current returns the loaded dataset, if any.
func (d *datasetScreen) current() (DatasetInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info, d.loaded
}

// whenLoaded calls fn on the UI goroutine once the load in flight (or the next) ends well.
func (d *datasetScreen) whenLoaded(fn func(DatasetInfo)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.waiters = append(d.waiters, fn)
}

// summary is "60000 images · 28×28 · gray".
func (i DatasetInfo) summary() string {
	kind := "RGB"
	if i.Channels == 1 {
		kind = "gray"
	}
	return fmt.Sprintf("%d images · %d×%d · %s", i.Count, i.Size, i.Size, kind)
}
