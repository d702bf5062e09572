package shaders

import (
	"errors"
	"fmt"
	"image"
	"runtime"
	"strings"
	"sync"

	"github.com/go-gl/gl/v3.3-core/gl"
	"github.com/go-gl/glfw/v3.3/glfw"
)

// NewContextWindow creates the hidden GLFW window that carries the renderer's
// GL 3.3 core context.
//
// Call it on the main thread after glfw.Init (inside a Fyne app: in
// fyne.DoAndWait or the lifecycle OnStarted hook; Fyne owns glfw.Init,
// Terminate and PollEvents). It sets the window hints it needs and then calls
// glfw.DefaultWindowHints(): hints are global, and a leftover core-profile
// hint makes the next window Fyne creates fail. The window is never shown
// and its context is not made current here. Destroy it on the main thread,
// after closing the renderer that uses it.
func NewContextWindow() (win *glfw.Window, err error) {
	defer func() {
		if r := recover(); r != nil { // go-gl/glfw panics on programmer errors, e.g. no glfw.Init
			win, err = nil, fmt.Errorf("shaders: creating the GL context window: %v", r)
		}
	}()
	defer glfw.DefaultWindowHints()
	glfw.WindowHint(glfw.Visible, glfw.False)
	glfw.WindowHint(glfw.ClientAPI, glfw.OpenGLAPI)
	glfw.WindowHint(glfw.ContextVersionMajor, 3)
	glfw.WindowHint(glfw.ContextVersionMinor, 3)
	glfw.WindowHint(glfw.OpenGLProfile, glfw.OpenGLCoreProfile)
	glfw.WindowHint(glfw.OpenGLForwardCompatible, glfw.True)
	win, err = glfw.CreateWindow(16, 16, "DDPM Studio renderer", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("shaders: creating the GL context window: %w", err)
	}
	if win == nil {
		return nil, errors.New("shaders: creating the GL context window failed")
	}
	return win, nil
}

// GL is the OpenGL 3.3-core Renderer. It owns a goroutine locked to its own
// OS thread, on which the context of its window is current; every request is
// run there, one at a time. Its methods may be called from any goroutine.
type GL struct {
	reqs chan func()
	done chan struct{}
	mu   sync.RWMutex // held for reading by requests in flight, for writing by Close
	shut bool
	name string
	st   glState // only touched on the render thread
}

// glProgram is a linked program with its uniform locations.
type glProgram struct {
	id  uint32
	loc map[string]int32
}

// glState is the GL objects of a renderer.
type glState struct {
	maxTex, maxRB      int32
	vao                uint32
	fbo, fboTex        uint32
	fboW, fboH         int32
	dataTex            uint32 // R32F grid values
	tileTex            uint32 // RGBA32F grid tile parameters
	mapTex             uint32 // RG32I grid pixel → tile maps
	colTex             uint32 // RGBA32F plot columns
	infoTex            uint32 // RG32I plot lookups
	gridProg, plotProg glProgram
	version, rname     string
}

