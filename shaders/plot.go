package shaders

import (
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"
)

// Series is one line of a plot.
type Series struct {
	X, Y  []float64  // same length; X increasing (training steps), Y values (loss); points with a non-finite coordinate are skipped
	Color color.RGBA // premultiplied, as everywhere in image/color (see WithAlpha); zero: a default palette colour
	Width float32    // line width in pixels; 0 means 1.5
	Label string     // optional; labelled series are listed in a legend in the top-right corner
}

// Plot is a line chart: axes, ticks with labels, and series.
//
// The x axis spans the data exactly; the y axis spans the data plus 5% on
// each side. Ticks are nice numbers: 1-2-5 steps on linear axes, decades on a
// log axis (with 2 and 5 when it spans few decades, and unlabelled minor grid
// lines at 2..9). Tick positions are snapped to whole pixels so that grid
// lines are crisp.
type Plot struct {
	Width, Height int
	Series        []Series // at most MaxSeries, drawn in order (the last on top)
	LogY          bool     // log10 y axis (non-positive values are skipped)
	IntegerX      bool     // x values are counts (training steps): no ticks between whole numbers
	Title         string   // optional, drawn top-left
	// Colours; zero values get defaults that suit a white card on both a
	// light and a dark Fyne theme: white background, light gray grid lines,
	// mid gray axes, dark gray text.
	Background, Axis, GridLine, Text color.RGBA
}

// MaxSeries is the largest number of series a Plot may have.
const MaxSeries = 16

// maxTicks bounds the grid lines of a log axis; beyond it the minor lines
// would only blur into a gray band.
const maxTicks = 64

// maxPlotSide bounds Width and Height.
const maxPlotSide = 1 << 14

// Default colours of a Plot.
var (
	DefaultBackground = color.RGBA{255, 255, 255, 255}
	DefaultAxis       = color.RGBA{120, 120, 120, 255}
	DefaultGridLine   = color.RGBA{226, 226, 226, 255}
	DefaultText       = color.RGBA{68, 68, 68, 255}
)

// Palette is the colour of series whose Color is zero, by index.
var Palette = []color.RGBA{
	{31, 119, 180, 255},  // blue
	{255, 127, 14, 255},  // orange
	{44, 160, 44, 255},   // green
	{214, 39, 40, 255},   // red
	{148, 103, 189, 255}, // purple
	{140, 86, 75, 255},   // brown
	{227, 119, 194, 255}, // pink
	{127, 127, 127, 255}, // gray
}

// Validate reports what is wrong with p, or nil.
func (p Plot) Validate() error {
	if p.Width < 1 || p.Height < 1 || p.Width > maxPlotSide || p.Height > maxPlotSide {
		return fmt.Errorf("shaders: plot: size %d×%d, need 1..%d pixels each way", p.Width, p.Height, maxPlotSide)
	}
	if len(p.Series) > MaxSeries {
		return fmt.Errorf("shaders: plot: %d series, at most %d", len(p.Series), MaxSeries)
	}
	for i, s := range p.Series {
		if len(s.X) != len(s.Y) {
			return fmt.Errorf("shaders: plot: series %d: len(X) = %d but len(Y) = %d", i, len(s.X), len(s.Y))
		}
		if !(s.Width >= 0 && s.Width <= 64) {
			return fmt.Errorf("shaders: plot: series %d: Width = %v, need 0..64 pixels", i, s.Width)
		}
		last := math.Inf(-1)
		for k, x := range s.X {
			if !usable(x, s.Y[k], p.LogY) {
				continue
			}
			if x < last {
				return fmt.Errorf("shaders: plot: series %d: X must not decrease (X[%d] = %v after %v)", i, k, x, last)
			}
			last = x
		}
	}
	return nil
}

// usable reports whether the point (x, y) is drawn.
func usable(x, y float64, logY bool) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) {
		return false
	}
	return !logY || y > 0
}

