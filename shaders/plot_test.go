package shaders

import (
	"image/color"
	"math"
	"strings"
	"testing"
)

func TestSmooth(t *testing.T) {
	// alpha 0.5: last = 0.5, 1.25, 2.125; debias 0.5, 0.75, 0.875.
	got := Smooth([]float64{1, 2, 3}, 0.5)
	want := []float64{1, 5.0 / 3, 17.0 / 7}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Errorf("Smooth[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	// Non-finite values pass through and do not count.
	got = Smooth([]float64{1, math.NaN(), 3}, 0.5)
	if got[0] != 1 || !math.IsNaN(got[1]) || math.Abs(got[2]-(0.25+1.5)/0.75) > 1e-12 {
		t.Errorf("Smooth with NaN = %v", got)
	}
	// alpha 0 is the identity; a constant stays constant (debiasing).
	if got := Smooth([]float64{4, 5}, 0); got[0] != 4 || got[1] != 5 {
		t.Errorf("Smooth(alpha 0) = %v", got)
	}
	for _, v := range Smooth([]float64{2, 2, 2, 2, 2}, 0.9) {
		if math.Abs(v-2) > 1e-12 {
			t.Errorf("Smooth of a constant = %v", v)
		}
	}
	if len(Smooth(nil, 0.6)) != 0 {
		t.Error("Smooth(nil) not empty")
	}
}

func TestPlotValidate(t *testing.T) {
	for _, c := range []struct {
		p    Plot
		want string
	}{
		{Plot{Width: 0, Height: 10}, "size 0×10"},
		{Plot{Width: 10, Height: 10, Series: []Series{{X: []float64{1}, Y: nil}}}, "len(X) = 1 but len(Y) = 0"},
		{Plot{Width: 10, Height: 10, Series: []Series{{X: []float64{2, 1}, Y: []float64{1, 1}}}}, "X must not decrease"},
		{Plot{Width: 10, Height: 10, Series: make([]Series, MaxSeries+1)}, "at most 16"},
		{Plot{Width: 10, Height: 10, Series: []Series{{Width: -1}}}, "Width = -1"},
	} {
		err := c.p.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate() = %v, want an error containing %q", err, c.want)
		}
	}
	// Skipped points do not count for the ordering: NaN, and y <= 0 on a log axis.
	p := Plot{Width: 10, Height: 10, LogY: true, Series: []Series{{X: []float64{1, 0, 2}, Y: []float64{1, -1, 1}}}}
	if err := p.Validate(); err != nil {
		t.Errorf("log plot with a skipped point: %v", err)
	}
}