// NewGL starts the render goroutine (runtime.LockOSThread,
// win.MakeContextCurrent, gl.Init, compiling and linking the shaders) and
// returns once it is ready or has failed. win is a window from
// NewContextWindow (or any window with a GL 3.3 core context that no other
// thread uses). Methods of the returned renderer may be called from any
// goroutine: requests are serialised onto the render thread. Close stops the
// thread and detaches the context; the caller destroys win on the main
// thread afterwards.
func NewGL(win *glfw.Window) (*GL, error) {
	if win == nil {
		return nil, errors.New("shaders: NewGL: nil window")
	}
	r := &GL{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go r.loop(win, ready)
	if err := <-ready; err != nil {
		<-r.done
		return nil, err
	}
	r.name = "OpenGL " + r.st.version + " — " + r.st.rname
	return r, nil
}

// loop is the render thread.
func (r *GL) loop(win *glfw.Window, ready chan<- error) {
	// The thread stays locked until the goroutine ends, so it is terminated
	// with it and no other goroutine ever runs with the context current.
	runtime.LockOSThread()
	defer close(r.done)
	err := catch(func() error {
		win.MakeContextCurrent()
		return r.st.init()
	})
	if err != nil {
		_ = catch(func() error { r.st.release(); glfw.DetachCurrentContext(); return nil })
		ready <- fmt.Errorf("shaders: starting the GL renderer: %w", err)
		return
	}
	ready <- nil
	for f := range r.reqs {
		f()
	}
	_ = catch(func() error { r.st.release(); glfw.DetachCurrentContext(); return nil })
}

// catch runs f, turning a panic into an error.
func catch(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f()
}

// do runs f on the render thread and returns its error.
func (r *GL) do(f func() error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.shut {
		return ErrClosed
	}
	res := make(chan error, 1)
	r.reqs <- func() { res <- catch(f) }
	return <-res
}

// Name returns "OpenGL <GL_VERSION> — <GL_RENDERER>".
func (r *GL) Name() string { return r.name }

// Software reports whether the GL implementation renders on the CPU (Mesa
// llvmpipe, softpipe, swrast). There the CPU renderer is as fast or faster
// (see BenchmarkGrid and BenchmarkPlot), so a caller may prefer NewCPU.
func (r *GL) Software() bool {
	n := strings.ToLower(r.st.rname)
	return strings.Contains(n, "llvmpipe") || strings.Contains(n, "softpipe") || strings.Contains(n, "swrast")
}

// Close releases the GL objects, detaches the context from the render thread
// and ends it. Call it before destroying the window (on the main thread).
// Closing twice is harmless.
func (r *GL) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return nil
	}
	r.shut = true
	close(r.reqs)
	<-r.done
	return nil
}

// Grid draws g with grid.frag.
func (r *GL) Grid(g Grid) (*image.RGBA, error) {
	p, err := prepareGrid(g)
	if err != nil {
		return nil, err
	}
	var img *image.RGBA
	err = r.do(func() error {
		var err error
		img, err = r.st.grid(g, p)
		return err
	})
	return img, err
}

// Plot draws p with plot.frag, then its text on the CPU.
func (r *GL) Plot(p Plot) (*image.RGBA, error) {
	q, err := preparePlot(p)
	if err != nil {
		return nil, err
	}
	var img *image.RGBA
	err = r.do(func() error {
		var err error
		img, err = r.st.plot(q)
		return err
	})
	if err != nil {
		return nil, err
	}
	drawOverlay(img, q)
	return img, nil
}

// init initialises GL on the current thread and builds the programs.
func (s *glState) init() error {
	if err := gl.Init(); err != nil {
		return fmt.Errorf("gl.Init: %w", err)
	}
	s.version = gl.GoStr(gl.GetString(gl.VERSION))
	s.rname = gl.GoStr(gl.GetString(gl.RENDERER))
	gl.GetIntegerv(gl.MAX_TEXTURE_SIZE, &s.maxTex)
	gl.GetIntegerv(gl.MAX_RENDERBUFFER_SIZE, &s.maxRB)
	var dims [2]int32
	gl.GetIntegerv(gl.MAX_VIEWPORT_DIMS, &dims[0])
	s.maxRB = min(s.maxRB, s.maxTex, dims[0], dims[1])
	var err error
	if s.gridProg, err = buildProgram("grid", fullscreenVert, gridFrag,
		"uData", "uTiles", "uMap", "uN", "uC", "uH", "uW", "uCols", "uBackground"); err != nil {
		return err
	}
	if s.plotProg, err = buildProgram("plot", fullscreenVert, plotFrag,
		"uRect", "uTick", "uBackground", "uAxis", "uGridMajor", "uGridMinor",
		"uNS", "uColor", "uHalfWidth", "uReach", "uColumns", "uInfo"); err != nil {
		return err
	}
	gl.GenVertexArrays(1, &s.vao)
	gl.GenFramebuffers(1, &s.fbo)
	for _, t := range []*uint32{&s.fboTex, &s.dataTex, &s.tileTex, &s.mapTex, &s.colTex, &s.infoTex} {
		gl.GenTextures(1, t)
		gl.BindTexture(gl.TEXTURE_2D, *t)
		gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST)
		gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST)
		gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE)
		gl.TexParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE)
	}
	gl.PixelStorei(gl.PACK_ALIGNMENT, 1)
	gl.PixelStorei(gl.UNPACK_ALIGNMENT, 4)
	gl.Disable(gl.BLEND)
	gl.Disable(gl.DEPTH_TEST)
	gl.Disable(gl.DITHER)
	return glError("initialising")
}

