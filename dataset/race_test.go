//go:build race

package dataset

// raceEnabled reports whether the race detector is on; it changes what is allocated.
const raceEnabled = true
