//go:build linux

package compute

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRealDiskFull saves on a real full disk: a 16 MiB tmpfs (mounting it needs root; the
// test is skipped where that fails) holding one 11 MB checkpoint of the tiny preset. The
// second save is refused before writing, saying how much is needed and free where. With
// the free-space check fooled, the write runs out of space midway: the error says the
// disk is full, no temporary directory is left, and the first checkpoint loads as saved.
// Planted bugs it catches: no check before writing (the second save fails only once the
// disk is full); a failed write leaving its temporary directory.
func TestRealDiskFull(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(disk, 0) })
	run := filepath.Join(disk, "run")
	root := filepath.Join(run, checkpoints)
	tr := newCkptTrainer(t)
	saveStep(t, run, tr, 1)
	want := takeSnapshot(t, tr)

	mark(tr, 2)
	_, _, err := SaveCheckpoint(run, tr, nil)
	if err == nil || !strings.Contains(err.Error(), "not enough disk space: a checkpoint of this model takes about 11.3 MB and the disk holding "+root+" has ") {
		t.Fatalf("second save: %v", err)
	}
	t.Log(err)

	restore := freeSpace
	freeSpace = func(string) (uint64, error) { return 1 << 40, nil }
	defer func() { freeSpace = restore }()
	_, _, err = SaveCheckpoint(run, tr, nil)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "the disk holding "+root+" is full") || !strings.Contains(err.Error(), "nothing was saved") {
		t.Fatalf("write on a full disk: %v", err)
	}
	t.Log(err)
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != stepName(1) {
		t.Fatalf("left behind: %v", entries)
	}
	l, err := LoadLatest(run)
	if err != nil || len(l.Warnings) > 0 {
		t.Fatalf("%v %q", err, l.Warnings)
	}
	defer l.Trainer.Close()
	takeSnapshot(t, l.Trainer).assertSame(t, want)
}
