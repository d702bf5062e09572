package imgio

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// exifIFD returns a little-endian TIFF structure whose first IFD holds the given 12-byte
// entries, as in an EXIF block.
func exifIFD(entries ...[]byte) []byte {
	b := []byte("II*\x00\x08\x00\x00\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(entries)))
	for _, e := range entries {
		b = append(b, e...)
	}
	return append(b, 0, 0, 0, 0) // no next IFD
}

// ifdEntry returns a little-endian IFD entry: tag, type, count and a value of 4 bytes.
func ifdEntry(tag, typ uint16, count, value uint32) []byte {
	e := binary.LittleEndian.AppendUint16(nil, tag)
	e = binary.LittleEndian.AppendUint16(e, typ)
	e = binary.LittleEndian.AppendUint32(e, count)
	return binary.LittleEndian.AppendUint32(e, value)
}

// orientationEXIF returns an EXIF block (the TIFF structure) holding Orientation o.
func orientationEXIF(o int) []byte {
	return exifIFD(ifdEntry(orientationTag, 3, 1, uint32(o)))
}

// withAPP1 returns the JPEG j with APP1 segments holding the given payloads inserted
// after its start-of-image marker.
func withAPP1(j []byte, payloads ...[]byte) []byte {
	out := bytes.Clone(j[:2])
	for _, p := range payloads {
		out = append(out, 0xff, 0xe1)
		out = binary.BigEndian.AppendUint16(out, uint16(len(p)+2))
		out = append(out, p...)
	}
	return append(out, j[2:]...)
}

// exifPayload returns an APP1 EXIF payload: the EXIF header and the TIFF structure.
func exifPayload(tiff []byte) []byte {
	return append([]byte("Exif\x00\x00"), tiff...)
}

// quadrants returns a w×h image whose quarters are red (top left), green (top right),
// blue (bottom left) and white (bottom right).
func quadrants(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := [4]color.NRGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}[2*(2*y/h)+2*x/w]
			m.SetNRGBA(x, y, c)
		}
	}
	return m
}

// near reports whether c is within tol of want in each of R, G and B.
func near(c color.RGBA, want color.NRGBA, tol int) bool {
	d := func(a, b uint8) bool { return int(a)-int(b) <= tol && int(b)-int(a) <= tol }
	return d(c.R, want.R) && d(c.G, want.G) && d(c.B, want.B)
}

// orientationSides gives, for each EXIF orientation, the visual side of the image that the
// stored 0th row and 0th column show as, in the words of TIFF 6.0 (Orientation, tag 274).
var orientationSides = map[int][2]string{
	1: {"top", "left"},
	2: {"top", "right"},
	3: {"bottom", "right"},
	4: {"bottom", "left"},
	5: {"left", "top"},
	6: {"right", "top"},
	7: {"right", "bottom"},
	8: {"left", "bottom"},
}

// shownCorner returns the corner (x, y in {0, 1}) where the stored corner at the first or
// last row and column shows, for orientation o.
func shownCorner(o int, lastRow, lastCol bool) (x, y int) {
	opposite := map[string]string{"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
	row, col := orientationSides[o][0], orientationSides[o][1]
	if lastRow {
		row = opposite[row]
	}
	if lastCol {
		col = opposite[col]
	}
	for _, side := range []string{row, col} {
		switch side {
		case "right":
			x = 1
		case "bottom":
			y = 1
		}
	}
	return x, y
}

func TestOrientationJPEG(t *testing.T) {
	dir := t.TempDir()
	plain := encoded(t, quadrants(32, 32), jpegEnc)
	colours := quadrants(2, 2)
	for o := 1; o <= 8; o++ {
		path := put(t, dir, "o"+strconv.Itoa(o)+".jpg", withAPP1(plain, exifPayload(orientationEXIF(o))))
		f, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		if f.Orientation != o {
			t.Errorf("orientation %d read as %d", o, f.Orientation)
		}
		m, err := f.Square(32)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, stored := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			x, y := shownCorner(o, stored[0], stored[1])
			sy, sx := 0, 0
			if stored[0] {
				sy = 1
			}
			if stored[1] {
				sx = 1
			}
			want := colours.NRGBAAt(sx, sy)
			if got := m.RGBAAt(8+16*x, 8+16*y); !near(got, want, 24) {
				t.Errorf("orientation %d: the stored corner at row %d, column %d shows at (%d, %d) as %v, want %v",
					o, sy, sx, x, y, got, want)
			}
		}
	}
}

