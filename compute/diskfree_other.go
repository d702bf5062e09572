//go:build !(linux || darwin || freebsd)

package compute

import (
	"errors"
	"syscall"
)

// diskFree is not known here: SaveCheckpoint then writes without checking first.
func diskFree(dir string) (uint64, error) { return 0, errors.ErrUnsupported }

// isDiskFull reports whether err says the disk is full.
func isDiskFull(err error) bool { return errors.Is(err, syscall.ENOSPC) }