// Smooth returns the exponential moving average of y with weight alpha in
// [0, 1) (0: no smoothing; 0.6 to 0.99 are typical), debiased like
// TensorBoard's smoothing so that the start of the curve is not pulled
// towards zero:
//
//	last = alpha*last + (1-alpha)*y[i]; out[i] = last / (1 - alpha^(i+1))
//
// where i counts finite values only; non-finite values are passed through and
// do not disturb the average. Alpha outside [0, 1) is clamped.
func Smooth(y []float64, alpha float64) []float64 {
	out := make([]float64, len(y))
	if !(alpha > 0) {
		copy(out, y)
		return out
	}
	alpha = min(alpha, 0.9999)
	last, n := 0.0, 0
	for i, v := range y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			out[i] = v
			continue
		}
		n++
		last = last*alpha + (1-alpha)*v
		out[i] = last / (1 - math.Pow(alpha, float64(n)))
	}
	return out
}

// tickLine is a grid line/tick at a whole pixel of the plot area.
type tickLine struct {
	pos  int // column (x) or row (y) inside the plot area
	kind int // 1: major (labelled, with a tick mark), 2: minor (grid line only)
}

// seriesGeom is a series prepared for the per-pixel function: see plot.frag
// for the meaning of a and b.
type seriesGeom struct {
	color rgba    // premultiplied
	halfW float32 // half the line width
	reach int     // ceil(halfW + 1)
	a, b  []float32

	bandLo, bandHi []int32 // see bands
}

// plotPrep holds everything both renderers derive from a validated Plot.
type plotPrep struct {
	w, h                         int
	left, top, pw, ph            int // plot area (0×0 when the picture is too small for one)
	tick                         int
	bg, axis, gridMajor, gridMin rgba
	xTicks, yTicks               []tickLine
	series                       []seriesGeom
	labels                       []textItem
	legend                       []legendEntry
	text, background, gridColor  color.RGBA
	x0, x1, y0, y1               float64 // data ranges (y in log10 units when LogY)
	xTickValues, yTickValues     []float64
	xTickLabels, yTickLabels     []string
	xk, yk                       []int32 // grid line kind per plot column and row, see lookups
}

// orDefault returns c, or d when c is the zero colour.
func orDefault(c, d color.RGBA) color.RGBA {
	if c == (color.RGBA{}) {
		return d
	}
	return c
}

