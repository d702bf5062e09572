package sysmem

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAvailable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          int64
	}{
		// The layout of /proc/meminfo, from proc(5).
		{"linux", "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nBuffers:          123456 kB\n", 20000000 << 10},
		{"first line", "MemAvailable: 1 kB\n", 1024},
		{"missing", "MemTotal:       24576000 kB\nMemFree:         1000000 kB\n", 0},
		{"no unit", "MemAvailable:   20000000\n", 0},
		{"not a number", "MemAvailable:   lots kB\n", 0},
		{"negative", "MemAvailable:   -5 kB\n", 0},
		{"empty", "", 0},
	} {
		meminfo = filepath.Join(dir, tc.name)
		if err := os.WriteFile(meminfo, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := Available(); got != tc.want {
			t.Errorf("%s: Available() = %d, want %d", tc.name, got, tc.want)
		}
	}
	meminfo = filepath.Join(dir, "absent")
	if got := Available(); got != 0 {
		t.Errorf("no meminfo: Available() = %d, want 0", got)
	}
	meminfo = "/proc/meminfo"
	if _, err := os.Stat(meminfo); err == nil {
		if got := Available(); got <= 0 {
			t.Errorf("Available() = %d on a machine with %s", got, meminfo)
		}
	}
}
