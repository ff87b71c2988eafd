//go:build !linux || !cgo

package storage

// trimCHeap does nothing where malloc_trim is not known to exist.
func trimCHeap() {}
