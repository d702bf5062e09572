// Package sysmem reports how much memory the machine can give the program.
package sysmem

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// meminfo is the file Available reads; a variable so that tests can point it elsewhere.
var meminfo = "/proc/meminfo"

// Available returns the memory, in bytes, that the kernel says can be used without swapping
// (MemAvailable in /proc/meminfo), or 0 where that is unknown (not Linux, or a kernel
// before 3.14).
func Available() int64 {
	f, err := os.Open(meminfo)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemAvailable:"))
		if !ok {
			continue
		}
		num, ok := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if !ok {
			return 0
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSpace(num)), 10, 64)
		if err != nil || kb < 0 || kb > 1<<53 {
			return 0
		}
		return kb << 10
	}
	return 0
}
