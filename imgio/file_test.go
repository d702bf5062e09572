package imgio

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// allocated returns the bytes the program allocated while f ran.
func allocated(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// pngChunk returns a PNG chunk (PNG specification, 5.3): length, type, data, CRC.
func pngChunk(typ string, data []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
}

// bombPNG returns a small PNG whose header (IHDR) says w×h 8-bit gray pixels, followed by
// a zlib stream of idat zero bytes and the end chunk.
func bombPNG(w, h uint32, idat int) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // depth 8, gray, deflate, adaptive filter, no interlace
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, idat))
	zw.Close()
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, pngChunk("IHDR", ihdr)...)
	b = append(b, pngChunk("IDAT", z.Bytes())...)
	return append(b, pngChunk("IEND", nil)...)
}

// put writes data to dir/name and returns the path.
func put(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// encoded returns img encoded by enc.
func encoded(t *testing.T, img image.Image, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pngEnc(b *bytes.Buffer, m image.Image) error  { return png.Encode(b, m) }
func gifEnc(b *bytes.Buffer, m image.Image) error  { return gif.Encode(b, m, nil) }
func bmpEnc(b *bytes.Buffer, m image.Image) error  { return bmp.Encode(b, m) }
func tiffEnc(b *bytes.Buffer, m image.Image) error { return tiff.Encode(b, m, nil) }
func jpegEnc(b *bytes.Buffer, m image.Image) error {
	return jpeg.Encode(b, m, &jpeg.Options{Quality: 100})
}

// tiffSet sets the value of the entry tag (a SHORT or LONG) of the first IFD of the
// little-endian TIFF b, as tiff.Encode writes it.
func tiffSet(t *testing.T, b []byte, tag uint16, v uint32) {
	t.Helper()
	ifd := binary.LittleEndian.Uint32(b[4:])
	n := int(binary.LittleEndian.Uint16(b[ifd:]))
	for i := range n {
		e := b[int(ifd)+2+12*i:]
		if binary.LittleEndian.Uint16(e) != tag {
			continue
		}
		switch binary.LittleEndian.Uint16(e[2:]) {
		case 3:
			binary.LittleEndian.PutUint16(e[8:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(e[8:], v)
		default:
			t.Fatalf("tag %d has type %d", tag, binary.LittleEndian.Uint16(e[2:]))
		}
		return
	}
	t.Fatalf("no tag %d in the TIFF", tag)
}

// riff returns a WebP file of the given chunks (WebP container specification).
func riff(chunks ...[]byte) []byte {
	body := []byte("WEBP")
	for _, c := range chunks {
		body = append(body, c...)
	}
	b := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	return append(b, body...)
}

// webpChunk returns a RIFF chunk, padded to an even length.
func webpChunk(fourcc string, data []byte) []byte {
	b := append([]byte(fourcc), binary.LittleEndian.AppendUint32(nil, uint32(len(data)))...)
	b = append(b, data...)
	if len(data)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// vp8x returns a VP8X chunk for a w×h canvas with no features.
func vp8x(w, h int) []byte {
	d := make([]byte, 10)
	d[4], d[5], d[6] = byte(w-1), byte((w-1)>>8), byte((w-1)>>16)
	d[7], d[8], d[9] = byte(h-1), byte((h-1)>>8), byte((h-1)>>16)
	return webpChunk("VP8X", d)
}

// vp8lHeader returns the start of a lossless bitstream for a w×h image (WebP lossless
// specification, 3.1: signature 0x2f, 14-bit width and height less one, alpha, version).
func vp8lHeader(w, h int) []byte {
	v := uint32(w-1) | uint32(h-1)<<14
	return append([]byte{0x2f}, binary.LittleEndian.AppendUint32(nil, v)...)
}

// vp8Header returns the start of a lossy key frame for a w×h image (RFC 6386, 9.1: the
// frame tag of a shown key frame with a 16-byte first partition, the start code, and the
// 14-bit width and height).
func vp8Header(w, h int) []byte {
	b := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
	b = binary.LittleEndian.AppendUint16(b, uint16(w))
	b = binary.LittleEndian.AppendUint16(b, uint16(h))
	return append(b, make([]byte, 16)...)
}

func TestOpenPNGBomb(t *testing.T) {
	dir := t.TempDir()
	// The campaign's bomb: 2.4 KB whose header says 60000×60000.
	bomb := put(t, dir, "bomb.png", bombPNG(60000, 60000, 2000))
	_, err := Open(t.Context(), bomb)
	if err == nil || !strings.Contains(err.Error(), "60000×60000") || !strings.Contains(err.Error(), "limit of 134 megapixels") {
		t.Errorf("Open(60000×60000 PNG) = %v, want the size and the limit named", err)
	}
	// 20000×20000 gray would take 400 MB once decoded; refused, it takes next to nothing.
	bomb = put(t, dir, "bomb2.png", bombPNG(20000, 20000, 2000))
	var lerr error
	if n := allocated(func() { _, lerr = LoadImage(bomb, 8, 1) }); n > 16<<20 {
		t.Errorf("LoadImage(20000×20000 PNG bomb) allocated %d bytes", n)
	}
	if lerr == nil || !strings.Contains(lerr.Error(), "megapixels") || !strings.Contains(lerr.Error(), bomb) {
		t.Errorf("LoadImage(PNG bomb) = %v, want an error naming the file and the limit", lerr)
	}
}

func TestOpenLimits(t *testing.T) {
	dir := t.TempDir()
	one := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	gifData := encoded(t, one, gifEnc)
	binary.LittleEndian.PutUint16(gifData[6:], 20000) // logical screen width
	binary.LittleEndian.PutUint16(gifData[8:], 20000) // and height
	bmpData := encoded(t, one, bmpEnc)
	binary.LittleEndian.PutUint32(bmpData[18:], 20000) // BITMAPINFOHEADER width
	binary.LittleEndian.PutUint32(bmpData[22:], 20000) // and height
	tiffData := encoded(t, one, tiffEnc)
	tiffSet(t, tiffData, 256, 20000) // ImageWidth
	tiffSet(t, tiffData, 257, 20000) // ImageLength
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"big.gif", gifData},
		{"big.bmp", bmpData},
		{"big.tif", tiffData},
		{"big.webp", riff(vp8x(16000, 16000))},
		{"big.png", bombPNG(11586, 11586, 100)}, // one row over 2^27 pixels
	} {
		path := put(t, dir, tc.name, tc.data)
		_, err := Open(t.Context(), path)
		if err == nil || !strings.Contains(err.Error(), "is larger than the limit of 134 megapixels") {
			t.Errorf("%s: Open = %v, want it refused for its size", tc.name, err)
		}
	}
	// 11585² is within the limit: its header is accepted.
	f, err := Open(t.Context(), put(t, dir, "max.png", bombPNG(11585, 11585, 100)))
	if err != nil {
		t.Fatalf("11585×11585 PNG refused: %v", err)
	}
	f.Close()
}

// TestDecodeLyingHeaders decodes files whose content disagrees with their header and checks
// that no decoder allocates more than the header promised.
func TestDecodeLyingHeaders(t *testing.T) {
	dir := t.TempDir()
	small := image.NewPaletted(image.Rect(0, 0, 16, 16), []color.Color{color.Black, color.White})
	gifData := encoded(t, small, gifEnc)
	// The image descriptor follows the 6-byte signature, the 7-byte screen descriptor and
	// the 2-colour table; make its frame 20000×20000 on the 16×16 screen.
	desc := 6 + 7 + 6
	if gifData[desc] != 0x2c {
		t.Fatalf("no image descriptor at %d: % x", desc, gifData[:desc+10])
	}
	binary.LittleEndian.PutUint16(gifData[desc+5:], 20000)
	binary.LittleEndian.PutUint16(gifData[desc+7:], 20000)

	tiffData := encoded(t, image.NewGray(image.Rect(0, 0, 16, 16)), tiffEnc)
	tiffHuge := bytes.Clone(tiffData)
	tiffSet(t, tiffHuge, 279, 1<<31-1) // StripByteCounts far past the file's end

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"frame.gif", gifData},
		{"canvas.webp", riff(vp8x(16, 16), webpChunk("VP8L", vp8lHeader(16384, 16384)))},
		{"canvas-lossy.webp", riff(vp8x(16, 16), webpChunk("VP8 ", vp8Header(16000, 16000)))},
		{"strip.tif", tiffHuge},
		{"zip.png", bombPNG(16, 16, 64<<20)}, // 64 MB of zeros for 272 bytes of pixels
	} {
		path := put(t, dir, tc.name, tc.data)
		var need int64
		var err error
		n := allocated(func() {
			var f *File
			if f, err = Open(t.Context(), path); err != nil {
				return
			}
			defer f.Close()
			need = f.SquareBytes(8)
			_, err = f.Square(8)
		})
		if err == nil {
			t.Errorf("%s: decoded without error", tc.name)
		}
		if limit := max(need, 0) + 4<<20; n > limit {
			t.Errorf("%s: allocated %d bytes, more than %d (err %v)", tc.name, n, limit, err)
		}
	}
}

func TestOpenByteLimit(t *testing.T) {
	// A valid 1×1 PNG followed by a hole up to the size: sparse, so cheap.
	path := put(t, t.TempDir(), "huge.png", encoded(t, image.NewGray(image.Rect(0, 0, 1, 1)), pngEnc))
	if err := os.Truncate(path, 4e9); err != nil {
		t.Fatal(err)
	}
	var err error
	if n := allocated(func() { _, err = Open(t.Context(), path) }); n > 1<<20 {
		t.Errorf("Open allocated %d bytes for a file it refuses", n)
	}
	if err == nil || !strings.Contains(err.Error(), "file of 4.0 GB is larger than the limit of 1.6 GB") {
		t.Errorf("Open(4 GB file) = %v, want it refused for its size", err)
	}
	for size, ok := range map[int64]bool{MaxFileBytes: true, MaxFileBytes + 1: false} {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		f, err := Open(t.Context(), path)
		if (err == nil) != ok {
			t.Errorf("Open(%d-byte file) = %v, want accepted %v", size, err, ok)
		}
		if f != nil {
			f.Close()
		}
	}
}

func TestOpenNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no named pipes here:", err)
	}
	for _, path := range []string{fifo, dir} {
		done := make(chan error, 1)
		go func() {
			_, err := Open(t.Context(), path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Open(%s) = %v, want not a regular file", path, err)
			}
		case <-time.After(5 * time.Second):
			// Unblock the open by opening the pipe's other end.
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			t.Fatalf("Open(%s) still waiting after 5 s", path)
		}
	}
}

