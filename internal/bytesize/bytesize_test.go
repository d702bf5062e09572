package bytesize

import "testing"

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 999: "999 bytes", 1500: "1.5 kB", 2_400_000: "2.4 MB",
		999_960: "1.0 MB", 188_743_680_000: "188.7 GB", 3e12: "3.0 TB", 5e15: "5.0 PB", 9e18: "9.0 EB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
