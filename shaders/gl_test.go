package shaders

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/go-gl/glfw/v3.3/glfw"
)

// GLFW must be driven from the main thread. init runs on the main goroutine,
// which LockOSThread pins to the main OS thread; TestMain then runs the tests
// in another goroutine and serves onMain's function channel on the main
// thread.

func init() { runtime.LockOSThread() }

var mainCalls = make(chan func())

// onMain runs f on the main thread and waits for it.
func onMain(f func()) {
	done := make(chan struct{})
	mainCalls <- func() {
		defer close(done)
		f()
	}
	<-done
}

var (
	glfwUp  bool // glfw.Init succeeded (touched on the main thread only)
	winOnce sync.Once
	testWin *glfw.Window
	winErr  error
)

func TestMain(m *testing.M) {
	code := make(chan int, 1)
	go func() { code <- m.Run() }()
	for {
		select {
		case f := <-mainCalls:
			f()
		case c := <-code:
			if testWin != nil {
				testWin.Destroy()
			}
			if glfwUp {
				glfw.Terminate()
			}
			os.Exit(c)
		}
	}
}

// contextWindow initialises GLFW and creates the shared context window, once.
func contextWindow() (*glfw.Window, error) {
	winOnce.Do(func() {
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			winErr = errors.New("DISPLAY is not set")
			return
		}
		onMain(func() {
			if err := glfw.Init(); err != nil {
				winErr = fmt.Errorf("glfw.Init: %w", err)
				return
			}
			glfwUp = true
			testWin, winErr = NewContextWindow()
		})
	})
	return testWin, winErr
}

// newTestGL returns a GL renderer closed at the end of the test. Without a
// display it skips the test, unless CI is set: CI must run the GL tests.
func newTestGL(tb testing.TB) *GL {
	tb.Helper()
	win, err := contextWindow()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("OpenGL is required when CI is set: %v", err)
		}
		tb.Skipf("no OpenGL context (%v); run under an X server, e.g. xvfb-run -a -s \"-screen 0 1280x1024x24\" go test ./shaders/", err)
	}
	r, err := NewGL(win)
	if err != nil {
		tb.Fatalf("NewGL: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return r
}

// imageDiff returns the largest per-channel difference between a and b and
// where it is.
func imageDiff(a, b *image.RGBA) (d int, at image.Point, ca, cb color.RGBA) {
	if a.Bounds() != b.Bounds() {
		return 256, image.Point{}, ca, cb
	}
	for y := a.Rect.Min.Y; y < a.Rect.Max.Y; y++ {
		for x := a.Rect.Min.X; x < a.Rect.Max.X; x++ {
			pa, pb := a.RGBAAt(x, y), b.RGBAAt(x, y)
			for _, e := range [][2]uint8{{pa.R, pb.R}, {pa.G, pb.G}, {pa.B, pb.B}, {pa.A, pb.A}} {
				if v := int(e[0]) - int(e[1]); v > d || -v > d {
					d, at, ca, cb = max(v, -v), image.Pt(x, y), pa, pb
				}
			}
		}
	}
	return d, at, ca, cb
}

// countDiff counts the pixels that differ at all.
func countDiff(a, b *image.RGBA) int {
	n := 0
	for i := 0; i+3 < len(a.Pix) && i+3 < len(b.Pix); i += 4 {
		if a.Pix[i] != b.Pix[i] || a.Pix[i+1] != b.Pix[i+1] || a.Pix[i+2] != b.Pix[i+2] || a.Pix[i+3] != b.Pix[i+3] {
			n++
		}
	}
	return n
}

// randomGrid returns a batch of smooth random images with values around
// [-1.2, 1.2] (some clipped).
func randomGrid(seed uint64, n, c, h, w int) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	d := make([]float32, n*c*h*w)
	for i := 0; i < n*c; i++ {
		fx, fy, ph := rng.Float64()*0.5, rng.Float64()*0.5, rng.Float64()*6
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := 1.2*math.Sin(fx*float64(x)+fy*float64(y)+ph) + 0.15*rng.NormFloat64()
				d[(i*h+y)*w+x] = float32(v)
			}
		}
	}
	return d
}