func TestOpenNotImageOrTruncated(t *testing.T) {
	dir := t.TempDir()
	text := put(t, dir, "notes.txt", []byte("hello"))
	if _, err := Open(t.Context(), text); !errors.Is(err, image.ErrFormat) || !strings.Contains(err.Error(), "not an image") {
		t.Errorf("Open(text) = %v, want not an image wrapping image.ErrFormat", err)
	}
	if _, err := Open(t.Context(), put(t, dir, "empty.png", nil)); !errors.Is(err, image.ErrFormat) {
		t.Errorf("Open(empty file) = %v, want not an image", err)
	}
	m := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	for i := range m.Pix {
		m.Pix[i] = byte(i * 7)
	}
	for name, enc := range map[string]func(*bytes.Buffer, image.Image) error{
		"png": pngEnc, "jpeg": jpegEnc, "gif": gifEnc, "bmp": bmpEnc, "tiff": tiffEnc,
	} {
		full := encoded(t, m, enc)
		for _, cut := range []int{len(full) / 4, len(full) / 2, len(full) - 8} {
			path := put(t, dir, "cut."+name, full[:cut])
			f, err := Open(t.Context(), path)
			if err != nil {
				continue // the header itself was cut
			}
			_, err = f.Square(8)
			f.Close()
			if err == nil && (name == "png" || name == "bmp") {
				t.Errorf("%s cut to %d of %d bytes: decoded without error", name, cut, len(full))
			}
			if err != nil && !strings.Contains(err.Error(), name) {
				t.Errorf("%s cut to %d bytes: error %q does not name the format", name, cut, err)
			}
		}
	}
}

