package dataset

import (
	"bytes"
	"compress/gzip"
	"slices"
	"strings"
	"testing"
)

func TestMNIST(t *testing.T) {
	d, err := Load(t.Context(), "mnist", Options{Size: 28})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 60000 || d.C != 1 || d.H != 28 || d.W != 28 || len(d.Pixels) != 60000*28*28 {
		t.Fatalf("N, C, H, W = %d, %d, %d, %d with %d bytes, want 60000, 1, 28, 28", d.N, d.C, d.H, d.W, len(d.Pixels))
	}
	if d.Files != nil || d.Source != "mnist" {
		t.Errorf("Files = %v, Source = %q; want nil, mnist", d.Files, d.Source)
	}
	// The mean intensity of the MNIST training images is 0.1307·255 = 33.32.
	if m := mean(d.Pixels); m < 33.2 || m > 33.4 {
		t.Errorf("mean pixel = %.3f, want about 33.32", m)
	}
	if got := d.Labels[:5]; !slices.Equal(got, []uint8{5, 0, 4, 1, 9}) {
		t.Errorf("first labels = %v, want [5 0 4 1 9]", got)
	}
	// Published class counts of the MNIST training set.
	want := [10]int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}
	var counts [10]int
	for _, l := range d.Labels {
		if l > 9 {
			t.Fatalf("label %d out of range", l)
		}
		counts[l]++
	}
	if counts != want {
		t.Errorf("label counts = %v, want %v", counts, want)
	}
	// Digits are white on a black background: corners are black.
	for i := range 100 {
		if p := d.Pixels[i*28*28]; p != 0 {
			t.Fatalf("image %d: top-left pixel = %d, want 0", i, p)
		}
	}
}

func TestMNISTResizedRGB(t *testing.T) {
	var last [2]int
	d, err := MNIST(t.Context(), Options{Size: 16, Channels: 3, Progress: func(done, total int) { last = [2]int{done, total} }})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 60000 || d.C != 3 || d.H != 16 || d.W != 16 || len(d.Pixels) != 60000*3*16*16 {
		t.Fatalf("N, C, H, W = %d, %d, %d, %d, want 60000, 3, 16, 16", d.N, d.C, d.H, d.W)
	}
	if last != [2]int{60000, 60000} {
		t.Errorf("last progress = %v, want [60000 60000]", last)
	}
	const plane = 16 * 16
	for _, i := range []int{0, 1, 59999} {
		img := d.Pixels[i*3*plane : (i+1)*3*plane]
		if !slices.Equal(img[:plane], img[plane:2*plane]) || !slices.Equal(img[:plane], img[2*plane:]) {
			t.Errorf("image %d: R, G and B planes differ", i)
		}
	}
	// Resampling roughly preserves the mean intensity.
	if m := mean(d.Pixels); m < 32 || m > 34.6 {
		t.Errorf("mean pixel = %.3f, want about 33.3", m)
	}
}

func TestMNISTReplicated(t *testing.T) {
	gray, err := MNIST(t.Context(), Options{Size: 28})
	if err != nil {
		t.Fatal(err)
	}
	rgb, err := MNIST(t.Context(), Options{Size: 28, Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	const plane = 28 * 28
	for _, i := range []int{0, 12345, 59999} {
		g := gray.Pixels[i*plane : (i+1)*plane]
		for c := range 3 {
			if got := rgb.Pixels[(3*i+c)*plane : (3*i+c+1)*plane]; !slices.Equal(got, g) {
				t.Errorf("image %d channel %d differs from the gray image", i, c)
			}
		}
	}
}

func mean(p []uint8) float64 {
	var sum int
	for _, v := range p {
		sum += int(v)
	}
	return float64(sum) / float64(len(p))
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadIDX(t *testing.T) {
	dims, data, err := readIDX(t.Context(), gzipped(t, []byte{0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6}), 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dims, []int{2, 3}) || !slices.Equal(data, []byte{1, 2, 3, 4, 5, 6}) {
		t.Errorf("readIDX = %v, %v; want [2 3], [1 2 3 4 5 6]", dims, data)
	}

	for _, tc := range []struct {
		name string
		gz   []byte
		want string
	}{
		{"not gzip", []byte("plain"), "gzip"},
		{"short header", gzipped(t, []byte{0, 0, 8, 2, 0}), "header"},
		{"float type", gzipped(t, []byte{0, 0, 0x0d, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0}), "magic"},
		{"wrong rank", gzipped(t, []byte{0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 7}), "magic"},
		{"truncated data", gzipped(t, []byte{0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2}), "dimensions"},
		{"huge dims", gzipped(t, []byte{0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}), "dimensions"},
	} {
		if _, _, err := readIDX(t.Context(), tc.gz, 2); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}
