package ui

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"
)

// Export formats of ExportModel, as the Export dialog names them.
var exportFormats = map[string]string{
	"diffusers folder (DDPMPipeline.from_pretrained)": "diffusers",
	"PyTorch checkpoint (.ckpt, the port's naming)":   "pytorch",
}

// openModel makes a run from the model weights at path (a checkpoint or a diffusers
// folder, dropped on the window or chosen with Open model…) and shows it on the Sample
// screen.
func (s *Studio) openModel(path string) {
	s.say("Opening the model in %s…", path)
	go func() {
		info, desc, err := s.backend.ImportModel(context.Background(), path)
		if err != nil {
			s.fail("Opening "+filepath.Base(path), err)
			return
		}
		s.say("Opened %s as run %s.", desc, info.Name)
		s.do(func() {
			s.Show("Sample")
			s.sample.run.reload(s, func(bool) {
				s.sample.run.sel.SetSelected(info.Name)
				s.sample.runChanged()
			})
		})
	}()
}

// chooseModelFile asks for a checkpoint file to open.
func (p *sampleScreen) chooseModelFile() {
	dialog.ShowFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil {
			p.s.fail("Open model", err)
			return
		}
		if r == nil {
			return
		}
		path := r.URI().Path()
		r.Close()
		p.s.openModel(path)
	}, p.s.win)
}

// chooseModelFolder asks for a diffusers folder to open.
func (p *sampleScreen) chooseModelFolder() {
	dialog.ShowFolderOpen(func(dir fyne.ListableURI, err error) {
		if err != nil {
			p.s.fail("Open model folder", err)
			return
		}
		if dir != nil {
			p.s.openModel(dir.Path())
		}
	}, p.s.win)
}

// exportModel asks for a format and a place, then writes the run's weights there.
func (p *sampleScreen) exportModel() {
	r, ok := p.selectedRun()
	if !ok {
		return
	}
	var names []string
	for name := range exportFormats {
		names = append(names, name)
	}
	format := widget.NewSelect(names, nil)
	format.SetSelected(names[0])
	for _, n := range names {
		if exportFormats[n] == "diffusers" {
			format.SetSelected(n)
		}
	}
	ema := p.ema.Checked
	dialog.ShowForm("Export model", "Choose where…", "Cancel", []*widget.FormItem{widget.NewFormItem("Format", format)}, func(ok bool) {
		if !ok {
			return
		}
		write := func(out string) {
			go func() {
				if err := p.s.backend.ExportModel(r.Dir, exportFormats[format.Selected], out, ema); err != nil {
					p.s.fail("Exporting "+r.Name, err)
					return
				}
				p.s.say("Exported the %s weights of %s to %s", map[bool]string{true: "EMA", false: "raw"}[ema], r.Name, out)
			}()
		}
		if exportFormats[format.Selected] == "diffusers" {
			dialog.ShowFolderOpen(func(dir fyne.ListableURI, err error) {
				if err != nil {
					p.s.fail("Export model", err)
					return
				}
				if dir != nil {
					write(filepath.Join(dir.Path(), r.Name+"-diffusers"))
				}
			}, p.s.win)
			return
		}
		d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
			if err != nil {
				p.s.fail("Export model", err)
				return
			}
			if w == nil {
				return
			}
			out := w.URI().Path()
			w.Close() // the backend writes the file itself, atomically
			write(out)
		}, p.s.win)
		prefix := ""
		if ema {
			prefix = "ema_"
		}
		d.SetFileName(prefix + r.Name + ".ckpt")
		d.Resize(fyne.NewSize(900, 600))
		d.Show()
	}, p.s.win)
}

// largeModel is the image size from which sampling on a CPU takes minutes per image
// and step count, so that DDIM with few steps is offered first.
const largeModel = 128

// fewSteps are the DDIM steps offered first for a large model.
const fewSteps = "20"

// runChanged offers DDIM with few steps for a large model and measures how long a
// network pass takes, for the expected time (UI goroutine).
func (p *sampleScreen) runChanged() {
	r, ok := p.selectedRun()
	if !ok {
		p.validate()
		return
	}
	if r.Size >= largeModel && !p.busy() {
		p.sampler.SetSelected(samplerDDIM)
		p.steps.entry.SetText(fewSteps)
	}
	key := r.Dir + "\x00" + p.s.Device()
	p.mu.Lock()
	_, measured := p.passes[key]
	if !measured {
		p.passes[key] = 0 // measuring
	}
	p.mu.Unlock()
	p.validate()
	if measured {
		return
	}
	device := p.s.Device()
	go func() {
		d, err := p.s.backend.PassTime(context.Background(), r.Dir, device)
		p.mu.Lock()
		if err != nil {
			delete(p.passes, key)
		} else {
			p.passes[key] = d
		}
		p.mu.Unlock()
		p.s.do(func() { p.validate() })
	}()
}

// expected says how long the sampling the form describes will take (UI goroutine).
func (p *sampleScreen) expected() string {
	r, ok := p.selectedRun()
	if !ok {
		return ""
	}
	p.mu.Lock()
	pass, measured := p.passes[r.Dir+"\x00"+p.s.Device()]
	p.mu.Unlock()
	if !measured {
		return ""
	}
	if pass == 0 {
		return "Expected time: measuring a network pass…"
	}
	steps := 1000 // DDPM runs all T steps; the runs list does not carry T
	if r.T > 0 {
		steps = r.T
	}
	what := "DDPM"
	if p.sampler.Selected == samplerDDIM {
		steps, what = int(p.steps.int()), "DDIM"
	}
	n := int(p.count.int())
	total := time.Duration(steps) * time.Duration(max(n, 1)) * pass
	text := fmt.Sprintf("Expected time: about %s (%s, %d steps × %d images; one network pass over one image takes %s).",
		roundDuration(total), what, steps, n, roundDuration(pass))
	if r.Size >= largeModel && what == "DDPM" {
		text += " DDIM with few steps is much faster for a model this large."
	}
	return text
}

// roundDuration writes d for people: 7 ms, 0.4 s, 12 s, 3 min, 1 h 20 min.
func roundDuration(d time.Duration) string {
	switch {
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < 2*time.Minute:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d < 2*time.Hour:
		return fmt.Sprintf("%.0f min", d.Minutes())
	default:
		h := int(d.Hours())
		return strings.TrimSuffix(fmt.Sprintf("%d h %d min", h, int(d.Minutes())-60*h), " 0 min")
	}
}