func TestDecodeCancelled(t *testing.T) {
	path := put(t, t.TempDir(), "a.png", encoded(t, image.NewGray(image.Rect(0, 0, 64, 64)), pngEnc))
	ctx, cancel := context.WithCancel(t.Context())
	f, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cancel()
	if _, err := f.Square(8); !errors.Is(err, context.Canceled) {
		t.Errorf("Square after cancel = %v, want context.Canceled", err)
	}
	if _, err := Open(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("Open after cancel = %v, want context.Canceled", err)
	}
}

func TestLoadImageSizeLimit(t *testing.T) {
	path := put(t, t.TempDir(), "a.png", encoded(t, image.NewGray(image.Rect(0, 0, 4, 4)), pngEnc))
	for _, size := range []int{0, -1, MaxSize + 1, 100000} {
		if _, err := LoadImage(path, size, 1); err == nil || !strings.Contains(err.Error(), "outside [1, 1024]") {
			t.Errorf("LoadImage size %d = %v, want it refused", size, err)
		}
	}
	if _, err := LoadImage(path, MaxSize, 1); err != nil {
		t.Errorf("LoadImage size %d: %v", MaxSize, err)
	}
}

// TestSquareBytes checks that File.SquareBytes bounds what decoding and squaring really
// allocate, for the encodings that need the most: progressive and CMYK JPEG, interlaced
// 16-bit PNG, lossless WebP with alpha, tiled 16-bit TIFF (made with ImageMagick where it
// is installed), and Go's own encoders.
func TestSquareBytes(t *testing.T) {
	dir := t.TempDir()
	m := image.NewNRGBA(image.Rect(0, 0, 320, 240))
	for i := range m.Pix {
		m.Pix[i] = byte(i*7 + i/961)
	}
	src := put(t, dir, "src.png", encoded(t, m, pngEnc))
	files := map[string]string{
		"go.png":   src,
		"go.jpg":   put(t, dir, "go.jpg", encoded(t, m, jpegEnc)),
		"go.gif":   put(t, dir, "go.gif", encoded(t, m, gifEnc)),
		"go.bmp":   put(t, dir, "go.bmp", encoded(t, m, bmpEnc)),
		"go.tif":   put(t, dir, "go.tif", encoded(t, m, tiffEnc)),
		"gray.png": put(t, dir, "gray.png", encoded(t, image.NewGray(image.Rect(0, 0, 320, 240)), pngEnc)),
	}
	if convert, err := exec.LookPath("convert"); err == nil {
		for name, args := range map[string][]string{
			"progressive444.jpg": {"-interlace", "Plane", "-sampling-factor", "1x1"},
			"cmyk.jpg":           {"-colorspace", "CMYK", "-interlace", "Plane"},
			"gray.jpg":           {"-colorspace", "Gray", "-interlace", "Plane"},
			"interlaced16.png":   {"-depth", "16", "-interlace", "PNG", "-define", "png:format=png64"},
			"lossless.webp":      {"-define", "webp:lossless=true"},
			"lossy.webp":         {"-quality", "80"},
			"tiled16.tif":        {"-depth", "16", "-compress", "Zip", "-define", "tiff:tile-geometry=64x64"},
		} {
			out := filepath.Join(dir, name)
			if b, err := exec.Command(convert, append(append([]string{src}, args...), out)...).CombinedOutput(); err != nil {
				t.Fatalf("convert %s: %v\n%s", name, err, b)
			}
			files[name] = out
		}
	} else {
		t.Log("ImageMagick's convert is not installed: Go's encodings only")
	}
	for name, path := range files {
		var need int64
		var err error
		n := allocated(func() {
			var f *File
			if f, err = Open(t.Context(), path); err != nil {
				return
			}
			defer f.Close()
			need = f.SquareBytes(64)
			_, err = f.Square(64)
		})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if n > need {
			t.Errorf("%s: allocated %d bytes, SquareBytes estimated %d", name, n, need)
		}
		t.Logf("%s: allocated %d of the %d estimated", name, n, need)
	}
}
