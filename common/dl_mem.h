/*
 * dl_mem.h - growing arrays, and giving the heap back after a large
 * transient answer.
 */
#ifndef DLEDGER_DL_MEM_H
#define DLEDGER_DL_MEM_H

#include <stddef.h>

#define DL_GROW_FIRST 64u /* elements of a grown array's first allocation */

/* Room for `need` elements of `elem` bytes, for a caller that found *cap
 * short: `arr` reallocated to a capacity doubled from
 * DL_GROW_FIRST until it fits (*cap updated); `arr` itself when *cap
 * already holds `need`. NULL when out of memory or the size overflows;
 * `arr` and *cap are then unchanged and `arr` is still the caller's. */
void *dl_grow(void *arr, size_t *cap, size_t need, size_t elem);

/*
 * A node answers a few large requests (node metadata for every group, the
 * metrics page: hundreds of KiB with 1,024 groups) next to a steady stream
 * of small ones. glibc raises its mmap threshold after the first large
 * block is freed, so later ones come from the heap and the arenas, and the
 * pages stay: an idle node with 1,024 members held 14 MiB more after a
 * benchmark's polls. dl_trim_after() returns free heap pages to the system
 * (malloc_trim) after an answer of at least DL_TRIM_MIN_BYTES, at most once
 * a second per process, so a client that polls cannot make a node spend
 * its time trimming.
 */
#define DL_TRIM_MIN_BYTES (64u * 1024u)

/* Called after the memory of an answer of `bytes` bytes was freed. */
void dl_trim_after(size_t bytes);

#endif