// lossCurve returns a noisy, decaying training loss of n points.
func lossCurve(seed uint64, n int) (xs, ys []float64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	xs, ys = make([]float64, n), make([]float64, n)
	for i := range xs {
		xs[i] = float64(i)
		base := 0.035 + 1.1*math.Exp(-float64(i)/250) + 0.08*math.Exp(-float64(i)/1500)
		ys[i] = base * math.Exp(0.35*rng.NormFloat64())
	}
	return xs, ys
}

// testGrids are the grids TestGLMatchesCPU compares.
func testGrids() map[string]Grid {
	norm := randomGrid(3, 6, 1, 9, 7)
	for i := range norm[:63] {
		norm[i] *= 40 // a tile with a large range
	}
	for i := 63; i < 126; i++ {
		norm[i] = 0.25 // a constant tile
	}
	norm[130], norm[131], norm[132] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	return map[string]Grid{
		"gray 2x2":             {Data: randomGrid(1, 4, 1, 8, 8), N: 4, C: 1, H: 8, W: 8},
		"rgb 3x3 padded":       {Data: randomGrid(2, 9, 3, 10, 10), N: 9, C: 3, H: 10, W: 10, Pad: 2, Background: color.RGBA{30, 30, 30, 255}},
		"normalised odd":       {Data: norm, N: 6, C: 1, H: 9, W: 7, Cols: 4, Scale: 2, Pad: 3, Normalize: true, Background: color.RGBA{200, 10, 10, 128}},
		"28x28x1 N16 scale3":   {Data: randomGrid(4, 16, 1, 28, 28), N: 16, C: 1, H: 28, W: 28, Scale: 3, Pad: 2},
		"32x32x3 N64":          {Data: randomGrid(5, 64, 3, 32, 32), N: 64, C: 3, H: 32, W: 32, Pad: 1},
		"28x28x3 N64 scale3":   {Data: randomGrid(6, 64, 3, 28, 28), N: 64, C: 3, H: 28, W: 28, Scale: 3, Pad: 2, Normalize: true},
		"single pixel":         {Data: []float32{0.3}, N: 1, C: 1, H: 1, W: 1},
		"rgb normalised N5 c2": {Data: randomGrid(7, 5, 3, 5, 13), N: 5, C: 3, H: 5, W: 13, Cols: 2, Pad: 1, Normalize: true},
	}
}

// testPlots are the plots TestGLMatchesCPU compares.
func testPlots() map[string]Plot {
	xs, ys := lossCurve(1, 2000)
	blue := color.RGBA{31, 119, 180, 255}
	loss := []Series{
		{X: xs, Y: ys, Color: WithAlpha(blue, 0.3), Width: 1, Label: "loss"},
		{X: xs, Y: Smooth(ys, 0.97), Color: blue, Width: 2, Label: "smoothed"},
	}
	sx := []float64{0, 1, 2, 3, 5, 8, 13, 21}
	sy := []float64{3, -1, 4, 1, -5, 9, 2, 6}
	return map[string]Plot{
		"loss linear":   {Width: 512, Height: 384, Series: loss, Title: "Training loss"},
		"loss log":      {Width: 512, Height: 384, Series: loss, LogY: true, Title: "Training loss (log)"},
		"one point":     {Width: 300, Height: 200, Series: []Series{{X: []float64{10}, Y: []float64{0.5}}}},
		"empty":         {Width: 300, Height: 200, Title: "nothing yet"},
		"sparse widths": {Width: 400, Height: 300, Series: []Series{{X: sx, Y: sy, Width: 1}, {X: sx, Y: sy, Width: 4.5, Color: WithAlpha(color.RGBA{214, 39, 40, 255}, 0.5)}, {X: sx[:4], Y: sy[4:], Width: 9}}},
		"steep log":     {Width: 640, Height: 360, LogY: true, Series: []Series{{X: []float64{0, 1, 2, 1000, 5000}, Y: []float64{1000, 10, 1, 1e-3, 2e-5}, Width: 2.5}}},
		"dark":          {Width: 360, Height: 240, Background: color.RGBA{30, 30, 34, 255}, Axis: color.RGBA{160, 160, 160, 255}, GridLine: color.RGBA{60, 60, 66, 255}, Text: color.RGBA{220, 220, 220, 255}, Series: loss},
		"jumps":         {Width: 300, Height: 200, Series: []Series{{X: []float64{0, 1, 1, 2, 2, 3}, Y: []float64{0, 0, 1, 1, 0, 0}, Width: 2}}},
		"tiny":          {Width: 30, Height: 20, Series: loss},
		"wide":          {Width: 1500, Height: 500, Series: loss, LogY: true},
	}
}

