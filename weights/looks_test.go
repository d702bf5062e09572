package weights

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// TestLooks tells model weights from images and folders of images, by content: a PNG
// called .ckpt is an image, a checkpoint called .png is weights.
func TestLooks(t *testing.T) {
	dir := t.TempDir()
	imgPath := filepath.Join(dir, "digit.ckpt")
	f, _ := os.Create(imgPath)
	png.Encode(f, image.NewGray(image.Rect(0, 0, 4, 4)))
	f.Close()
	ckpt, err := os.ReadFile(filepath.Join("testdata", "torch", "small-zip.pt"))
	if err != nil {
		t.Fatal(err)
	}
	misnamed := filepath.Join(dir, "weights.png")
	os.WriteFile(misnamed, ckpt, 0o644)
	unet := filepath.Join(dir, "unet")
	os.Mkdir(unet, 0o755)
	os.WriteFile(filepath.Join(unet, "config.json"), []byte(`{"_class_name": "UNet2DModel"}`), 0o644)
	for path, want := range map[string]bool{imgPath: false, misnamed: true, dir: false, unet: true, filepath.Join(dir, "none"): false} {
		if got := Looks(path); got != want {
			t.Errorf("Looks(%s) = %v, want %v", filepath.Base(path), got, want)
		}
	}
}