// preparePlot validates p and lays out the chart: margins, ticks, labels and
// the per-column geometry of every series.
func preparePlot(p Plot) (*plotPrep, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := loadFonts(); err != nil {
		return nil, fmt.Errorf("shaders: plot: fonts: %w", err)
	}
	bg := orDefault(p.Background, DefaultBackground)
	gridC := orDefault(p.GridLine, DefaultGridLine)
	q := &plotPrep{
		w: p.Width, h: p.Height, tick: 4,
		bg: unorm(bg), axis: unorm(orDefault(p.Axis, DefaultAxis)),
		gridMajor: unorm(gridC), gridMin: unorm(scaleAlpha(gridC, 0.45)),
		text: orDefault(p.Text, DefaultText), background: bg, gridColor: gridC,
	}

	// Usable points, y transformed for a log axis.
	xs := make([][]float64, len(p.Series))
	ys := make([][]float64, len(p.Series))
	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for i, s := range p.Series {
		for k, x := range s.X {
			y := s.Y[k]
			if !usable(x, y, p.LogY) {
				continue
			}
			if p.LogY {
				y = math.Log10(y)
			}
			xs[i] = append(xs[i], x)
			ys[i] = append(ys[i], y)
			xmin, xmax = min(xmin, x), max(xmax, x)
			ymin, ymax = min(ymin, y), max(ymax, y)
		}
	}
	if xmin > xmax { // no data
		xmin, xmax = 0, 1
		ymin, ymax = 0, 1
		if p.LogY {
			ymin, ymax = -1, 0
		}
	}
	if xmin == xmax {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymin == ymax {
		pad := math.Abs(ymin) * 0.1
		if p.LogY {
			pad = 0.1
		} else if pad == 0 {
			pad = 1
		}
		ymin, ymax = ymin-pad, ymax+pad
	} else {
		pad := (ymax - ymin) * 0.05
		ymin, ymax = ymin-pad, ymax+pad
	}
	q.x0, q.x1, q.y0, q.y1 = xmin, xmax, ymin, ymax

	// Vertical layout.
	top := 10
	if p.Title != "" {
		q.labels = append(q.labels, textItem{text: p.Title, title: true, x: 8, y: 6 + titleAscent})
		top = 6 + titleHeight + 8
	}
	bottom := q.tick + 3 + labelHeight + 4
	q.top = top
	q.ph = p.Height - top - bottom
	if q.ph < 8 {
		return q.noArea(), nil
	}

	// Y ticks, then the left margin from the widest label.
	yt := yTicks(ymin, ymax, q.ph, p.LogY)
	wmax := 0
	for _, t := range yt {
		if t.label != "" {
			wmax = max(wmax, textWidth(labelFace, t.label))
		}
	}
	q.left = 1 + q.tick + 4 + wmax + 4
	right := 14
	q.pw = p.Width - q.left - right
	if q.pw < 8 {
		return q.noArea(), nil
	}

	// Positions in plot-area pixels: x in [0.5, pw-0.5], y from the top.
	xpx := func(x float64) float64 { return 0.5 + (x-xmin)/(xmax-xmin)*float64(q.pw-1) }
	ypx := func(y float64) float64 { return (ymax - y) / (ymax - ymin) * float64(q.ph) }
	snap := func(v float64, n int) int { return max(0, min(n-1, int(math.Floor(v)))) }

	for _, t := range yt {
		row := snap(ypx(t.value), q.ph)
		q.yTicks = append(q.yTicks, tickLine{row, t.kind})
		if t.kind == 1 {
			q.yTickValues = append(q.yTickValues, t.value)
			q.yTickLabels = append(q.yTickLabels, t.label)
			lw := textWidth(labelFace, t.label)
			// Digits are about 0.72 em tall: centre them on the tick row.
			q.labels = append(q.labels, textItem{text: t.label,
				x: q.left - 1 - q.tick - 4 - lw, y: top + row + (labelSize*72/100+1)/2})
		}
	}
	for _, t := range xTicks(xmin, xmax, q.pw, p.IntegerX) {
		col := snap(xpx(t.value), q.pw)
		q.xTicks = append(q.xTicks, tickLine{col, 1})
		q.xTickValues = append(q.xTickValues, t.value)
		q.xTickLabels = append(q.xTickLabels, t.label)
		lw := textWidth(labelFace, t.label)
		x := q.left + col - lw/2
		x = max(1, min(p.Width-1-lw, x))
		q.labels = append(q.labels, textItem{text: t.label, x: x, y: top + q.ph + 1 + q.tick + 3 + labelAscent})
	}

	// Series geometry.
	for i, s := range p.Series {
		c := s.Color
		if c == (color.RGBA{}) {
			c = Palette[i%len(Palette)]
		}
		w := s.Width
		if w == 0 {
			w = 1.5
		}
		g := seriesGeom{color: unorm(c), halfW: w / 2, reach: int(math.Ceil(float64(w/2) + 1))}
		px := make([]float64, len(xs[i]))
		py := make([]float64, len(ys[i]))
		for k := range px {
			px[k], py[k] = xpx(xs[i][k]), ypx(ys[i][k])
		}
		g.a, g.b = columns(px, py, q.pw)
		q.series = append(q.series, g)
		if s.Label != "" {
			q.legend = append(q.legend, legendEntry{label: s.Label, color: c, width: w})
		}
	}
	q.lookups()
	return q, nil
}

// noArea turns q into a picture without a plot area: background and title.
func (q *plotPrep) noArea() *plotPrep {
	q.left, q.top, q.pw, q.ph = 0, 0, 0, 0
	q.xTicks, q.yTicks, q.series = nil, nil, nil
	q.lookups()
	return q
}

// scaleAlpha scales the premultiplied colour c by alpha in [0,1].
func scaleAlpha(c color.RGBA, alpha float64) color.RGBA {
	alpha = math.Max(0, math.Min(1, alpha))
	m := func(v uint8) uint8 { return uint8(math.Round(float64(v) * alpha)) }
	return color.RGBA{m(c.R), m(c.G), m(c.B), m(c.A)}
}

// columns computes the per-column geometry of the polyline (px, py), px
// non-decreasing, for a plot area pw columns wide. Column j covers
// x in [j, j+1]. Within it the line is drawn as the chord between the
// polyline's points at the column's edges (or its ends), plus, when data
// points fall inside the column, a vertical span at x = j+0.5 from the lowest
// to the highest of them and the chord's middle. Dense, noisy data thus fills
// its min..max envelope, and a sparse line is drawn exactly as its segments.
// The result is two arrays of pw RGBA32F texels as described in plot.frag.
func columns(px, py []float64, pw int) (a, b []float32) {
	a = make([]float32, 4*pw)
	b = make([]float32, 4*pw)
	n := len(px)
	if n < 2 {
		return a, b // nothing to draw: every column invalid
	}
	first, last := px[0], px[n-1]
	k := 0 // px[k] <= x for the current position x
	yAt := func(x float64) float64 {
		for k+1 < n-1 && px[k+1] <= x {
			k++
		}
		x0, x1 := px[k], px[k+1]
		if x1 <= x0 {
			return py[k+1]
		}
		t := (x - x0) / (x1 - x0)
		return py[k] + (py[k+1]-py[k])*min(1, max(0, t))
	}
	v := 0 // next vertex not yet assigned to a column
	for j := 0; j < pw; j++ {
		xa, xb := max(float64(j), first), min(float64(j+1), last)
		if xa > xb {
			continue
		}
		ya := yAt(xa)
		yb := yAt(xb)
		dx, dy := float32(xb-xa), float32(yb-ya)
		o := 4 * j
		a[o], a[o+1], a[o+2], a[o+3] = float32(xa), float32(ya), dx, dy
		inv := float32(0)
		if l2 := float64(dx)*float64(dx) + float64(dy)*float64(dy); l2 > 0 {
			inv = float32(1 / l2)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for v < n && px[v] < xa {
			v++
		}
		for i := v; i < n && px[i] <= xb; i++ {
			lo, hi = min(lo, py[i]), max(hi, py[i])
		}
		if lo <= hi {
			xm := min(xb, max(xa, float64(j)+0.5))
			ym := ya
			if xb > xa {
				ym = ya + (yb-ya)*(xm-xa)/(xb-xa)
			}
			lo, hi = min(lo, ym), max(hi, ym)
			b[o], b[o+1], b[o+2], b[o+3] = inv, float32(lo), float32(hi), 1
		} else {
			b[o], b[o+1], b[o+2], b[o+3] = inv, 1, 0, 1
		}
	}
	return a, b
}

// tick is a tick value with its label ("" for minor ticks).
type tick struct {
	value float64 // in axis units (log10 of the value on a log axis)
	label string
	kind  int // 1 major, 2 minor
}

// niceStep returns the smallest 1-2-5 step that splits span into at most
// target intervals.
func niceStep(span float64, target int) float64 {
	raw := span / float64(max(target, 1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// linearTicks returns the multiples of a nice step inside [lo, hi]: at most
// about target+1 of them, and at least two (the step is refined if needed).
func linearTicks(lo, hi float64, target int) (values []float64, step float64) {
	for t := max(target, 1); ; t++ {
		step = niceStep(hi-lo, t)
		k0 := math.Ceil(lo/step - 1e-9)
		k1 := math.Floor(hi/step + 1e-9)
		values = values[:0]
		for k := k0; k <= k1; k++ {
			v := k * step
			if math.Abs(v) < step*1e-9 {
				v = 0
			}
			values = append(values, v)
		}
		if len(values) >= 2 || t >= target+20 {
			return values, step
		}
	}
}

// formatTick formats a tick value v of an axis with tick spacing step, with
// just enough digits: 0.05, 0.1, 1.5, 200, 2e-5, 1.5e6.
func formatTick(v, step float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	if a >= 1e6 || a < 1e-4 {
		d := int(math.Floor(math.Log10(a)+1e-9) - math.Floor(math.Log10(step)+1e-9))
		s := strconv.FormatFloat(v, 'e', max(0, min(6, d)), 64)
		mant, exp, _ := strings.Cut(s, "e")
		if strings.Contains(mant, ".") {
			mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
		}
		e, _ := strconv.Atoi(exp)
		return mant + "e" + strconv.Itoa(e)
	}
	dec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// xTicks returns the labelled ticks of the x axis [lo, hi], about one per
// 80 pixels; values of 10000 and more are labelled 10k, 20k, ... (or M).
func xTicks(lo, hi float64, pw int, integer bool) []tick {
	values, step := linearTicks(lo, hi, max(2, min(40, pw/80)))
	if integer && step < 1 {
		step, values = 1, values[:0]
		for v := math.Ceil(lo); v <= hi; v++ {
			values = append(values, v)
		}
	}
	big := math.Max(math.Abs(lo), math.Abs(hi))
	div, suffix := 1.0, ""
	switch {
	case big >= 1e7 && step >= 1e6:
		div, suffix = 1e6, "M"
	case big >= 1e4 && step >= 1e3:
		div, suffix = 1e3, "k"
	}
	ts := make([]tick, len(values))
	for i, v := range values {
		l := formatTick(v/div, step/div)
		if v != 0 {
			l += suffix
		}
		ts[i] = tick{value: v, label: l, kind: 1}
	}
	return ts
}

// yTicks returns the ticks of the y axis [lo, hi] (log10 units if logY) for
// a plot area ph pixels tall: about one labelled tick per 45 pixels.
func yTicks(lo, hi float64, ph int, logY bool) []tick {
	target := max(2, min(40, ph/45))
	if !logY {
		values, step := linearTicks(lo, hi, target)
		ts := make([]tick, len(values))
		for i, v := range values {
			ts[i] = tick{value: v, label: formatTick(v, step), kind: 1}
		}
		return ts
	}
	d0, d1 := math.Ceil(lo-1e-9), math.Floor(hi+1e-9)
	decades := int(d1-d0) + 1
	pxPerDecade := float64(ph) / (hi - lo)
	minLabelGap := float64(labelSize) + 3
	var ts []tick
	inside := func(l float64) bool { return l >= lo-1e-9 && l <= hi+1e-9 }
	// Few decades: label 1, 2 and 5 times the powers of ten, if they fit.
	if decades <= 2 && pxPerDecade*math.Log10(2.5) >= minLabelGap {
		for d := math.Floor(lo); d <= math.Ceil(hi); d++ {
			for m := 1; m <= 9; m++ {
				l := d + math.Log10(float64(m))
				if !inside(l) {
					continue
				}
				if m == 1 || m == 2 || m == 5 {
					ts = append(ts, tick{value: l, label: formatTick(float64(m)*math.Pow(10, d), math.Pow(10, d)), kind: 1})
				} else {
					ts = append(ts, tick{value: l, kind: 2})
				}
			}
		}
		if countMajor(ts) >= 2 {
			return ts
		}
		ts = nil
	}
	if decades >= 2 {
		every := 1
		for decades/every > target || pxPerDecade*float64(every) < minLabelGap {
			every++
		}
		for d := math.Floor(lo); d <= math.Ceil(hi); d++ {
			for m := 1; m <= 9; m++ {
				l := d + math.Log10(float64(m))
				if !inside(l) {
					continue
				}
				switch {
				case m == 1 && int(d)%every == 0:
					ts = append(ts, tick{value: l, label: formatTick(math.Pow(10, d), math.Pow(10, d)), kind: 1})
				case m == 1 || (every == 1 && pxPerDecade >= 40):
					ts = append(ts, tick{value: l, kind: 2})
				}
			}
		}
		return capTicks(ts)
	}
	// Less than two decades and 1-2-5 does not give two labels: nice linear
	// steps in value space, with at least two ticks.
	vlo, vhi := math.Pow(10, lo), math.Pow(10, hi)
	values, step := linearTicks(vlo, vhi, target)
	for _, v := range values {
		if v > 0 {
			ts = append(ts, tick{value: math.Log10(v), label: formatTick(v, step), kind: 1})
		}
	}
	return ts
}

// countMajor counts the labelled ticks.
func countMajor(ts []tick) int {
	n := 0
	for _, t := range ts {
		if t.kind == 1 {
			n++
		}
	}
	return n
}

// capTicks drops the minor ticks when there are more than maxTicks.
func capTicks(ts []tick) []tick {
	if len(ts) <= maxTicks {
		return ts
	}
	out := ts[:0]
	for _, t := range ts {
		if t.kind == 1 {
			out = append(out, t)
		}
	}
	return out[:min(len(out), maxTicks)]
}
