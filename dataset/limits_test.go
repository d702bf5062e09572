package dataset

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// setAvailable makes the loader see n bytes of available memory until the test ends.
func setAvailable(t *testing.T, n int64) {
	t.Helper()
	old := available
	available = func() int64 { return n }
	t.Cleanup(func() { available = old })
}

// allocated returns the bytes the program allocated while f ran.
func allocated(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// grayPNG returns a PNG whose header (IHDR) says w×h 8-bit gray pixels, followed by a zlib
// stream of idat zero bytes: a bomb when idat is small, a valid black image when it is
// h·(w+1) (a filter byte per row).
func grayPNG(w, h uint32, idat int) []byte {
	chunk := func(typ string, data []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
		b = append(append(b, typ...), data...)
		return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[4:]))
	}
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0)
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	zeros := make([]byte, 1<<20)
	for n := idat; n > 0; n -= len(zeros) {
		zw.Write(zeros[:min(n, len(zeros))])
	}
	zw.Close()
	b := []byte("\x89PNG\r\n\x1a\n")
	b = append(b, chunk("IHDR", ihdr)...)
	b = append(b, chunk("IDAT", z.Bytes())...)
	return append(b, chunk("IEND", nil)...)
}

func TestLoadFolderBombs(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a_good.png", encode(t, uniform(8, 8, color.NRGBA{9, 9, 9, 255}), pngEnc))
	writeFile(t, dir, "bomb1.png", grayPNG(60000, 60000, 2000))
	writeFile(t, dir, "bomb2.png", grayPNG(20000, 20000, 2000))
	var d *Dataset
	var err error
	if n := allocated(func() { d, err = LoadFolder(t.Context(), dir, Options{Size: 8}) }); n > 32<<20 {
		t.Errorf("loading two PNG bombs allocated %d bytes", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 1 || len(d.Skipped) != 2 {
		t.Fatalf("N = %d, skipped %v; want 1 image and both bombs skipped", d.N, d.Skipped)
	}
	for _, s := range d.Skipped {
		if !strings.Contains(s.Reason, "0000×") || !strings.Contains(s.Reason, "limit of 134 megapixels") {
			t.Errorf("%s skipped for %q, want the size and the limit named", s.Path, s.Reason)
		}
	}
}

func TestOptionsSizeLimit(t *testing.T) {
	setAvailable(t, 0) // unknown: only the size limit stands in the way
	dir := t.TempDir()
	writeFile(t, dir, "a.png", encode(t, uniform(8, 8, color.NRGBA{9, 9, 9, 255}), pngEnc))
	for _, size := range []int{MaxSize + 1, 65536, 100000, 1 << 40} {
		for _, spec := range []string{"mnist", dir} {
			_, err := Load(t.Context(), spec, Options{Size: size})
			if err == nil || !strings.Contains(err.Error(), "larger than the maximum of 1024") {
				t.Errorf("Load(%s, size %d) = %v, want the size refused", spec, size, err)
			}
		}
		if _, err := LoadFiles(t.Context(), []string{filepath.Join(dir, "a.png")}, Options{Size: size}); err == nil {
			t.Errorf("LoadFiles size %d accepted", size)
		}
	}
}

func TestMNISTMemory(t *testing.T) {
	setAvailable(t, 20e9)
	var err error
	// Decompressing MNIST takes about 100 MB; the dataset would take 189 GB.
	if n := allocated(func() { _, err = MNIST(t.Context(), Options{Size: 1024, Channels: 3}) }); n > 1<<30 {
		t.Errorf("refusing MNIST allocated %d bytes", n)
	}
	// 60,000·3·1024² = 188.7 GB. Of 20 GB, 90% may be used: 60,000·3·s² ≤ 18e9 for s ≤ 316.
	want := "MNIST at 1024×1024×3 needs 188.7 GB of memory, 20.0 GB is available: choose an image size of at most 316"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("MNIST at 1024 with 20 GB = %v, want %q", err, want)
	}
	if err := checkFits("MNIST", 3, 316, 60000*3*316*316, 20e9); err != nil {
		t.Errorf("316: %v", err)
	}
	if err := checkFits("MNIST", 3, 317, 60000*3*317*317, 20e9); err == nil {
		t.Error("317 fits in 20 GB")
	}
}

func TestLoadFolderMemory(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.png", "b.png", "c.png", "notes.txt"} {
		writeFile(t, dir, name, encode(t, uniform(8, 8, color.NRGBA{9, 9, 9, 255}), pngEnc))
	}
	writeFile(t, dir, "notes.txt", []byte("not an image"))
	setAvailable(t, 1e6)
	// Three images (the text file is not counted) of 512×512 in three planes, and the
	// copy to one plane: 3·512²·4 = 3.1 MB. 3·s²·4 ≤ 0.9e6 for s ≤ 273.
	_, err := LoadFolder(t.Context(), dir, Options{Size: 512})
	want := "a dataset of 3 images at 512×512×3 needs 3.1 MB of memory, 1.0 MB is available: choose an image size of at most 273"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("LoadFolder = %v, want %q", err, want)
	}
	if _, err := LoadFolder(t.Context(), dir, Options{Size: 273}); err != nil {
		t.Errorf("size 273: %v", err)
	}
}

