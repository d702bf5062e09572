package dataset

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// webp1x1 is the 1×1 lossless WebP from Google's WebP feature-detection
// snippet: one fully transparent pixel.
const webp1x1 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="

// uniform returns a w×h NRGBA image of one colour.
func uniform(w, h int, c color.NRGBA) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

// bar returns a 20×10 gray image whose left and right quarters are black and
// whose middle is white.
func bar() *image.Gray {
	m := image.NewGray(image.Rect(0, 0, 20, 10))
	for y := range 10 {
		for x := 5; x < 15; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	return m
}

// writeFile writes data to dir/name, creating parent folders.
func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// encode returns img encoded by enc.
func encode(t testing.TB, img image.Image, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pngEnc(b *bytes.Buffer, m image.Image) error { return png.Encode(b, m) }
func jpegEnc(b *bytes.Buffer, m image.Image) error {
	return jpeg.Encode(b, m, &jpeg.Options{Quality: 100})
}
func gifEnc(b *bytes.Buffer, m image.Image) error  { return gif.Encode(b, m, nil) }
func bmpEnc(b *bytes.Buffer, m image.Image) error  { return bmp.Encode(b, m) }
func tiffEnc(b *bytes.Buffer, m image.Image) error { return tiff.Encode(b, m, nil) }

// pixel returns channel c of pixel (x, y) of image i.
func pixel(d *Dataset, i, c, y, x int) uint8 {
	return d.Pixels[((i*d.C+c)*d.H+y)*d.W+x]
}

// checkUniform checks that every pixel of image i is rgb within tol.
func checkUniform(t *testing.T, d *Dataset, i int, rgb [3]uint8, tol int) {
	t.Helper()
	for c := range d.C {
		for y := range d.H {
			for x := range d.W {
				got := int(pixel(d, i, c, y, x))
				if want := int(rgb[c]); got < want-tol || got > want+tol {
					t.Errorf("image %d (%s) channel %d at (%d,%d) = %d, want %d±%d", i, d.Files[i], c, x, y, got, want, tol)
					return
				}
			}
		}
	}
}

func TestLoadFolderMixed(t *testing.T) {
	dir := t.TempDir()
	good := uniform(4, 4, color.NRGBA{9, 9, 9, 255})
	pngBytes := encode(t, bar(), pngEnc)
	paletted := image.NewPaletted(image.Rect(0, 0, 9, 15), palette.Plan9)
	gifColour := palette.Plan9[200].(color.RGBA)
	for i := range paletted.Pix {
		paletted.Pix[i] = 200
	}
	webp, err := base64.StdEncoding.DecodeString(webp1x1)
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, dir, "a_bar.png", pngBytes)
	writeFile(t, dir, "b.jpg", encode(t, uniform(16, 12, color.NRGBA{200, 40, 90, 255}), jpegEnc))
	writeFile(t, dir, "c.gif", encode(t, paletted, gifEnc))
	writeFile(t, dir, "d.bmp", encode(t, uniform(30, 30, color.NRGBA{1, 2, 3, 255}), bmpEnc))
	writeFile(t, dir, "e.tif", encode(t, uniform(5, 7, color.NRGBA{250, 128, 0, 255}), tiffEnc))
	writeFile(t, dir, "f.webp", webp)
	writeFile(t, dir, "sub/g.png", encode(t, uniform(13, 11, color.NRGBA{0, 0, 255, 255}), pngEnc))
	writeFile(t, dir, "sub/deeper/h.png", encode(t, uniform(3, 8, color.NRGBA{70, 80, 90, 255}), pngEnc))
	writeFile(t, dir, "corrupt.png", pngBytes[:len(pngBytes)/2])
	writeFile(t, dir, "notes.txt", []byte("these are not pixels\n"))
	writeFile(t, dir, ".hidden.png", encode(t, good, pngEnc))
	writeFile(t, dir, ".cache/x.png", encode(t, good, pngEnc))

	d, err := LoadFolder(t.Context(), dir, Options{Size: 8})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"a_bar.png", "b.jpg", "c.gif", "d.bmp", "e.tif", "f.webp", "sub/deeper/h.png", "sub/g.png"}
	for i := range wantFiles {
		wantFiles[i] = filepath.FromSlash(wantFiles[i])
	}
	if !slices.Equal(d.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", d.Files, wantFiles)
	}
	if d.N != len(wantFiles) || d.C != 3 || d.H != 8 || d.W != 8 || len(d.Pixels) != d.N*3*8*8 {
		t.Fatalf("N, C, H, W = %d, %d, %d, %d with %d bytes, want %d, 3, 8, 8 with %d",
			d.N, d.C, d.H, d.W, len(d.Pixels), len(wantFiles), len(wantFiles)*3*8*8)
	}
	if d.Source != dir || d.Labels != nil {
		t.Errorf("Source = %q, Labels = %v; want %q, nil", d.Source, d.Labels, dir)
	}

	checkUniform(t, d, 0, [3]uint8{255, 255, 255}, 0) // centre of the bar is white
	checkUniform(t, d, 1, [3]uint8{200, 40, 90}, 3)   // JPEG is lossy
	checkUniform(t, d, 2, [3]uint8{gifColour.R, gifColour.G, gifColour.B}, 0)
	checkUniform(t, d, 3, [3]uint8{1, 2, 3}, 0)
	checkUniform(t, d, 4, [3]uint8{250, 128, 0}, 0)
	checkUniform(t, d, 5, [3]uint8{255, 255, 255}, 0) // transparent over white
	checkUniform(t, d, 6, [3]uint8{70, 80, 90}, 0)
	checkUniform(t, d, 7, [3]uint8{0, 0, 255}, 0)

	if len(d.Skipped) != 2 {
		t.Fatalf("Skipped = %v, want corrupt.png and notes.txt", d.Skipped)
	}
	if s := d.Skipped[0]; s.Path != "corrupt.png" || !strings.Contains(s.Reason, "png") {
		t.Errorf("Skipped[0] = %+v, want corrupt.png with a reason naming png", s)
	}
	if s := d.Skipped[1]; s != (Skip{"notes.txt", "not an image"}) {
		t.Errorf("Skipped[1] = %+v, want notes.txt: not an image", s)
	}
	want := "2 files skipped: corrupt.png: " + d.Skipped[0].Reason + "; and 1 more"
	if got := d.SkippedSummary(1); got != want {
		t.Errorf("SkippedSummary(1) = %q, want %q", got, want)
	}
	want = "2 files skipped: corrupt.png: " + d.Skipped[0].Reason + "; notes.txt: not an image"
	if got := d.SkippedSummary(5); got != want {
		t.Errorf("SkippedSummary(5) = %q, want %q", got, want)
	}
}

