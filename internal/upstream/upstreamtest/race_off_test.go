//go:build !race

package upstreamtest

// raceEnabled lets tests skip what the race detector distorts.
const raceEnabled = false
