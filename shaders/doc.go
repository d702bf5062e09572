// Package shaders renders the pictures DDPM Studio shows while it trains: a
// batch of float images laid out as a grid of tiles (samples, noised inputs,
// denoised predictions) and line charts of the loss.
//
// # Two renderers, one picture
//
// The Renderer interface has two implementations that produce the same
// pixels:
//
//   - NewCPU returns a pure-Go renderer. It needs nothing but the CPU, runs
//     anywhere (tests, headless servers, machines without OpenGL) and is the
//     reference the OpenGL renderer is tested against.
//   - NewGL returns an OpenGL 3.3-core renderer. It owns a GL context (carried
//     by a hidden GLFW window, see NewContextWindow) and a goroutine locked to
//     its own OS thread; it draws offscreen into a framebuffer object with the
//     fragment shaders embedded from grid.frag and plot.frag and reads the
//     result back with glReadPixels.
//
// # Why the two agree
//
// Both renderers evaluate the same per-pixel function, with the same inputs,
// in the same float32 operations in the same order:
//
//   - Everything that is not per-pixel work is done once, on the CPU, by code
//     shared by both renderers: validation, the grid's per-tile (lo, hi,
//     scale, bias) parameters, the plot layout (margins, nice ticks snapped to
//     whole pixels, the grid-line kind of every column and row) and the
//     plot's per-column geometry of every series (chords and spans in pixel
//     units, including the reciprocals the shader would otherwise have to
//     divide by). The GL renderer uploads these float32 values bit for bit
//     (R32F and RGBA32F textures, float uniforms) and the CPU renderer reads
//     the very same values.
//   - The shaders only use operations that IEEE-754 single precision defines
//     exactly (add, subtract, multiply, min, max, clamp, sqrt, roundEven),
//     texelFetch (no filtering) and integer comparisons; the pixel → tile
//     mapping of the grid comes from integer lookup textures, so there is no
//     integer or float division by a run-time value, and no blending unit:
//     the shaders composite themselves (premultiplied "over"). Results that
//     must not be fused into FMAs are marked precise (GL_ARB_gpu_shader5,
//     available on Mesa and most drivers); the Go mirror uses explicit
//     float32 conversions, which the Go specification guarantees to round and
//     not to fuse.
//   - Each channel is quantised in the shader: k = roundEven(v*255) and the
//     fragment outputs k/255, which the UNORM8 framebuffer stores as exactly
//     k (even if the division is approximate). The CPU computes the same k
//     with math.RoundToEven on the float32 product. Colour inputs are passed
//     as k/255 computed on the CPU.
//   - Work both renderers skip is skipped identically and only where it
//     cannot change a pixel: a series is not evaluated outside a
//     conservative band of rows around it (coverage there is 0).
//   - Text (tick labels, title, legend) is drawn afterwards on the CPU, by the
//     same code for both renderers (Go fonts from golang.org/x/image,
//     rasterised in pure Go), onto the otherwise identical pixels, so it is
//     identical too.
//
// The pictures are stored upside down in the GL framebuffer (the shaders
// count gl_FragCoord.y as the row from the top), so glReadPixels, which
// returns the bottom row first, yields image.RGBA's top-down rows directly.
//
// On Mesa llvmpipe the two renderers agree exactly (maximum difference 0 on
// every picture of TestGLMatchesCPU). A GPU that implements sqrt or
// roundEven less exactly, or ignores precise, can differ by one level (1/255)
// on a few pixels, which the tests accept.
//
// On a software GL (llvmpipe on a few cores) the CPU renderer, which uses all
// cores and skips untouched pixels, is faster than the GL one; see
// (*GL).Software. The GL renderer pays off on a real GPU.
//
// # Value mapping
//
// Grid values are mapped channel by channel: without Normalize, v in [-1, 1]
// maps to (v+1)/2 and then to round-half-even(x*255), so -1 → 0, 0 → 128 and
// 1 → 255, and values outside [-1, 1] are clipped. With Normalize each tile's
// own minimum and maximum (over all its channels, finite values only) map to
// 0 and 255, and a constant tile maps to 128 (mid gray). NaN is drawn as the
// lowest level (black); ±Inf are clipped.
//
// # Threading
//
// CPU renderers may be used from any goroutine, concurrently. The GL renderer
// serialises all requests onto its render thread, so its methods may also be
// called from any goroutine. GLFW itself is main-thread only: create the
// context window with NewContextWindow on the main thread after glfw.Init
// (inside a Fyne app: in fyne.DoAndWait or the lifecycle OnStarted hook; Fyne
// owns glfw.Init, Terminate and PollEvents), and destroy it there after
// (*GL).Close. One window carries the context of at most one live GL renderer.
package shaders
