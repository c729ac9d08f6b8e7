//go:build race

package ring

// raceEnabled scales stress tests down: the race detector slows atomics
// by one to two orders of magnitude.
const raceEnabled = true
