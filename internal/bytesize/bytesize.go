// Package bytesize writes sizes in bytes for people.
package bytesize

import "fmt"

// Format writes n bytes with one decimal in decimal units, as file managers show them:
// "512 bytes", "1.5 kB", "23.4 MB", "1.9 GB", "3.0 TB".
func Format(n int64) string {
	units := []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	if n < 1000 {
		return fmt.Sprintf("%d bytes", n)
	}
	v := float64(n)
	for _, u := range units {
		v /= 1000
		if v < 999.95 || u == units[len(units)-1] {
			return fmt.Sprintf("%.1f %s", v, u)
		}
	}
	panic("unreachable")
}