// release deletes the GL objects.
func (s *glState) release() {
	if s.gridProg.id != 0 {
		gl.DeleteProgram(s.gridProg.id)
	}
	if s.plotProg.id != 0 {
		gl.DeleteProgram(s.plotProg.id)
	}
	if s.vao != 0 {
		gl.DeleteVertexArrays(1, &s.vao)
	}
	if s.fbo != 0 {
		gl.DeleteFramebuffers(1, &s.fbo)
	}
	for _, t := range []*uint32{&s.fboTex, &s.dataTex, &s.tileTex, &s.mapTex, &s.colTex, &s.infoTex} {
		if *t != 0 {
			gl.DeleteTextures(1, t)
		}
	}
	*s = glState{}
}

// buildProgram compiles and links a program and looks up its uniforms.
func buildProgram(name, vert, frag string, uniforms ...string) (glProgram, error) {
	vs, err := compileShader(name+" vertex shader", vert, gl.VERTEX_SHADER)
	if err != nil {
		return glProgram{}, err
	}
	defer gl.DeleteShader(vs)
	fs, err := compileShader(name+" fragment shader", frag, gl.FRAGMENT_SHADER)
	if err != nil {
		return glProgram{}, err
	}
	defer gl.DeleteShader(fs)
	id := gl.CreateProgram()
	gl.AttachShader(id, vs)
	gl.AttachShader(id, fs)
	gl.LinkProgram(id)
	var ok int32
	gl.GetProgramiv(id, gl.LINK_STATUS, &ok)
	if ok == gl.FALSE {
		var n int32
		gl.GetProgramiv(id, gl.INFO_LOG_LENGTH, &n)
		log := make([]byte, n+1)
		gl.GetProgramInfoLog(id, n, nil, &log[0])
		gl.DeleteProgram(id)
		return glProgram{}, fmt.Errorf("linking the %s program: %s", name, strings.TrimRight(string(log), "\x00\n"))
	}
	p := glProgram{id: id, loc: make(map[string]int32)}
	for _, u := range uniforms {
		p.loc[u] = gl.GetUniformLocation(id, gl.Str(u+"\x00"))
	}
	return p, nil
}

// compileShader compiles one shader stage.
func compileShader(what, src string, kind uint32) (uint32, error) {
	sh := gl.CreateShader(kind)
	csrc, free := gl.Strs(src + "\x00")
	gl.ShaderSource(sh, 1, csrc, nil)
	free()
	gl.CompileShader(sh)
	var ok int32
	gl.GetShaderiv(sh, gl.COMPILE_STATUS, &ok)
	if ok == gl.FALSE {
		var n int32
		gl.GetShaderiv(sh, gl.INFO_LOG_LENGTH, &n)
		log := make([]byte, n+1)
		gl.GetShaderInfoLog(sh, n, nil, &log[0])
		gl.DeleteShader(sh)
		return 0, fmt.Errorf("compiling the %s: %s", what, strings.TrimRight(string(log), "\x00\n"))
	}
	return sh, nil
}

// glError returns the pending GL errors, if any.
func glError(when string) error {
	var codes []string
	for i := 0; i < 16; i++ {
		e := gl.GetError()
		if e == gl.NO_ERROR {
			break
		}
		codes = append(codes, fmt.Sprintf("0x%04x", e))
	}
	if codes == nil {
		return nil
	}
	return fmt.Errorf("GL error %s while %s", strings.Join(codes, ", "), when)
}

// fits checks that a w×h texture fits GL_MAX_TEXTURE_SIZE.
func (s *glState) fits(w, h int, what string) error {
	if w > int(s.maxTex) || h > int(s.maxTex) {
		return fmt.Errorf("%w: %s needs a %d×%d texture, GL_MAX_TEXTURE_SIZE is %d", ErrTooLarge, what, w, h, s.maxTex)
	}
	return nil
}

