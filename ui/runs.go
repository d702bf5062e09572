package ui

import (
	"slices"
	"sync"

	"fyne.io/fyne/v2/widget"
)

// runPicker is a run selector filled from Backend.Runs (newest first); the Train, Sample
// and Gallery screens each have one.
type runPicker struct {
	sel   *widget.Select
	first []string // fixed choices before the runs ("New run" on the Train screen)

	mu   sync.Mutex
	runs []RunInfo
}

func newRunPicker(first []string, changed func(string)) *runPicker {
	return &runPicker{sel: widget.NewSelect(slices.Clone(first), changed), first: first}
}

// reload lists the runs off the UI goroutine, then, on it, refills the choices, keeps
// the selection if it still exists (else picks the first choice) and calls then with
// whether the selection changed.
func (r *runPicker) reload(s *Studio, then func(changed bool)) {
	go func() {
		runs, err := s.backend.Runs()
		if err != nil {
			s.fail("Listing runs", err)
			return
		}
		s.do(func() {
			r.mu.Lock()
			r.runs = runs
			r.mu.Unlock()
			opts := slices.Clone(r.first)
			for _, run := range runs {
				opts = append(opts, run.Name)
			}
			r.sel.Options = opts
			r.sel.Refresh()
			old, sel := r.sel.Selected, r.sel.Selected
			if !slices.Contains(opts, sel) {
				sel = ""
				if len(opts) > 0 {
					sel = opts[0]
				}
			}
			if sel != old {
				r.sel.SetSelected(sel)
			}
			if then != nil {
				then(sel != old)
			}
		})
	}()
}

// selected returns the chosen run, if a run (not a fixed choice) is chosen.
func (r *runPicker) selected() (RunInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, run := range r.runs {
		if run.Name == r.sel.Selected {
			return run, true
		}
	}
	return RunInfo{}, false
}
