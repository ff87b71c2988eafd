//go:build linux && cgo

package storage

/*
#include <stddef.h>
// malloc_trim is glibc's; a weak reference leaves it nil under C
// libraries without it (musl).
extern int malloc_trim(size_t pad) __attribute__((weak));
static void backend_trim(void) { if (malloc_trim) malloc_trim(0); }
*/
import "C"

// trimCHeap returns the C allocator's free pages to the OS (glibc's
// malloc_trim, which also releases free pages inside its arenas; nothing
// where the C library has no malloc_trim).
func trimCHeap() { C.backend_trim() }
