package run

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGalleryNewestFirst: the grids are listed by step, highest first, whatever the
// order of the files in the folder and their times (here the oldest file has the
// highest step), and files that are not grids are left out.
func TestGalleryNewestFirst(t *testing.T) {
	dir := t.TempDir()
	samples := filepath.Join(dir, SamplesDir)
	os.MkdirAll(samples, 0o755)
	now := time.Now()
	for i, step := range []int64{1000, 20, 300, 5} {
		path := filepath.Join(samples, fmt.Sprintf("step-%08d.png", step))
		if err := os.WriteFile(path, []byte("png"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, now, now.Add(time.Duration(i)*time.Minute))
	}
	os.WriteFile(filepath.Join(samples, "notes.txt"), nil, 0o644)
	os.WriteFile(filepath.Join(samples, "step-x.png"), nil, 0o644)
	items, err := Gallery(dir)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int64
	for _, it := range items {
		steps = append(steps, it.Step)
	}
	if fmt.Sprint(steps) != "[1000 300 20 5]" {
		t.Errorf("gallery steps %v, want [1000 300 20 5]", steps)
	}
}

// TestLossHistory: the curve of a run comes back up to the step asked for, and a
// damaged line (a killed process's half line) is skipped, not an error.
func TestLossHistory(t *testing.T) {
	dir := t.TempDir()
	lines := "{\"step\":1,\"loss\":0.9}\n{\"step\":2,\"loss\":0.8}\n{\"step\":3,\"lo\n{\"step\":4,\"loss\":0.6}\n"
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := LossHistory(dir, 2)
	if err != nil || len(h) != 2 || h[1] != (LossPoint{Step: 2, Loss: 0.8}) {
		t.Fatalf("history to step 2: %v, %v", h, err)
	}
	// Resuming at step 2 drops what was logged after it, and the damaged line.
	if err := trimMetrics(dir, 2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, MetricsFile))
	if string(b) != "{\"step\":1,\"loss\":0.9}\n{\"step\":2,\"loss\":0.8}\n" {
		t.Errorf("trimmed metrics %q", b)
	}
}