// upload replaces the contents of texture tex (bound to texture unit unit)
// with w×h texels from data.
func upload(unit int, tex uint32, internal int32, format, xtype uint32, data any, w, h int) {
	gl.ActiveTexture(gl.TEXTURE0 + uint32(unit))
	gl.BindTexture(gl.TEXTURE_2D, tex)
	gl.TexImage2D(gl.TEXTURE_2D, 0, internal, int32(w), int32(h), 0, format, xtype, gl.Ptr(data))
}

// target binds the framebuffer with a colour texture of at least w×h pixels
// and sets the viewport to w×h.
func (s *glState) target(w, h int) error {
	if w > int(s.maxRB) || h > int(s.maxRB) {
		return fmt.Errorf("%w: a %d×%d picture exceeds the %d pixel limit", ErrTooLarge, w, h, s.maxRB)
	}
	gl.BindFramebuffer(gl.FRAMEBUFFER, s.fbo)
	if int32(w) > s.fboW || int32(h) > s.fboH {
		s.fboW, s.fboH = max(s.fboW, int32(w)), max(s.fboH, int32(h))
		gl.BindTexture(gl.TEXTURE_2D, s.fboTex)
		gl.TexImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, s.fboW, s.fboH, 0, gl.RGBA, gl.UNSIGNED_BYTE, nil)
		gl.FramebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, s.fboTex, 0)
		if st := gl.CheckFramebufferStatus(gl.FRAMEBUFFER); st != gl.FRAMEBUFFER_COMPLETE {
			s.fboW, s.fboH = 0, 0
			return fmt.Errorf("framebuffer incomplete (0x%04x) at %d×%d", st, w, h)
		}
	}
	gl.Viewport(0, 0, int32(w), int32(h))
	return nil
}

// draw runs the bound program over the viewport and reads the w×h result
// back. The shaders store the picture upside down (row 0 of the image in the
// bottom row of the framebuffer), so glReadPixels, which returns the bottom
// row first, yields image.RGBA's top-down rows as they are.
func (s *glState) draw(w, h int) (*image.RGBA, error) {
	gl.BindVertexArray(s.vao)
	gl.DrawArrays(gl.TRIANGLES, 0, 3)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	gl.ReadPixels(0, 0, int32(w), int32(h), gl.RGBA, gl.UNSIGNED_BYTE, gl.Ptr(img.Pix))
	if err := glError("drawing"); err != nil {
		return nil, err
	}
	return img, nil
}

// grid renders a prepared Grid.
func (s *glState) grid(g Grid, p *gridPrep) (*image.RGBA, error) {
	cols, rows := g.cols(), g.rows()
	texW, texH := cols*g.W, rows*g.C*g.H
	if err := s.fits(texW, texH, "the grid's values"); err != nil {
		return nil, err
	}
	if err := s.target(p.w, p.h); err != nil {
		return nil, err
	}
	// Values: channel c of tile (tc, tr) at (tc*W + x, (tr*C + c)*H + y).
	data := make([]float32, texW*texH)
	for t := 0; t < g.N; t++ {
		tc, tr := t%cols, t/cols
		for c := 0; c < g.C; c++ {
			for y := 0; y < g.H; y++ {
				src := ((t*g.C+c)*g.H + y) * g.W
				dst := ((tr*g.C+c)*g.H+y)*texW + tc*g.W
				copy(data[dst:dst+g.W], p.data[src:src+g.W])
			}
		}
	}
	tiles := make([]float32, 4*cols*rows)
	for i, t := range p.tiles {
		tiles[4*i], tiles[4*i+1], tiles[4*i+2], tiles[4*i+3] = t.lo, t.hi, t.scale, t.bias
	}
	// Maps: output column → (tile column, source x), output row → (tile row,
	// source y); -1 in the padding.
	mw := max(p.w, p.h)
	maps := make([]int32, 2*2*mw)
	axis := func(out []int32, n, cell, count int) {
		for i := 0; i < n; i++ {
			out[2*i], out[2*i+1] = 0, -1
			k := i - g.Pad
			if k < 0 {
				continue
			}
			tile, in := k/(cell+g.Pad), k%(cell+g.Pad)
			if tile < count && in < cell {
				out[2*i], out[2*i+1] = int32(tile), int32(in/g.scale())
			}
		}
	}
	axis(maps[:2*mw], p.w, g.W*g.scale(), cols)
	axis(maps[2*mw:], p.h, g.H*g.scale(), rows)
	upload(0, s.dataTex, gl.R32F, gl.RED, gl.FLOAT, data, texW, texH)
	upload(1, s.tileTex, gl.RGBA32F, gl.RGBA, gl.FLOAT, tiles, cols, rows)
	upload(2, s.mapTex, gl.RG32I, gl.RG_INTEGER, gl.INT, maps, mw, 2)
	u := s.gridProg.loc
	gl.UseProgram(s.gridProg.id)
	gl.Uniform1i(u["uData"], 0)
	gl.Uniform1i(u["uTiles"], 1)
	gl.Uniform1i(u["uMap"], 2)
	gl.Uniform1i(u["uN"], int32(g.N))
	gl.Uniform1i(u["uC"], int32(g.C))
	gl.Uniform1i(u["uH"], int32(g.H))
	gl.Uniform1i(u["uW"], int32(g.W))
	gl.Uniform1i(u["uCols"], int32(cols))
	bg := unorm(g.Background)
	gl.Uniform4fv(u["uBackground"], 1, &bg[0])
	return s.draw(p.w, p.h)
}