func TestDecodeBudget(t *testing.T) {
	for _, tc := range []struct{ avail, need, want int64 }{
		{0, 1e9, unknownMemoryBudget},
		{10e9, 1e9, 8e9},
		{10e9, 8.9e9, 256 << 20},
	} {
		if got := decodeBudget(tc.avail, tc.need); got != tc.want {
			t.Errorf("decodeBudget(%d, %d) = %d, want %d", tc.avail, tc.need, got, tc.want)
		}
	}
	// A file whose decode needs more than the budget is skipped, unread.
	path := filepath.Join(t.TempDir(), "big.png")
	if err := os.WriteFile(path, grayPNG(1000, 1000, 1000*1001), 0o644); err != nil {
		t.Fatal(err)
	}
	sem := semaphore.NewWeighted(1 << 20)
	r := loadFile(t.Context(), path, 8, make([]uint8, 64), sem, 1<<20)
	// imgio.File.SquareBytes: 2 + 2 bytes a pixel for a gray PNG, and 0.5 MB more.
	if !strings.Contains(r.reason, "decoding its 1000×1000 pixels needs about 4.5 MB of memory, more than the 1.0 MB") {
		t.Errorf("reason = %q", r.reason)
	}
	r = loadFile(t.Context(), path, 8, make([]uint8, 64), semaphore.NewWeighted(8<<20), 8<<20)
	if r.reason != "" || !r.gray {
		t.Errorf("with room: %+v", r)
	}
}

// TestLoadFolderCancel cancels a load in the middle of decoding an image that takes
// seconds: 11585×11585 (the most pixels allowed) black.
func TestLoadFolderCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes a 134-megapixel image")
	}
	dir := t.TempDir()
	writeFile(t, dir, "big.png", grayPNG(11585, 11585, 11585*11586))
	for i := range 50 {
		writeFile(t, dir, "small"+string(rune('a'+i%26))+string(rune('a'+i/26))+".png",
			encode(t, uniform(64, 64, color.NRGBA{uint8(i), 9, 9, 255}), pngEnc))
	}
	// How long the load takes when left alone, to be sure cancelling cuts it short.
	start := time.Now()
	if _, err := LoadFolder(t.Context(), dir, Options{Size: 32}); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(whole/4, cancel)
	start = time.Now()
	_, err := LoadFolder(ctx, dir, Options{Size: 32})
	late := time.Since(start) - whole/4
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), dir) {
		t.Errorf("cancelled load = %v, want context.Canceled naming %s", err, dir)
	}
	if late > time.Second {
		t.Errorf("load returned %v after being cancelled (a whole load takes %v)", late, whole)
	}
	t.Logf("whole load %v; returned %v after cancelling", whole, late)

	// Cancelled before it starts.
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := LoadFolder(ctx, dir, Options{Size: 32}); !errors.Is(err, context.Canceled) {
		t.Errorf("load with a cancelled context = %v", err)
	}
}

func TestMNISTCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := MNIST(ctx, Options{Size: 64, Channels: 3})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "mnist") {
		t.Errorf("cancelled MNIST = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 1300*time.Millisecond {
		t.Errorf("MNIST returned %v after starting, 300 ms after being cancelled", d)
	}
}

func TestLoadFilesCancel(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.png", encode(t, uniform(8, 8, color.NRGBA{9, 9, 9, 255}), pngEnc))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := LoadFiles(ctx, []string{filepath.Join(dir, "a.png")}, Options{Size: 8}); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadFiles with a cancelled context = %v", err)
	}
}

// TestLoadFolderOrientation loads a phone photo stored sideways (EXIF orientation 6): the
// dataset holds it upright.
func TestLoadFolderOrientation(t *testing.T) {
	// Stored 32×32: top half red, bottom half blue. Orientation 6 turns it clockwise:
	// the red half shows on the right.
	m := image.NewNRGBA(image.Rect(0, 0, 32, 32))
	for y := range 32 {
		for x := range 32 {
			m.SetNRGBA(x, y, color.NRGBA{uint8(255 * (1 - y/16)), 0, uint8(255 * (y / 16)), 255})
		}
	}
	j := encode(t, m, jpegEnc)
	tiff := []byte("II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00")
	app1 := append([]byte{0xff, 0xe1, 0, byte(2 + 6 + len(tiff))}, "Exif\x00\x00"...)
	app1 = append(app1, tiff...)
	dir := t.TempDir()
	writeFile(t, dir, "phone.jpg", append(append(bytes.Clone(j[:2]), app1...), j[2:]...))
	d, err := LoadFolder(t.Context(), dir, Options{Size: 16, Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	left, right := pixel(d, 0, 0, 8, 3), pixel(d, 0, 0, 8, 12) // red channel, middle row
	if left > 40 || right < 215 {
		t.Errorf("red at the left %d, at the right %d; want the red half on the right", left, right)
	}
}
