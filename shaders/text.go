package shaders

import (
	"image"
	"image/color"
	"image/draw"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Text is drawn on the CPU, after the pixels of the chart, by the same code
// for both renderers: it lands on identical pixels and is therefore identical.
// Fonts are the Go fonts from golang.org/x/image, rasterised in pure Go.

const (
	labelSize = 11 // tick labels and legend, pixels per em
	titleSize = 13 // title
)

var (
	fontOnce                                           sync.Once
	fontErr                                            error
	fontMu                                             sync.Mutex // font.Face values are not safe for concurrent use
	labelFace                                          font.Face
	titleFace                                          font.Face
	labelAscent, labelHeight, titleAscent, titleHeight int
)

// loadFonts parses the embedded Go fonts once.
func loadFonts() error {
	fontOnce.Do(func() {
		reg, err := opentype.Parse(goregular.TTF)
		if err != nil {
			fontErr = err
			return
		}
		bold, err := opentype.Parse(gobold.TTF)
		if err != nil {
			fontErr = err
			return
		}
		labelFace, err = opentype.NewFace(reg, &opentype.FaceOptions{Size: labelSize, DPI: 72, Hinting: font.HintingFull})
		if err != nil {
			fontErr = err
			return
		}
		titleFace, err = opentype.NewFace(bold, &opentype.FaceOptions{Size: titleSize, DPI: 72, Hinting: font.HintingFull})
		if err != nil {
			fontErr = err
			return
		}
		m := labelFace.Metrics()
		labelAscent, labelHeight = m.Ascent.Ceil(), m.Height.Ceil()
		m = titleFace.Metrics()
		titleAscent, titleHeight = m.Ascent.Ceil(), m.Height.Ceil()
	})
	return fontErr
}

// textWidth returns the advance width of s in pixels.
func textWidth(face font.Face, s string) int {
	fontMu.Lock()
	defer fontMu.Unlock()
	return font.MeasureString(face, s).Ceil()
}

// textItem is a string placed at a baseline point.
type textItem struct {
	text  string
	title bool // title face instead of label face
	x, y  int  // left end of the baseline
}

// legendEntry is one line of the legend.
type legendEntry struct {
	label string
	color color.RGBA
	width float32
}

// drawOverlay draws the text and the legend of a plot onto img.
func drawOverlay(img *image.RGBA, p *plotPrep) {
	fontMu.Lock()
	defer fontMu.Unlock()
	src := image.NewUniform(p.text)
	for _, t := range p.labels {
		face := labelFace
		if t.title {
			face = titleFace
		}
		d := font.Drawer{Dst: img, Src: src, Face: face, Dot: fixed.P(t.x, t.y)}
		d.DrawString(t.text)
	}
	if len(p.legend) == 0 {
		return
	}
	// Legend: a box in the top-right corner of the plot area, one line per
	// labelled series: a short stroke of the series colour and its label.
	const swatch, gap, inset = 18, 6, 6
	wmax := 0
	for _, e := range p.legend {
		wmax = max(wmax, font.MeasureString(labelFace, e.label).Ceil())
	}
	lineH := labelHeight + 2
	bw := inset + swatch + gap + wmax + inset
	bh := inset + len(p.legend)*lineH - 2 + inset
	x1 := p.left + p.pw - 8
	x0 := x1 - bw
	y0 := p.top + 8
	if x0 < p.left || y0+bh > p.top+p.ph {
		return // no room
	}
	box := image.Rect(x0, y0, x1, y0+bh)
	fill := p.background
	if fill.A == 255 {
		fill = WithAlpha(fill, 0.85)
	}
	draw.Draw(img, box, image.NewUniform(fill), image.Point{}, draw.Over)
	border := image.NewUniform(p.gridColor)
	for _, r := range []image.Rectangle{
		image.Rect(x0, y0, x1, y0+1), image.Rect(x0, y0+bh-1, x1, y0+bh),
		image.Rect(x0, y0+1, x0+1, y0+bh-1), image.Rect(x1-1, y0+1, x1, y0+bh-1),
	} {
		draw.Draw(img, r, border, image.Point{}, draw.Over)
	}
	for i, e := range p.legend {
		base := y0 + inset + i*lineH + labelAscent
		mid := base - labelAscent/2 + 1
		th := max(1, min(4, int(e.width+0.5)))
		sw := image.Rect(x0+inset, mid-th/2, x0+inset+swatch, mid-th/2+th)
		c := e.color
		if c.A < 160 { // make faint series visible in the legend
			c = WithAlpha(color.RGBA{unpremul(c.R, c.A), unpremul(c.G, c.A), unpremul(c.B, c.A), 255}, 0.6)
		}
		draw.Draw(img, sw, image.NewUniform(c), image.Point{}, draw.Over)
		d := font.Drawer{Dst: img, Src: src, Face: labelFace, Dot: fixed.P(x0+inset+swatch+gap, base)}
		d.DrawString(e.label)
	}
}

// unpremul undoes alpha premultiplication of one channel.
func unpremul(v, a uint8) uint8 {
	if a == 0 {
		return 0
	}
	return uint8(min(255, (int(v)*255+int(a)/2)/int(a)))
}