// TestOrientationCrop checks that the square is cut from the middle of the image as shown:
// a 64×32 image turned by orientations 5 to 8 shows 32×64, and its centre square is then
// cut across the stored columns.
func TestOrientationCrop(t *testing.T) {
	// Columns 0–15 green, 16–31 red, 32–47 blue, 48–63 black.
	m := image.NewNRGBA(image.Rect(0, 0, 64, 32))
	band := []color.NRGBA{{0, 255, 0, 255}, {255, 0, 0, 255}, {0, 0, 255, 255}, {0, 0, 0, 255}}
	for y := range 32 {
		for x := range 64 {
			m.SetNRGBA(x, y, band[x/16])
		}
	}
	red, blue := band[1], band[2]
	plain := encoded(t, m, jpegEnc)
	dir := t.TempDir()
	for _, tc := range []struct {
		o           int
		first, last color.NRGBA // the colour of the square's first and second half
		horizontal  bool        // whether the halves are left and right (else top and bottom)
	}{
		{1, red, blue, true}, {2, blue, red, true}, {3, blue, red, true}, {4, red, blue, true},
		{5, red, blue, false}, {6, red, blue, false}, {7, blue, red, false}, {8, blue, red, false},
	} {
		path := put(t, dir, "c.jpg", withAPP1(plain, exifPayload(orientationEXIF(tc.o))))
		f, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		sq, err := f.Square(16)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		a, b := sq.RGBAAt(3, 8), sq.RGBAAt(12, 8)
		if !tc.horizontal {
			a, b = sq.RGBAAt(8, 3), sq.RGBAAt(8, 12)
		}
		if !near(a, tc.first, 40) || !near(b, tc.last, 40) {
			t.Errorf("orientation %d: halves %v and %v, want %v and %v", tc.o, a, b, tc.first, tc.last)
		}
	}
}

// TestOrientationImageMagick compares with ImageMagick, an independent reader and writer:
// the file is tagged with -orient (which leaves the pixels as they are) and turned upright
// with -auto-orient.
func TestOrientationImageMagick(t *testing.T) {
	convert, err := exec.LookPath("convert")
	if err != nil {
		t.Skip("ImageMagick's convert is not installed")
	}
	dir := t.TempDir()
	// ImageMagick 6 writes the tag into a JPEG's EXIF block only where there is one already.
	srcs := map[string]string{
		"jpg": put(t, dir, "src.jpg", withAPP1(encoded(t, quadrants(48, 32), jpegEnc), exifPayload(orientationEXIF(1)))),
		"tif": put(t, dir, "src.png", encoded(t, quadrants(48, 32), pngEnc)),
	}
	names := []string{"", "TopLeft", "TopRight", "BottomRight", "BottomLeft", "LeftTop", "RightTop", "RightBottom", "LeftBottom"}
	for o := 1; o <= 8; o++ {
		for ext, src := range srcs {
			tagged := filepath.Join(dir, names[o]+"."+ext)
			upright := filepath.Join(dir, names[o]+"-upright.png")
			for _, args := range [][]string{
				{src, "-quality", "100", "-orient", names[o], tagged},
				{tagged, "-auto-orient", upright},
			} {
				if out, err := exec.Command(convert, args...).CombinedOutput(); err != nil {
					t.Fatalf("convert %v: %v\n%s", args, err, out)
				}
			}
			f, err := Open(t.Context(), tagged)
			if err != nil {
				t.Fatal(err)
			}
			if f.Orientation != o {
				t.Errorf("%s: orientation %d, ImageMagick wrote %d", filepath.Base(tagged), f.Orientation, o)
			}
			got, err := f.Square(16)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			g, err := Open(t.Context(), upright)
			if err != nil {
				t.Fatal(err)
			}
			want, err := g.Square(16)
			g.Close()
			if err != nil {
				t.Fatal(err)
			}
			// The decoders differ by up to 25 at the quarters' edges (libjpeg smooths
			// the chroma it upsamples); a wrong turn differs by about 100 on average.
			var sum int
			for i := range got.Pix {
				sum += max(int(got.Pix[i])-int(want.Pix[i]), int(want.Pix[i])-int(got.Pix[i]))
			}
			if mean := float64(sum) / float64(len(got.Pix)); mean > 5 {
				t.Errorf("%s: differs from ImageMagick's upright image by %.1f on average", filepath.Base(tagged), mean)
			}
		}
	}
}

// withTIFFTag returns the little-endian TIFF b (as tiff.Encode writes it) with the entry
// e added to its first IFD, which is rewritten at the end of the file.
func withTIFFTag(b []byte, e []byte) []byte {
	ifd := binary.LittleEndian.Uint32(b[4:])
	n := int(binary.LittleEndian.Uint16(b[ifd:]))
	var entries [][]byte
	for i := range n {
		entries = append(entries, b[int(ifd)+2+12*i:int(ifd)+14+12*i])
	}
	entries = append(entries, e)
	slices.SortFunc(entries, func(a, b []byte) int {
		return int(binary.LittleEndian.Uint16(a)) - int(binary.LittleEndian.Uint16(b))
	})
	out := bytes.Clone(b)
	if len(out)%2 == 1 {
		out = append(out, 0)
	}
	binary.LittleEndian.PutUint32(out[4:], uint32(len(out)))
	out = binary.LittleEndian.AppendUint16(out, uint16(len(entries)))
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, 0, 0, 0, 0)
}