func TestLoadFolderChannels(t *testing.T) {
	dir := t.TempDir()
	gray := image.NewGray(image.Rect(0, 0, 6, 9))
	for i := range gray.Pix {
		gray.Pix[i] = 30
	}
	gray16 := image.NewGray16(image.Rect(0, 0, 12, 12))
	for y := range 12 {
		for x := range 12 {
			gray16.SetGray16(x, y, color.Gray16{0xC8C8}) // 200 in 8 bits
		}
	}
	writeFile(t, dir, "1.png", encode(t, gray, pngEnc))
	writeFile(t, dir, "2.png", encode(t, gray16, pngEnc))
	writeFile(t, dir, "3.png", encode(t, uniform(7, 7, color.NRGBA{77, 77, 77, 255}), pngEnc))

	d, err := LoadFolder(t.Context(), dir, Options{Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if d.C != 1 {
		t.Fatalf("all-gray folder: C = %d, want 1", d.C)
	}
	for i, v := range []uint8{30, 200, 77} {
		checkUniform(t, d, i, [3]uint8{v}, 0)
	}

	d, err = LoadFolder(t.Context(), dir, Options{Size: 5, Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	if d.C != 3 {
		t.Fatalf("Channels 3: C = %d", d.C)
	}
	checkUniform(t, d, 1, [3]uint8{200, 200, 200}, 0)

	// One coloured image makes the folder RGB; forcing gray gives BT.601
	// luma: 0.299·255 = 76.2 for pure red.
	writeFile(t, dir, "4.png", encode(t, uniform(5, 5, color.NRGBA{255, 0, 0, 255}), pngEnc))
	d, err = LoadFolder(t.Context(), dir, Options{Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if d.C != 3 {
		t.Errorf("folder with a red image: C = %d, want 3", d.C)
	}
	d, err = LoadFolder(t.Context(), dir, Options{Size: 5, Channels: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkUniform(t, d, 3, [3]uint8{76}, 0)
}

func TestLoadFolderProgress(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.png", "b.png", "c.png", "bad.txt"} {
		writeFile(t, dir, name, encode(t, uniform(3, 3, color.NRGBA{1, 1, 1, 255}), pngEnc))
	}
	writeFile(t, dir, "bad.txt", []byte("x"))
	var calls [][2]int
	_, err := LoadFolder(t.Context(), dir, Options{Size: 2, Progress: func(done, total int) {
		calls = append(calls, [2]int{done, total})
	}})
	if err != nil {
		t.Fatal(err)
	}
	// bad.txt is not an image: only the three images are counted.
	want := [][2]int{{1, 3}, {2, 3}, {3, 3}}
	if !slices.Equal(calls, want) {
		t.Errorf("progress calls = %v, want %v", calls, want)
	}
}

func TestLoadFolderErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	file := filepath.Join(dir, "file.png")
	writeFile(t, dir, "file.png", encode(t, bar(), pngEnc))
	empty := filepath.Join(dir, "empty")
	bad := filepath.Join(dir, "bad")
	writeFile(t, dir, "empty/.DS_Store", []byte("ignored"))
	writeFile(t, dir, "bad/a.txt", []byte("text"))
	writeFile(t, dir, "bad/b.png", []byte("\x89PNG\r\n\x1a\n truncated"))

	for _, tc := range []struct {
		dir  string
		opt  Options
		want []string
	}{
		{missing, Options{Size: 8}, []string{missing}},
		{file, Options{Size: 8}, []string{file, "not a folder"}},
		{empty, Options{Size: 8}, []string{"no usable images in " + empty, "no files found"}},
		{bad, Options{Size: 8}, []string{"no usable images in " + bad, "2 files skipped", "a.txt: not an image", "b.png: corrupt png"}},
		{dir, Options{Size: 0}, []string{dir, "size"}},
		{dir, Options{Size: 8, Channels: 2}, []string{dir, "channels"}},
	} {
		d, err := LoadFolder(t.Context(), tc.dir, tc.opt)
		if err == nil {
			t.Errorf("LoadFolder(t.Context(), %s, %+v) = %d images, want an error", tc.dir, tc.opt, d.N)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("LoadFolder(t.Context(), %s) error %q does not contain %q", tc.dir, err, w)
			}
		}
	}
}

func TestLoadFolderSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	writeFile(t, target, "a.png", encode(t, bar(), pngEnc))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skip("symbolic links not available:", err)
	}
	if err := os.Symlink(filepath.Join(target, "a.png"), filepath.Join(target, "b.png")); err != nil {
		t.Fatal(err)
	}
	d, err := Load(t.Context(), link, Options{Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Files, []string{"a.png", "b.png"}) {
		t.Errorf("Files = %q, want [a.png b.png]", d.Files)
	}
}

func TestBatch(t *testing.T) {
	d := &Dataset{N: 2, C: 1, H: 2, W: 3, Pixels: []uint8{
		0, 255, 51, // image 0, row 0
		102, 153, 204, // image 0, row 1
		255, 255, 255,
		0, 0, 0,
	}}
	out := make([]float32, 2*6)
	d.Batch([]int{1, 0}, []bool{false, true}, out)
	v := func(b float32) float32 { return b/127.5 - 1 }
	want := []float32{
		1, 1, 1, -1, -1, -1, // image 1 as is
		v(51), 1, -1, v(204), v(153), v(102), // image 0 mirrored
	}
	if !slices.Equal(out, want) {
		t.Errorf("Batch = %v, want %v", out, want)
	}
	d.Batch([]int{0}, nil, out[:6])
	if want := []float32{-1, 1, v(51), v(102), v(153), v(204)}; !slices.Equal(out[:6], want) {
		t.Errorf("Batch without flip = %v, want %v", out[:6], want)
	}

	rgb := &Dataset{N: 1, C: 3, H: 1, W: 2, Pixels: []uint8{0, 255, 10, 20, 30, 40}}
	out = make([]float32, 6)
	rgb.Batch([]int{0}, []bool{true}, out)
	if want := []float32{1, -1, v(20), v(10), v(40), v(30)}; !slices.Equal(out, want) {
		t.Errorf("RGB flipped Batch = %v, want %v", out, want)
	}

	defer func() {
		if recover() == nil {
			t.Error("Batch with a short out slice did not panic")
		}
	}()
	d.Batch([]int{0, 1}, nil, make([]float32, 11))
}

func TestSkippedSummary(t *testing.T) {
	for _, tc := range []struct {
		skipped []Skip
		n       int
		want    string
	}{
		{nil, 3, "no files skipped"},
		{[]Skip{{"a", "x"}}, 3, "1 file skipped: a: x"},
		{[]Skip{{"a", "x"}, {"b", "y"}, {"c", "z"}}, 0, "3 files skipped"},
		{[]Skip{{"a", "x"}, {"b", "y"}, {"c", "z"}}, 2, "3 files skipped: a: x; b: y; and 1 more"},
	} {
		d := &Dataset{Skipped: tc.skipped}
		if got := d.SkippedSummary(tc.n); got != tc.want {
			t.Errorf("SkippedSummary(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a/one.png", encode(t, uniform(4, 4, color.NRGBA{10, 20, 30, 255}), pngEnc))
	writeFile(t, dir, "b/two.bmp", encode(t, uniform(6, 6, color.NRGBA{200, 100, 0, 255}), bmpEnc))
	writeFile(t, dir, "b/bad.png", []byte("\x89PNG\r\n\x1a\n broken"))
	paths := []string{filepath.Join(dir, "b/two.bmp"), filepath.Join(dir, "a/one.png"), filepath.Join(dir, "b/bad.png"), filepath.Join(dir, "a/one.png")}
	d, err := LoadFiles(t.Context(), paths, Options{Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != dir {
		t.Errorf("Source %q, want the common folder %q", d.Source, dir)
	}
	want := []string{filepath.FromSlash("a/one.png"), filepath.FromSlash("b/two.bmp")}
	if !slices.Equal(d.Files, want) || d.N != 2 || d.C != 3 {
		t.Fatalf("Files %q N %d C %d; want %q, 2, 3", d.Files, d.N, d.C, want)
	}
	checkUniform(t, d, 0, [3]uint8{10, 20, 30}, 0)
	checkUniform(t, d, 1, [3]uint8{200, 100, 0}, 0)
	if len(d.Skipped) != 1 || d.Skipped[0].Path != filepath.FromSlash("b/bad.png") {
		t.Errorf("Skipped %v, want b/bad.png", d.Skipped)
	}
	if _, err := LoadFiles(t.Context(), nil, Options{Size: 4}); err == nil {
		t.Error("no files: no error")
	}
	if _, err := LoadFiles(t.Context(), []string{filepath.Join(dir, "b/bad.png")}, Options{Size: 4}); err == nil || !strings.Contains(err.Error(), "bad.png") {
		t.Errorf("only a corrupt file: err %v, want one naming bad.png", err)
	}
}
