/*
 * dl_trim.h - give the heap back after a large transient answer.
 *
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
#ifndef DLEDGER_DL_TRIM_H
#define DLEDGER_DL_TRIM_H

#include <stddef.h>

#define DL_TRIM_MIN_BYTES (64u * 1024u)

/* Called after the memory of an answer of `bytes` bytes was freed. */
void dl_trim_after(size_t bytes);

#endif