// plot renders the pixels of a prepared Plot (without its text).
func (s *glState) plot(q *plotPrep) (*image.RGBA, error) {
	ns := len(q.series)
	cw := max(q.pw, 1)
	iw := max(q.pw, q.ph, 1)
	if err := s.fits(max(cw, iw), 2+2*ns, "the plot's lookups"); err != nil {
		return nil, err
	}
	if err := s.target(q.w, q.h); err != nil {
		return nil, err
	}
	cols := make([]float32, 4*cw*max(2*ns, 1))
	info := make([]int32, 2*iw*(2+ns))
	for i, v := range q.xk {
		info[2*i] = v
	}
	for i, v := range q.yk {
		info[2*(iw+i)] = v
	}
	for i, g := range q.series {
		copy(cols[4*cw*(2*i):], g.a)
		copy(cols[4*cw*(2*i+1):], g.b)
		row := info[2*iw*(2+i):]
		for x := range g.bandLo {
			row[2*x], row[2*x+1] = g.bandLo[x], g.bandHi[x]
		}
	}
	upload(0, s.colTex, gl.RGBA32F, gl.RGBA, gl.FLOAT, cols, cw, max(2*ns, 1))
	upload(1, s.infoTex, gl.RG32I, gl.RG_INTEGER, gl.INT, info, iw, 2+ns)
	u := s.plotProg.loc
	gl.UseProgram(s.plotProg.id)
	gl.Uniform1i(u["uColumns"], 0)
	gl.Uniform1i(u["uInfo"], 1)
	gl.Uniform4i(u["uRect"], int32(q.left), int32(q.top), int32(q.pw), int32(q.ph))
	gl.Uniform1i(u["uTick"], int32(q.tick))
	gl.Uniform4fv(u["uBackground"], 1, &q.bg[0])
	gl.Uniform4fv(u["uAxis"], 1, &q.axis[0])
	gl.Uniform4fv(u["uGridMajor"], 1, &q.gridMajor[0])
	gl.Uniform4fv(u["uGridMinor"], 1, &q.gridMin[0])
	gl.Uniform1i(u["uNS"], int32(ns))
	if ns > 0 {
		colors := make([]float32, 4*ns)
		halfW := make([]float32, ns)
		reach := make([]int32, ns)
		for i, g := range q.series {
			copy(colors[4*i:], g.color[:])
			halfW[i] = g.halfW
			reach[i] = int32(g.reach)
		}
		gl.Uniform4fv(u["uColor"], int32(ns), &colors[0])
		gl.Uniform1fv(u["uHalfWidth"], int32(ns), &halfW[0])
		gl.Uniform1iv(u["uReach"], int32(ns), &reach[0])
	}
	return s.draw(q.w, q.h)
}
