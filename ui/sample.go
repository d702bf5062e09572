package ui

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// Sampler choices.
const (
	samplerDDPM = "DDPM (Algorithm 2, all T steps)"
	samplerDDIM = "DDIM"
)

// stripImages is how many images the progression strip follows.
const stripImages = 8

// sampleScreen generates images from a run and shows them denoise step by step.
type sampleScreen struct {
	s       *Studio
	content fyne.CanvasObject

	run                           *runPicker
	ema                           *widget.Check
	sampler                       *widget.RadioGroup
	steps, eta, seed, count       *field
	seedA, seedB, icount          *field
	sample, interp, stop          *widget.Button
	saveGrid, saveStrip, saveEach *widget.Button
	openFile, openFolder, export  *widget.Button
	xt, x0                        *canvas.Image
	caption, formErr, estimate    *widget.Label
	bar                           *widget.ProgressBar

	mu     sync.Mutex
	drawn  time.Time // when the last frame was drawn
	cancel context.CancelFunc
	result Images                   // the last finished samples
	cols   int                      // columns of the result grid
	strip  *imgio.Progression       // steps kept for the progression strip
	passes map[string]time.Duration // time of one network pass over one image, by run and device (0: measuring)
}

func newSampleScreen(s *Studio) *sampleScreen {
	p := &sampleScreen{s: s, passes: map[string]time.Duration{}}
	p.run = newRunPicker(nil, func(string) { p.runChanged() })
	p.run.sel.PlaceHolder = "(no runs yet: train one first)"
	p.ema = widget.NewCheck("EMA weights", nil)
	p.ema.SetChecked(true)
	p.sampler = widget.NewRadioGroup([]string{samplerDDPM, samplerDDIM}, func(string) { p.validate() })
	p.sampler.SetSelected(samplerDDIM)
	p.steps = newField("DDIM steps", "50", intIn(1, 100000))
	p.eta = newField("DDIM η", "0", floatIn(0, 1, false, false))
	p.seed = newField("Seed", "0", intIn(0, 1<<62))
	p.count = newField("Images", "16", intIn(1, 256))
	p.seedA = newField("Seed A", "1", intIn(0, 1<<62))
	p.seedB = newField("Seed B", "2", intIn(0, 1<<62))
	p.icount = newField("Images between", "8", intIn(2, 64))
	for _, f := range []*field{p.steps, p.eta, p.seed, p.count, p.seedA, p.seedB, p.icount} {
		f.entry.OnChanged = func(string) { p.validate() }
	}
	p.formErr = widget.NewLabel("")
	p.formErr.Importance = widget.DangerImportance
	p.formErr.Wrapping = fyne.TextWrapWord
	p.sample = widget.NewButtonWithIcon("Sample", theme.MediaPlayIcon(), p.startSampling)
	p.sample.Importance = widget.HighImportance
	p.interp = widget.NewButtonWithIcon("Interpolate", theme.MediaPlayIcon(), p.startInterpolation)
	p.stop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), p.cancelRun)
	p.stop.Disable()
	p.saveGrid = widget.NewButtonWithIcon("Save grid…", theme.DocumentSaveIcon(), p.exportGrid)
	p.saveStrip = widget.NewButtonWithIcon("Save progression strip…", theme.DocumentSaveIcon(), p.exportStrip)
	p.saveEach = widget.NewButtonWithIcon("Save each image…", theme.FolderOpenIcon(), p.exportEach)
	for _, b := range []*widget.Button{p.saveGrid, p.saveStrip, p.saveEach} {
		b.Disable()
	}
	p.openFile = widget.NewButtonWithIcon("Open model…", theme.FileIcon(), p.chooseModelFile)
	p.openFolder = widget.NewButtonWithIcon("Open model folder…", theme.FolderOpenIcon(), p.chooseModelFolder)
	p.export = widget.NewButtonWithIcon("Export model…", theme.DocumentSaveIcon(), p.exportModel)
	p.estimate = widget.NewLabel("")
	p.estimate.Wrapping = fyne.TextWrapWord

	form := widget.NewForm(
		widget.NewFormItem("Run", p.run.sel),
		widget.NewFormItem("Weights", p.ema),
		widget.NewFormItem("Sampler", p.sampler),
		widget.NewFormItem(p.steps.label, p.steps.entry),
		widget.NewFormItem(p.eta.label, p.eta.entry),
		widget.NewFormItem(p.seed.label, p.seed.entry),
		widget.NewFormItem(p.count.label, p.count.entry),
	)
	iform := widget.NewForm(
		widget.NewFormItem(p.seedA.label, p.seedA.entry),
		widget.NewFormItem(p.seedB.label, p.seedB.entry),
		widget.NewFormItem(p.icount.label, p.icount.entry),
	)
	left := container.NewVBox(container.NewGridWithColumns(2, p.openFile, p.openFolder), form,
		container.NewGridWithColumns(2, p.sample, p.stop), p.estimate,
		widget.NewSeparator(), widget.NewLabel("Interpolate between two seeds' noise (DDIM, η = 0):"), iform, p.interp,
		widget.NewSeparator(), p.saveGrid, p.saveStrip, p.saveEach, p.export, p.formErr)
	p.xt = newView(300, 300, false)
	p.x0 = newView(300, 300, false)
	p.caption = widget.NewLabel("Choose a run and press Sample: x_t (left) and the prediction x̂0 (right) are shown at every step.")
	p.caption.Wrapping = fyne.TextWrapWord
	p.bar = widget.NewProgressBar()
	right := container.NewBorder(container.NewVBox(p.bar, p.caption), nil, nil, nil, container.NewGridWithColumns(2, p.xt, p.x0))
	split := container.NewHSplit(container.NewVScroll(left), right)
	split.Offset = 0.3
	p.content = split
	p.validate()
	return p
}

