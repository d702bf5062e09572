//go:build linux || darwin || freebsd

package compute

import (
	"errors"

	"golang.org/x/sys/unix"
)

// diskFree is the space available to unprivileged users on the filesystem holding dir.
func diskFree(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}

// isDiskFull reports whether err says the disk or the user's quota is full.
func isDiskFull(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }
