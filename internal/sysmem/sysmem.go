// Package sysmem tells how much memory the machine can give the program.
package sysmem

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Available is the memory the kernel says can be used without swapping (MemAvailable
// in /proc/meminfo), in bytes, or 0 where that is unknown.
func Available() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}