// refreshRuns reloads the run list.
func (p *sampleScreen) refreshRuns() { p.run.reload(p.s, func(bool) { p.validate() }) }

func (p *sampleScreen) selectedRun() (RunInfo, bool) { return p.run.selected() }

func (p *sampleScreen) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cancel != nil
}

// validate shows what is wrong and enables the buttons that can work.
func (p *sampleScreen) validate() bool {
	if p.formErr == nil || p.sample == nil {
		return false
	}
	ddim := p.sampler.Selected == samplerDDIM
	if ddim {
		p.steps.entry.Enable()
		p.eta.entry.Enable()
	} else {
		p.steps.entry.Disable()
		p.eta.entry.Disable()
	}
	probs := problems(p.steps, p.eta, p.seed, p.count, p.seedA, p.seedB, p.icount)
	if _, ok := p.selectedRun(); !ok {
		probs = append(probs, "Run: choose a trained run")
	}
	p.formErr.SetText(strings.Join(probs, "\n"))
	if _, ok := p.selectedRun(); ok {
		p.export.Enable()
	} else {
		p.export.Disable()
	}
	if len(probs) == 0 {
		p.estimate.SetText(p.expected())
	} else {
		p.estimate.SetText("")
	}
	if len(probs) == 0 && !p.busy() {
		p.sample.Enable()
		p.interp.Enable()
	} else {
		p.sample.Disable()
		p.interp.Disable()
	}
	return len(probs) == 0
}

// begin marks a sampling in progress and returns its context.
func (p *sampleScreen) begin() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel = cancel
	p.strip = imgio.NewProgression(stripImages)
	p.mu.Unlock()
	p.sample.Disable()
	p.interp.Disable()
	p.stop.Enable()
	p.bar.SetValue(0)
	return ctx
}

// end marks the sampling finished, with result res laid out cols wide.
func (p *sampleScreen) end(res Images, cols int, err error, what string) {
	p.mu.Lock()
	p.cancel = nil
	if err == nil {
		p.result, p.cols = res, cols
	}
	p.mu.Unlock()
	if err == nil {
		if m, rerr := p.s.renderGrid(gridSpec(res, cols, 2*gridWidth)); rerr == nil {
			p.s.setImage(p.xt, m)
		}
	}
	p.s.do(func() {
		p.stop.Disable()
		p.validate()
		if err == nil {
			for _, b := range []*widget.Button{p.saveGrid, p.saveStrip, p.saveEach} {
				b.Enable()
			}
		}
	})
	switch {
	case errors.Is(err, context.Canceled):
		p.s.say("%s stopped.", what)
	case err != nil:
		p.s.fail(what, err)
	default:
		p.s.say("%s: %d images done.", what, res.N)
	}
}

// frameEvery is the least time between two frames drawn while sampling: faster than the
// eye needs, and a DDPM run of 1000 steps does not spend its time drawing.
const frameEvery = 40 * time.Millisecond