func TestNiceTicks(t *testing.T) {
	isNice := func(step float64) bool {
		m := step / math.Pow(10, math.Floor(math.Log10(step)+1e-9))
		return math.Abs(m-1) < 1e-9 || math.Abs(m-2) < 1e-9 || math.Abs(m-5) < 1e-9
	}
	for _, r := range [][2]float64{{0, 1}, {0.013, 2.7}, {-3.2, 17}, {1234, 98765}, {0.00012, 0.00047}, {-1, 1}} {
		for _, target := range []int{3, 5, 8} {
			vals, step := linearTicks(r[0], r[1], target)
			if !isNice(step) {
				t.Errorf("%v target %d: step %v is not 1, 2 or 5 × 10^k", r, target, step)
			}
			if len(vals) < 2 || len(vals) > target+1 {
				t.Errorf("%v target %d: %d ticks %v", r, target, len(vals), vals)
			}
			for _, v := range vals {
				if v < r[0]-1e-9 || v > r[1]+1e-9 || math.Abs(v/step-math.Round(v/step)) > 1e-6 {
					t.Errorf("%v target %d: tick %v is not a multiple of %v inside the range", r, target, v, step)
				}
			}
		}
	}
	labels := func(ts []tick) (l []string) {
		for _, t := range ts {
			if t.kind == 1 {
				l = append(l, t.label)
			}
		}
		return l
	}
	if got := strings.Join(labels(xTicks(1, 5, 900, true)), " "); got != "1 2 3 4 5" {
		t.Errorf("integer x ticks of 1..5: %q", got)
	}
	if got := strings.Join(labels(xTicks(1, 5, 900, false)), " "); got != "1.0 1.5 2.0 2.5 3.0 3.5 4.0 4.5 5.0" {
		t.Errorf("x ticks of 1..5: %q", got)
	}
	if got := strings.Join(labels(xTicks(0, 2000, 450, true)), " "); got != "0 500 1000 1500 2000" {
		t.Errorf("x ticks 0..2000 = %q", got)
	}
	if got := strings.Join(labels(xTicks(0, 50000, 450, false)), " "); got != "0 10k 20k 30k 40k 50k" {
		t.Errorf("x ticks 0..50000 = %q", got)
	}
	if got := strings.Join(labels(yTicks(0, 1, 300, false)), " "); got != "0 0.2 0.4 0.6 0.8 1.0" {
		t.Errorf("y ticks 0..1 = %q", got)
	}
	// Log axis over many decades: decades labelled 0.0001 ... 10.
	if got := strings.Join(labels(yTicks(-4.1, 1.1, 300, true)), " "); got != "0.0001 0.001 0.01 0.1 1 10" {
		t.Errorf("log ticks 1e-4..10 = %q", got)
	}
	// Few decades: 1, 2 and 5.
	if got := strings.Join(labels(yTicks(math.Log10(0.015), math.Log10(1.5), 300, true)), " "); got != "0.02 0.05 0.1 0.2 0.5 1" {
		t.Errorf("log ticks 0.015..1.5 = %q", got)
	}
	// Within a decade: linear nice steps.
	if got := strings.Join(labels(yTicks(math.Log10(0.3), math.Log10(0.6), 300, true)), " "); got != "0.30 0.35 0.40 0.45 0.50 0.55 0.60" {
		t.Errorf("log ticks 0.3..0.6 = %q", got)
	}
	for _, c := range []struct {
		v, step float64
		want    string
	}{
		{0, 1, "0"}, {0.05, 0.01, "0.05"}, {1.5, 0.5, "1.5"}, {200, 100, "200"}, {2e-5, 1e-5, "2e-5"},
		{1.5e6, 5e5, "1.5e6"}, {1e-5, 1e-5, "1e-5"}, {0.0001, 0.0001, "0.0001"}, {-0.4, 0.2, "-0.4"},
	} {
		if got := formatTick(c.v, c.step); got != c.want {
			t.Errorf("formatTick(%v, %v) = %q, want %q", c.v, c.step, got, c.want)
		}
	}
}

