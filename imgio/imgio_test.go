package imgio

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPixelMapping(t *testing.T) {
	for _, tc := range []struct {
		v    float32
		want uint8
	}{
		{-1, 0}, {1, 255}, {0, 128}, {-0.5, 64}, {2, 255}, {-7, 0},
		{float32(math.NaN()), 0}, {float32(math.Inf(1)), 255},
	} {
		if got := ToPixel(tc.v); got != tc.want {
			t.Errorf("ToPixel(%v) = %d, want %d", tc.v, got, tc.want)
		}
	}
	if ToModel(0) != -1 || ToModel(255) != 1 {
		t.Errorf("ToModel(0), ToModel(255) = %v, %v, want -1, 1", ToModel(0), ToModel(255))
	}
	for v := range 256 {
		if got := ToPixel(ToModel(uint8(v))); got != uint8(v) {
			t.Errorf("ToPixel(ToModel(%d)) = %d", v, got)
		}
	}
}

// writePNG encodes img into dir/name and returns the path.
func writePNG(t *testing.T, dir, name string, img image.Image) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadImageCentreCrop(t *testing.T) {
	// 20×10: left and right quarters black, the middle ten columns white.
	img := image.NewGray(image.Rect(0, 0, 20, 10))
	for y := range 10 {
		for x := 5; x < 15; x++ {
			img.SetGray(x, y, color.Gray{255})
		}
	}
	path := writePNG(t, t.TempDir(), "bar.png", img)
	for _, tc := range []struct{ size, channels int }{{4, 1}, {10, 3}, {16, 1}} {
		x, err := LoadImage(path, tc.size, tc.channels)
		if err != nil {
			t.Fatal(err)
		}
		if len(x) != tc.channels*tc.size*tc.size {
			t.Fatalf("size %d: got %d values, want %d", tc.size, len(x), tc.channels*tc.size*tc.size)
		}
		for i, v := range x {
			if v != 1 {
				t.Fatalf("size %d channels %d: value %d = %v, want 1 (white middle)", tc.size, tc.channels, i, v)
			}
		}
	}
}

func TestLoadImageColour(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 7, 5))
	for y := range 5 {
		for x := range 7 {
			img.SetNRGBA(x, y, color.NRGBA{255, 0, 51, 255})
		}
	}
	path := writePNG(t, t.TempDir(), "c.png", img)
	x, err := LoadImage(path, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1, -1, 51/127.5 - 1}
	for i, v := range x {
		if w := want[i/9]; v != w {
			t.Fatalf("value %d (channel %d) = %v, want %v", i, i/9, v, w)
		}
	}
	// Luma of (255, 0, 51): 0.299·255 + 0.114·51 = 82.06.
	g, err := LoadImage(path, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := ToPixel(g[4]); got != 82 {
		t.Errorf("gray value = %d, want 82", got)
	}
}

func TestLoadImageErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.png")
	if _, err := LoadImage(missing, 8, 1); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want it to name %s", err, missing)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadImage(text, 8, 1); err == nil || !strings.Contains(err.Error(), text) {
		t.Errorf("text file: err = %v, want it to name %s", err, text)
	}
	if _, err := LoadImage(text, 8, 2); err == nil {
		t.Error("channels 2 accepted")
	}
}

func TestSquareTransparentBecomesWhite(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 6, 6))
	for x := range 6 {
		img.SetNRGBA(x, 0, color.NRGBA{0, 0, 0, 128}) // half-transparent black
	}
	m := Square(img, 6)
	if c := m.RGBAAt(3, 3); c != (color.RGBA{255, 255, 255, 255}) {
		t.Errorf("transparent pixel = %v, want opaque white", c)
	}
	// Black at alpha 128/255 over white: 255·(1 − 128/255) = 127.
	if c := m.RGBAAt(3, 0); c.R < 126 || c.R > 128 || c.A != 255 {
		t.Errorf("half-transparent black = %v, want about 127 opaque", c)
	}
	if !IsGray(m) {
		t.Error("IsGray = false for a gray image")
	}
	m.SetRGBA(1, 1, color.RGBA{10, 10, 11, 255})
	if IsGray(m) {
		t.Error("IsGray = true for an image with a coloured pixel")
	}
}
