package dataset

import (
	"encoding/base64"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sync/semaphore"

	"github.com/ddpm-studio/ddpm-studio/imgio"
)

// FuzzLoadFile loads one file the way LoadFolder loads each: no content may make it panic
// (a decoder's panic, which loadFile contains, is reported here as a failure so that it is
// seen), and no decode may allocate more than the file's header promised
// (imgio.File.SquareBytes), with room for reading headers: the TIFF reader reads a length
// given in the file in chunks of 10 MB, whatever the file's size.
func FuzzLoadFile(f *testing.F) {
	webp, err := base64.StdEncoding.DecodeString(webp1x1)
	if err != nil {
		f.Fatal(err)
	}
	m := uniform(12, 9, color.NRGBA{200, 40, 90, 255})
	paletted := image.NewPaletted(image.Rect(0, 0, 9, 7), []color.Color{color.Black, color.White})
	exif := []byte("II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00")
	j := encode(f, m, jpegEnc)
	app1 := append([]byte{0xff, 0xe1, 0, byte(2 + 6 + len(exif))}, "Exif\x00\x00"...)
	jexif := append(append(append([]byte{}, j[:2]...), append(app1, exif...)...), j[2:]...)
	for _, seed := range [][]byte{
		encode(f, m, pngEnc), j, jexif, encode(f, paletted, gifEnc), encode(f, m, bmpEnc),
		encode(f, m, tiffEnc), webp, grayPNG(60000, 60000, 100), grayPNG(16, 16, 1<<16),
		[]byte("not an image"),
	} {
		f.Add(seed)
	}
	dir := f.TempDir()
	const size = 8
	dst := make([]uint8, 3*size*size)
	sem := semaphore.NewWeighted(1 << 30)
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "x")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var need int64
		if h, err := imgio.Open(t.Context(), path); err == nil {
			need = h.SquareBytes(size)
			h.Close()
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := loadFile(t.Context(), path, size, dst, sem, 1<<30)
		runtime.ReadMemStats(&after)
		if strings.Contains(r.reason, "decoder failed") || strings.Contains(r.reason, "panic") {
			t.Fatalf("%s", r.reason)
		}
		if n := int64(after.TotalAlloc - before.TotalAlloc); n > need+12<<20 && !raceEnabled {
			t.Fatalf("allocated %d bytes, the header promised %d (%s)", n, need, r.reason)
		}
	})
}