func TestPlotConstantSeriesRow(t *testing.T) {
	red := color.RGBA{255, 0, 0, 255}
	for _, v := range []float64{0.5, 0.3, 2.7} {
		xs := []float64{0, 10, 20, 30, 40}
		p := Plot{Width: 320, Height: 240, Series: []Series{
			{X: xs, Y: []float64{0, 0.2, 1, 3, 3}, Color: color.RGBA{0, 0, 255, 255}},
			{X: xs, Y: []float64{v, v, v, v, v}, Color: red, Width: 3},
		}}
		q, err := preparePlot(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := NewCPU().Plot(p)
		if err != nil {
			t.Fatal(err)
		}
		// Independently: the line's centre is at (y1 - v)/(y1 - y0)*ph below the top.
		yc := (q.y1 - v) / (q.y1 - q.y0) * float64(q.ph)
		for _, lx := range []int{10, q.pw / 2, q.pw - 10} {
			x := q.left + lx
			for ly := 0; ly < q.ph; ly++ {
				d := math.Abs(float64(ly) + 0.5 - yc)
				got := pix(img, x, q.top+ly)
				switch {
				case d <= 1: // fully inside the 3 px line
					if got != red {
						t.Errorf("v=%v: (%d,%d) is %v, want the line's red (centre %.2f)", v, x, q.top+ly, got, yc)
					}
				case d >= 2.01: // outside the line and its 0.5 px ramp
					if got.R == 255 && got.G == 0 {
						t.Errorf("v=%v: (%d,%d) is red, %v px from the centre", v, x, q.top+ly, d)
					}
				}
			}
		}
	}
}

func TestPlotLineThroughPoints(t *testing.T) {
	// A straight line from the plot area's left to its right edge: the pixels
	// on it are covered, the pixels well away from it are not.
	black := color.RGBA{0, 0, 0, 255}
	p := Plot{Width: 300, Height: 200, Background: color.RGBA{255, 255, 255, 255}, GridLine: color.RGBA{255, 255, 255, 255},
		Series: []Series{{X: []float64{0, 100}, Y: []float64{0, 1}, Color: black, Width: 2}}}
	q, err := preparePlot(p)
	if err != nil {
		t.Fatal(err)
	}
	img, err := NewCPU().Plot(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []float64{0.1, 0.25, 0.5, 0.75, 0.9} {
		px := 0.5 + f*float64(q.pw-1)
		py := (q.y1 - f) / (q.y1 - q.y0) * float64(q.ph)
		x, y := q.left+int(px), q.top+int(py)
		if got := pix(img, x, y); got.R > 100 {
			t.Errorf("f=%v: pixel (%d,%d) on the line is %v, want dark", f, x, y, got)
		}
		if got := pix(img, x, y-15); got != (color.RGBA{255, 255, 255, 255}) {
			t.Errorf("f=%v: pixel (%d,%d) 15 px above the line is %v, want white", f, x, y-15, got)
		}
	}
}

func TestPlotTicksAtNiceNumbers(t *testing.T) {
	xs := make([]float64, 2001)
	ys := make([]float64, 2001)
	for i := range xs {
		xs[i] = float64(i)
		ys[i] = 0.02 + 1.2*math.Exp(-float64(i)/300)
	}
	q, err := preparePlot(Plot{Width: 512, Height: 384, LogY: true, Series: []Series{{X: xs, Y: ys}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(q.xTickLabels, " "); got != "0 500 1000 1500 2000" {
		t.Errorf("x tick labels %q", got)
	}
	if got := strings.Join(q.yTickLabels, " "); got != "1 0.5 0.2 0.1 0.05 0.02" && got != "0.02 0.05 0.1 0.2 0.5 1" {
		t.Errorf("log y tick labels %q", got)
	}
	q, err = preparePlot(Plot{Width: 512, Height: 384, Series: []Series{{X: xs, Y: ys}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(q.yTickLabels, " "); got != "0 0.2 0.4 0.6 0.8 1.0 1.2" {
		t.Errorf("linear y tick labels %q", got)
	}
	// Grid lines sit at the tick values' pixels.
	for i, v := range q.xTickValues {
		want := int(math.Floor(0.5 + v/2000*float64(q.pw-1)))
		if q.xTicks[i].pos != want {
			t.Errorf("x tick %v at column %d, want %d", v, q.xTicks[i].pos, want)
		}
	}
}

func TestPlotDegenerate(t *testing.T) {
	r := NewCPU()
	for name, p := range map[string]Plot{
		"no series":     {Width: 200, Height: 150},
		"empty series":  {Width: 200, Height: 150, Series: []Series{{}}},
		"one point":     {Width: 200, Height: 150, Series: []Series{{X: []float64{3}, Y: []float64{0.5}}}},
		"one point log": {Width: 200, Height: 150, LogY: true, Series: []Series{{X: []float64{3}, Y: []float64{0.5}}}},
		"all skipped":   {Width: 200, Height: 150, LogY: true, Series: []Series{{X: []float64{1, 2}, Y: []float64{0, -1}}}},
		"tiny":          {Width: 20, Height: 10, Title: "loss", Series: []Series{{X: []float64{1, 2}, Y: []float64{1, 2}}}},
		"1×1":           {Width: 1, Height: 1},
		"same x":        {Width: 200, Height: 150, Series: []Series{{X: []float64{5, 5, 5}, Y: []float64{1, 2, 3}}}},
	} {
		img, err := r.Plot(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if img.Bounds().Dx() != p.Width || img.Bounds().Dy() != p.Height {
			t.Errorf("%s: size %v", name, img.Bounds())
		}
	}
}
