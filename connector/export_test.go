package connector

import "sync/atomic"

// CountMapped counts the records the engine maps from now on, until the
// returned stop is called. Tests using it must not run in parallel.
func CountMapped() (count func() int64, stop func()) {
	var n atomic.Int64
	mappedHook = func() { n.Add(1) }
	return n.Load, func() { mappedHook = nil }
}

// SetKeyedLimit sets how many keys an incremental run looks up before it
// reads every entry, until the returned restore is called.
func SetKeyedLimit(n int) (restore func()) {
	old := keyedLimit
	keyedLimit = n
	return func() { keyedLimit = old }
}