// onFrame shows one denoising step (at most one per frameEvery, and always the last) and
// keeps it for the strip if it is one of about ten.
func (p *sampleScreen) onFrame(f Frame) {
	p.mu.Lock()
	p.strip.Add(f.Step, f.Steps, f.Xt.Data, f.X0.Data, f.Xt.N, f.Xt.C, f.Xt.H, f.Xt.W)
	skip := f.Step != f.Steps && time.Since(p.drawn) < frameEvery
	if !skip {
		p.drawn = time.Now()
	}
	p.mu.Unlock()
	if skip {
		return
	}
	a, err := p.s.renderGrid(gridSpec(f.Xt, 0, gridWidth))
	if err == nil {
		var b image.Image
		if b, err = p.s.renderGrid(gridSpec(f.X0, 0, gridWidth)); err == nil {
			p.s.setImage(p.xt, a)
			p.s.setImage(p.x0, b)
		}
	}
	caption := fmt.Sprintf("Denoising step %d/%d (t = %d). Left x_t, right the prediction x̂0.", f.Step, f.Steps, f.T)
	p.s.do(func() {
		p.bar.SetValue(float64(f.Step) / float64(f.Steps))
		p.caption.SetText(caption)
	})
}

func (p *sampleScreen) startSampling() {
	if !p.validate() {
		return
	}
	r, _ := p.selectedRun()
	req := SampleRequest{Run: r.Dir, EMA: p.ema.Checked, Sampler: "ddpm", Seed: uint64(p.seed.int()), Count: int(p.count.int()),
		Device: p.s.Device()}
	if p.sampler.Selected == samplerDDIM {
		req.Sampler, req.Steps, req.Eta = "ddim", int(p.steps.int()), p.eta.float()
	}
	ctx := p.begin()
	p.s.say("Sampling %d images from %s (step %d)…", req.Count, r.Name, r.Step)
	go func() {
		res, err := p.s.backend.Sample(ctx, req, p.onFrame)
		p.end(res, 0, err, "Sampling")
	}()
}

func (p *sampleScreen) startInterpolation() {
	if !p.validate() {
		return
	}
	r, _ := p.selectedRun()
	req := InterpRequest{Run: r.Dir, EMA: p.ema.Checked, Steps: int(p.steps.int()), SeedA: uint64(p.seedA.int()),
		SeedB: uint64(p.seedB.int()), Count: int(p.icount.int()), Device: p.s.Device()}
	ctx := p.begin()
	p.s.say("Interpolating between seeds %d and %d…", req.SeedA, req.SeedB)
	go func() {
		res, err := p.s.backend.Interpolate(ctx, req, p.onFrame)
		p.end(res, req.Count, err, "Interpolation")
	}()
}

func (p *sampleScreen) cancelRun() {
	p.mu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
}

// stripImage lays the kept steps out as in Fig. 6 of the paper, as the command line does.
func (p *sampleScreen) stripImage() (image.Image, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.strip == nil {
		return nil, errors.New("no progression was recorded")
	}
	return p.strip.Image()
}

// savePNG asks where to save the image m makes.
func (p *sampleScreen) savePNG(name string, m func() (image.Image, error)) {
	p.s.saveDialog(name, func(w io.Writer) error {
		img, err := m()
		if err != nil {
			return err
		}
		return imgio.EncodePNG(w, img)
	})
}

func (p *sampleScreen) exportGrid() { p.savePNG("samples.png", p.gridImage) }

// gridImage lays the samples out as the command line's --grid does.
func (p *sampleScreen) gridImage() (image.Image, error) {
	p.mu.Lock()
	res, cols := p.result, p.cols
	p.mu.Unlock()
	if res.N == 0 {
		return nil, errors.New("nothing was sampled")
	}
	return imgio.Grid(res.Data, res.N, res.C, res.H, res.W, cols, imgio.Pad), nil
}

func (p *sampleScreen) exportStrip() { p.savePNG("progression.png", p.stripImage) }

// exportEach writes every sample as its own PNG into a chosen folder.
func (p *sampleScreen) exportEach() {
	dialog.ShowFolderOpen(func(dir fyne.ListableURI, err error) {
		if err != nil {
			p.s.fail("Saving images", err)
			return
		}
		if dir == nil {
			return
		}
		p.mu.Lock()
		res := p.result
		p.mu.Unlock()
		go func() {
			n, err := p.writeEach(dir, res)
			if err != nil {
				p.s.fail("Saving images", err)
				return
			}
			p.s.say("Saved %d images in %s", n, dir.Path())
		}()
	}, p.s.win)
}

// writeEach writes res as sample-0000.png … into dir.
func (p *sampleScreen) writeEach(dir fyne.URI, res Images) (int, error) {
	for i := 0; i < res.N; i++ {
		u, err := storage.Child(dir, fmt.Sprintf("sample-%04d.png", i))
		if err != nil {
			return i, err
		}
		one := res.Tile(i)
		m := imgio.Single(one.Data, one.C, one.H, one.W)
		w, err := storage.Writer(u)
		if err != nil {
			return i, fmt.Errorf("%s: %w", u.Path(), err)
		}
		err = imgio.EncodePNG(w, m)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return i, fmt.Errorf("%s: %w", u.Path(), err)
		}
	}
	return res.N, nil
}
