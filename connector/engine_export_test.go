package connector

import "runtime"

// LiveHeap records the live heap (after a collection) once the engine's
// index is loaded and once its pull is over, until the returned stop is
// called. Benchmarks using it must not run in parallel.
func LiveHeap() (index, pull func() uint64, stop func()) {
	var atIndex, atPull uint64
	heapHook = func(stage string) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		switch stage {
		case "index":
			atIndex = ms.HeapAlloc
		case "pull":
			atPull = ms.HeapAlloc
		}
	}
	return func() uint64 { return atIndex }, func() uint64 { return atPull }, func() { heapHook = nil }
}