func TestOrientationTIFF(t *testing.T) {
	dir := t.TempDir()
	plain := encoded(t, quadrants(32, 32), tiffEnc)
	for o := 1; o <= 8; o++ {
		path := put(t, dir, "o.tif", withTIFFTag(plain, ifdEntry(orientationTag, 3, 1, uint32(o))))
		f, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := f.Square(32)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if f.Orientation != o {
			t.Errorf("orientation %d read as %d", o, f.Orientation)
		}
		// Where the stored top-left (red) quarter shows.
		x, y := shownCorner(o, false, false)
		if got := m.RGBAAt(8+16*x, 8+16*y); !near(got, color.NRGBA{255, 0, 0, 255}, 0) {
			t.Errorf("orientation %d: red quarter not at (%d, %d): %v", o, x, y, got)
		}
	}
}

// chainedIFDs returns the EXIF block that takes github.com/dsoprea/go-exif/v3 4.5 s: 5,124
// IFDs of 2,000 entries each, overlapping, each the next of the one before.
func chainedIFDs() []byte {
	const entries = 2000
	b := make([]byte, 65000)
	copy(b, "II*\x00\x08\x00\x00\x00")
	for o := 8; ; o += 8 {
		next, end := o+8, o+2+12*entries+4
		if next+2+12*entries+4 > len(b) {
			next = 0
		}
		binary.LittleEndian.PutUint16(b[o:], entries)
		binary.LittleEndian.PutUint32(b[end-4:], uint32(next))
		if next == 0 {
			return b
		}
	}
}

func TestMalformedEXIF(t *testing.T) {
	plain := encoded(t, quadrants(16, 16), jpegEnc)
	ifd := func(count uint16, rest ...byte) []byte {
		return append(binary.LittleEndian.AppendUint16([]byte("II*\x00\x08\x00\x00\x00"), count), rest...)
	}
	cases := map[string][]byte{
		"empty":             {},
		"header only":       []byte("II*\x00"),
		"bad byte order":    []byte("XX*\x00\x08\x00\x00\x00\x00\x00"),
		"IFD past the end":  []byte("II*\x00\xff\xff\xff\xff"),
		"IFD in the header": []byte("II*\x00\x04\x00\x00\x00\x00\x00"),
		"no count":          []byte("II*\x00\x08\x00\x00\x00"),
		"65535 entries":     ifd(65535),
		"cut entry":         ifd(1, 0x12, 0x01, 3, 0),
		"LONG orientation":  exifIFD(ifdEntry(orientationTag, 4, 1, 6)),
		"two values":        exifIFD(ifdEntry(orientationTag, 3, 2, 6)),
		"orientation 0":     orientationEXIF(0),
		"orientation 9":     orientationEXIF(9),
		"orientation 65535": orientationEXIF(65535),
		// A count whose size overflows 32 bits: github.com/rwcarlsen/goexif allocates 25 GB.
		"count overflow": exifIFD(ifdEntry(orientationTag, 4, 0xc0000001, 1)),
		"5124 IFDs":      chainedIFDs(),
	}
	dir := t.TempDir()
	for name, tiffData := range cases {
		path := put(t, dir, "m.jpg", withAPP1(plain, exifPayload(tiffData)))
		start := time.Now()
		f, err := Open(t.Context(), path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if f.Orientation != 1 {
			t.Errorf("%s: orientation %d, want 1", name, f.Orientation)
		}
		if _, err := f.Square(8); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: took %v", name, d)
		}
	}
	// An XMP segment before the EXIF one, and an APP1 too short for an EXIF header.
	path := put(t, dir, "xmp.jpg", withAPP1(plain, []byte("http://ns.adobe.com/xap/1.0/\x00<x/>"), []byte("Ex"), exifPayload(orientationEXIF(6))))
	f, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f.Orientation != 6 {
		t.Errorf("EXIF after XMP: orientation %d, want 6", f.Orientation)
	}
	// The same blocks as a TIFF file's own first IFD: the file is then not a TIFF the
	// decoder takes, but reading its orientation must not fail either.
	for name, tiffData := range cases {
		if o := tiffOrientation(bytes.NewReader(tiffData)); o != 1 {
			t.Errorf("%s as a TIFF: orientation %d, want 1", name, o)
		}
	}
}
