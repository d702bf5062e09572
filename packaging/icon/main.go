// Command icon draws the DDPM Studio application icon.
//
// The icon is one picture caught in the middle of denoising diffusion: a four-pointed sparkle
// on a night-blue rounded square that is clean on the right and dissolves into Gaussian noise
// towards the left. Every "pixel" of a coarse grid is the DDPM forward process
//
//	x_t = sqrt(ᾱ)·x_0 + sqrt(1−ᾱ)·ε,   ε ~ N(0, I)
//
// applied to the clean image x_0, with ᾱ rising from near 0 at the left edge to 1 past the
// middle; a little per-cell jitter of ᾱ makes the boundary crumble like pixels being resolved.
//
// The output is deterministic: the noise comes from a fixed-seed SplitMix64 generator and a
// Box–Muller transform written here, so it does not depend on math/rand's algorithms.
//
// Usage (from the repository root):
//
//	go run ./packaging/icon -o app/icon.png
package main

import (
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/vector"
)

// Geometry on a 512-pixel canvas; other sizes are scaled from it.
const (
	canvas = 512.0
	margin = 28.0  // transparent border around the rounded square
	radius = 104.0 // corner radius of the rounded square
	grid   = 24    // noise cells across the rounded square
	seed   = 0x5eed_dd9a

	// The noise schedule along x: ᾱ goes from alphaMin at noiseFrom to 1 at cleanFrom.
	noiseFrom = margin + 20
	cleanFrom = 300.0
	alphaMin  = 0.06
	jitterPx  = 46.0 // how far a cell's position along the schedule is shifted at random

	// ε is part shared by the three channels (grey speckle) and part per channel (colour),
	// and scaled so that pure noise is lively without being garish.
	noiseGain   = 0.7
	noiseColour = 0.45
)

// The sparkle: centre and tip radius on the canvas, and how far its concave sides bow in.
const (
	sparkleCX = 282.0
	sparkleCY = 256.0
	sparkleR  = 178.0
	pinch     = 0.14
)

// Colours of the clean image.
var (
	groundTop    = rgb(0x36, 0x2c, 0x86) // violet, top-left
	groundBottom = rgb(0x0f, 0x1b, 0x45) // deep navy, bottom-right
	sparkleInner = rgb(0xff, 0xfb, 0xee) // warm white at the centre of the sparkle
	sparkleOuter = rgb(0xff, 0xb3, 0x40) // amber towards its tips
)

func main() {
	out := flag.String("o", "icon.png", "output PNG file")
	size := flag.Int("size", 512, "width and height of the icon in pixels")
	flag.Parse()

	if err := write(*out, render(*size)); err != nil {
		fmt.Fprintln(os.Stderr, "icon:", err)
		os.Exit(1)
	}
}

