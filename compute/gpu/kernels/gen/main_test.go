package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedFilesAreCurrent fails when a kernel's declaration changed and the files
// generated from the declarations were not written again (go generate ./compute/gpu).
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := render("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the kernel sources give: run go generate ./compute/gpu", path)
		}
	}
}