func TestGLMatchesCPU(t *testing.T) {
	gr := newTestGL(t)
	t.Logf("GL renderer: %s (software: %v)", gr.Name(), gr.Software())
	cpu := NewCPU()
	check := func(name string, a, b *image.RGBA) {
		d, at, ca, cb := imageDiff(a, b)
		n := countDiff(a, b)
		t.Logf("%-22s %4d×%-4d max diff %d, %d pixels differ", name, a.Bounds().Dx(), a.Bounds().Dy(), d, n)
		if d > 1 {
			t.Errorf("%s: GL and CPU differ by %d at %v: CPU %v, GL %v (%d pixels differ)", name, d, at, ca, cb, n)
		}
	}
	for name, g := range testGrids() {
		a, err := cpu.Grid(g)
		if err != nil {
			t.Fatalf("%s: CPU: %v", name, err)
		}
		b, err := gr.Grid(g)
		if err != nil {
			t.Fatalf("%s: GL: %v", name, err)
		}
		check("grid "+name, a, b)
	}
	for name, p := range testPlots() {
		a, err := cpu.Plot(p)
		if err != nil {
			t.Fatalf("%s: CPU: %v", name, err)
		}
		b, err := gr.Plot(p)
		if err != nil {
			t.Fatalf("%s: GL: %v", name, err)
		}
		check("plot "+name, a, b)
	}
}

func TestGLTooLarge(t *testing.T) {
	gr := newTestGL(t)
	// One row of values wider than any GL_MAX_TEXTURE_SIZE we know of: the GL
	// renderer says so with ErrTooLarge, the CPU renderer draws it.
	const w = 40000
	g := Grid{Data: make([]float32, w), N: 1, C: 1, H: 1, W: w}
	if _, err := gr.Grid(g); !errors.Is(err, ErrTooLarge) {
		t.Errorf("GL Grid of %d×1: %v, want ErrTooLarge", w, err)
	} else {
		t.Logf("GL: %v", err)
	}
	if _, err := NewCPU().Grid(g); err != nil {
		t.Errorf("CPU Grid of %d×1: %v", w, err)
	}
	// The renderer still works afterwards.
	if _, err := gr.Grid(Grid{Data: []float32{0}, N: 1, C: 1, H: 1, W: 1}); err != nil {
		t.Error(err)
	}
}

func TestGLConcurrentAndClose(t *testing.T) {
	gr := newTestGL(t)
	g := testGrids()["28x28x1 N16 scale3"]
	want, err := NewCPU().Grid(g)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 3; k++ {
				got, err := gr.Grid(g)
				if err != nil {
					t.Error(err)
					return
				}
				if d, _, _, _ := imageDiff(want, got); d > 1 {
					t.Errorf("concurrent render differs by %d", d)
				}
			}
		}()
	}
	wg.Wait()
	if _, err := gr.Grid(Grid{N: 1, C: 2, H: 1, W: 1, Data: []float32{0, 0}}); err == nil {
		t.Error("invalid grid accepted")
	}
	if err := gr.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := gr.Grid(g); !errors.Is(err, ErrClosed) {
		t.Errorf("Grid after Close: %v, want ErrClosed", err)
	}
	// A second renderer can take over the same window.
	gr2 := newTestGL(t)
	if _, err := gr2.Grid(g); err != nil {
		t.Fatal(err)
	}
}
