package ui

import (
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2/widget"
)

// field is a labelled entry that parses and checks its text.
type field struct {
	label string
	entry *widget.Entry
	check func(string) error
}

// newField returns a field with an initial value and a check that says what is wrong
// in words ("must be a whole number of at least 1").
func newField(label, value string, check func(string) error) *field {
	f := &field{label: label, entry: widget.NewEntry(), check: check}
	f.entry.SetText(value)
	f.entry.Validator = check
	return f
}

// intIn checks for a whole number in [lo, hi].
func intIn(lo, hi int64) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("must be a whole number")
		}
		if v < lo || v > hi {
			return fmt.Errorf("must be between %d and %d", lo, hi)
		}
		return nil
	}
}

// floatIn checks for a number in the open or closed interval given.
func floatIn(lo, hi float64, loOpen, hiOpen bool) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("must be a number, like 0.0002 or 2e-4")
		}
		if (loOpen && v <= lo) || (!loOpen && v < lo) || (hiOpen && v >= hi) || (!hiOpen && v > hi) {
			l, h := "[", "]"
			if loOpen {
				l = "("
			}
			if hiOpen {
				h = ")"
			}
			return fmt.Errorf("must be in %s%g, %g%s", l, lo, hi, h)
		}
		return nil
	}
}

// int returns the field's value; call after check.
func (f *field) int() int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(f.entry.Text), 10, 64)
	return v
}

// float returns the field's value; call after check.
func (f *field) float() float64 {
	v, _ := strconv.ParseFloat(strings.TrimSpace(f.entry.Text), 64)
	return v
}

// problems lists what is wrong with the fields, one line each.
func problems(fields ...*field) []string {
	var out []string
	for _, f := range fields {
		if f.entry.Disabled() {
			continue
		}
		if err := f.check(f.entry.Text); err != nil {
			out = append(out, f.label+": "+err.Error())
		}
	}
	return out
}