func write(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type vec3 [3]float64

func rgb(r, g, b uint8) vec3 {
	return vec3{float64(r) / 255, float64(g) / 255, float64(b) / 255}
}

func mix(a, b vec3, t float64) vec3 {
	return vec3{a[0] + (b[0]-a[0])*t, a[1] + (b[1]-a[1])*t, a[2] + (b[2]-a[2])*t}
}

func clamp01(v float64) float64 { return math.Max(0, math.Min(1, v)) }

func smoothstep(e0, e1, x float64) float64 {
	t := clamp01((x - e0) / (e1 - e0))
	return t * t * (3 - 2*t)
}

// schedule is ᾱ at position x on the canvas.
func schedule(x float64) float64 {
	return alphaMin + (1-alphaMin)*smoothstep(noiseFrom, cleanFrom, x)
}

// render draws the icon at size×size pixels.
func render(size int) *image.NRGBA {
	s := float64(size) / canvas
	img := image.NewNRGBA(image.Rect(0, 0, size, size))

	sparkle := sparkleMask(size, s)
	g := splitMix64(seed)
	eps := make([]vec3, grid*grid)
	jitter := make([]float64, grid*grid)
	for i := range eps {
		shared := g.normal()
		for ch := range eps[i] {
			e := (1-noiseColour)*shared + noiseColour*g.normal()
			// Renormalise the blend to unit variance.
			eps[i][ch] = e / math.Hypot(1-noiseColour, noiseColour)
		}
		jitter[i] = (2*g.uniform() - 1) * jitterPx
	}

	// First pass: the clean image x_0 in [0,1] and the rounded square's coverage, per pixel,
	// and the mean of x_0 over each noise cell.
	inner := canvas - 2*margin
	cell := inner / grid
	x0 := make([]vec3, size*size)
	cover := make([]float64, size*size)
	cellOf := make([]int, size*size)
	sum := make([]vec3, grid*grid)
	weight := make([]float64, grid*grid)
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			// Pixel centre on the canvas.
			x := (float64(px) + 0.5) / s
			y := (float64(py) + 0.5) / s
			p := py*size + px

			// Coverage of the rounded square, from its signed distance in output pixels.
			cover[p] = clamp01(0.5 - roundedRectSD(x, y)*s)

			// A diagonal gradient ground with the sparkle over it.
			c := mix(groundTop, groundBottom, clamp01((x+y-2*margin)/(2*inner)))
			if a := float64(sparkle.AlphaAt(px, py).A) / 255; a > 0 {
				r := math.Hypot(x-sparkleCX, y-sparkleCY) / sparkleR
				c = mix(c, mix(sparkleInner, sparkleOuter, smoothstep(0.05, 0.75, r)), a)
			}
			x0[p] = c

			gx := max(0, min(grid-1, int((x-margin)/cell)))
			gy := max(0, min(grid-1, int((y-margin)/cell)))
			i := gy*grid + gx
			cellOf[p] = i
			for ch := range c {
				sum[i][ch] += cover[p] * c[ch]
			}
			weight[i] += cover[p]
		}
	}

	// Second pass: forward diffusion in data space [-1,1], one ε and one ᾱ per noise cell.
	// Where ᾱ is low the cell also shows its mean colour instead of the fine detail, as a
	// low-resolution training image would.
	for py := 0; py < size; py++ {
		for px := 0; px < size; px++ {
			p := py*size + px
			if cover[p] == 0 {
				continue
			}
			i := cellOf[p]
			gx := i % grid
			ab := schedule(margin + (float64(gx)+0.5)*cell + jitter[i])
			mean := sum[i]
			for ch := range mean {
				mean[ch] /= weight[i]
			}
			c := mix(mean, x0[p], smoothstep(0.5, 0.97, ab))
			var o [3]uint8
			for ch := range o {
				xt := math.Sqrt(ab)*(2*c[ch]-1) + math.Sqrt(1-ab)*noiseGain*eps[i][ch]
				o[ch] = uint8(math.Round(clamp01((xt+1)/2) * 255))
			}
			img.SetNRGBA(px, py, color.NRGBA{o[0], o[1], o[2], uint8(math.Round(cover[p] * 255))})
		}
	}
	return img
}

// roundedRectSD is the signed distance from (x, y) to the rounded square's outline on the
// canvas: negative inside.
func roundedRectSD(x, y float64) float64 {
	const c = canvas / 2
	const half = c - margin
	qx := math.Abs(x-c) - (half - radius)
	qy := math.Abs(y-c) - (half - radius)
	outside := math.Hypot(math.Max(qx, 0), math.Max(qy, 0))
	inside := math.Min(math.Max(qx, qy), 0)
	return outside + inside - radius
}

// sparkleMask rasterises the anti-aliased four-pointed star with concave sides.
func sparkleMask(size int, s float64) *image.Alpha {
	r := vector.NewRasterizer(size, size)
	pt := func(dx, dy float64) (float32, float32) {
		return float32((sparkleCX + dx*sparkleR) * s), float32((sparkleCY + dy*sparkleR) * s)
	}
	tips := [4][2]float64{{0, -1}, {1, 0}, {0, 1}, {-1, 0}}
	r.MoveTo(pt(tips[0][0], tips[0][1]))
	for i := 1; i <= len(tips); i++ {
		a, b := tips[i-1], tips[i%len(tips)]
		// The control point lies on the diagonal between the two tips, near the centre.
		qx, qy := pt((a[0]+b[0])*pinch, (a[1]+b[1])*pinch)
		ex, ey := pt(b[0], b[1])
		r.QuadTo(qx, qy, ex, ey)
	}
	r.ClosePath()
	mask := image.NewAlpha(image.Rect(0, 0, size, size))
	r.Draw(mask, mask.Bounds(), image.Opaque, image.Point{})
	return mask
}

// splitMix64 is a small, fully specified pseudo-random generator (Steele, Lea and Flood 2014).
type splitMix64 uint64

func (g *splitMix64) next() uint64 {
	*g += 0x9e3779b97f4a7c15
	z := uint64(*g)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uniform returns a float64 in (0, 1).
func (g *splitMix64) uniform() float64 {
	return (float64(g.next()>>11) + 0.5) / (1 << 53)
}

// normal returns a standard normal sample (Box–Muller transform).
func (g *splitMix64) normal() float64 {
	u1, u2 := g.uniform(), g.uniform()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
