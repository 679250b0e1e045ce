//go:build !race

package simplestreams

// raceEnabled lets tests skip what the race detector distorts.
const raceEnabled = false
